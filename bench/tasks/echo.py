"""The echo task: output the input bit from ``echo_step`` steps ago (a synthetic memory task,
from a TensorFlow LSTM tutorial: 50,000 random bits, lag 3, batch 5, windows of 15 steps)."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator

from bench.data.echo import EVAL_FLAGS, echo_fit, echo_windows
from bench.tasks import SEED_PROBE_DATA, SEED_TEST_DATA, SEED_TRAIN_DATA, SEED_VALID_DATA, Shape, Task, TaskSpec, rng_for
from cells.options import Option, size

BYTES_PER_STEP = 32  # 25 measured: int64 bits and targets, their float32 copy, the draw


class EchoTask(TaskSpec):
    name = "echo"
    summary = "synthetic memory task: output the input bit from --echo-step steps ago"
    options = (
        Option("total_series_length", 50_000, "echo: length of each random series", int, bound=size()),
        Option("echo_step", 3, "echo: the target is the input this many steps earlier (below the steps each batch "
               "row's windows cover)", int, bound=size()),
    )
    # The tutorial's settings are the defaults of every setting.
    presets = {"echo": {}}
    default_preset = "echo"
    preset_sources = {"echo": "the TensorFlow LSTM tutorial's echo task"}
    data_flags = "--total-series-length"

    report_metric = "accuracy"  # remembered or not: the share of bits echoed right

    @classmethod
    def check(cls, config: Any) -> None:
        echo_fit(config.total_series_length, config.echo_step, config.batch_size, config.num_steps)
        echo_fit(config.total_series_length, config.echo_step, config.eval_batch_size, config.eval_num_steps,
                 *EVAL_FLAGS)

    @classmethod
    def model_shape(cls, config: Any) -> Shape:
        return Shape("scalar", 1, 2)

    @classmethod
    def baseline(cls, config: Any) -> float | None:
        return math.log(2)  # without memory the bit from echo_step steps ago is a coin flip

    @classmethod
    def data_bytes(cls, config: Any) -> int:
        return config.total_series_length * BYTES_PER_STEP

    @classmethod
    def build(cls, config: Any, data_dir: str | None = None) -> Task:
        length, lag = config.total_series_length, config.echo_step

        def windows(batch: int, steps: int, *seed: int) -> Callable[[], Iterator]:
            return lambda: echo_windows(length, lag, batch, steps, rng_for(config.seed, *seed))

        return Task(
            name="echo",
            shape=cls.model_shape(config),
            # a fresh series every epoch, as in the tutorial
            train_windows=lambda epoch: windows(config.batch_size, config.num_steps, SEED_TRAIN_DATA, epoch)(),
            n_train_windows=echo_fit(length, lag, config.batch_size, config.num_steps),
            eval_windows={
                "valid": windows(config.eval_batch_size, config.eval_num_steps, SEED_VALID_DATA),
                "test": windows(config.eval_batch_size, config.eval_num_steps, SEED_TEST_DATA),
            },
            n_eval_windows={
                name: echo_fit(length, lag, config.eval_batch_size, config.eval_num_steps, *EVAL_FLAGS)
                for name in ("valid", "test")
            },
            per_epoch_splits=("valid",),
            baseline=cls.baseline(config),
            probe_windows=windows(config.batch_size, config.num_steps, SEED_PROBE_DATA),
        )

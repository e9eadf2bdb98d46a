"""What every task of independent sequences shares (copy, adding, selective copying).

Each window is a batch of whole sequences, so the window length is the task's sequence
length: the task fixes ``num_steps`` and ``eval_num_steps`` to it (a flag that disagrees is
an error). An "epoch" is ``batches_per_epoch`` updates on fresh sequences, drawn from the
run's seed and the epoch (a resumed run draws the same ones); after each, the model is
scored on a fixed held-out validation set (``eval_sequences`` sequences), and at the end on
a fixed test set. The gradient probe reads its own fixed sequences.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from bench.errors import BenchError
from bench.tasks import SEED_PROBE_DATA, SEED_TEST_DATA, SEED_TRAIN_DATA, SEED_VALID_DATA, Task, TaskSpec, rng_for
from cells.options import Option, size

Batch = Callable[[Any, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]  # (config, n, rng) -> (x, y)

SEQUENCE_OPTIONS = (
    Option("batches_per_epoch", 100, "sequence tasks: training updates (each on fresh sequences) between evaluations",
           int, bound=size()),
    Option("eval_sequences", 1000, "sequence tasks: held-out sequences in each of the validation and test sets "
           "(a multiple of --eval-batch-size)", int, bound=size()),
)


class SequenceTask(TaskSpec):
    """A task whose data are independent sequences of :meth:`sequence_length` steps, drawn
    by :meth:`batch`; subclasses add their options, shape, baseline and presets."""

    @classmethod
    def sequence_length(cls, config: Any) -> int:
        raise NotImplementedError

    @classmethod
    def batch(cls, config: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def derived(cls, values: dict[str, Any]) -> dict[str, Any]:
        given = {option.name: option.default for option in cls.options} | values
        for option in cls.options:
            try:
                option.check(given[option.name])
            except BenchError:  # a bad value: its own check names it, after this
                return {}
        steps = cls.sequence_length(_Values(given))
        return {"num_steps": steps, "eval_num_steps": steps}

    @classmethod
    def check(cls, config: Any) -> None:
        steps = cls.sequence_length(config)
        for name in ("num_steps", "eval_num_steps"):
            if getattr(config, name) != steps:
                raise BenchError(f"--{name.replace('_', '-')} must be {steps:,}, the {cls.name} task's sequence "
                                 f"length (each window is one whole sequence); got {getattr(config, name):,}")
        if config.eval_sequences % config.eval_batch_size:
            raise BenchError(f"--eval-sequences must be a multiple of --eval-batch-size {config.eval_batch_size:,} "
                             f"(every held-out sequence is scored once), got {config.eval_sequences:,}")

    @classmethod
    def data_bytes(cls, config: Any) -> int:
        # one batch of inputs and targets (8 bytes a value at most) at a time, a few copies
        # while it is drawn and converted; computed, never drawn: an absurd length must be
        # refused by the memory check, not allocated by it
        shape = cls.model_shape(config)
        features = 1 if shape.input_kind == "tokens" else shape.vocab_size
        per_step = 8 * (features + (shape.n_classes if shape.head == "regress" else 1))
        return 4 * max(config.batch_size, config.eval_batch_size) * cls.sequence_length(config) * per_step

    @classmethod
    def build(cls, config: Any, data_dir: str | None = None) -> Task:
        def sequences(n_batches: int, batch: int, *seed: int) -> Callable[[], Iterator]:
            def draw() -> Iterator[tuple[np.ndarray, np.ndarray]]:
                rng = rng_for(config.seed, *seed)
                for _ in range(n_batches):
                    yield cls.batch(config, batch, rng)
            return draw

        n_eval = config.eval_sequences // config.eval_batch_size
        return Task(
            name=cls.name,
            shape=cls.model_shape(config),
            train_windows=lambda epoch: sequences(config.batches_per_epoch, config.batch_size, SEED_TRAIN_DATA,
                                                  epoch)(),
            n_train_windows=config.batches_per_epoch,
            eval_windows={"valid": sequences(n_eval, config.eval_batch_size, SEED_VALID_DATA),
                          "test": sequences(n_eval, config.eval_batch_size, SEED_TEST_DATA)},
            n_eval_windows={"valid": n_eval, "test": n_eval},
            per_epoch_splits=("valid",),
            probe_windows=sequences(config.grad_probe_windows, config.batch_size, SEED_PROBE_DATA),
            independent=True,
            baseline=cls.baseline(config),
        )


class _Values:
    """Settings by name as attributes, for :meth:`SequenceTask.derived` before a Config exists."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

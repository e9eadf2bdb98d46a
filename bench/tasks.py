"""The two tasks, seen from the runner: where windows come from and how a split is scored.

A task turns a :class:`~bench.config.Config` into NumPy windows (via ``bench.data``) and
knows the model's input kind, vocabulary and classes. It checks up front that the window
sizes fit the data, so a bad size fails before anything is trained or written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from bench.config import Config
from bench.data import Corpus, echo_windows, load_ptb, ptb_windows
from bench.data.batching import check_fits, eval_window_count, ptb_eval_windows
from bench.data.echo import EVAL_FLAGS, echo_fit

Windows = Iterable[tuple[np.ndarray, np.ndarray]]

# Independent random streams per purpose: numpy.random.default_rng([seed, purpose, ...]).
SEED_INIT, SEED_TRAIN_DATA, SEED_DROPOUT, SEED_VALID_DATA, SEED_TEST_DATA, SEED_PROBE_DATA = range(6)


def rng_for(seed: int, purpose: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, *more])


@dataclass
class Task:
    """Windows for training and for each evaluation split, plus what the model must look like."""

    name: str
    input_kind: str
    vocab_size: int
    n_classes: int
    train_windows: Callable[[int], Windows]  # epoch -> windows
    n_train_windows: int
    eval_windows: dict[str, Callable[[], Windows]]  # split -> windows
    n_eval_windows: dict[str, int]
    per_epoch_splits: tuple[str, ...]  # evaluated after every epoch; the rest only at the end
    probe_windows: Callable[[], Windows]  # fixed held-out windows (training shape) for gradient norms
    words: tuple[str, ...] | None = None  # id -> word, for printing predictions
    reports_perplexity: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vocab_size": self.vocab_size,
            "n_classes": self.n_classes,
            "train_windows_per_epoch": self.n_train_windows,
            "eval_windows": dict(self.n_eval_windows),
        }


def make_task(config: Config, data_dir: str | None = None) -> Task:
    if config.task == "ptb":
        return _ptb_task(config, load_ptb(data_dir))
    return _echo_task(config)


def _ptb_task(config: Config, corpus: Corpus) -> Task:
    def split(name: str) -> np.ndarray:
        ids = corpus.split(name)
        return ids[: config.max_tokens] if config.max_tokens else ids

    n_train = check_fits(len(split("train")), config.batch_size, config.num_steps, "ptb train", "--batch-size or --num-steps")
    n_eval = {
        name: eval_window_count(len(split(name)), config.eval_batch_size, config.eval_num_steps, f"ptb {name}")
        for name in ("valid", "test")
    }

    def eval_windows(name: str) -> Callable[[], Windows]:
        return lambda: ptb_eval_windows(split(name), config.eval_batch_size, config.eval_num_steps, name)

    return Task(
        name="ptb",
        input_kind="tokens",
        vocab_size=corpus.vocab_size,
        n_classes=corpus.vocab_size,
        train_windows=lambda epoch: ptb_windows(split("train"), config.batch_size, config.num_steps, "train"),
        n_train_windows=n_train,
        eval_windows={name: eval_windows(name) for name in ("valid", "test")},
        n_eval_windows=n_eval,
        per_epoch_splits=("valid",),
        # the start of the validation split, cut like the training data
        probe_windows=lambda: ptb_windows(split("valid"), config.batch_size, config.num_steps, "valid"),
        words=corpus.words,
        reports_perplexity=True,
    )


def _echo_task(config: Config) -> Task:
    length, lag = config.total_series_length, config.echo_step
    def windows(batch: int, steps: int, *seed: int) -> Callable[[], Iterator]:
        return lambda: echo_windows(length, lag, batch, steps, rng_for(config.seed, *seed))

    return Task(
        name="echo",
        input_kind="scalar",
        vocab_size=1,
        n_classes=2,
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
        probe_windows=windows(config.batch_size, config.num_steps, SEED_PROBE_DATA),
    )

"""The echo task's data (a TensorFlow LSTM tutorial's memory task): output the input bit
from ``echo_step`` steps ago.

The targets are rolled over the whole series before it is cut into batch rows, as in the
tutorial, so the first ``echo_step`` targets of rows 2.. come from the end of the row
above and cannot be learned: the best reachable accuracy is just under 100%.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from bench.errors import BenchError


def echo_series(length: int, echo_step: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random binary series ``x`` and ``y = roll(x, echo_step)`` with ``y[:echo_step] = 0``."""
    x = rng.choice(2, length, p=[0.5, 0.5])
    y = np.roll(x, echo_step)
    y[:echo_step] = 0
    return x, y


EVAL_FLAGS = ("--eval-batch-size", "--eval-num-steps")


def echo_fit(
    length: int, echo_step: int, batch_size: int, num_steps: int,
    batch_flag: str = "--batch-size", steps_flag: str = "--num-steps",
) -> int:
    """Windows per pass over a series cut into ``batch_size`` rows, or the error saying
    which setting does not fit: the rows must be of equal length, hold a window, and the
    lag must be below the steps the windows cover (at or beyond it every target of a row
    lies before the row's start, so none is learnable; a lag beyond the whole series made
    every target 0 and gave accuracy 1.0)."""
    if length % batch_size:
        raise BenchError(
            f"--total-series-length must be a multiple of {batch_flag} {batch_size} (the series is cut into "
            f"batch rows of equal length), got {length:,}"
        )
    row = length // batch_size
    if num_steps > row:
        raise BenchError(
            f"{steps_flag} must be at most {row:,}, the length of each batch row (--total-series-length "
            f"{length:,} / {batch_flag} {batch_size}), got {num_steps:,}"
        )
    windows = row // num_steps
    if echo_step >= windows * num_steps:
        raise BenchError(
            f"--echo-step must be below {windows * num_steps:,}, the steps of each batch row that "
            f"{windows:,} window(s) of {steps_flag} {num_steps:,} cover (no target is learnable at or "
            f"beyond it), got {echo_step:,}"
        )
    return windows


def echo_windows(
    length: int, echo_step: int, batch_size: int, num_steps: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A fresh series cut as the tutorial does: reshape to ``(batch_size, -1)`` rows, then
    windows of ``num_steps`` columns. ``x`` is float (the input is the scalar bit)."""
    n = echo_fit(length, echo_step, batch_size, num_steps)
    x, y = echo_series(length, echo_step, rng)
    xs = x.reshape(batch_size, -1).astype(np.float32)
    ys = y.reshape(batch_size, -1)
    for i in range(n):
        cols = slice(i * num_steps, (i + 1) * num_steps)
        yield xs[:, cols], ys[:, cols]

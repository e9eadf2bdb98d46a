"""The echo task (SEEDS.md section 3): output the input bit from ``echo_step`` steps ago.

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


def echo_windows(
    length: int, echo_step: int, batch_size: int, num_steps: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A fresh series cut as the tutorial does: reshape to ``(batch_size, -1)`` rows, then
    windows of ``num_steps`` columns. ``x`` is float (the input is the scalar bit)."""
    if length % batch_size:
        raise BenchError(
            f"echo series length {length:,} is not a multiple of batch_size {batch_size}; "
            "change --total-series-length or --batch-size"
        )
    n = length // batch_size // num_steps
    if n < 1:
        raise BenchError(
            f"echo rows of {length // batch_size} steps are shorter than num_steps {num_steps}; "
            "raise --total-series-length or lower --num-steps"
        )
    x, y = echo_series(length, echo_step, rng)
    xs = x.reshape(batch_size, -1).astype(np.float32)
    ys = y.reshape(batch_size, -1)
    for i in range(n):
        cols = slice(i * num_steps, (i + 1) * num_steps)
        yield xs[:, cols], ys[:, cols]

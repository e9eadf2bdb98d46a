"""The seed tutorial's batch producer: each batch row is one contiguous stream of the corpus,
so the state left by one window is the right initial state for the next."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from bench.errors import BenchError


def _rows(data: np.ndarray, batch_size: int) -> np.ndarray:
    """``data`` cut into ``batch_size`` contiguous streams of ``len(data) // batch_size`` ids (a view)."""
    batch_len = len(data) // batch_size
    return np.asarray(data)[: batch_size * batch_len].reshape(batch_size, batch_len)


def epoch_size(n_tokens: int, batch_size: int, num_steps: int) -> int:
    """Windows per epoch: ``(batch_len - 1) // num_steps`` with ``batch_len = n // batch``."""
    return (n_tokens // batch_size - 1) // num_steps


def check_fits(n_tokens: int, batch_size: int, num_steps: int, what: str, flags: str) -> int:
    """Windows per epoch, or a clear error when the data cannot fill one window."""
    n = epoch_size(n_tokens, batch_size, num_steps)
    if n < 1:
        raise BenchError(
            f"{what} has {n_tokens:,} tokens: too few for batch {batch_size} x {num_steps} steps "
            f"(needs at least {batch_size * (num_steps + 1):,}); lower {flags}"
        )
    return n


def ptb_windows(
    data: np.ndarray, batch_size: int, num_steps: int, name: str = "data"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x, y)`` windows of shape ``(batch_size, num_steps)``; ``y`` is ``x`` shifted by one.

    ``data`` is cut into ``batch_size`` rows of ``batch_len = len(data) // batch_size``
    consecutive ids; window ``i`` is columns ``i*num_steps : (i+1)*num_steps`` (views, no copy).
    """
    n = check_fits(len(data), batch_size, num_steps, name, "--batch-size or --num-steps")
    rows = _rows(data, batch_size)
    for i in range(n):
        start = i * num_steps
        yield rows[:, start : start + num_steps], rows[:, start + 1 : start + num_steps + 1]


def eval_window_count(n_tokens: int, batch_size: int, num_steps: int, name: str = "data") -> int:
    """Windows of :func:`ptb_eval_windows` (the full ones and a shorter last one if any), or a
    clear error when a row would hold no token to score."""
    batch_len = n_tokens // batch_size
    if batch_len < 2:
        raise BenchError(
            f"{name} has {n_tokens:,} tokens: too few for evaluation batch {batch_size} "
            f"(needs at least {2 * batch_size:,}); lower --eval-batch-size"
        )
    return -(-(batch_len - 1) // num_steps)


def ptb_eval_windows(
    data: np.ndarray, batch_size: int, num_steps: int, name: str = "data"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """As :func:`ptb_windows`, then one shorter window with each row's remainder.

    So every token of every row (but the last, which has no target) is scored, whatever
    ``num_steps``: with the state carried from window to window, the window length only
    decides how many steps one call computes, never which tokens count or the state they
    see. The published runs scored one step per call; 35 per call gives the same
    perplexity (to float rounding) several times faster at batch 1 (docs/performance.md).
    """
    eval_window_count(len(data), batch_size, num_steps, name)
    rows = _rows(data, batch_size)
    batch_len = rows.shape[1]
    for start in range(0, batch_len - 1, num_steps):
        stop = min(start + num_steps, batch_len - 1)
        yield rows[:, start:stop], rows[:, start + 1 : stop + 1]

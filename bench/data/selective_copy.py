"""The selective copying task (Gu & Dao 2023, "Mamba", section 3.1), in the form of Feng et
al. 2024 ("Were RNNs All We Needed?", whose reference code is BorealisAI/minRNNs).

One sequence of ``length + tokens`` token ids from a vocabulary of ``vocab``:

- the first ``length`` steps are the noise token ``vocab - 1``, except at ``tokens``
  distinct positions drawn uniformly among them, which hold data tokens drawn uniformly
  (with repeats) from ``1 .. vocab - 2``;
- the last ``tokens`` steps are the marker ``0``: "answer now";
- the target at the i-th marker is the i-th data token in the order of their positions;
  only those ``tokens`` steps are scored.

Unlike the copy task, the data are not contiguous nor at a fixed place: the model must pick
them out of the noise by their content. A model without memory knows nothing of them at the
markers; its best answer is a uniform guess over the ``vocab - 2`` data tokens: accuracy
``1 / (vocab - 2)`` and cross-entropy ``log(vocab - 2)`` per scored step.
"""
from __future__ import annotations

import math

import numpy as np

MARKER = 0  # the answer steps' input


def noise_token(vocab: int) -> int:
    return vocab - 1


def selective_copy_baseline(vocab: int) -> float:
    """Cross-entropy per scored step of the best memoryless answer: a uniform guess."""
    return math.log(vocab - 2)


def selective_copy_batch(batch: int, length: int, tokens: int, vocab: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: input ids and target ids, both ``(batch, length + tokens)`` int64; the
    targets are the data tokens at the last ``tokens`` steps and 0 (never read) before."""
    data = rng.integers(1, vocab - 1, (batch, tokens))
    positions = np.sort(np.stack([rng.choice(length, tokens, replace=False) for _ in range(batch)]), axis=1)
    ids = np.full((batch, length + tokens), noise_token(vocab), np.int64)
    np.put_along_axis(ids, positions, data, axis=1)
    ids[:, length:] = MARKER
    targets = np.zeros((batch, length + tokens), np.int64)
    targets[:, length:] = data
    return ids, targets

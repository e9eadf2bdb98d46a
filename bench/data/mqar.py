"""Multi-query associative recall, MQAR (Arora, Eyuboglu et al. 2023, "Zoology"), as its
reference code defines it (HazyResearch/zoology, ``zoology/data/multiquery_ar.py``, one
pass over the pairs, no random filler: the Figure 2 grid's ``random_non_queries=False``).

One sequence of ``length`` token ids from a vocabulary of ``vocab``:

- the first ``2 pairs`` steps are key, value, key, value ...: ``pairs`` distinct keys from
  ``1 .. vocab // 2 - 1`` and ``pairs`` distinct values from ``vocab // 2 .. vocab - 1``;
- the rest is the filler 0, except that every key comes back once as a query, key ``i`` at
  step ``2 pairs + 2 g_i``; the gaps ``g_i`` are distinct, drawn from ``0 .. space - 1``
  (``space = (length - 2 pairs) // 2``) with weights ``(g + 1) ** (power_a - 1)``, so short
  gaps are the most likely (``power_a`` 1 would make them uniform);
- the target at a query is its key's value, and only the queries are scored.

The scored steps differ from sequence to sequence, so a task needs a per-sequence choice of
scored steps (``scored`` below), which the backends do not take yet. A model without memory
sees a key at a query but not its value: its best answer is a uniform guess over the
``vocab - vocab // 2`` values, accuracy ``1 / (vocab - vocab // 2)``.
"""
from __future__ import annotations

import math

import numpy as np

FILLER = 0


def mqar_baseline(vocab: int) -> float:
    """Cross-entropy per query of the best memoryless answer: a uniform guess over the values."""
    return math.log(vocab - vocab // 2)


def gap_weights(space: int, power_a: float) -> np.ndarray:
    """The probability of each gap ``0 .. space - 1`` (before any is taken)."""
    weights = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
    return weights / weights.sum()


def mqar_batch(batch: int, length: int, pairs: int, vocab: int, rng: np.random.Generator,
               power_a: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, scored)``, each ``(batch, length)``: input ids, target ids (the value at each
    query, 0 elsewhere) int64, and the queries as a bool mask."""
    if length % 2 or 4 * pairs > length or vocab <= length:
        raise ValueError(f"MQAR needs an even length of at least 4 x pairs below the vocabulary; got length "
                         f"{length}, {pairs} pairs, vocabulary {vocab}")
    half, context = vocab // 2, 2 * pairs
    space = (length - context) // 2
    weights = gap_weights(space, power_a)
    x = np.zeros((batch, length), np.int64)
    y = np.zeros((batch, length), np.int64)
    scored = np.zeros((batch, length), bool)
    for row in range(batch):
        keys = rng.choice(np.arange(1, half), pairs, replace=False)
        values = rng.choice(np.arange(half, vocab), pairs, replace=False)
        gaps = rng.choice(space, pairs, replace=False, p=weights)
        x[row, 0:context:2], x[row, 1:context:2] = keys, values
        queries = context + 2 * gaps
        x[row, queries] = keys
        y[row, queries] = values
        scored[row, queries] = True
    return x, y, scored

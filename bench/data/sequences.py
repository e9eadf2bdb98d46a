"""Generators of the two classic long-memory problems, as batches of independent sequences.

- **Copy task** (Arjovsky, Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks",
  section 4.1, after Hochreiter & Schmidhuber 1997): ``length`` symbols drawn from
  ``categories`` categories, then ``lag - 1`` blanks, a delimiter, ``length`` blanks; the
  target is blanks until the delimiter has been read, then the ``length`` symbols. A model
  without memory can at best predict the blanks and guess the symbols: ``length *
  log(categories) / (lag + 2 length)`` nats per step.
- **Adding problem** (the form of Arjovsky et al. 2016, section 4.2, and Le, Jaitly & Hinton
  2015): two input channels per step, a value uniform in [0, 1) and a marker that is 1 at
  one step of the first half and one step of the second half; the target, read at the last
  step, is the sum of the two marked values. Always answering 1 (the mean) scores the sum's
  variance, 2/12 = 1/6, in mean squared error.

Token ids of the copy task: 0 blank, 1..categories the symbols, categories + 1 the delimiter;
its inputs are their one-hot rows (the paper's input), its targets the ids 0..categories.
"""
from __future__ import annotations

import math

import numpy as np

ADDING_BASELINE = 2 / 12  # Var(U1 + U2) for independent U ~ uniform[0, 1)


def copy_sequence_length(lag: int, length: int) -> int:
    """Steps of one copy sequence: the symbols, ``lag`` steps up to and with the delimiter, the recall."""
    return lag + 2 * length


def copy_baseline(lag: int, length: int, categories: int) -> float:
    """Cross-entropy per step of the best memoryless answer: blanks right, symbols guessed."""
    return length * math.log(categories) / copy_sequence_length(lag, length)


def copy_batch(batch: int, lag: int, rng: np.random.Generator, length: int = 10,
               categories: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: one-hot inputs ``(batch, lag + 2 length, categories + 2)`` float32 and
    target ids ``(batch, lag + 2 length)`` int64."""
    steps = copy_sequence_length(lag, length)
    symbols = rng.integers(1, categories + 1, (batch, length))
    ids = np.zeros((batch, steps), np.int64)
    ids[:, :length] = symbols
    ids[:, length + lag - 1] = categories + 1  # the delimiter: recall now
    targets = np.zeros((batch, steps), np.int64)
    targets[:, lag + length:] = symbols
    one_hot = np.zeros((batch, steps, categories + 2), np.float32)
    np.put_along_axis(one_hot, ids[..., None], 1.0, axis=-1)
    return one_hot, targets


def adding_batch(batch: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: inputs ``(batch, length, 2)`` float32 (values, markers) and targets
    ``(batch, length, 1)`` float32, the sum of the marked values at the last step (0 before,
    where nothing is read)."""
    half = length // 2
    values = rng.uniform(0.0, 1.0, (batch, length)).astype(np.float32)  # the sum of what the model sees
    first = rng.integers(0, half, batch)
    second = rng.integers(half, length, batch)
    rows = np.arange(batch)
    markers = np.zeros((batch, length), np.float32)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = np.zeros((batch, length, 1), np.float32)
    targets[:, -1, 0] = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), targets

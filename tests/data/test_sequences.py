"""The copy task's and the adding problem's generators hold to the published protocols, for
random lags, sizes and seeds (property tests)."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.data.sequences import ADDING_BASELINE, adding_batch, copy_baseline, copy_batch, copy_sequence_length

SEEDS = st.integers(0, 2**32 - 1)


@settings(max_examples=150, deadline=None)
@given(lag=st.integers(1, 120), length=st.integers(1, 12), categories=st.integers(2, 9),
       batch=st.integers(1, 6), seed=SEEDS)
def test_copy_inputs_and_targets_are_the_protocol(lag, length, categories, batch, seed):
    x, y = copy_batch(batch, lag, np.random.default_rng(seed), length, categories)
    steps = lag + 2 * length
    assert copy_sequence_length(lag, length) == steps
    assert x.shape == (batch, steps, categories + 2) and x.dtype == np.float32
    assert y.shape == (batch, steps) and y.dtype == np.int64
    assert (x.sum(axis=-1) == 1).all()  # one-hot rows
    ids = x.argmax(axis=-1)
    symbols = ids[:, :length]
    assert ((symbols >= 1) & (symbols <= categories)).all()  # symbols, never blank or delimiter
    delimiter = length + lag - 1
    assert (ids[:, delimiter] == categories + 1).all()
    rest = np.delete(ids, list(range(length)) + [delimiter], axis=1)
    assert (rest == 0).all()  # T - 1 blanks before the delimiter, `length` after it
    assert (y[:, : lag + length] == 0).all()  # blanks until the delimiter has been read ...
    assert (y[:, lag + length:] == symbols).all()  # ... then the symbols, in order


@settings(max_examples=150, deadline=None)
@given(length=st.integers(2, 300), batch=st.integers(1, 6), seed=SEEDS)
def test_adding_has_one_marker_per_half_and_their_sum_as_target(length, batch, seed):
    x, y = adding_batch(batch, length, np.random.default_rng(seed))
    assert x.shape == (batch, length, 2) and y.shape == (batch, length, 1)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    half = length // 2
    assert (markers[:, :half].sum(axis=1) == 1).all() and (markers[:, half:].sum(axis=1) == 1).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    assert np.array_equal(y[:, -1, 0], (values * markers).sum(axis=1, dtype=np.float32))
    assert (y[:, :-1] == 0).all()  # nothing is read before the last step


def test_same_seed_same_batch_other_seed_other_batch():
    for make in (lambda rng: copy_batch(4, 9, rng), lambda rng: adding_batch(4, 30, rng)):
        a, b, c = (make(np.random.default_rng(s)) for s in (5, 5, 6))
        assert all(np.array_equal(p, q) for p, q in zip(a, b))
        assert not np.array_equal(a[0], c[0])


def test_baselines_are_what_a_model_without_memory_scores():
    """The copy baseline is the cross-entropy of predicting blanks exactly and the symbols
    uniformly; the adding baseline the mean squared error of always answering 1."""
    lag, length, categories = 30, 10, 8
    _, y = copy_batch(2000, lag, np.random.default_rng(0), length, categories)
    probs = np.where(np.arange(y.shape[1]) < lag + length, 1.0, 1.0 / categories)
    memoryless = -np.log(probs).mean()
    assert math.isclose(copy_baseline(lag, length, categories), memoryless, rel_tol=1e-12)
    assert math.isclose(copy_baseline(100, 10, 8), 10 * math.log(8) / 120)  # Arjovsky et al.'s formula
    _, y = adding_batch(200_000, 50, np.random.default_rng(0))
    assert abs(((y[:, -1, 0] - 1.0) ** 2).mean() - ADDING_BASELINE) < 3e-3

"""The MQAR generator follows the reference's definition (HazyResearch/zoology,
``multiquery_ar``): its docstring's example by hand, then the positions, token ranges,
scored steps and the gaps' power law over many draws."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.data.mqar import FILLER, gap_weights, mqar_baseline, mqar_batch


class _Fixed:
    """A generator whose draws are given, in the order the batch asks: keys, values, gaps."""

    def __init__(self, *draws):
        self.draws = [np.array(d) for d in draws]

    def choice(self, a, size, replace, p=None):
        assert not replace
        return self.draws.pop(0)


def test_the_reference_docstring_example():
    """zoology's example, 2 pairs, length 16, keys 2, 4; key 4 is queried at step 6 (gap 1),
    key 2 at step 12 (gap 4). Its vocabulary of 12 is refused by the reference's own code
    (more tokens than steps), so here it is 20: values from 10, 12 and 11 for the 8 and 7."""
    x, y, scored = mqar_batch(1, 16, 2, 20, _Fixed([2, 4], [12, 11], [4, 1]))
    assert x.tolist() == [[2, 12, 4, 11, 0, 0, 4, 0, 0, 0, 0, 0, 2, 0, 0, 0]]
    assert y.tolist() == [[0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 12, 0, 0, 0]]
    assert np.flatnonzero(scored[0]).tolist() == [6, 12]


def test_the_generator_follows_the_definition():
    length, pairs, vocab = 64, 4, 128
    x, y, scored = mqar_batch(300, length, pairs, vocab, np.random.default_rng(5))
    keys, values = x[:, 0:8:2], x[:, 1:8:2]
    assert ((keys >= 1) & (keys < vocab // 2)).all() and ((values >= vocab // 2) & (values < vocab)).all()
    assert all(len(set(row)) == pairs for row in keys) and all(len(set(row)) == pairs for row in values)
    assert (scored.sum(axis=1) == pairs).all() and not scored[:, :2 * pairs].any()
    assert (np.flatnonzero(scored.any(axis=0)) % 2 == 0).all()  # queries at even steps after the pairs
    for row in range(len(x)):
        queries = np.flatnonzero(scored[row])
        lookup = dict(zip(keys[row], values[row]))
        assert sorted(x[row, queries]) == sorted(keys[row])  # every key queried once
        assert [lookup[k] for k in x[row, queries]] == y[row, queries].tolist()  # answered by its value
        rest = np.ones(length, bool)
        rest[:2 * pairs] = False
        rest[queries] = False
        assert (x[row, rest] == FILLER).all() and (y[row, ~scored[row]] == 0).all()


def test_the_gaps_follow_the_power_law():
    weights = gap_weights(28, 0.01)
    assert weights.sum() == pytest.approx(1) and (np.diff(weights) < 0).all()
    assert weights[1] / weights[0] == pytest.approx(2 ** -0.99)
    _, _, scored = mqar_batch(2000, 64, 4, 128, np.random.default_rng(0), power_a=1.0)  # uniform gaps
    share = scored[:, 8::2].mean(axis=0)
    assert share == pytest.approx(np.full(28, 4 / 28), abs=0.02)
    _, _, scored = mqar_batch(2000, 64, 4, 128, np.random.default_rng(0))
    share = scored[:, 8::2].mean(axis=0)
    assert share[0] > share[-1] * 1.5  # short gaps likelier


def test_baseline_and_refusals():
    assert mqar_baseline(8192) == pytest.approx(math.log(4096))
    for length, pairs, vocab in ((63, 4, 128), (64, 17, 128), (64, 4, 64)):
        with pytest.raises(ValueError, match="MQAR needs"):
            mqar_batch(1, length, pairs, vocab, np.random.default_rng(0))

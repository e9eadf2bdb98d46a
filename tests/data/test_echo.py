import numpy as np
import pytest

from bench.data import echo_series, echo_windows
from bench.errors import BenchError


def test_targets_equal_input_three_steps_earlier():
    x, y = echo_series(1000, 3, np.random.default_rng(0))
    assert (y[3:] == x[:-3]).all()
    assert (y[:3] == 0).all()
    assert set(np.unique(x)) == {0, 1}


def test_windows_follow_the_tutorial_layout():
    rng = np.random.default_rng(1)
    windows = list(echo_windows(50_000, 3, 5, 15, np.random.default_rng(1)))
    x, y = echo_series(50_000, 3, rng)
    assert len(windows) == 50_000 // 5 // 15 == 666
    first_x, first_y = windows[0]
    assert first_x.shape == (5, 15) and first_x.dtype == np.float32
    assert (first_x == x.reshape(5, -1)[:, :15]).all()
    assert (first_y == y.reshape(5, -1)[:, :15]).all()


def test_best_reachable_accuracy_is_just_under_one():
    """Rows 2.. start with targets rolled in from the row above: unlearnable from that row."""
    batch, lag, length = 5, 3, 50_000
    x, y = echo_series(length, lag, np.random.default_rng(2))
    xs, ys = x.reshape(batch, -1), y.reshape(batch, -1)
    oracle = np.zeros_like(ys)
    oracle[:, lag:] = xs[:, :-lag]  # a perfect within-row memory; guesses 0 at each row start
    accuracy = (oracle == ys).mean()
    assert 0.9998 < accuracy < 1.0


def test_length_must_divide_into_rows():
    with pytest.raises(BenchError, match="multiple"):
        list(echo_windows(101, 3, 5, 15, np.random.default_rng(0)))

import numpy as np
import pytest

from bench.data import epoch_size, ptb_windows
from bench.errors import BenchError


def test_seed_example_first_window():
    windows = list(ptb_windows(np.arange(1, 19), batch_size=3, num_steps=2))
    x, y = windows[0]
    assert x.tolist() == [[1, 2], [7, 8], [13, 14]]
    assert y.tolist() == [[2, 3], [8, 9], [14, 15]]


def test_epoch_size_is_batch_len_minus_one_over_steps():
    # 18 ids, batch 3 -> batch_len 6 -> (6 - 1) // 2 = 2 windows
    assert epoch_size(18, 3, 2) == 2
    assert len(list(ptb_windows(np.arange(1, 19), 3, 2))) == 2


def test_windows_continue_each_row_stream():
    windows = list(ptb_windows(np.arange(100), batch_size=4, num_steps=3))
    for (x0, _), (x1, _) in zip(windows, windows[1:]):
        assert (x1[:, 0] == x0[:, -1] + 1).all()


def test_windows_are_views_not_copies():
    data = np.arange(100)
    x, _ = next(ptb_windows(data, 4, 3))
    assert np.shares_memory(x, data)


def test_too_few_tokens_is_a_clear_error():
    with pytest.raises(BenchError, match="too few"):
        list(ptb_windows(np.arange(10), batch_size=5, num_steps=3))

import numpy as np
import pytest

from bench.run.metrics import StretchTimer, flops_per_token, gradient_summary
from backends.spec import ModelSpec
from cells import GRUCell, LSTMCell, RNNCell
from cells.base import CellSpec


def test_flops_count_the_matrix_products():
    spec = ModelSpec(LSTMCell(), "tokens", 10_000, 200, 2, 10_000)
    gates = 2 * (200 + 200) * 800 + 10 * 800
    softmax = 2 * 200 * 10_000 + 5 * 10_000
    assert flops_per_token(spec, training=False) == 2 * gates + softmax
    assert flops_per_token(spec, training=True) == 3 * (2 * gates + softmax)


def test_lstm_costs_four_times_the_rnn_in_its_recurrent_part():
    lstm = ModelSpec(LSTMCell(), "scalar", 1, 64, 1, 2)
    rnn = ModelSpec(RNNCell(), "scalar", 1, 64, 1, 2)
    head = 2 * 64 * 2 + 5 * 2
    assert (flops_per_token(lstm, False) - head) == pytest.approx(4 * (flops_per_token(rnn, False) - head))


class _InputGatedCell(CellSpec):
    """A cell without recurrent weights (minGRU's shape): h = (1 - z) h + z h~."""

    name, gates, state_names, param_names = "input-gated", ("z", "h"), ("h",), ("U", "b")

    def recurrence(self, ops, params, z_in, state):
        n = z_in.shape[-1] // 2
        z = ops.sigmoid(z_in[:, :n])
        return ((1.0 - z) * state[0] + z * z_in[:, n:],)


def test_a_cell_without_recurrent_weights_counts_only_its_input_projection():
    spec = ModelSpec(_InputGatedCell(), "tokens", 10_000, 200, 2, 10_000)
    assert _InputGatedCell().recurrent_products(200) == []
    projection = 2 * 200 * 400 + 10 * 400
    assert flops_per_token(spec, training=False) == 2 * projection + 2 * 200 * 10_000 + 5 * 10_000


def test_the_gru_reset_before_counts_its_two_products_as_one():
    assert GRUCell("before").recurrent_products(8) == GRUCell("after").recurrent_products(8) == [(8, 24)]


def test_gradient_summary_of_a_geometric_decay():
    curve = 0.5 ** np.arange(10)[::-1]  # halves every step back in time
    summary = gradient_summary(curve)
    assert summary["ratio"] == pytest.approx(0.5**9)
    assert summary["decay_per_step"] == pytest.approx(0.5)


def test_gradient_summary_without_decay():
    assert gradient_summary(np.ones(5)) == {"ratio": 1.0, "decay_per_step": pytest.approx(1.0)}


def test_stretch_timer_skips_warmup_and_times_whole_stretches():
    timer = StretchTimer(warmup=3, stretch=4)
    for _ in range(3 + 4 * 5 + 2):
        timer.tick(100)
    summary = timer.summary()
    assert summary["timed_stretches"] == 5
    assert summary["tokens_per_s_min"] <= summary["tokens_per_s_median"] <= summary["tokens_per_s_max"]


def test_stretch_timer_with_too_few_steps_reports_none():
    timer = StretchTimer(warmup=5, stretch=20)
    for _ in range(10):
        timer.tick(1)
    assert timer.summary() == {"timed_stretches": 0}

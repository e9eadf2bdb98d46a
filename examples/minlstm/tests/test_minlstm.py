"""minLSTM held to cellbench's float64 reference with the conformance kit, as any plugin's
tests would be: every installed backend and impl (the fused ones skip: no framework has a
minLSTM layer), the NumPy kernel against finite differences, and the paper's equations."""
from __future__ import annotations

import numpy as np
import pytest

from bench import testing
from bench.registry import cell_names, make_cell
from cells.base import NUMPY_OPS
from minlstm import MinLSTMCell

LOG4 = float(np.log(4.0))  # σ(log 4) = 0.8, σ(-log 4) = 0.2


def test_installed_as_a_plugin():
    assert "minlstm" in cell_names()
    cell = make_cell("minlstm")
    assert isinstance(cell, MinLSTMCell)
    assert cell.is_linear  # so the backends' scan impls run it


def test_numpy_kernel_against_finite_differences():
    testing.check_finite_differences(MinLSTMCell())


@pytest.mark.parametrize("case", testing.cases(MinLSTMCell()), ids=str)
def test_conformance(case):
    case.check()


def test_the_paper_equations_on_one_step():
    """Worked by hand: f = σ(log 4) = 0.8, i = σ(0) = 0.5, h~ = 2, h_{t-1} = 1, so
    f' = 0.8/1.3 = 8/13, i' = 5/13 and h_t = 8/13 + 2·5/13 = 18/13."""
    z_in = np.array([[LOG4, 0.0, 2.0]])
    a, b = MinLSTMCell().linear_recurrence(NUMPY_OPS, {}, z_in)
    np.testing.assert_allclose(a, [[8 / 13]])
    np.testing.assert_allclose(b, [[10 / 13]])
    (h,) = MinLSTMCell().recurrence(NUMPY_OPS, {}, z_in, (np.array([[1.0]]),))
    np.testing.assert_allclose(h, [[18 / 13]])
    # the kernel computes the same step by its own route (h~ + f'(h_{t-1} - h~))
    hs, (h_last,), _ = MinLSTMCell().numpy_kernel().forward(z_in[None].copy(), {}, (np.array([[1.0]]),))
    np.testing.assert_allclose(hs[0], [[18 / 13]])
    np.testing.assert_allclose(h_last, [[18 / 13]])


def test_normalised_gates_keep_the_state_between_old_and_candidate():
    """f' + i' = 1: however large both raw gates, h_t is a convex mix of h_{t-1} and h~,
    where an LSTM without the normalisation (f + i up to 2) could double it."""
    z_in = np.array([[8.0, 8.0, 3.0], [-3.0, 5.0, -1.0]])
    a, b = MinLSTMCell().linear_recurrence(NUMPY_OPS, {}, z_in)
    f, i = 1 / (1 + np.exp(-z_in[:, 0])), 1 / (1 + np.exp(-z_in[:, 1]))
    np.testing.assert_allclose(a[:, 0], f / (f + i))
    np.testing.assert_allclose(b[:, 0], i / (f + i) * z_in[:, 2])
    (h,) = MinLSTMCell().recurrence(NUMPY_OPS, {}, z_in, (np.array([[1.0], [1.0]]),))
    assert 1.0 < h[0, 0] < 3.0 and -1.0 < h[1, 0] < 1.0


def test_gradient_decays_only_through_the_normalised_forget_gate():
    """With no recurrent matrix the gradient reaching h_{t-k} is dh_t ∏ f': at f = 0.8,
    i = 0.2 (f' = 0.8, i' = 0.2) it shrinks by 0.8 per step back in time, whatever the
    candidate, and not by i', f or i + f."""
    kernel = MinLSTMCell().numpy_kernel()
    steps, batch, n = 6, 1, 3
    P = np.zeros((steps, batch, 3 * n))
    P[:, :, :n] = LOG4
    P[:, :, n:2 * n] = -LOG4
    P[:, :, 2 * n:] = np.linspace(-1.0, 1.0, steps * n).reshape(steps, 1, n)
    hs, _, cache = kernel.forward(P, {}, (np.zeros((batch, n)),))
    dhs = np.zeros_like(hs)
    dhs[-1] = 1.0
    _, grads, norms = kernel.backward(dhs, {}, cache, trace=True)
    assert grads == {}
    np.testing.assert_allclose(norms["h"][:, 0], np.sqrt(n) * 0.8 ** np.arange(steps)[::-1])


def test_linear_recurrence_grad_against_finite_differences():
    """The derivative numpy's scan pulls back to ``z_in``: that of ``L = Σ da·a + db·b``,
    checked by central differences of :meth:`linear_recurrence` itself."""
    cell, rng = MinLSTMCell(), np.random.default_rng(0)
    z_in = rng.standard_normal((2, 3, 3 * 4))
    da, db = rng.standard_normal((2, 2, 3, 4))

    def loss(z: np.ndarray) -> float:
        a, b = cell.linear_recurrence(NUMPY_OPS, {}, z)
        return float((da * a).sum() + (db * b).sum())

    numeric = np.zeros_like(z_in)
    for index in np.ndindex(z_in.shape):
        step = np.zeros_like(z_in)
        step[index] = 1e-6
        numeric[index] = (loss(z_in + step) - loss(z_in - step)) / 2e-6
    dz_in, grads = cell.linear_recurrence_grad({}, z_in, da, db)
    assert grads == {}
    np.testing.assert_allclose(dz_in, numeric, rtol=1e-6, atol=1e-9)

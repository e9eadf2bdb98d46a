"""minGRU held to cellbench's float64 reference with the conformance kit, as any plugin's
tests would be: every installed backend and impl (the fused ones skip: no framework has a
minGRU layer), and the NumPy kernel against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from bench import testing
from bench.registry import cell_names, make_cell
from mingru import MinGRUCell


def test_installed_as_a_plugin():
    assert "mingru" in cell_names()
    assert isinstance(make_cell("mingru"), MinGRUCell)


def test_numpy_kernel_against_finite_differences():
    testing.check_finite_differences(MinGRUCell())


@pytest.mark.parametrize("case", testing.cases(MinGRUCell()), ids=str)
def test_conformance(case):
    case.check()


def test_the_paper_equations_on_one_step():
    """h_t = (1 - z) h_{t-1} + z h~ with z = σ(x U^z + b^z), h~ = x U^h + b^h (Feng et al. 2024, eq. for minGRU)."""
    from cells.base import NUMPY_OPS

    z_in = np.array([[0.0, 2.0]])  # z = σ(0) = 0.5, h~ = 2
    (h,) = MinGRUCell().recurrence(NUMPY_OPS, {}, z_in, (np.array([[1.0]]),))
    np.testing.assert_allclose(h, [[1.5]])


def test_gradient_decays_only_through_one_minus_z():
    """With no recurrent matrix the gradient reaching h_{t-k} is dh_t ∏(1 - z): at z = σ(0)
    it halves per step back in time, whatever the weights."""
    kernel = MinGRUCell().numpy_kernel()
    steps, batch, n = 6, 1, 3
    P = np.zeros((steps, batch, 2 * n))
    hs, _, cache = kernel.forward(P, {}, (np.zeros((batch, n)),))
    dhs = np.zeros_like(hs)
    dhs[-1] = 1.0
    _, grads, norms = kernel.backward(dhs, {}, cache, trace=True)
    assert grads == {}
    np.testing.assert_allclose(norms["h"][:, 0], np.sqrt(n) * 0.5 ** np.arange(steps)[::-1])

"""The numpy backend's ``scan`` impl: any cell that declares its step linear in the state,
``h_t = a_t * h_{t-1} + b_t`` (``CellSpec.linear_recurrence``), with no kernel of its own.

A kernel in the sense of ``backends.numpy.kernels`` (``forward``, ``backward``), built from
the cell's declarations alone:

- forward: the whole window's ``a`` and ``b`` in one vectorised call of the cell's
  ``linear_recurrence`` on ``P = x U + b``, then the recurrence itself;
- backward: the adjoint recurrence run backwards in time, ``g_t = dh_t + a_{t+1} g_{t+1}``
  (``g_t`` the total gradient at ``h_t``), then ``da_t = g_t h_{t-1}`` and ``db_t = g_t`` for
  the whole window at once, pulled back to ``P`` by the cell's ``linear_recurrence_grad``.

NumPy has no autodiff, and this backend's rule is a hand-written backward pass (a cell runs
impl ``cell`` here only with its ``numpy_kernel``): so the one thing a cell must add for
this impl is the derivative of its ``a`` and ``b``, ``CellSpec.linear_recurrence_grad``,
a few element-wise lines (minGRU's are four). A linear cell without it is refused in one
line (:func:`why_no_scan`) and runs ``scan`` on torch and JAX, which differentiate for it.

The recurrence is a loop over the steps of two in-place element-wise operations on
``(batch, hidden)``, not a log-space or parallel scan, because that is what is fastest in
NumPy, measured on one core (float32, forward only, T x batch x hidden):

    ============== ======= ======================= ============================
    T x B x H       loop    log-space (logaddexp)   doubling (Hillis-Steele)
    ============== ======= ======================= ============================
    1024 x 16 x 256  5.3 ms  423 ms                  77 ms
    4096 x 16 x 64   8.9 ms  457 ms                  93 ms
    256 x 16 x 256   1.0 ms   97 ms                  16 ms
    1024 x 1 x 8     1.4 ms  0.7 ms                  0.12 ms
    ============== ======= ======================= ============================

NumPy runs one operation at a time over memory, so a parallel scan's extra work (log2 T
passes over the window, or a logarithm and an exponential per element for the log-space
form) is paid in full and buys no parallelism; the loop reads each element once and its
per-step call overhead (~1 µs) only dominates below a few hundred units per step, far
below any width the benchmark trains. The loop is also exact: no logarithms, so ``a`` and
``b`` may have any sign and the float32 error does not grow with ``|sum log a|``. What the
impl buys over the cell's own ``cell`` impl is that every non-recurrent part of the step
(the gates) is computed once per window, for any linear cell, as minGRU's hand-written
kernel does for minGRU alone.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from backends.base import why_no_scan as why_no_linear_recurrence
from backends.numpy.kernels import per_example_norm
from cells.base import NUMPY_OPS, CellSpec


def why_no_scan(cell: CellSpec) -> str | None:
    """Why the numpy backend's ``scan`` cannot run ``cell`` (None when it can)."""
    if why := why_no_linear_recurrence("numpy", cell):
        return why
    if not cell.has_linear_grad:
        return (f"numpy has no scan for cell {cell.name!r}: NumPy has no autodiff and the cell declares no "
                "linear_recurrence_grad (the derivative of its a and b); use --impl cell, or --backend torch or jax")
    return None


class ScanKernel:
    """Forward and backward of any linear cell over a window (module docstring)."""

    def __init__(self, cell: CellSpec) -> None:
        self.cell = cell

    def forward(self, P: np.ndarray, params: dict[str, np.ndarray], state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
        a, b = self.cell.linear_recurrence(NUMPY_OPS, params, P)
        a = np.broadcast_to(a, b.shape)  # a parameter shared by every step, as the LRU's λ
        (h_prev,) = state
        # each h_t is written over its b_t, unless b is a view of what the backward reads
        hs = b if b.flags.writeable and not np.may_share_memory(b, P) and not np.may_share_memory(b, a) else b.copy()
        carried = np.empty_like(h_prev, dtype=hs.dtype)
        for t in range(len(hs)):
            h = hs[t]
            h += np.multiply(a[t], h_prev, out=carried)
            h_prev = h
        return hs, (hs[-1].copy(),), (P, a, hs, state)

    def backward(
        self, dhs: np.ndarray, params: dict[str, np.ndarray], cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        P, a, hs, (h0,) = cache
        g = np.array(dhs, copy=True)  # g_t = dh_t + a_{t+1} g_{t+1}, in place from the end
        for t in range(len(g) - 2, -1, -1):
            g[t] += a[t + 1] * g[t + 1]
        h_prev = np.concatenate([h0[None], hs[:-1]])
        dZ, grads = self.cell.linear_recurrence_grad(params, P, g * h_prev, g)
        norms = {"h": per_example_norm(g)} if trace else {}
        return dZ, grads, norms

"""The minLSTM cell: the LSTM with its gates computed from the input alone, normalised."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cells.base import NUMPY_OPS, CellSpec, Ops

if TYPE_CHECKING:
    from minlstm.kernel import MinLSTMKernel


class MinLSTMCell(CellSpec):
    """minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", sequential mode)::

        f_t  = σ(x_t U^f + b^f)
        i_t  = σ(x_t U^i + b^i)
        h~_t = x_t U^h + b^h
        f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
        h_t  = f'_t ∘ h_{t-1} + i'_t ∘ h~_t

    No recurrent weights, no cell state and no output gate: the LSTM's ``c`` is the output.
    The normalised gates sum to one, so ``h_t`` is a convex mix of ``h_{t-1}`` and the
    candidate (the paper's time-independent scale), and the gradient reaching ``h_{t-k}`` is
    scaled by ∏ f' and no matrix. The step is linear in the state, ``h_t = a_t ∘ h_{t-1} +
    b_t`` with ``a_t = f'_t`` and ``b_t = i'_t ∘ h~_t``, which the cell declares
    (:meth:`linear_recurrence`): every backend's ``cell`` impl unrolls it step by step, the
    ``scan`` impls combine the window's ``a`` and ``b`` in one pass (numpy's with the
    derivative the cell writes, :meth:`linear_recurrence_grad`).

    Differences from the paper:

    - The paper trains in log space (its ``log_minlstm``: ``log f' = -softplus(log i -
      log f)`` and the candidate through its ``g`` activation, ``g(x) = x + 0.5`` for
      ``x >= 0`` and ``σ(x)`` below, which keeps ``h~ > 0`` so its logarithm exists, with
      ``h_0`` through ``g`` too). This cell is the plain form above: the candidate is the
      linear ``x_t U^h + b^h`` of either sign, ``h_0`` is the state carried in (zero at a
      run's start), and ``f'`` is computed as the quotient.
    - The quotient is 0/0 only where both σ underflow to zero: gate pre-activations both
      below -20 in float32 and -38 in float64 with NumPy's tanh-form σ (below -89 for
      torch's float32 ``sigmoid``); far outside what training at cellbench's scales reaches,
      and left as is rather than changing the function with an ε.
    - Biases start at zero, as minGRU's (the paper names no forget-bias initialisation):
      at zero input f' = i' = 1/2.
    - Gate blocks are stacked ``f, i, h`` in ``U`` and ``b``.
    """

    name = "minlstm"
    gates = ("f", "i", "h")
    state_names = ("h",)
    param_names = ("U", "b")  # the input projection only: the recurrence has no parameters
    biases = ("b",)

    def linear_recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any) -> tuple[Any, Any]:
        """``a = f / (f + i)``, ``b = i / (f + i) ∘ h~`` from ``z_in = x_t U + b``."""
        n = z_in.shape[-1] // 3
        f = ops.sigmoid(z_in[..., :n])
        i = ops.sigmoid(z_in[..., n:2 * n])
        candidate = z_in[..., 2 * n:]
        total = f + i
        return f / total, (i / total) * candidate

    def linear_recurrence_grad(
        self, params: dict[str, np.ndarray], z_in: np.ndarray, da: np.ndarray, db: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """For numpy's scan: ``b = (1 - f') h~`` (as ``i' = 1 - f'``), so the gradient at
        ``f'`` is ``df' = da - db h~``; then, with ``∂f'/∂f = i/s² = f' i' / f`` and
        ``∂f'/∂i = -f' i' / i`` (``s = f + i``) and ``σ' = σ (1 - σ)``::

            df~ =  df' f' i' (1 - f)
            di~ = -df' f' i' (1 - i)
            dh~ =  db i'

        No parameters of its own."""
        n = z_in.shape[-1] // 3
        f = NUMPY_OPS.sigmoid(z_in[..., :n])
        i = NUMPY_OPS.sigmoid(z_in[..., n:2 * n])
        candidate = z_in[..., 2 * n:]
        forget = f / (f + i)
        inject = 1.0 - forget
        common = (da - db * candidate) * forget * inject
        dz_in = np.empty_like(z_in)
        np.multiply(common, 1.0 - f, out=dz_in[..., :n])
        np.multiply(common, i - 1.0, out=dz_in[..., n:2 * n])
        np.multiply(db, inject, out=dz_in[..., 2 * n:])
        return dz_in, {}

    def numpy_kernel(self) -> "MinLSTMKernel":
        """The hand-written forward and BPTT the numpy backend runs (and the reference)."""
        from minlstm.kernel import MinLSTMKernel

        return MinLSTMKernel()

"""The minGRU cell: the GRU with its gates computed from the input alone."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cells.base import NUMPY_OPS, CellSpec, Ops

if TYPE_CHECKING:
    from mingru.kernel import MinGRUKernel


class MinGRUCell(CellSpec):
    """minGRU (Feng et al. 2024): update gate z and candidate h~ from the input alone::

        z_t  = σ(x_t U^z + b^z)
        h~_t = x_t U^h + b^h
        h_t  = (1 - z_t) ∘ h_{t-1} + z_t ∘ h~_t

    No recurrent weights: the state enters only through the interpolation, so the gradient
    reaching h_{t-k} is scaled by ∏(1 - z) and no matrix. The step is linear in the state,
    ``h_t = a_t ∘ h_{t-1} + b_t`` with ``a_t = 1 - z_t`` and ``b_t = z_t ∘ h~_t``, which the
    cell declares (:meth:`linear_recurrence`): every backend's ``cell`` impl unrolls it step
    by step, the ``scan`` impls combine the window's ``a`` and ``b`` in one parallel scan.
    Here ``z`` weights the candidate, as in the paper (the GRU's z weights the old state).
    The paper's log-space form (its ``g`` activation keeping h~ positive) is not this cell's:
    the candidate is the plain linear ``x_t U^h + b^h``, of either sign.
    """

    name = "mingru"
    gates = ("z", "h")
    state_names = ("h",)
    param_names = ("U", "b")  # the input projection only: the recurrence has no parameters
    biases = ("b",)

    def linear_recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any) -> tuple[Any, Any]:
        n = z_in.shape[-1] // 2
        z = ops.sigmoid(z_in[..., :n])  # z_in = x_t U + b
        candidate = z_in[..., n:]
        return 1.0 - z, z * candidate

    def linear_recurrence_grad(
        self, params: dict[str, np.ndarray], z_in: np.ndarray, da: np.ndarray, db: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """For numpy's scan: ``a = 1 - σ(z~)``, ``b = σ(z~) h~``, so ``dz~ = (db h~ - da) σ'``
        with ``σ' = σ (1 - σ)``, and ``dh~ = db σ``; no parameters of its own."""
        n = z_in.shape[-1] // 2
        z = NUMPY_OPS.sigmoid(z_in[..., :n])
        candidate = z_in[..., n:]
        dz_in = np.empty_like(z_in)
        np.multiply(db * candidate - da, z * (1.0 - z), out=dz_in[..., :n])
        np.multiply(db, z, out=dz_in[..., n:])
        return dz_in, {}

    def numpy_kernel(self) -> "MinGRUKernel":
        """The hand-written forward and BPTT the numpy backend runs (and the reference)."""
        from mingru.kernel import MinGRUKernel

        return MinGRUKernel()

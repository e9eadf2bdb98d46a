"""The minGRU cell: the GRU with its gates computed from the input alone."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cells.base import CellSpec, Ops

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

    def numpy_kernel(self) -> "MinGRUKernel":
        """The hand-written forward and BPTT the numpy backend runs (and the reference)."""
        from mingru.kernel import MinGRUKernel

        return MinGRUKernel()

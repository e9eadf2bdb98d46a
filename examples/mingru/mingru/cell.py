"""The minGRU cell: the GRU with its gates computed from the input alone."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from cells.base import CellSpec, Ops

if TYPE_CHECKING:
    from mingru.kernel import MinGRUKernel


class MinGRUCell(CellSpec):
    """minGRU (Feng et al. 2024): update gate z and candidate h~ from the input alone::

        z_t  = σ(x_t U^z + b^z)
        h~_t = x_t U^h + b^h
        h_t  = (1 - z_t) ∘ h_{t-1} + z_t ∘ h~_t

    No recurrent weights: the state enters only through the interpolation, so the gradient
    reaching h_{t-k} is scaled by ∏(1 - z) and no matrix, and training can run as a parallel
    scan (this plugin runs the sequential form, the one every backend's ``cell`` impl
    unrolls). Here ``z`` weights the candidate, as in the paper (the GRU's z weights the
    old state).
    """

    name = "mingru"
    gates = ("z", "h")
    state_names = ("h",)
    param_names = ("U", "b")  # the input projection only: the recurrence has no parameters
    biases = ("b",)

    def recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any, state: Sequence[Any]) -> tuple[Any]:
        (h_prev,) = state
        n = z_in.shape[-1] // 2
        z = ops.sigmoid(z_in[:, :n])  # z_in = x_t U + b
        candidate = z_in[:, n:]
        return ((1.0 - z) * h_prev + z * candidate,)

    def numpy_kernel(self) -> "MinGRUKernel":
        """The hand-written forward and BPTT the numpy backend runs (and the reference)."""
        from mingru.kernel import MinGRUKernel

        return MinGRUKernel()

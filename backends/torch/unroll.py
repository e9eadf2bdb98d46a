"""A cell's step equations (``CellSpec.step``) unrolled over a window on torch tensors.

Used by the "cell" impl for training, and by both impls to measure gradient norms over
time (the fused layers hide the per-step states of every layer but the output).

The input projection ``x_t U + b`` of every step is computed up front in ONE GEMM for the
whole window, as the fused kernels do, while the equations still come from the cell: the
step receives ``x_t`` as a :class:`_Projected` whose ``@ U`` returns the precomputed row,
and ``b`` as :data:`FOLDED`, which adds as zero. :func:`supports_projection` checks once
per cell that this gives the plain step's result; a cell whose step uses ``x``, ``U`` or
``b`` any other way simply runs unprojected.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from cells.base import CellSpec, Ops

TORCH_OPS = Ops(tanh=torch.tanh, sigmoid=torch.sigmoid)


class _ProjectionMarker:
    """Stands for ``U`` in the step's parameters when ``x_t U`` is precomputed."""

    def __repr__(self) -> str:
        return "PROJECTED_U"


class _FoldedBias:
    """Stands for ``b`` when the bias is already inside the precomputed projection: ``z + b`` is ``z``."""

    def __add__(self, other: Any) -> Any:
        return other

    __radd__ = __add__

    def __repr__(self) -> str:
        return "FOLDED_BIAS"


PROJECTED_U = _ProjectionMarker()
FOLDED = _FoldedBias()


class _Projected:
    """``x_t`` whose product with ``U`` (plus ``b``) was computed for the whole window."""

    __slots__ = ("value",)

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value

    def __matmul__(self, other: Any) -> torch.Tensor:
        if other is not PROJECTED_U:
            raise TypeError("a projected input can only be multiplied by its own U")
        return self.value


def supports_projection(cell: CellSpec) -> bool:
    """Whether ``cell.step`` gives the same result with the projection precomputed."""
    gen = torch.Generator().manual_seed(0)
    n_in, hidden, batch = 3, 2, 2
    shapes = cell.param_shapes(n_in, hidden)
    U, V, b = (torch.randn(shapes[k], generator=gen, dtype=torch.float64) for k in ("U", "V", "b"))
    x = torch.randn(batch, n_in, generator=gen, dtype=torch.float64)
    state = tuple(torch.randn(batch, hidden, generator=gen, dtype=torch.float64) for _ in cell.state_names)
    try:
        plain = cell.step(TORCH_OPS, {"U": U, "V": V, "b": b}, x, state)
        fast = cell.step(
            TORCH_OPS, {"U": PROJECTED_U, "V": V, "b": FOLDED}, _Projected(torch.addmm(b, x, U)), state
        )
        return len(plain) == len(fast) and all(
            isinstance(c, torch.Tensor) and torch.allclose(a, c, rtol=1e-12, atol=1e-12) for a, c in zip(plain, fast)
        )
    except Exception:  # any other use of x, U or b: run the plain step
        return False


def run_layer(
    cell: CellSpec,
    U: torch.Tensor,
    V: torch.Tensor,
    b: torch.Tensor,
    inputs: torch.Tensor,
    state: Sequence[torch.Tensor],
    projected: bool,
    capture: list | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One layer over a time-major window ``inputs`` ``(steps, batch, in)``.

    Returns the outputs ``(steps, batch, hidden)`` and the final state tuple. With
    ``capture`` (a list), every step's state tuple is appended to it, the very tensors
    the next step and the layer above consume (so gradients with respect to them are
    total derivatives).
    """
    steps, batch, n_in = inputs.shape
    if projected:
        P = torch.addmm(b, inputs.reshape(steps * batch, n_in), U).view(steps, batch, -1)
        xs: Sequence[Any] = [_Projected(p) for p in P.unbind(0)]  # unbind: one backward node, not `steps`
        layer_params = {"U": PROJECTED_U, "V": V, "b": FOLDED}
    else:
        xs = inputs.unbind(0)
        layer_params = {"U": U, "V": V, "b": b}
    state = tuple(state)
    outputs = []
    for x in xs:
        state = tuple(cell.step(TORCH_OPS, layer_params, x, state))
        outputs.append(state[-1])
        if capture is not None:
            capture.append(state)
    return torch.stack(outputs), state

"""A cell's step equations (``CellSpec.step``) unrolled over a window on torch tensors.

Used by the "cell" impl for training, and by both impls to measure gradient norms over
time (the fused layers hide the per-step states of every layer but the output).

The input projection ``x_t U + b`` of every step is computed up front in ONE GEMM for the
whole window, as the fused kernels do; the cell's ``recurrence`` then runs step by step.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from cells.base import CellSpec, Ops

TORCH_OPS = Ops(tanh=torch.tanh, sigmoid=torch.sigmoid)


def run_layer(
    cell: CellSpec,
    params: Mapping[str, torch.Tensor],
    inputs: torch.Tensor,
    state: Sequence[torch.Tensor],
    capture: list | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One layer (``params`` by the cell's parameter names) over a time-major window
    ``inputs`` ``(steps, batch, in)``.

    Returns the outputs ``(steps, batch, hidden)`` and the final state tuple. With
    ``capture`` (a list), every step's state tuple is appended to it, the very tensors
    the next step and the layer above consume (so gradients with respect to them are
    total derivatives).
    """
    steps, batch, n_in = inputs.shape
    recurrent = cell.recurrent_params(params)
    P = torch.addmm(params["b"], inputs.reshape(steps * batch, n_in), params["U"]).view(steps, batch, -1)
    state = tuple(state)
    outputs = []
    for z_in in P.unbind(0):  # unbind: one backward node, not `steps`
        state = tuple(cell.recurrence(TORCH_OPS, recurrent, z_in, state))
        outputs.append(state[-1])
        if capture is not None:
            capture.append(state)
    return torch.stack(outputs), state

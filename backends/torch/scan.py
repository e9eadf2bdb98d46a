"""A linear recurrence ``h_t = a_t * h_{t-1} + b_t`` over a whole window at once, on torch
tensors: the ``scan`` impl's layer, for any cell that declares ``linear_recurrence``.

torch has no associative scan in its stable API, so the recurrence is Heinsen's (2023)
log-space form: with ``A_t = sum_{s<=t} log a_s`` (``torch.cumsum``),

    h_t = exp(A_t) h_0 + sum_{s<=t} exp(A_t - A_s) b_s
        = exp(A_t) h_0 + exp(A_t + logcumsumexp_s(log b_s - A_s))

(``torch.logcumsumexp``). ``b`` is of either sign (minGRU's candidate is linear), so it is
split into its positive and its negative part, one ``logcumsumexp`` each; ``h_0`` enters
through ``exp(A_t)`` and needs no log.

The backward pass is the same scan run backwards in time, not autograd through the logs
(whose gradient at ``b = 0`` is ``0 / 0``): with ``g_t`` the total gradient at ``h_t``,

    g_t = dh_t + a_{t+1} g_{t+1},   da_t = g_t h_{t-1},   db_t = g_t,   dh_0 = a_1 g_1.

``a`` must not be negative (it is a gate in (0, 1)); an ``a`` that rounds to 0 (``1 - σ(x)``
for x > 17 in float32) stands at the dtype's smallest normal number in the logs, which
changes ``h_t`` by ``1e-38 * h_{t-1}`` in float32 (``2e-308`` in float64). Where ``a < 0``
the log-space form does not apply and the layer refuses to run rather than compute another
function. The float32 error grows with the window length (``A_t`` grows like ``t``, and the
sum ``A_t + logcumsumexp`` loses its low bits): docs/performance.md has the measurement.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from backends.torch.unroll import TORCH_OPS
from cells.base import CellSpec
from cells.errors import BenchError


def _scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The log-space scan itself (no gradient): every ``h_t``, time on axis 0."""
    A = torch.cumsum(torch.log(a.clamp_min(torch.finfo(a.dtype).tiny)), 0)
    h = h0 * torch.exp(A)
    for sign in (1.0, -1.0):
        part = torch.where(sign * b > 0, torch.log(sign * b), -torch.inf)  # log of the part a sign holds
        h += sign * torch.exp(A + torch.logcumsumexp(part - A, 0))
    return h


class _LinearScan(torch.autograd.Function):
    """Forward and backward each one log-space scan (module docstring)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        h = _scan(a, b, h0)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx: Any, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, h0, h = ctx.saved_tensors
        # g_t = dh_t + a_{t+1} g_{t+1}: the scan on reversed time; a_{T+1} multiplies g_{T+1} = 0
        a_next = torch.cat([a[1:], torch.ones_like(a[:1])])
        g = _scan(a_next.flip(0), dh.flip(0), torch.zeros_like(h0)).flip(0)
        h_prev = torch.cat([h0[None], h[:-1]])
        return g * h_prev, g, a[0] * g[0]


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Every ``h_t`` ``(steps, batch, hidden)`` of ``h_t = a_t * h_{t-1} + b_t`` from ``h0``
    ``(batch, hidden)``, time on axis 0, differentiable in ``a``, ``b`` and ``h0`` (an ``a``
    that broadcasts, a parameter shared by every step, is expanded first)."""
    return _LinearScan.apply(a.expand_as(b), b, h0)


def scan_layer(
    cell: CellSpec, params: Mapping[str, torch.Tensor], inputs: torch.Tensor, state: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
    """One layer of a linear cell over a time-major window ``(steps, batch, in)``: the
    window's input projection in one GEMM, its ``a`` and ``b`` in one call of the cell's
    ``linear_recurrence``, the recurrence in one scan. Returns the outputs and the final state."""
    steps, batch, n_in = inputs.shape
    P = torch.addmm(params["b"], inputs.reshape(steps * batch, n_in), params["U"]).view(steps, batch, -1)
    a, b = cell.linear_recurrence(TORCH_OPS, cell.recurrent_params(params), P)
    if bool((a.detach() < 0).any()):
        raise BenchError(f"cell {cell.name!r}: its linear recurrence has a < 0, where torch's log-space scan "
                         "does not apply; use --impl cell")
    (h0,) = state
    hs = linear_scan(a, b, h0)
    return hs, (hs[-1],)

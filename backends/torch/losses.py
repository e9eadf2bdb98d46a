"""The output layer and the head's per-row loss: softmax cross-entropy (``classify``) as one
autograd function with its gradient by hand, squared error (``regress``) in plain ops.

The layer's three products are most of a CPU training step, and what is left to save is
the memory passes around them over the rows x classes logits. So the bias is added in
place after ``mm`` (``addmm`` broadcasts it into a copy the product then reads back), the
logits buffer is reused (logits, exponentials, then softmax minus one-hot), the row
maximum gives the predicted ids too, and the per-row upstream gradient scales the small
operands instead of a copy of the logits' gradient: ``d hidden = u * (G W^T)``,
``dW = (u * hidden)^T G``, ``db = G^T u``. ``docs/performance.md`` has the profiles and
the before and after. The regression head is left to autograd: its outputs are a handful
of values per scored step (one for the adding problem), nothing worth a hand-made pass.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable


def _scores(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
            gradient: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ce, predicted, buffer)``; with ``gradient`` the buffer holds softmax minus one-hot,
    the gradient of the summed CE with respect to the logits."""
    logits = torch.mm(hidden, weight).add_(bias)
    top, predicted = logits.max(dim=1, keepdim=True)  # first maximum on ties, as argmax
    picked = logits.gather(1, targets[:, None])
    sums = logits.sub_(top).exp_().sum(dim=1, keepdim=True)
    ce = sums.log().add_(top).sub_(picked).squeeze(1)
    if gradient:
        logits.div_(sums).scatter_add_(1, targets[:, None], logits.new_full((len(targets), 1), -1.0))
    return ce, predicted.squeeze(1), logits


class _LinearSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ce, predicted, gradient = _scores(hidden, weight, bias, targets, gradient=True)
        ctx.save_for_backward(hidden, weight, gradient)
        ctx.mark_non_differentiable(predicted)
        return ce, predicted

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, upstream: torch.Tensor, _: Any) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, gradient = ctx.saved_tensors
        rows = upstream[:, None]
        d_hidden = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            d_hidden = torch.mm(gradient, weight.t()).mul_(rows)
        if ctx.needs_input_grad[1]:
            d_weight = torch.mm((hidden * rows).t(), gradient)
        if ctx.needs_input_grad[2]:
            d_bias = torch.mv(gradient.t(), upstream)
        return d_hidden, d_weight, d_bias, None


def linear_softmax_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                                 targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ce, predicted)`` for ``(rows, hidden)`` states, a ``(hidden, classes)`` weight, a
    ``(classes,)`` bias and ``(rows,)`` int64 targets: per-row ``-log softmax(hidden W + b)
    [target]`` (differentiable in all three) and the row argmax (first maximum on ties).

    Without autograd (evaluation) the softmax and its gradient are never formed.
    """
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad or bias.requires_grad):
        return _LinearSoftmaxCrossEntropy.apply(hidden, weight, bias, targets)
    ce, predicted, _ = _scores(hidden, weight, bias, targets, gradient=False)
    return ce, predicted


def linear_squared_error(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, out)`` for ``(rows, hidden)`` states, a ``(hidden, outputs)`` weight, a
    ``(outputs,)`` bias and ``(rows, outputs)`` float targets: the output layer's values
    ``out = hidden W + b`` and per row the squared error summed over the outputs."""
    out = torch.addmm(bias, hidden, weight)
    return (out - targets).square().sum(dim=1), out

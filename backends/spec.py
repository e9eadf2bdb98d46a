"""The model every backend builds, and its NumPy reference forward pass.

    inputs (batch, steps) ─ embedding (tokens) or the scalar itself ─ dropout
      ─ layer 0 … layer L-1 (each: cell over time, then dropout on its output)
      ─ softmax layer (hidden → classes) ─ cross-entropy against the targets

Parameter names (the canonical layout every backend maps to and from):

    embedding        (vocab, hidden)           only for token inputs
    layers.{l}.U     (in_l, blocks*hidden)     in_0 = hidden (tokens) or 1 (scalar)
    layers.{l}.V     (hidden, blocks*hidden)
    layers.{l}.b     (blocks*hidden,)
    softmax.W        (hidden, classes)
    softmax.b        (classes,)

The loss that is differentiated is declared, never assumed: ``sum_steps_mean_batch`` is
the cross-entropy summed over time steps and averaged over the batch (what Zaremba et al.
2014 and TensorFlow's PTB tutorial differentiate, with lr 1 and clip 5); ``mean`` averages
over every token (the echo tutorial; pytorch/examples too, with lr 20 and clip 0.25).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence, TypeVar

import numpy as np

from cells.base import NUMPY_OPS, CellSpec

LOSS_REDUCTIONS = ("sum_steps_mean_batch", "mean")
InputKind = Literal["tokens", "scalar"]
T = TypeVar("T")


def layer_key(layer: int, name: str) -> str:
    """The canonical name of layer ``layer``'s parameter ``name`` (one of the cell's ``param_names``)."""
    return f"layers.{layer}.{name}"


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the function a model computes (but not how it is trained)."""

    cell: CellSpec
    input_kind: InputKind
    vocab_size: int  # number of distinct input tokens; 1 for scalar inputs
    hidden_size: int
    num_layers: int
    n_classes: int
    keep_prob: float = 1.0
    loss_reduction: str = "sum_steps_mean_batch"

    def layer_input_size(self, layer: int) -> int:
        if layer == 0 and self.input_kind == "scalar":
            return 1
        return self.hidden_size

    def layer_params(self, params: Mapping[str, T], layer: int) -> dict[str, T]:
        """Layer ``layer``'s entries of a canonically named dict (weights, gradients,
        tensors), by the cell's parameter names."""
        return {name: params[layer_key(layer, name)] for name in self.cell.param_names}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        if self.input_kind == "tokens":
            shapes["embedding"] = (self.vocab_size, self.hidden_size)
        for layer in range(self.num_layers):
            for name, shape in self.cell.param_shapes(self.layer_input_size(layer), self.hidden_size).items():
                shapes[layer_key(layer, name)] = shape
        shapes["softmax.W"] = (self.hidden_size, self.n_classes)
        shapes["softmax.b"] = (self.n_classes,)
        return shapes

    def loss_scale(self, batch_size: int, num_steps: int) -> float:
        """Factor from the summed cross-entropy over all tokens to the differentiated loss."""
        if self.loss_reduction == "sum_steps_mean_batch":
            return 1.0 / batch_size
        return 1.0 / (batch_size * num_steps)

    def describe(self) -> dict[str, Any]:
        return {
            "cell": self.cell.name,
            "cell_options": self.cell.option_values(),
            "input_kind": self.input_kind,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "n_classes": self.n_classes,
            "keep_prob": self.keep_prob,
            "loss_reduction": self.loss_reduction,
            "n_params": int(sum(np.prod(s) for s in self.param_shapes().values())),
        }


def init_params(spec: ModelSpec, init_scale: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The initial weights, in float64, drawn in a fixed order from ``rng``.

    Every backend starts from these very numbers (cast to its dtype and mapped into its
    layout), which is what makes "same initial weights" literally true.
    """
    params: dict[str, np.ndarray] = {}
    if spec.input_kind == "tokens":
        params["embedding"] = rng.uniform(-init_scale, init_scale, (spec.vocab_size, spec.hidden_size))
    for layer in range(spec.num_layers):
        cell_params = spec.cell.init_params(spec.layer_input_size(layer), spec.hidden_size, init_scale, rng)
        for name, value in cell_params.items():
            params[layer_key(layer, name)] = value
    params["softmax.W"] = rng.uniform(-init_scale, init_scale, (spec.hidden_size, spec.n_classes))
    params["softmax.b"] = rng.uniform(-init_scale, init_scale, (spec.n_classes,))
    return params


def zero_state(spec: ModelSpec, batch_size: int, dtype: Any = np.float64) -> list[tuple[np.ndarray, ...]]:
    """Per layer, one zero array of ``(batch, hidden)`` per state name of the cell."""
    return [
        tuple(np.zeros((batch_size, spec.hidden_size), dtype) for _ in spec.cell.state_names)
        for _ in range(spec.num_layers)
    ]


def reference_forward(
    spec: ModelSpec,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    state: Sequence[tuple[np.ndarray, ...]] | None = None,
) -> tuple[float, np.ndarray, list[tuple[np.ndarray, ...]]]:
    """The cell's step equations unrolled over one window, in NumPy, without dropout.

    Returns (the differentiated loss, logits ``(batch, steps, classes)``, final state).
    This is the executable definition conformance tests hold every backend to; it is
    written for clarity, not speed.
    """
    batch, steps = x.shape
    state = [tuple(s) for s in (state if state is not None else zero_state(spec, batch))]
    if spec.input_kind == "tokens":
        inputs = params["embedding"][x]
    else:
        inputs = x[..., None].astype(np.float64)
    layer_params = [spec.layer_params(params, layer) for layer in range(spec.num_layers)]
    outputs = []
    for t in range(steps):
        h = inputs[:, t]
        for layer in range(spec.num_layers):
            state[layer] = spec.cell.step(NUMPY_OPS, layer_params[layer], h, state[layer])
            h = state[layer][-1]
        outputs.append(h)
    hidden = np.stack(outputs, axis=1)
    logits = hidden @ params["softmax.W"] + params["softmax.b"]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    ce_sum = -np.take_along_axis(log_probs, y[..., None], axis=-1).sum()
    return float(ce_sum * spec.loss_scale(batch, steps)), logits, state

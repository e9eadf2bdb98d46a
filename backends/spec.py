"""The model every backend builds, and its NumPy reference forward pass.

    inputs (batch, steps) ─ embedding (tokens) or the values themselves ─ dropout
      ─ layer 0 … layer L-1 (each: cell over time, then dropout on its output)
      ─ the scored steps' outputs ─ output layer (hidden → outputs) ─ the head's loss

The head is the task's: ``classify`` (softmax cross-entropy over ``n_classes`` classes,
integer targets ``(batch, steps)``) or ``regress`` (the output layer's ``n_classes`` values
themselves, squared error summed over them, float targets ``(batch, steps, n_classes)``).
``scored_steps`` are the window's steps whose outputs enter the loss and every metric
(negative: counted from the end; None: every step): the adding problem reads its answer at
the last step only. Inputs are token ids ``(batch, steps)``, one value per step
(``scalar``, ``(batch, steps)``) or ``vocab_size`` values per step (``vector``,
``(batch, steps, vocab_size)``).

Parameter names (the canonical layout every backend maps to and from):

    embedding        (vocab, hidden)           only for token inputs
    layers.{l}.U     (in_l, blocks*hidden)     in_0 = hidden (tokens), 1 (scalar), features (vector)
    layers.{l}.V     (hidden, blocks*hidden)
    layers.{l}.b     (blocks*hidden,)
    softmax.W        (hidden, outputs)         the output layer (softmax'ed only by the classify head)
    softmax.b        (outputs,)

The loss that is differentiated is declared, never assumed: ``sum_steps_mean_batch`` is
the head's loss summed over the scored steps and averaged over the batch (what Zaremba et
al. 2014 and TensorFlow's PTB tutorial differentiate, with lr 1 and clip 5); ``mean``
averages over every scored step of every example (the echo tutorial; pytorch/examples too,
with lr 20 and clip 0.25; the mean squared error of a regression).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence, TypeVar

import numpy as np

from cells.base import NUMPY_OPS, CellSpec

LOSS_REDUCTIONS = ("sum_steps_mean_batch", "mean")
InputKind = Literal["tokens", "scalar", "vector"]
HEADS = ("classify", "regress")
T = TypeVar("T")


def layer_key(layer: int, name: str) -> str:
    """The canonical name of layer ``layer``'s parameter ``name`` (one of the cell's ``param_names``)."""
    return f"layers.{layer}.{name}"


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the function a model computes (but not how it is trained)."""

    cell: CellSpec
    input_kind: InputKind
    vocab_size: int  # tokens: distinct input ids; values: features per step (1 for scalar inputs)
    hidden_size: int
    num_layers: int
    n_classes: int  # width of the output layer: classes (classify) or values (regress)
    keep_prob: float = 1.0
    loss_reduction: str = "sum_steps_mean_batch"
    head: str = "classify"
    scored_steps: tuple[int, ...] | None = None  # None: every step

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of: {', '.join(HEADS)}")
        if self.scored_steps is not None and not self.scored_steps:
            raise ValueError("scored_steps: name at least one step, or None for every step")

    def layer_input_size(self, layer: int) -> int:
        if layer == 0 and self.input_kind != "tokens":
            return self.vocab_size
        return self.hidden_size

    def scored(self, steps: int) -> np.ndarray:
        """The indices (ascending, in ``[0, steps)``) of a ``steps``-long window's scored steps."""
        if self.scored_steps is None:
            return np.arange(steps)
        index = sorted({t % steps for t in self.scored_steps if -steps <= t < steps})
        if len(index) != len(set(self.scored_steps)):
            raise ValueError(f"scored steps {self.scored_steps} do not all lie in a window of {steps} steps")
        return np.array(index)

    def n_scored(self, steps: int) -> int:
        return steps if self.scored_steps is None else len(self.scored(steps))

    def input_array(self, x: np.ndarray) -> np.ndarray:
        """Value inputs as ``(batch, steps, features)`` float64; token ids unchanged."""
        if self.input_kind == "tokens":
            return x
        return np.asarray(x, np.float64).reshape(x.shape[0], x.shape[1], self.vocab_size)

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

    def target_values(self, y: np.ndarray) -> np.ndarray:
        """Regression targets as ``(batch, steps, outputs)`` float64 (``(batch, steps)`` is
        accepted for one output)."""
        return np.asarray(y, np.float64).reshape(y.shape[0], y.shape[1], self.n_classes)

    def loss_scale(self, batch_size: int, num_steps: int) -> float:
        """Factor from the head's loss summed over the scored steps of a ``(batch_size,
        num_steps)`` window to the differentiated loss."""
        if self.loss_reduction == "sum_steps_mean_batch":
            return 1.0 / batch_size
        return 1.0 / (batch_size * self.n_scored(num_steps))

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
            "head": self.head,
            "scored_steps": list(self.scored_steps) if self.scored_steps is not None else None,
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

    Returns (the differentiated loss, the output layer's values ``(batch, scored steps,
    outputs)``: logits or regression outputs, final state).
    This is the executable definition conformance tests hold every backend to; it is
    written for clarity, not speed.
    """
    batch, steps = x.shape[:2]
    state = [tuple(s) for s in (state if state is not None else zero_state(spec, batch))]
    inputs = params["embedding"][x] if spec.input_kind == "tokens" else spec.input_array(x)
    layer_params = [spec.layer_params(params, layer) for layer in range(spec.num_layers)]
    outputs = []
    for t in range(steps):
        h = inputs[:, t]
        for layer in range(spec.num_layers):
            state[layer] = spec.cell.step(NUMPY_OPS, layer_params[layer], h, state[layer])
            h = state[layer][-1]
        outputs.append(h)
    scored = spec.scored(steps)
    hidden = np.stack(outputs, axis=1)[:, scored]
    out = hidden @ params["softmax.W"] + params["softmax.b"]
    if spec.head == "regress":
        loss_sum = ((out - spec.target_values(y)[:, scored]) ** 2).sum()
    else:
        shifted = out - out.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        loss_sum = -np.take_along_axis(log_probs, y[:, scored][..., None], axis=-1).sum()
    return float(loss_sum * spec.loss_scale(batch, steps)), out, state


def random_window(spec: ModelSpec, batch: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and targets (for timing a step and for checking one: no data file needed) of ``spec``'s kinds: token ids, bits, one-hot rows (vectors
    of several features where the targets are classes), uniform values and targets (regression)."""
    if spec.input_kind == "tokens":
        x = rng.integers(0, spec.vocab_size, (batch, steps))
    elif spec.input_kind == "scalar":
        x = rng.integers(0, 2, (batch, steps)).astype(np.float32)
    elif spec.head == "classify":
        x = np.eye(spec.vocab_size, dtype=np.float32)[rng.integers(0, spec.vocab_size, (batch, steps))]
    else:
        x = rng.uniform(0, 1, (batch, steps, spec.vocab_size)).astype(np.float32)
    if spec.head == "regress":
        return x, rng.uniform(0, 2, (batch, steps, spec.n_classes)).astype(np.float32)
    return x, rng.integers(0, spec.n_classes, (batch, steps))

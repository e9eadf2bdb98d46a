"""The interface between the runner and a framework.

A backend turns a :class:`~backends.spec.ModelSpec` plus initial weights (canonical layout,
float64, see ``backends/spec.py``) into a :class:`Model` that runs single steps: train one
window, evaluate one window, measure gradients over time. The runner owns the loop, the
data and the records; a backend never reads files or writes records.

Update rule every backend must implement exactly (so the frameworks compute the same thing):

- loss: the model's declared reduction (``ModelSpec.loss_scale``) of the head's per-step loss
  (cross-entropy, or squared error for a regression head) over the scored steps;
- clipping by global norm, TensorFlow's formula: ``g *= c / max(||g||, c)`` (no epsilon);
  ``max_grad_norm <= 0`` means no clipping;
- ``sgd``: ``p -= lr * g``;
- ``adagrad``: ``a += g²; p -= lr * g / sqrt(a)``, ``a`` starting at
  ``adagrad_initial_accumulator`` (TensorFlow 1's AdagradOptimizer: 0.1, no epsilon).
- ``rmsprop`` (Tieleman & Hinton 2012; what Arjovsky et al. 2016 train the copy and adding
  tasks with): ``m = ρ m + (1 - ρ) g²; p -= lr * g / (sqrt(m) + ε)``, ``m`` starting at 0,
  ``ρ = rmsprop_decay``, ``ε = rmsprop_epsilon`` (``torch.optim.RMSprop``'s placement of ε).
- dropout (inverted, keep probability ``keep_prob``) on the embedding output and on each
  layer's output, never on the recurrent connections; only in ``train_step``.
"""
from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from backends.fused import FusedTable, why_no_fused_layer
from backends.spec import ModelSpec
from cells.base import CellSpec
from cells.errors import BenchError
from cells.options import DTYPES

OPTIMIZERS = ("sgd", "adagrad", "rmsprop")
# the per-parameter arrays an optimizer keeps, by checkpoint prefix
OPTIMIZER_SLOTS = {"sgd": (), "adagrad": ("adagrad",), "rmsprop": ("rmsprop",)}
DEVICES = ("cpu", "gpu", "auto")

@dataclass(frozen=True)
class MemoryProfile:
    """What a backend holds per run, for the memory estimate a run is checked against
    before it starts (calibrated against measured peaks: docs/performance.md). The defaults
    are the largest of the built-in backends', for a backend that declares none."""

    framework_bytes: int = 640 * 2**20  # the interpreter and the framework, once imported
    # per layer, copies of steps x batch x hidden kept for backprop: a x blocks + b, per impl
    activation_copies: dict[str, tuple[int, int]] = field(default_factory=lambda: {"cell": (14, 7), "fused": (14, 7)})
    logit_copies: float = 4.5  # of steps x batch x classes
    # per parameter, copies in the run's dtype beside the float64 initial one: fixed, per optimizer slot
    param_copies: tuple[int, int] = (4, 2)


# Opaque to the runner: whatever the backend uses to carry (s, h) between windows.
State = Any


@dataclass(frozen=True)
class TrainSettings:
    """How a model is run and updated; part of every record."""

    impl: str
    optimizer: str = "sgd"
    max_grad_norm: float = 5.0
    adagrad_initial_accumulator: float = 0.1
    rmsprop_decay: float = 0.9
    rmsprop_epsilon: float = 1e-8
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for what, value, valid in (("optimizer", self.optimizer, OPTIMIZERS), ("dtype", self.dtype, DTYPES),
                                   ("device", self.device, DEVICES)):
            if value not in valid:
                raise BenchError(f"unknown {what} {value!r}; choose one of: {', '.join(valid)}")


@dataclass
class StepStats:
    """What one window produced, summed over its ``n_tokens`` = batch × scored steps.

    ``loss_sum``: the head's loss (cross-entropy, or squared error summed over the outputs);
    ``n_correct``: argmax equal to the target (0 for a regression head)."""

    loss_sum: float
    n_correct: int
    n_tokens: int
    grad_norm: float | None = None  # global norm before clipping (train steps only)
    # at the scored steps: (batch, scored) argmax ids, or (batch, scored, outputs) values
    predictions: np.ndarray | None = field(default=None, repr=False)


class Model(ABC):
    """One model on one backend. Inputs are NumPy arrays, batch-major: ``x`` token ids (int)
    or values (float) ``(batch, steps[, features])``; ``y`` class ids (int) ``(batch, steps)``
    or regression targets (float) ``(batch, steps, outputs)``, read at the spec's scored
    steps only (see ``backends/spec.py``)."""

    spec: ModelSpec
    settings: TrainSettings

    @abstractmethod
    def zero_state(self, batch_size: int) -> State:
        """The all-zero state, used at the start of every epoch and evaluation split."""

    @abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray, state: State, lr: float) -> tuple[StepStats, State]:
        """Forward, backward, clip and update on one window; returns the final state
        (detached: no gradient flows into the next window)."""

    @abstractmethod
    def eval_step(
        self, x: np.ndarray, y: np.ndarray, state: State, predictions: bool = False
    ) -> tuple[StepStats, State]:
        """Forward only, no dropout. With ``predictions`` the argmax ids come back too."""

    @abstractmethod
    def loss_and_grads(
        self, x: np.ndarray, y: np.ndarray, state: State
    ) -> tuple[float, dict[str, np.ndarray], State]:
        """The differentiated loss and every parameter's gradient (canonical names and
        layout, before clipping), without updating anything. For conformance tests."""

    @abstractmethod
    def gradient_norms_over_time(self, x: np.ndarray, y: np.ndarray, state: State) -> dict[str, np.ndarray]:
        """Gradient norms with respect to the hidden (and cell) state at every step.

        Returns arrays of shape ``(num_layers, steps)``:

        - ``dLT_dh``: ||∂L_T/∂h_t||, L_T the head's loss at the last scored step only;
        - ``dL_dh``: ||∂L/∂h_t||, L the head's loss summed over the scored steps;
        - ``dLT_ds`` (cells with a state ``s``): ||∂L_T/∂s_t||.

        Each example's own loss is differentiated with respect to its own state (the
        losses are summed over the batch, never averaged), the Euclidean norm is taken per
        example and then averaged over the batch. ∂/∂h_t is the total derivative: through
        the layer above and through the next step. No dropout, no update.
        """

    @abstractmethod
    def state_to_numpy(self, state: State) -> list[tuple[np.ndarray, ...]]:
        """Per layer, the state arrays in the cell's ``state_names`` order."""

    @abstractmethod
    def get_params(self) -> dict[str, np.ndarray]:
        """Current weights in the canonical names and layout."""

    @abstractmethod
    def optimizer_slots(self) -> dict[str, dict[str, np.ndarray]]:
        """The optimizer's state per slot (``OPTIMIZER_SLOTS``: Adagrad's accumulator,
        RMSProp's mean square), each by canonical parameter name and layout; ``{}`` for SGD."""

    @abstractmethod
    def load(self, params: dict[str, np.ndarray], slots: dict[str, dict[str, np.ndarray]]) -> None:
        """Set every weight and optimizer slot from canonical arrays (checked already: the
        model's own names, shapes and dtype), so that training continues bit for bit."""

    def checkpoint(self) -> dict[str, np.ndarray]:
        """Weights and optimizer slots as one flat dict, ``param/<name>`` and
        ``<slot>/<name>`` (:func:`checkpoint_layout`), enough for :meth:`restore` to
        continue bit for bit."""
        arrays = {f"param/{name}": value for name, value in self.get_params().items()}
        for slot, values in self.optimizer_slots().items():
            arrays.update({f"{slot}/{name}": value for name, value in values.items()})
        return arrays

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Load what :meth:`checkpoint` returned, after :meth:`check_restorable` refused
        anything but this model's own layout."""
        self.check_restorable(arrays)
        params: dict[str, np.ndarray] = {}
        slots: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            kind, _, name = key.partition("/")
            (params if kind == "param" else slots.setdefault(kind, {}))[name] = value
        self.load(params, slots)

    def check_restorable(self, arrays: dict[str, np.ndarray]) -> None:
        """Refuse anything but this model's own checkpoint layout: the exact set of names,
        and each array's shape and dtype (a missing array would silently keep its freshly
        initialised value)."""
        layout = checkpoint_layout(self.spec, self.settings)
        if set(arrays) != set(layout):
            missing, extra = sorted(set(layout) - set(arrays)), sorted(set(arrays) - set(layout))
            raise BenchError(f"checkpoint arrays do not match the model (missing: {', '.join(missing) or 'none'}; "
                             f"unknown: {', '.join(extra) or 'none'})")
        for name, (shape, dtype) in layout.items():
            value = arrays[name]
            if np.shape(value) != shape or np.asarray(value).dtype != dtype:
                raise BenchError(f"checkpoint array {name} is {np.asarray(value).dtype} {np.shape(value)}, "
                                 f"the model needs {dtype} {shape}")

    @abstractmethod
    def set_dropout_seed(self, seed: int) -> None:
        """Reseed the dropout masks; the runner calls it at each epoch start so a resumed
        run draws the same masks as an uninterrupted one."""

    def describe(self) -> dict[str, Any]:
        """What actually ran (device, kernel path); stored in the record."""
        return {}

    def compile_seconds(self) -> float | None:
        """Seconds this model has spent so far compiling its steps (JAX's XLA compilation of
        each new window shape), None for a backend that compiles nothing apart: the runner
        and ``bench speed`` record it beside the step times and keep it out of tokens/s."""
        return None

    def peak_device_memory_mb(self) -> float | None:
        """Peak accelerator memory this model's process has allocated (None on the CPU,
        where the record's peak resident memory covers it)."""
        return None


def checkpoint_layout(spec: ModelSpec, settings: TrainSettings) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """What ``Model.checkpoint`` returns: ``param/<name>`` for every parameter and, per slot
    of the optimizer (``OPTIMIZER_SLOTS``), ``<slot>/<name>``: Adagrad's accumulator,
    RMSProp's mean square; canonical shapes, the run's dtype."""
    dtype = np.dtype(settings.dtype)
    kinds = ("param", *OPTIMIZER_SLOTS[settings.optimizer])
    return {f"{kind}/{name}": (tuple(shape), dtype) for kind in kinds for name, shape in spec.param_shapes().items()}


FUSED_IMPL = "fused"
SCAN_IMPL = "scan"


def why_no_scan(backend: str, cell: CellSpec) -> str | None:
    """Why impl ``scan`` cannot run ``cell`` (None when it can): it runs the cells that
    declare their step linear in the state (``CellSpec.linear_recurrence``), whatever
    they are."""
    if not cell.is_linear:
        return (f"{backend} has no scan for cell {cell.name!r}: it declares no linear recurrence "
                "(h_t = a_t * h_{t-1} + b_t, CellSpec.linear_recurrence); use --impl cell")
    if len(cell.state_names) != 1:
        return (f"{backend} has no scan for cell {cell.name!r}: a linear recurrence carries one state, "
                f"the cell has {len(cell.state_names)}; use --impl cell")
    return None


class Backend(ABC):
    """A framework that can build models. Subclasses must import their framework lazily
    (inside ``make_model``), so listing backends never pays for importing TensorFlow."""

    name: ClassVar[str]
    impls: ClassVar[tuple[str, ...]]
    default_impl: ClassVar[str]
    framework: ClassVar[str | None] = None  # importable module the backend needs
    memory: ClassVar[MemoryProfile] = MemoryProfile()
    install_hint: ClassVar[str] = ""
    # the cells impl "fused" runs: cell type -> the framework's layer (see backends/fused.py)
    fused_layers: ClassVar[FusedTable | None] = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the backend can run here; else why not and how to fix it."""
        if cls.framework and importlib.util.find_spec(cls.framework) is None:
            return f"{cls.framework} is not installed; {cls.install_hint}".rstrip("; ")
        return None

    @classmethod
    def unsupported(cls, cell: CellSpec, impl: str) -> str | None:
        """Why ``impl`` cannot run ``cell`` (None when it can): checked before anything is
        built or written, so it must not need the framework imported. Impl "fused" runs
        the cells of the backend's ``fused_layers`` table; impl "scan" (where a backend has
        it) the cells that declare a linear recurrence."""
        if impl == FUSED_IMPL and cls.fused_layers is not None:
            return why_no_fused_layer(cls.name, cls.fused_layers, cell)
        if impl == SCAN_IMPL:
            return why_no_scan(cls.name, cell)
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        """Library versions that matter for this backend's numbers (imports the framework)."""
        return {}

    @classmethod
    def build(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        """A model holding ``params`` (canonical layout) ready to train with ``settings``;
        what ``unsupported`` refuses is refused here too, whoever calls."""
        if why := cls.unsupported(spec.cell, settings.impl):
            raise BenchError(why)
        return cls.make_model(spec, params, settings)

    @classmethod
    @abstractmethod
    def make_model(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        """``build``'s own work, for a combination ``unsupported`` accepts."""

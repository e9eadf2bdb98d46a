"""The whole model in PyTorch, two ways to run the recurrent layers:

- ``cell``: the cell's own step equations (``CellSpec.step``) unrolled in Python over the
  window, differentiated by autograd; any cell, e.g. the sigmoid RNN;
- ``fused``: the cell's layer in ``backends.torch.fused`` (``torch.nn.LSTM``,
  ``torch.nn.RNN``), one module per layer (so dropout can sit between layers with masks
  from the model's own generator), cuDNN on a GPU, oneDNN (mkldnn) for a float32 LSTM on
  the CPU;
- ``scan``: a cell that declares its step linear in the state (``CellSpec.linear_recurrence``,
  minGRU) over the whole window at once: its ``a`` and ``b`` in one pass, the recurrence by
  the log-space scan of ``backends.torch.scan``, differentiated by autograd.

All three share everything else: embedding (or the input values), dropout, the scored steps'
output layer and head (softmax cross-entropy or squared error, ``backends.torch.losses``),
clipping and the optimizer (``torch.optim.SGD`` / ``Adagrad`` / ``RMSprop`` configured to
the update rule of ``backends/base.py``). Activations are time-major ``(steps, batch, ...)``
inside; the output layer's rows are the scored steps', time-major too.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backends.base import DEVICES, DTYPES, OPTIMIZER_SLOTS, OPTIMIZERS, Model, State, StepStats, TrainSettings
from backends.layout import ArrayOps, Slot
from backends.spec import ModelSpec, layer_key
from backends.torch.fused import FUSED_LAYERS
from backends.torch.losses import linear_softmax_cross_entropy, linear_squared_error
from backends.torch.scan import scan_layer
from backends.torch.unroll import run_layer
from cells.errors import BenchError

TORCH_ARRAYS = ArrayOps(
    take_columns=lambda t, columns: t.index_select(-1, torch.as_tensor(columns, device=t.device)),
    transpose=lambda t: t.t().contiguous(),
)
# where torch.optim keeps each checkpoint slot (backends.base.OPTIMIZER_SLOTS) in optimizer.state[p]
_OPTIMIZER_STATE = {"adagrad": "sum", "rmsprop": "square_avg"}


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy copy (never a view of a tensor that later steps update in place)."""
    return np.array(t.detach().cpu().numpy())


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing the array's memory where possible."""
    a = np.asarray(a)
    if not a.flags.writeable:  # torch warns about (and could write through) read-only arrays
        a = a.copy()
    return torch.from_numpy(a)


def _global_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together; sparse ones (coalesced) by their stored values."""
    norms = list(torch._foreach_norm([g for g in grads if not g.is_sparse]))
    norms += [torch.linalg.vector_norm(g.values()) for g in grads if g.is_sparse]
    return torch.linalg.vector_norm(torch.stack(norms))


def resolve_device(setting: str) -> torch.device:
    cuda = torch.cuda.is_available()
    if setting == "gpu" and not cuda:
        built = f"with CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
        raise BenchError(
            f"--device gpu: torch sees no CUDA GPU (torch {torch.__version__} built {built}); "
            "use --device cpu or auto"
        )
    if setting in ("gpu", "auto") and cuda:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _use_ieee_float32() -> None:
    """float32 means IEEE float32 here, as in the other backends: cuDNN's RNNs otherwise use
    TF32 tensor cores on Ampere and later (10-bit mantissa), which no reference matches."""
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if rnn is not None and hasattr(rnn, "fp32_precision"):  # torch >= 2.9: the per-op API
        rnn.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def _tf32_in_rnns() -> bool:
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if rnn is not None and hasattr(rnn, "fp32_precision"):
        return rnn.fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


def build_model(spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> "TorchModel":
    for what, value, valid in (
        ("device", settings.device, DEVICES),
        ("dtype", settings.dtype, DTYPES),
        ("optimizer", settings.optimizer, OPTIMIZERS),
        ("impl", settings.impl, ("cell", "fused", "scan")),
    ):
        if value not in valid:
            raise BenchError(f"torch backend: unknown {what} {value!r}; choose one of: {', '.join(valid)}")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    if device.type == "cuda":
        _use_ieee_float32()
    model_cls = {"cell": CellModel, "fused": FusedModel, "scan": ScanModel}[settings.impl]
    return model_cls(spec, params, settings, device)


class TorchModel(Model):
    """What both impls share; subclasses build the recurrent layers and run one of them."""

    impl: str

    def __init__(
        self, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings, device: torch.device
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.device = device
        self.dtype = getattr(torch, settings.dtype)
        shapes = spec.param_shapes()
        for name, shape in shapes.items():
            if name not in params or tuple(np.shape(params[name])) != shape:
                got = tuple(np.shape(params[name])) if name in params else "missing"
                raise BenchError(f"torch backend: parameter {name!r} should be {shape}, got {got}")
        self._slots: dict[str, Slot[torch.Tensor]] = {}
        self.embedding = self._plain_param("embedding", params) if spec.input_kind == "tokens" else None
        self._build_layers(params)
        self.softmax_W = self._plain_param("softmax.W", params)
        self.softmax_b = self._plain_param("softmax.b", params)
        self._slots = {name: self._slots[name] for name in shapes}  # canonical order
        self._params = [slot.tensor for slot in self._slots.values()]  # what is trained
        self._scored_index: dict[int, torch.Tensor] = {}  # per window length, on the device
        if settings.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(self._params, lr=0.0)
        elif settings.optimizer == "rmsprop":
            # m = alpha m + (1 - alpha) g²; p -= lr * g / (sqrt(m) + eps), m from 0: the rule as given
            self.optimizer = torch.optim.RMSprop(
                self._params,
                lr=0.0,
                alpha=settings.rmsprop_decay,
                eps=settings.rmsprop_epsilon,
                weight_decay=0.0,
                momentum=0.0,
                centered=False,
            )
        else:
            # std = sqrt(sum) + eps with eps = 0: p -= lr * g / sqrt(a), TF1's AdagradOptimizer
            self.optimizer = torch.optim.Adagrad(
                self._params,
                lr=0.0,
                lr_decay=0.0,
                weight_decay=0.0,
                initial_accumulator_value=settings.adagrad_initial_accumulator,
                eps=0.0,
            )
        self._generator = torch.Generator(device=device)
        self._generator.manual_seed(settings.seed)

    # -- building -----------------------------------------------------------------------

    def _tensor(self, value: Any) -> torch.Tensor:
        """A fresh tensor in the model's dtype and device (never sharing the caller's array)."""
        return torch.tensor(np.asarray(value), dtype=self.dtype, device=self.device)

    def _plain_param(self, name: str, params: dict[str, np.ndarray]) -> torch.nn.Parameter:
        """A parameter kept in the canonical layout itself."""
        param = torch.nn.Parameter(self._tensor(params[name]))
        self._slots[name] = Slot(name, param)
        return param

    def _build_layers(self, params: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _layer(self, layer: int, inputs: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """One recurrent layer over the window: outputs ``(steps, batch, hidden)``, final state."""
        raise NotImplementedError

    def _kernel(self) -> str:
        raise NotImplementedError

    # -- forward ------------------------------------------------------------------------

    def _inputs(self, x: np.ndarray, embedding: torch.Tensor | None) -> torch.Tensor:
        """``(steps, batch, in)``: embedded tokens or the input values themselves."""
        xt = _from_numpy(x)
        if self.spec.input_kind == "tokens":
            # sparse: the gradient holds the window's rows only (400 of ptb's 10,000), not a
            # zero-filled copy of the table that the norm and the update then read in full;
            # dense under RMSProp, whose mean square decays in every row (and which torch
            # runs on dense gradients only)
            sparse = self.settings.optimizer != "rmsprop"
            return F.embedding(xt.to(self.device, torch.long).t(), embedding, sparse=sparse)
        batch, steps = x.shape[:2]
        values = xt.to(self.device, self.dtype).reshape(batch, steps, self.spec.layer_input_size(0))
        return values.transpose(0, 1).contiguous()

    def _scored_steps(self, steps: int) -> torch.Tensor | None:
        """The scored steps' indices on the device (None: every step), made once per window length."""
        if self.spec.scored_steps is None:
            return None
        if steps not in self._scored_index:
            self._scored_index[steps] = torch.as_tensor(self.spec.scored(steps), device=self.device)
        return self._scored_index[steps]

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        """The scored steps' targets in the order of the output layer's rows (time-major):
        ``(rows,)`` class ids, or ``(rows, outputs)`` values for the regression head."""
        regress = self.spec.head == "regress"
        if regress:
            y = self.spec.target_values(y)
        if self.spec.scored_steps is not None:
            y = y[:, self.spec.scored(y.shape[1])]
        rows = _from_numpy(np.ascontiguousarray(np.swapaxes(y, 0, 1)))
        rows = rows.to(self.device, self.dtype if regress else torch.long)
        return rows.reshape(-1, self.spec.n_classes) if regress else rows.reshape(-1)

    def _dropout(self, a: torch.Tensor, train: bool) -> torch.Tensor:
        keep = self.spec.keep_prob
        if not train or keep >= 1.0:
            return a
        mask = torch.empty_like(a).bernoulli_(keep, generator=self._generator)
        return a * mask.div_(keep)

    def _top(self, outputs: torch.Tensor) -> torch.Tensor:
        """The output layer's input rows ``(scored * batch, hidden)`` from the top layer's
        ``(steps, batch, hidden)`` outputs."""
        index = self._scored_steps(outputs.shape[0])
        if index is not None:
            outputs = outputs.index_select(0, index)
        return outputs.reshape(-1, self.spec.hidden_size)

    def _forward(self, x: np.ndarray, state: State, train: bool) -> tuple[torch.Tensor, list[tuple]]:
        """The top layer's outputs after dropout at the scored steps, ``(scored * batch,
        hidden)``, and the final state."""
        inputs = self._dropout(self._inputs(x, self.embedding), train)
        final = []
        for layer in range(self.spec.num_layers):
            outputs, last = self._layer(layer, inputs, state[layer])
            final.append(last)
            inputs = self._dropout(outputs, train)  # every step's: the masks drawn do not depend on the scoring
        return self._top(inputs), final

    def _head(self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-row loss, correct count, predictions: argmax ids or the output values)."""
        if self.spec.head == "regress":
            loss, out = linear_squared_error(hidden, weight, bias, targets)
            return loss, torch.zeros((), device=self.device), out.detach()
        ce, predicted = linear_softmax_cross_entropy(hidden, weight, bias, targets)
        return ce, (predicted == targets).sum(), predicted

    def _loss(self, x: np.ndarray, y: np.ndarray, state: State, train: bool):
        """(differentiated loss, summed head loss, correct count, predictions, final state), on device."""
        batch, steps = x.shape[:2]
        targets = self._targets(y)
        hidden, final = self._forward(x, state, train)
        rows, correct, predicted = self._head(hidden, self.softmax_W, self.softmax_b, targets)
        loss_sum = rows.sum()
        loss = loss_sum * self.spec.loss_scale(batch, steps)
        return loss, loss_sum.detach(), correct, predicted, final

    @staticmethod
    def _detach(state: list[tuple]) -> list[tuple]:
        return [tuple(t.detach() for t in layer) for layer in state]

    # -- the Model interface --------------------------------------------------------------

    def zero_state(self, batch_size: int) -> State:
        n = self.spec.hidden_size
        return [
            tuple(torch.zeros(batch_size, n, dtype=self.dtype, device=self.device) for _ in self.spec.cell.state_names)
            for _ in range(self.spec.num_layers)
        ]

    def train_step(self, x: np.ndarray, y: np.ndarray, state: State, lr: float) -> tuple[StepStats, State]:
        batch, steps = x.shape[:2]
        self.optimizer.zero_grad(set_to_none=True)
        loss, loss_sum, correct, _, final = self._loss(x, y, state, train=True)
        loss.backward()
        for p in self._params:
            if p.grad.is_sparse:  # repeated words summed once, before the norm and the update
                p.grad = p.grad.coalesce()
        grads = [p.grad for p in self._params]
        norm = _global_norm(grads)
        # the one host-device sync of the step
        ce, n_correct, norm_value = torch.stack(
            [loss_sum.to(torch.float64), correct.to(torch.float64), norm.to(torch.float64)]
        ).tolist()
        if math.isfinite(norm_value):  # else the runner stops the run; the weights stay as they were
            clip = self.settings.max_grad_norm
            scale = clip / norm_value if clip > 0 and norm_value > clip else 1.0  # c / max(||g||, c)
            if self.settings.optimizer == "sgd":
                lr *= scale  # SGD is linear in g: lr (c g) as (lr c) g, without a pass over the gradients
            elif scale != 1.0:
                for g in grads:
                    g.mul_(scale)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            # sparse Adagrad builds COO tensors from torch's own indices: no invariant checks
            # (and no warning that the checks are off)
            with torch.sparse.check_sparse_tensor_invariants(enable=False):
                self.optimizer.step()
        return StepStats(ce, int(n_correct), batch * self.spec.n_scored(steps), norm_value), self._detach(final)

    def eval_step(
        self, x: np.ndarray, y: np.ndarray, state: State, predictions: bool = False
    ) -> tuple[StepStats, State]:
        batch, steps = x.shape[:2]
        with torch.no_grad():
            _, loss_sum, correct, predicted, final = self._loss(x, y, state, train=False)
            head = torch.stack([loss_sum.to(torch.float64), correct.to(torch.float64)])
            if predictions:  # one transfer for the scalars and the predictions together
                values = torch.cat([head, predicted.reshape(-1).to(torch.float64)]).cpu().numpy()
            else:
                values = np.array(head.tolist())
        stats = StepStats(float(values[0]), int(values[1]), batch * self.spec.n_scored(steps))
        if predictions:
            stats.predictions = self._predictions(values[2:], batch)
        return stats, final

    def _predictions(self, rows: np.ndarray, batch: int) -> np.ndarray:
        """The output layer's time-major rows (as float64) back to ``(batch, scored)`` ids or
        ``(batch, scored, outputs)`` values in the run's dtype."""
        if self.spec.head == "regress":
            values = rows.reshape(-1, batch, self.spec.n_classes).transpose(1, 0, 2)
            return values.astype(self.settings.dtype)  # a copy; exact: float64 held the run's values
        return rows.astype(np.int64).reshape(-1, batch).T.copy()

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: State) -> tuple[float, dict[str, np.ndarray], State]:
        loss, _, _, _, final = self._loss(x, y, state, train=False)
        grads = torch.autograd.grad(loss, self._params)
        out = {name: _to_numpy(slot.to_canonical(g.to_dense(), TORCH_ARRAYS)) for (name, slot), g in zip(self._slots.items(), grads)}
        return float(loss.detach()), out, self._detach(final)

    def _canonical_tensors(self) -> dict[str, torch.Tensor]:
        """The current weights in the canonical layout, as fresh leaves that require grad."""
        with torch.no_grad():
            values = {name: slot.to_canonical(slot.tensor.detach(), TORCH_ARRAYS) for name, slot in self._slots.items()}
        return {name: v.detach().requires_grad_() for name, v in values.items()}

    def gradient_norms_over_time(self, x: np.ndarray, y: np.ndarray, state: State) -> dict[str, np.ndarray]:
        """Unrolls the cell's equations on the current weights (in the canonical layout) for
        both impls: the fused layers never expose a lower layer's per-step states, and an
        impl's own per-step outputs would give only the gradient through the layer above.

        Every step's state tensors are kept and ``torch.autograd.grad`` is taken with respect
        to them: the gradient of an intermediate tensor sums over all its uses, i.e. the
        total derivative (through the next step and through the layer above). The losses
        are summed over the batch, so each example's row is its own loss's gradient. Only
        the scored steps' outputs enter the head; the unscored steps' states still get
        their norms (they reach the loss through the later steps).
        """
        batch, steps = x.shape[:2]
        spec, names = self.spec, self.spec.cell.state_names
        p = self._canonical_tensors()
        targets = self._targets(y)
        with torch.enable_grad():
            inputs = self._inputs(x, p.get("embedding"))
            captured: list[tuple[torch.Tensor, ...]] = []
            for layer in range(spec.num_layers):
                inputs, _ = run_layer(spec.cell, spec.layer_params(p, layer), inputs, state[layer], captured)
            # the output layer's weights as constants: only the states' gradients are wanted
            rows, _, _ = self._head(self._top(inputs), p["softmax.W"].detach(), p["softmax.b"].detach(), targets)
            per_step = rows.view(-1, batch)  # (scored, batch)
            flat = [t for step_state in captured for t in step_state]  # layer, step, state name
            out: dict[str, torch.Tensor] = {}
            for prefix, loss in (("dLT", per_step[-1].sum()), ("dL", per_step.sum())):
                grads = torch.autograd.grad(loss, flat, retain_graph=prefix == "dLT", allow_unused=True)
                stacked = torch.stack([g if g is not None else torch.zeros_like(t) for g, t in zip(grads, flat)])
                per_example = torch.linalg.vector_norm(stacked.to(torch.float64), dim=-1)
                means = per_example.mean(dim=-1).view(spec.num_layers, steps, len(names))
                for k, name in enumerate(names):
                    if prefix == "dLT" or k == len(names) - 1:  # dL only for the output h
                        out[f"{prefix}_d{name}"] = means[:, :, k]
        return {key: _to_numpy(value) for key, value in out.items()}

    def state_to_numpy(self, state: State) -> list[tuple[np.ndarray, ...]]:
        return [tuple(_to_numpy(t) for t in layer) for layer in state]

    def get_params(self) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {name: _to_numpy(slot.to_canonical(slot.tensor.detach(), TORCH_ARRAYS)) for name, slot in self._slots.items()}

    def optimizer_slots(self) -> dict[str, dict[str, np.ndarray]]:
        slots: dict[str, dict[str, np.ndarray]] = {}
        for kind in OPTIMIZER_SLOTS[self.settings.optimizer]:
            # before its first step torch may hold no state yet: the slot's starting value
            start = self.settings.adagrad_initial_accumulator if kind == "adagrad" else 0.0
            with torch.no_grad():
                slots[kind] = {
                    name: (_to_numpy(slot.to_canonical(value, TORCH_ARRAYS)) if value is not None
                           else np.full(self.spec.param_shapes()[name], start, dtype=self.settings.dtype))
                    for name, slot in self._slots.items()
                    for value in [self.optimizer.state.get(slot.tensor, {}).get(_OPTIMIZER_STATE[kind])]
                }
        return slots

    def load(self, params: dict[str, np.ndarray], slots: dict[str, dict[str, np.ndarray]]) -> None:
        slot_values: dict[int, dict[str, torch.Tensor]] = {}  # by parameter index: torch's state entries
        index = {name: i for i, name in enumerate(self._slots)}
        with torch.no_grad():
            for name, value in params.items():
                slot = self._slots[name]
                slot.tensor.copy_(slot.to_framework(self._tensor(value), TORCH_ARRAYS))  # in place: fused weights are views of one buffer
            for kind, values in slots.items():
                for name, value in values.items():
                    tensor = self._slots[name].to_framework(self._tensor(value), TORCH_ARRAYS)
                    slot_values.setdefault(index[name], {})[_OPTIMIZER_STATE[kind]] = tensor
        if slot_values:
            state_dict = self.optimizer.state_dict()
            for i, values in slot_values.items():
                entry = dict(state_dict["state"].get(i, {}))
                entry.setdefault("step", torch.tensor(0.0))  # counted, never used: no lr decay, no bias correction
                entry.update(values)
                state_dict["state"][i] = entry
            self.optimizer.load_state_dict(state_dict)

    def set_dropout_seed(self, seed: int) -> None:
        self._generator.manual_seed(seed)

    def peak_device_memory_mb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def describe(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        info: dict[str, Any] = {
            "device": torch.cuda.get_device_name(self.device) if cuda else "cpu",
            "kernel": self._kernel(),
            "dtype": self.settings.dtype,
            "threads": torch.get_num_threads(),
        }
        if cuda:
            info["tf32"] = _tf32_in_rnns()
        return info


class CellModel(TorchModel):
    """The cell's step equations unrolled over the window, differentiated by autograd."""

    impl = "cell"

    def _build_layers(self, params: dict[str, np.ndarray]) -> None:
        self.layer_params = [
            {name: self._plain_param(layer_key(layer, name), params) for name in self.spec.cell.param_names}
            for layer in range(self.spec.num_layers)
        ]

    def _layer(self, layer: int, inputs: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        return run_layer(self.spec.cell, self.layer_params[layer], inputs, state)

    def _kernel(self) -> str:
        return "aten ops unrolled in Python, autograd (input projection: one GEMM per window)"


class ScanModel(CellModel):
    """A linear cell's window in one scan (``backends.torch.scan``); its parameters, the
    gradient norms over time (the cell's equations unrolled, as for every impl) and all
    else as the ``cell`` impl's."""

    impl = "scan"

    def _layer(self, layer: int, inputs: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        return scan_layer(self.spec.cell, self.layer_params[layer], inputs, state)

    def _kernel(self) -> str:
        return "linear recurrence by log-space scan (cumsum, logcumsumexp), autograd; input projection one GEMM"


class FusedModel(TorchModel):
    """The cell's layer in ``backends.torch.fused`` (nn.LSTM, nn.RNN), one single-layer
    module per layer.

    One module per layer (rather than ``num_layers=L``) because dropout must act on every
    layer's output with masks from the model's generator; torch's built-in inter-layer
    dropout draws from the global RNG and skips the last layer. The table entry's frozen
    tensors (``bias_hh_l0``) stay zero and out of the optimizer. Gradient norms over time
    unroll the cell's equations on these modules' current weights mapped to the canonical
    layout (see ``gradient_norms_over_time``).
    """

    impl = "fused"

    def _build_layers(self, params: dict[str, np.ndarray]) -> None:
        spec = self.spec
        self.fused = FUSED_LAYERS[type(spec.cell)]
        self._state_in, self._state_out = self.fused.state_in, self.fused.state_out
        self.rnns: list[torch.nn.RNNBase] = []
        for layer in range(spec.num_layers):
            # built on "meta": no random init drawn from (and advancing) torch's global RNG
            module = self.fused.make(
                spec.cell, input_size=spec.layer_input_size(layer), hidden_size=spec.hidden_size,
                num_layers=1, bias=True, batch_first=False, device="meta", dtype=self.dtype,
            )
            module = module.to_empty(device=self.device)  # re-flattens the weights (cuDNN buffer)
            with torch.no_grad():
                for name, (tensor, layout) in self.fused.held(module).items():
                    slot = Slot(layer_key(layer, name), tensor, layout)
                    tensor.copy_(slot.to_framework(self._tensor(params[slot.name]), TORCH_ARRAYS))
                    self._slots[slot.name] = slot
                for tensor in self.fused.frozen(module):
                    tensor.zero_()
            for tensor in self.fused.frozen(module):
                tensor.requires_grad_(False)
            self.rnns.append(module)

    def _layer(self, layer: int, inputs: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        module = self.rnns[layer]
        # cuDNN's backward needs its training-mode forward; without grad the inference path is cheaper
        module.training = torch.is_grad_enabled()
        given = tuple(state[k].unsqueeze(0) for k in self._state_in)
        outputs, final = module(inputs, given if len(given) > 1 else given[0])  # nn.LSTM: a tuple
        final = final if len(given) > 1 else (final,)
        return outputs, tuple(final[k][0] for k in self._state_out)

    def _kernel(self) -> str:
        return self.fused.kernel(self.device, self.dtype)

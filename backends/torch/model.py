"""The whole model in PyTorch, two ways to run the recurrent layers:

- ``cell``: the cell's own step equations (``CellSpec.step``) unrolled in Python over the
  window, differentiated by autograd; any cell, e.g. the sigmoid RNN;
- ``fused``: the cell's layer in ``backends.torch.fused`` (``torch.nn.LSTM``,
  ``torch.nn.RNN``), one module per layer (so dropout can sit between layers with masks
  from the model's own generator), cuDNN on a GPU, oneDNN (mkldnn) for a float32 LSTM on
  the CPU.

Both share everything else: embedding, dropout, softmax cross-entropy, clipping and the
optimizer (``torch.optim.SGD`` / ``torch.optim.Adagrad`` configured to the update rule of
``backends/base.py``). Activations are time-major ``(steps, batch, ...)`` inside.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backends.base import DEVICES, DTYPES, OPTIMIZERS, Model, State, StepStats, TrainSettings
from backends.layout import ArrayOps, Slot
from backends.spec import ModelSpec, layer_key
from backends.torch.fused import FUSED_LAYERS
from backends.torch.losses import linear_softmax_cross_entropy
from backends.torch.unroll import run_layer
from cells.errors import BenchError

TORCH_ARRAYS = ArrayOps(
    take_columns=lambda t, columns: t.index_select(-1, torch.as_tensor(columns, device=t.device)),
    transpose=lambda t: t.t().contiguous(),
)


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
        ("impl", settings.impl, ("cell", "fused")),
    ):
        if value not in valid:
            raise BenchError(f"torch backend: unknown {what} {value!r}; choose one of: {', '.join(valid)}")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    if device.type == "cuda":
        _use_ieee_float32()
    model_cls = CellModel if settings.impl == "cell" else FusedModel
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
        if settings.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(self._params, lr=0.0)
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
        """``(steps, batch, in)``: embedded tokens or the scalar values themselves."""
        xt = _from_numpy(x)
        if self.spec.input_kind == "tokens":
            # sparse: the gradient holds the window's rows only (400 of ptb's 10,000), not a
            # zero-filled copy of the table that the norm and the update then read in full
            return F.embedding(xt.to(self.device, torch.long).t(), embedding, sparse=True)
        return xt.to(self.device, self.dtype).t().unsqueeze(-1).contiguous()

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        """Time-major flat ``(steps * batch,)``, the order of the logits' rows."""
        return _from_numpy(y).to(self.device, torch.long).t().reshape(-1)

    def _dropout(self, a: torch.Tensor, train: bool) -> torch.Tensor:
        keep = self.spec.keep_prob
        if not train or keep >= 1.0:
            return a
        mask = torch.empty_like(a).bernoulli_(keep, generator=self._generator)
        return a * mask.div_(keep)

    def _forward(self, x: np.ndarray, state: State, train: bool) -> tuple[torch.Tensor, list[tuple]]:
        """The top layer's outputs after dropout, ``(steps * batch, hidden)``, and the final state."""
        inputs = self._dropout(self._inputs(x, self.embedding), train)
        final = []
        for layer in range(self.spec.num_layers):
            outputs, last = self._layer(layer, inputs, state[layer])
            final.append(last)
            inputs = self._dropout(outputs, train)
        return inputs.reshape(-1, self.spec.hidden_size), final

    def _loss(self, x: np.ndarray, y: np.ndarray, state: State, train: bool):
        """(differentiated loss, summed CE, correct count, argmax ids, final state), on device."""
        batch, steps = x.shape
        targets = self._targets(y)
        hidden, final = self._forward(x, state, train)
        ce, predicted = linear_softmax_cross_entropy(hidden, self.softmax_W, self.softmax_b, targets)
        ce_sum = ce.sum()
        loss = ce_sum * self.spec.loss_scale(batch, steps)
        correct = (predicted == targets).sum()
        return loss, ce_sum.detach(), correct, predicted, final

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
        batch, steps = x.shape
        self.optimizer.zero_grad(set_to_none=True)
        loss, ce_sum, correct, _, final = self._loss(x, y, state, train=True)
        loss.backward()
        for p in self._params:
            if p.grad.is_sparse:  # repeated words summed once, before the norm and the update
                p.grad = p.grad.coalesce()
        grads = [p.grad for p in self._params]
        norm = _global_norm(grads)
        # the one host-device sync of the step
        ce, n_correct, norm_value = torch.stack(
            [ce_sum.to(torch.float64), correct.to(torch.float64), norm.to(torch.float64)]
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
        return StepStats(ce, int(n_correct), batch * steps, norm_value), self._detach(final)

    def eval_step(
        self, x: np.ndarray, y: np.ndarray, state: State, predictions: bool = False
    ) -> tuple[StepStats, State]:
        batch, steps = x.shape
        with torch.no_grad():
            _, ce_sum, correct, predicted, final = self._loss(x, y, state, train=False)
            head = torch.stack([ce_sum.to(torch.float64), correct.to(torch.float64)])
            if predictions:  # one transfer for the scalars and the ids together
                values = torch.cat([head, predicted.to(torch.float64)]).cpu().numpy()
            else:
                values = np.array(head.tolist())
        stats = StepStats(float(values[0]), int(values[1]), batch * steps)
        if predictions:
            stats.predictions = values[2:].astype(np.int64).reshape(steps, batch).T.copy()
        return stats, final

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
        are summed over the batch, so each example's row is its own loss's gradient.
        """
        batch, steps = x.shape
        spec, names = self.spec, self.spec.cell.state_names
        p = self._canonical_tensors()
        targets = self._targets(y)
        with torch.enable_grad():
            inputs = self._inputs(x, p.get("embedding"))
            captured: list[tuple[torch.Tensor, ...]] = []
            for layer in range(spec.num_layers):
                inputs, _ = run_layer(spec.cell, spec.layer_params(p, layer), inputs, state[layer], captured)
            logits = torch.addmm(p["softmax.b"], inputs.reshape(-1, spec.hidden_size), p["softmax.W"])
            ce = F.cross_entropy(logits, targets, reduction="none").view(steps, batch)
            flat = [t for step_state in captured for t in step_state]  # layer, step, state name
            out: dict[str, torch.Tensor] = {}
            for prefix, loss in (("dLT", ce[-1].sum()), ("dL", ce.sum())):
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

    def checkpoint(self) -> dict[str, np.ndarray]:
        arrays = {f"param/{name}": value for name, value in self.get_params().items()}
        if self.settings.optimizer == "adagrad":
            initial = self.settings.adagrad_initial_accumulator
            with torch.no_grad():
                for name, slot in self._slots.items():
                    acc = self.optimizer.state.get(slot.tensor, {}).get("sum")
                    arrays[f"adagrad/{name}"] = (
                        _to_numpy(slot.to_canonical(acc, TORCH_ARRAYS))
                        if acc is not None
                        else np.full(self.spec.param_shapes()[name], initial, dtype=self.settings.dtype)
                    )
        return arrays

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.check_restorable(arrays)
        accumulators: dict[int, torch.Tensor] = {}
        index = {name: i for i, name in enumerate(self._slots)}
        with torch.no_grad():
            for key, value in arrays.items():
                kind, _, name = key.partition("/")
                slot = self._slots[name]
                tensor = slot.to_framework(self._tensor(value), TORCH_ARRAYS)
                if kind == "param":
                    slot.tensor.copy_(tensor)  # in place: fused weights are views of one buffer
                elif self.settings.optimizer == "adagrad":
                    accumulators[index[name]] = tensor
        if accumulators:
            state_dict = self.optimizer.state_dict()
            for i, acc in accumulators.items():
                entry = dict(state_dict["state"].get(i, {}))
                entry.setdefault("step", torch.tensor(0.0))  # unused: lr_decay is 0
                entry["sum"] = acc
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

"""The whole model in NumPy: embedding, stacked cells, the output head (softmax cross-entropy
or squared error at the scored steps), BPTT, updates."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from backends.base import OPTIMIZER_SLOTS, Model, State, StepStats, TrainSettings
from backends.numpy.kernels import make_kernel
from backends.numpy.scan import ScanKernel, why_no_scan
from backends.spec import ModelSpec, layer_key
from cells.errors import BenchError


@dataclass
class _Forward:
    """What the backward pass needs from the forward pass of one window."""

    ids: np.ndarray | None  # (steps, batch) token ids, time-major
    layer_inputs: list[np.ndarray]  # per layer, its (dropped-out) input (steps, batch, in)
    caches: list[Any]
    masks: list[np.ndarray | None]  # dropout masks: embedding output, then each layer's output
    top: np.ndarray  # (scored*batch, hidden) input of the output layer, time-major rows
    scored: np.ndarray | None  # the scored steps' indices; None: every step


@dataclass
class _Rows:
    """A gradient that is zero outside a few rows: the embedding's, whose window holds 400
    of ptb's 10,000 words. The norm and the update touch those rows only, where a dense
    gradient would cost a zero-filled table and full passes over it."""

    rows: np.ndarray  # unique row indices
    values: np.ndarray  # (len(rows), width), repeated words summed
    shape: tuple[int, ...]

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, self.values.dtype)
        out[self.rows] = self.values
        return out


def _rows_and_values(g: np.ndarray | _Rows) -> tuple[np.ndarray | slice, np.ndarray]:
    """Where a gradient lives in its parameter, and its values there (all rows if dense)."""
    return (g.rows, g.values) if isinstance(g, _Rows) else (slice(None), g)


def _overflow_shows_in_the_numbers(step: Callable) -> Callable:
    """Run a step with NumPy's overflow and invalid-value warnings off: they show up as a
    non-finite loss or norm, which the runner records as divergence, as the frameworks
    (which never warn) do; the warnings would only repeat that on stderr, several lines
    each, or raise where warnings are errors."""
    @functools.wraps(step)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):
            return step(*args, **kwargs)

    return quiet


class NumpyModel(Model):
    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.dtype = np.dtype(settings.dtype)
        self.params = {k: np.array(v, dtype=self.dtype) for k, v in params.items()}
        if settings.impl not in ("cell", "scan"):
            raise BenchError(f"backend 'numpy' has no impl {settings.impl!r}; choose one of: cell, scan")
        if settings.impl == "scan":
            if why := why_no_scan(spec.cell):
                raise BenchError(why)
            self.kernel: Any = ScanKernel(spec.cell)
        else:
            self.kernel = make_kernel(spec.cell)
        # per optimizer slot (checkpoint prefix), one array per parameter: Adagrad's
        # accumulator, RMSProp's mean square
        start = settings.adagrad_initial_accumulator if settings.optimizer == "adagrad" else 0.0
        self.slots = {slot: {k: np.full_like(v, start) for k, v in self.params.items()}
                      for slot in OPTIMIZER_SLOTS[settings.optimizer]}
        self.rng = np.random.default_rng(settings.seed)

    # -- forward and backward ---------------------------------------------------------

    def _dropout(self, a: np.ndarray, train: bool) -> tuple[np.ndarray, np.ndarray | None]:
        keep = self.spec.keep_prob
        if not train or keep >= 1.0:
            return a, None
        mask = (self.rng.random(a.shape, dtype=self.dtype) < keep).astype(self.dtype)
        mask /= keep
        return a * mask, mask

    def _forward(self, x: np.ndarray, state: State, train: bool) -> tuple[np.ndarray, _Forward, list]:
        p, spec = self.params, self.spec
        batch, steps = x.shape[:2]
        ids = None
        if spec.input_kind == "tokens":
            ids = x.T
            inputs = p["embedding"][ids]
        else:
            inputs = np.ascontiguousarray(np.swapaxes(spec.input_array(x), 0, 1), dtype=self.dtype)
        inputs, mask = self._dropout(inputs, train)
        masks, layer_inputs, caches, final = [mask], [], [], []
        for layer in range(spec.num_layers):
            w = spec.layer_params(p, layer)
            P = inputs.reshape(steps * batch, -1) @ w["U"]
            P += w["b"]
            hs, last, cache = self.kernel.forward(P.reshape(steps, batch, -1), spec.cell.recurrent_params(w), state[layer])
            layer_inputs.append(inputs)
            caches.append(cache)
            final.append(last)
            inputs, mask = self._dropout(hs, train)
            masks.append(mask)
        scored = None if spec.scored_steps is None else spec.scored(steps)
        if scored is not None:
            inputs = inputs[scored]
        top = inputs.reshape(-1, spec.hidden_size)
        logits = top @ p["softmax.W"]
        logits += p["softmax.b"]
        return logits, _Forward(ids, layer_inputs, caches, masks, top, scored), final

    def _head(self, out: np.ndarray, y: np.ndarray, fwd: _Forward) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """``(per-row loss (float64), correct count, predictions, d summed loss / d out)`` for
        the output layer's rows ``out`` (time-major, scored steps); ``out`` is overwritten."""
        yt = np.swapaxes(y, 0, 1)
        if fwd.scored is not None:
            yt = yt[fwd.scored]
        if self.spec.head == "regress":
            targets = np.asarray(yt, self.dtype).reshape(out.shape)
            out -= targets  # the error, in place: its double is the gradient
            loss = np.einsum("ij,ij->i", out, out, dtype=np.float64)
            return loss, 0, out + targets, np.multiply(out, 2.0, out=out)
        targets = yt.reshape(-1)
        ce, predicted, probs = self._softmax_cross_entropy(out, targets)
        probs[np.arange(len(targets)), targets] -= 1.0
        return ce, int((predicted == targets).sum()), predicted, probs

    def _predictions(self, predicted: np.ndarray, batch: int) -> np.ndarray:
        """Time-major rows back to ``(batch, scored[, outputs])``."""
        if self.spec.head == "regress":
            return predicted.reshape(-1, batch, self.spec.n_classes).transpose(1, 0, 2).copy()
        return predicted.reshape(-1, batch).T.copy()

    @staticmethod
    def _softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-row cross-entropy, the argmax, and the softmax probabilities written over
        ``logits`` (the row maximum is read at the argmax: one pass over the logits fewer)."""
        rows = np.arange(len(targets))
        predicted = logits.argmax(axis=1)
        logits -= logits[rows, predicted][:, None]
        target_logit = logits[rows, targets].astype(np.float64)
        np.exp(logits, out=logits)
        sums = logits.sum(axis=1, keepdims=True)
        logits /= sums
        return np.log(sums[:, 0], dtype=np.float64) - target_logit, predicted, logits

    def _backward(
        self, dlogits: np.ndarray, fwd: _Forward, scale: float = 1.0, trace: bool = False
    ) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
        """Gradients of ``scale`` times the loss whose logit gradient is ``dlogits``; the
        scale multiplies the small operands (hidden states, row sums), not ``dlogits``."""
        p, spec = self.params, self.spec
        steps, batch = fwd.layer_inputs[0].shape[:2]
        scale = self.dtype.type(scale)
        grads: dict[str, Any] = {
            "softmax.W": (fwd.top * scale).T @ dlogits,
            "softmax.b": dlogits.sum(axis=0) * scale,
        }
        dtop = (dlogits @ p["softmax.W"].T).reshape(-1, batch, spec.hidden_size)
        dtop *= scale
        if fwd.scored is None:
            dinputs = dtop
        else:  # the unscored steps' outputs reach the loss only through later steps
            dinputs = np.zeros((steps, batch, spec.hidden_size), self.dtype)
            dinputs[fwd.scored] = dtop
        traces: list[dict[str, np.ndarray]] = [{}] * spec.num_layers
        for layer in reversed(range(spec.num_layers)):
            w = spec.layer_params(p, layer)
            mask = fwd.masks[layer + 1]
            dhs = dinputs * mask if mask is not None else dinputs
            dZ, drecurrent, traces[layer] = self.kernel.backward(dhs, spec.cell.recurrent_params(w), fwd.caches[layer], trace)
            dZ = dZ.reshape(steps * batch, -1)
            inputs = fwd.layer_inputs[layer].reshape(steps * batch, -1)
            grads[layer_key(layer, "U")] = inputs.T @ dZ
            grads[layer_key(layer, "b")] = dZ.sum(axis=0)
            grads.update({layer_key(layer, name): g for name, g in drecurrent.items()})
            if layer > 0 or fwd.ids is not None:
                dinputs = (dZ @ w["U"].T).reshape(steps, batch, -1)
        if fwd.ids is not None:
            if fwd.masks[0] is not None:
                dinputs = dinputs * fwd.masks[0]
            rows, where = np.unique(fwd.ids.reshape(-1), return_inverse=True)
            values = np.zeros((len(rows), spec.hidden_size), self.dtype)
            np.add.at(values, where.reshape(-1), dinputs.reshape(-1, spec.hidden_size))
            grads["embedding"] = _Rows(rows, values, p["embedding"].shape)
        return grads, traces

    def _loss_and_grads(self, x, y, state, train: bool):
        batch, steps = x.shape[:2]
        out, fwd, final = self._forward(x, state, train)
        loss, correct, _, dout = self._head(out, y, fwd)
        grads, _ = self._backward(dout, fwd, self.spec.loss_scale(batch, steps))
        return StepStats(float(loss.sum()), correct, len(loss)), grads, final

    # -- the Model interface ----------------------------------------------------------

    def zero_state(self, batch_size: int) -> State:
        n = self.spec.hidden_size
        return [
            tuple(np.zeros((batch_size, n), self.dtype) for _ in self.spec.cell.state_names)
            for _ in range(self.spec.num_layers)
        ]

    @_overflow_shows_in_the_numbers
    def train_step(self, x: np.ndarray, y: np.ndarray, state: State, lr: float) -> tuple[StepStats, State]:
        stats, grads, final = self._loss_and_grads(x, y, state, train=True)
        stats.grad_norm = self._apply_update(grads, lr)
        return stats, final

    def _apply_update(self, grads: dict[str, Any], lr: float) -> float:
        if self.settings.optimizer == "rmsprop":  # its mean square decays in every row, seen or not
            grads = {name: g.dense() if isinstance(g, _Rows) else g for name, g in grads.items()}
        located = {name: _rows_and_values(g) for name, g in grads.items()}
        norm = float(np.sqrt(sum(np.vdot(g, g) for _, g in located.values())))
        clip = self.settings.max_grad_norm
        scale = clip / max(norm, clip) if clip > 0 else 1.0
        if not np.isfinite(norm):
            return norm  # the runner stops the run; the weights stay as they were
        for name, (rows, g) in located.items():
            param = self.params[name]  # param[rows] is in place: a view, or unique rows
            if self.settings.optimizer == "sgd":
                g *= self.dtype.type(lr * scale)  # lr (c g) as (lr c) g: one pass fewer
                param[rows] -= g
            elif self.settings.optimizer == "adagrad":
                if scale != 1.0:
                    g *= scale
                acc = self.slots["adagrad"][name]
                acc[rows] += g * g
                param[rows] -= lr * g / np.sqrt(acc[rows])
            else:
                if scale != 1.0:
                    g *= scale
                rho = self.settings.rmsprop_decay
                mean_square = self.slots["rmsprop"][name]
                mean_square *= rho
                mean_square += (1.0 - rho) * (g * g)
                param -= lr * g / (np.sqrt(mean_square) + self.settings.rmsprop_epsilon)
        return norm

    @_overflow_shows_in_the_numbers
    def eval_step(
        self, x: np.ndarray, y: np.ndarray, state: State, predictions: bool = False
    ) -> tuple[StepStats, State]:
        out, fwd, final = self._forward(x, state, train=False)
        loss, correct, predicted, _ = self._head(out, y, fwd)
        stats = StepStats(float(loss.sum()), correct, len(loss))
        if predictions:
            stats.predictions = self._predictions(predicted, x.shape[0])
        return stats, final

    @_overflow_shows_in_the_numbers
    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: State) -> tuple[float, dict[str, np.ndarray], State]:
        stats, grads, final = self._loss_and_grads(x, y, state, train=False)
        dense = {name: g.dense() if isinstance(g, _Rows) else g for name, g in grads.items()}
        return stats.loss_sum * self.spec.loss_scale(*x.shape[:2]), dense, final

    @_overflow_shows_in_the_numbers
    def gradient_norms_over_time(self, x: np.ndarray, y: np.ndarray, state: State) -> dict[str, np.ndarray]:
        batch = x.shape[0]
        logits, fwd, _ = self._forward(x, state, train=False)
        _, _, _, dsum = self._head(logits, y, fwd)  # d(the loss summed over the scored steps)/d out
        out: dict[str, np.ndarray] = {}
        last_only = np.zeros_like(dsum)
        last_only[-batch:] = dsum[-batch:]  # time-major: the last scored step's rows
        for prefix, dlogits in (("dLT", last_only), ("dL", dsum)):
            _, traces = self._backward(dlogits, fwd, trace=True)
            for key in traces[0]:
                if prefix == "dL" and key == "s":
                    continue
                out[f"{prefix}_d{key}"] = np.stack([tr[key].mean(axis=1) for tr in traces])
        return out

    def state_to_numpy(self, state: State) -> list[tuple[np.ndarray, ...]]:
        return [tuple(np.array(a) for a in layer) for layer in state]

    def get_params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.params.items()}

    def optimizer_slots(self) -> dict[str, dict[str, np.ndarray]]:
        return {slot: dict(values) for slot, values in self.slots.items()}

    def load(self, params: dict[str, np.ndarray], slots: dict[str, dict[str, np.ndarray]]) -> None:
        self.params.update({name: np.array(value, dtype=self.dtype) for name, value in params.items()})
        for slot, values in slots.items():
            self.slots[slot].update({name: np.array(value, dtype=self.dtype) for name, value in values.items()})

    def set_dropout_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def describe(self) -> dict[str, Any]:
        kernel = ("numpy linear recurrence: a, b per window, element-wise loop over steps, hand-written adjoint"
                  if self.settings.impl == "scan" else "numpy hand-written BPTT")
        return {"device": "cpu", "kernel": kernel, "dtype": str(self.dtype)}

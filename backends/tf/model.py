"""The whole model in TensorFlow: embedding, stacked recurrent layers, the output head
(softmax cross-entropy or squared error at the scored steps), updates.

The impls share everything but the recurrent layers:

- ``cell`` (:class:`TFCellModel`): the cell's own ``step`` (the equations written once in
  ``cells/``) applied with TensorFlow ops, unrolled in Python over the window while
  ``tf.function`` traces it, so the graph holds ``steps x layers`` steps. The input
  projection ``x U + b`` of a whole window is one GEMM before the loop. Time-major inside.
- ``fused`` (:class:`TFFusedModel`): the cell's layer in ``backends.tf.fused``
  (``keras.layers.LSTM``, ``keras.layers.SimpleRNN``; cuDNN on a GPU when the
  configuration allows, Keras's ``while_loop`` otherwise). Batch-major, as Keras wants.
- ``scan`` (:class:`TFScanModel`): a cell that declares its step linear in the state
  (``CellSpec.linear_recurrence``, minGRU): the window's ``a`` and ``b`` in one pass, the
  recurrence by the log-space scan of ``backends.tf.scan``. Time-major, as ``cell``.

Variables are Keras variables in the framework's layout; a :class:`~backends.layout.Slot`
maps each one to and from its canonical name and layout (the fused LSTM reorders gate
blocks). Every
function in the hot path is a ``tf.function`` traced once per window shape: inputs are
converted to tensors of fixed dtypes, the learning rate is a tensor argument, and each
step makes one device-to-host transfer (a small vector of statistics). Inputs and targets
are put in the model's layout on the host, targets at the scored steps only.

SGD and Adagrad are Keras's optimizers; RMSProp is written out in the traced train function
(:meth:`TFModel._rmsprop`): Keras's ``RMSprop`` puts epsilon inside the square root, the
update rule (``backends/base.py``) outside.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any, Sequence

import numpy as np

from backends.base import OPTIMIZERS, Model, State, StepStats, TrainSettings
from backends.layout import NUMPY_ARRAYS, ArrayOps, Slot
from backends.spec import ModelSpec, layer_key
from backends.tf.fused import FUSED_LAYERS
from backends.tf.losses import linear_softmax_cross_entropy
from backends.tf.scan import scan_layer
from backends.tf.runtime import configure_threads, import_tf, resolve_device, thread_settings
from cells.base import Ops
from cells.errors import BenchError

tf = import_tf()
import keras  # noqa: E402  (after TensorFlow, whose log level is set in runtime)

TF_OPS = Ops(tanh=tf.math.tanh, sigmoid=tf.math.sigmoid)
TF_ARRAYS = ArrayOps(take_columns=lambda t, columns: tf.gather(t, columns, axis=-1), transpose=tf.transpose)


def build_model(spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
    configure_threads(settings.threads)  # first: it only works before TF initialises
    device, kind = resolve_device(settings.device)
    if settings.impl == "cell":
        return TFCellModel(spec, params, settings, device, kind)
    if settings.impl == "fused":
        return TFFusedModel(spec, params, settings, device, kind)
    if settings.impl == "scan":
        return TFScanModel(spec, params, settings, device, kind)
    raise BenchError(f"backend 'tf' has no impl {settings.impl!r}; choose one of: cell, fused, scan")


# -- the shared model -----------------------------------------------------------------


class TFModel(Model):
    """Everything but the recurrent layers; subclasses create ``self.params`` (a list of
    :class:`~backends.layout.Slot`, fixed order) and implement ``_recurrent`` and
    ``_canonical_layers``."""

    time_major: bool  # layout of the tensors between the layers

    def __init__(
        self, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings, device: str, kind: str
    ) -> None:
        expected = spec.param_shapes()
        if sorted(params) != sorted(expected):
            raise BenchError(f"tf backend: parameters {sorted(params)} do not match the spec's {sorted(expected)}")
        self.spec = spec
        self.settings = settings
        self.device = device
        self.device_kind = kind
        self.dtype = tf.as_dtype(settings.dtype)
        self.np_dtype = np.dtype(settings.dtype)
        self.trace_counts: Counter[str] = Counter()
        with tf.device(self.device):
            self.params: list[Slot[Any]] = self._make_params(params)
            self._by_name = {p.name: p for p in self.params}
            # a variable can hold several parameters (Keras's GRU stacks its two biases)
            self._vars = list({id(p.tensor): p.tensor for p in self.params}.values())
            self._var_index = {id(var): i for i, var in enumerate(self._vars)}
            self._lr = tf.Variable(0.0, dtype=self.dtype, trainable=False, name="learning_rate")
            self._seed = tf.Variable(0, dtype=tf.int64, trainable=False, name="dropout_seed")
            self._counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="dropout_counter")
            self.optimizer = self._make_optimizer()
            # per checkpoint slot (backends.base.OPTIMIZER_SLOTS), one variable per entry of
            # self._vars, created now so that restore() can fill them
            self._slots: dict[str, list[Any]] = {}
            if self.optimizer is not None:
                self.optimizer.build(self._vars)
            if settings.optimizer == "adagrad":
                self._slots["adagrad"] = [self._accumulator(var) for var in self._vars]
                # Keras's Constant initializer passes the value through float32
                # (0.1 -> 0.10000000149 in a float64 slot): set the exact value.
                for acc in self._slots["adagrad"]:
                    acc.assign(np.full(acc.shape, settings.adagrad_initial_accumulator, self.np_dtype))
            if settings.optimizer == "rmsprop":
                self._slots["rmsprop"] = [
                    tf.Variable(tf.zeros(var.shape, self.dtype), trainable=False, name=f"rmsprop_mean_square_{i}")
                    for i, var in enumerate(self._vars)
                ]
        self.set_dropout_seed(settings.seed)
        self._train_fn = tf.function(self._train_graph)
        self._eval_fn = tf.function(self._eval_graph)
        self._grads_fn = tf.function(self._grads_graph)
        self._norms_fn = tf.function(self._norms_graph)

    # -- to implement -----------------------------------------------------------------

    def _make_params(self, params: dict[str, np.ndarray]) -> list[Slot[Any]]:
        raise NotImplementedError

    def _recurrent(self, inputs: Any, state: State, train: bool) -> tuple[Any, list[tuple]]:
        """The layers over ``inputs`` (``(steps, batch, in)`` when ``time_major`` else
        ``(batch, steps, in)``, dropout already applied), each followed by dropout; returns
        the top layer's output (same layout) and the final state per layer."""
        raise NotImplementedError

    def _canonical_layers(self) -> dict[str, Any]:
        """``layers.{l}.U/V/b`` as differentiable tensors in the canonical layout."""
        raise NotImplementedError

    # -- pieces -----------------------------------------------------------------------

    def _variable(self, value: np.ndarray, name: str) -> Any:
        return keras.Variable(np.asarray(value, self.np_dtype), dtype=self.settings.dtype, name=name)

    def _make_optimizer(self) -> Any:
        """Keras's optimizer for sgd and adagrad; None for rmsprop (see :meth:`_rmsprop`)."""
        lr = lambda: self._lr  # noqa: E731  (a callable: the optimizer keeps no float copy)
        if self.settings.optimizer == "sgd":
            return keras.optimizers.SGD(learning_rate=lr, momentum=0.0, nesterov=False)
        if self.settings.optimizer == "adagrad":
            # Keras 3: a += g²; p -= lr * g / sqrt(a + epsilon); epsilon 0 is TF1's rule.
            return keras.optimizers.Adagrad(
                learning_rate=lr,
                initial_accumulator_value=self.settings.adagrad_initial_accumulator,
                epsilon=0.0,
            )
        if self.settings.optimizer == "rmsprop":
            return None
        raise BenchError(f"unknown optimizer {self.settings.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")

    def _accumulator(self, var: Any) -> Any:
        return self.optimizer._accumulators[self.optimizer._get_variable_index(var)]

    def _dropout(self, a: Any, site: int, train: bool) -> Any:
        """Inverted dropout; the mask depends only on (seed, train step, site)."""
        keep = self.spec.keep_prob
        if not train or keep >= 1.0:
            return a
        n_sites = self.spec.num_layers + 1
        seed = tf.stack([self._seed, self._counter * n_sites + site])
        u = tf.random.stateless_uniform(tf.shape(a), seed=seed, dtype=self.dtype)
        return a * (tf.cast(u < keep, self.dtype) / keep)

    def _inputs(self, x: Any, embedding: Any) -> Any:
        """Embedded tokens, or the values themselves (``(…, features)`` already); ``x`` is
        in the model's layout (transposed on the host for time-major models)."""
        if self.spec.input_kind == "tokens":
            return tf.gather(embedding, x)
        return x

    def _head(self, top: Any, y: Any, time_axis: int) -> tuple[Any, Any, Any]:
        """``(per-row loss, number correct, predictions)`` at the scored steps of ``top``,
        rows in the order of its layout (time axis ``time_axis``); ``y`` holds the targets
        of the scored steps only (see :meth:`_y`). Classify: cross-entropy and argmax ids
        by the hand-written softmax layer; regress: squared error summed over the outputs,
        and the outputs."""
        spec = self.spec
        if spec.scored_steps is not None:
            top = tf.gather(top, spec.scored(top.shape[time_axis]), axis=time_axis)
        W, b = self._by_name["softmax.W"].tensor, self._by_name["softmax.b"].tensor
        flat = tf.reshape(top, [-1, spec.hidden_size])
        if spec.head == "regress":
            out = tf.nn.bias_add(tf.matmul(flat, W), b)
            error = out - tf.reshape(y, [-1, spec.n_classes])
            return tf.reduce_sum(error * error, axis=-1), tf.constant(0, tf.int64), out
        labels = tf.reshape(y, [-1])
        ce, predicted = linear_softmax_cross_entropy(flat, W, b, labels)
        return ce, tf.math.count_nonzero(tf.equal(predicted, labels)), predicted

    def _forward(self, x: Any, y: Any, state: State, train: bool) -> tuple[Any, Any, Any, list[tuple]]:
        """``_head``'s three on the output of the model's layers, and the final state."""
        embedding = self._by_name["embedding"].tensor if self.spec.input_kind == "tokens" else None
        inputs = self._dropout(self._inputs(x, embedding), 0, train)
        top, final = self._recurrent(inputs, state, train)
        loss, n_correct, predicted = self._head(top, y, 0 if self.time_major else 1)
        return loss, n_correct, predicted, final

    def _prepare_grad(self, g: Any) -> Any:
        """Embedding gradients come as IndexedSlices with repeated rows: sum the repeats
        (the norm and Adagrad's g² need the real rows); dense for Adagrad and RMSProp
        (whose mean square decays in the rows the window did not touch too)."""
        if isinstance(g, tf.IndexedSlices):
            if self.settings.optimizer != "sgd":
                return tf.convert_to_tensor(g)
            rows, where = tf.unique(g.indices)
            values = tf.math.unsorted_segment_sum(g.values, where, tf.shape(rows)[0])
            return tf.IndexedSlices(values, rows, g.dense_shape)
        return g

    # -- traced functions -------------------------------------------------------------

    def _batch_steps(self, x: Any) -> tuple[int, int]:
        return (x.shape[1], x.shape[0]) if self.time_major else (x.shape[0], x.shape[1])

    def _loss(self, x: Any, y: Any, state: State, train: bool) -> tuple[Any, Any, Any, list[tuple]]:
        """(the differentiated loss, per-row loss, number correct, final state)."""
        batch, steps = self._batch_steps(x)
        loss, n_correct, _, final = self._forward(x, y, state, train)
        return tf.reduce_sum(loss) * self.spec.loss_scale(batch, steps), loss, n_correct, final

    def _rmsprop(self, grads: list[Any], lr: Any) -> None:
        """``m = rho m + (1 - rho) g²; p -= lr g / (sqrt(m) + eps)``, epsilon outside the root."""
        rho = tf.constant(self.settings.rmsprop_decay, self.dtype)
        rest = tf.constant(1.0 - self.settings.rmsprop_decay, self.dtype)
        eps = tf.constant(self.settings.rmsprop_epsilon, self.dtype)
        for var, g, mean_square in zip(self._vars, grads, self._slots["rmsprop"]):
            mean_square.assign(rho * mean_square + rest * (g * g))
            var.assign_sub(lr * g / (tf.sqrt(mean_square) + eps))

    def _train_graph(self, x: Any, y: Any, state: State, lr: Any) -> tuple[Any, list[tuple]]:
        self.trace_counts["train"] += 1
        with tf.device(self.device):
            with tf.GradientTape() as tape:
                loss, per_row, n_correct, final = self._loss(x, y, state, train=True)
            grads = [self._prepare_grad(g) for g in tape.gradient(loss, self._vars)]
            norm = tf.linalg.global_norm(grads)
            if self.settings.max_grad_norm > 0:
                # c / max(||g||, c) as in backends/base.py: tf.clip_by_global_norm multiplies by
                # 1 / c, which flushes to zero for c above 8.5e37 in float32 and zeroed every update
                clip = tf.constant(self.settings.max_grad_norm, self.dtype)
                grads = [_scaled(g, clip / tf.maximum(norm, clip)) for g in grads]

            def update() -> Any:
                if self.optimizer is None:
                    self._rmsprop(grads, lr)
                else:
                    self._lr.assign(lr)
                    self.optimizer.apply(grads, self._vars)
                return tf.constant(True)

            tf.cond(tf.math.is_finite(norm), update, lambda: tf.constant(False))
            self._counter.assign_add(1)
            stats = tf.stack(
                [tf.reduce_sum(tf.cast(per_row, tf.float64)), tf.cast(n_correct, tf.float64), tf.cast(norm, tf.float64)]
            )
        return stats, final

    def _eval_graph(self, x: Any, y: Any, state: State, with_predictions: bool) -> tuple[Any, list[tuple]]:
        self.trace_counts["eval"] += 1
        with tf.device(self.device):
            loss, n_correct, predicted, final = self._forward(x, y, state, train=False)
            parts = [tf.reduce_sum(tf.cast(loss, tf.float64))[None], tf.cast(n_correct, tf.float64)[None]]
            if with_predictions:
                parts.append(tf.cast(tf.reshape(predicted, [-1]), tf.float64))
        return tf.concat(parts, 0), final

    def _grads_graph(self, x: Any, y: Any, state: State) -> tuple[Any, list[Any], list[tuple]]:
        self.trace_counts["grads"] += 1
        with tf.device(self.device):
            with tf.GradientTape() as tape:
                loss, _, _, final = self._loss(x, y, state, train=False)
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self._vars)]
        return loss, grads, final

    def _norms_graph(self, x: Any, y: Any, state: State) -> dict[str, Any]:
        """Gradient norms w.r.t. every h_t (and s_t): the tape differentiates with respect
        to the intermediate state tensors themselves, which gives the total derivative
        (the sum over all their consumers: the layer above, the next step, and for s_t
        also h_t = tanh(s_t) o, inside the same step). ``L`` is the head's loss summed over
        the scored steps, ``L_T`` that of the last scored step (time-major: the last
        ``batch`` rows)."""
        self.trace_counts["norms"] += 1
        spec = self.spec
        names = spec.cell.state_names
        with tf.device(self.device):
            with tf.GradientTape(persistent=True) as tape:
                params = self._canonical_layers()
                embedding = self._by_name["embedding"].tensor if spec.input_kind == "tokens" else None
                inputs = self._inputs(x, embedding)  # x is time-major here, whatever the impl
                top, _, trace = unrolled_layers(self, params, inputs, state, train=False, keep_trace=True)
                loss, _, _ = self._head(top, y, time_axis=0)
                total = {"dL": tf.reduce_sum(loss), "dLT": tf.reduce_sum(loss[-x.shape[1]:])}
            out = {}
            for prefix, loss in total.items():
                for k, name in enumerate(names):
                    if prefix == "dL" and k != len(names) - 1:
                        continue  # ∂L/∂h only; the reference reports ∂L_T/∂s alone
                    sources = [[trace[l][t][k] for t in range(len(trace[l]))] for l in range(spec.num_layers)]
                    grads = tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                    per_example = tf.norm(tf.cast(tf.stack([tf.stack(g) for g in grads]), tf.float64), axis=-1)
                    out[f"{prefix}_d{name}"] = tf.reduce_mean(per_example, axis=-1)  # (layers, steps)
            del tape
        return out

    # -- conversions ------------------------------------------------------------------

    def _x(self, x: np.ndarray, time_major: bool | None = None) -> Any:
        """Inputs as a tensor of a fixed dtype (no retracing on int64 vs int32), in the
        model's layout: token ids ``(batch, steps)``, values ``(batch, steps, features)``,
        batch and time swapped for a time-major model (cheaper on the host)."""
        if self.spec.input_kind == "tokens":
            dtype = np.int32
        else:
            x, dtype = self.spec.input_array(x), self.np_dtype
        if self.time_major if time_major is None else time_major:
            x = np.swapaxes(x, 0, 1)
        return tf.convert_to_tensor(np.ascontiguousarray(x, dtype))

    def _y(self, y: np.ndarray, time_major: bool | None = None) -> Any:
        """The targets of the scored steps, in the model's layout as :meth:`_x`: class ids
        (int32) ``(batch, scored)`` or regression targets (the run's dtype)
        ``(batch, scored, outputs)``."""
        spec = self.spec
        if spec.head == "regress":
            y, dtype = spec.target_values(y), self.np_dtype
        else:
            dtype = np.int32
        if spec.scored_steps is not None:
            y = y[:, spec.scored(y.shape[1])]
        if self.time_major if time_major is None else time_major:
            y = np.swapaxes(y, 0, 1)
        return tf.convert_to_tensor(np.ascontiguousarray(y, dtype))

    def _n_tokens(self, x: np.ndarray) -> int:
        return x.shape[0] * self.spec.n_scored(x.shape[1])

    def _predictions(self, flat: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The eval graph's flattened predictions back to ``(batch, scored)`` ids or
        ``(batch, scored, outputs)`` values (in the run's dtype)."""
        batch, scored = x.shape[0], self.spec.n_scored(x.shape[1])
        shape = (scored, batch) if self.time_major else (batch, scored)
        if self.spec.head == "regress":
            shape, dtype = (*shape, self.spec.n_classes), self.np_dtype
        else:
            dtype = np.int64
        values = flat.reshape(shape)
        return np.ascontiguousarray(np.swapaxes(values, 0, 1) if self.time_major else values, dtype)

    def _state(self, state: State) -> tuple[tuple[Any, ...], ...]:
        return tuple(tuple(tf.convert_to_tensor(a, self.dtype) for a in layer) for layer in state)

    # -- the Model interface ----------------------------------------------------------

    def zero_state(self, batch_size: int) -> State:
        with tf.device(self.device):
            return tuple(
                tuple(tf.zeros((batch_size, self.spec.hidden_size), self.dtype) for _ in self.spec.cell.state_names)
                for _ in range(self.spec.num_layers)
            )

    def train_step(self, x: np.ndarray, y: np.ndarray, state: State, lr: float) -> tuple[StepStats, State]:
        stats, final = self._train_fn(self._x(x), self._y(y), self._state(state), tf.constant(lr, self.dtype))
        loss_sum, n_correct, norm = stats.numpy()  # the one host transfer
        return StepStats(float(loss_sum), int(n_correct), self._n_tokens(x), float(norm)), _freeze(final)

    def eval_step(
        self, x: np.ndarray, y: np.ndarray, state: State, predictions: bool = False
    ) -> tuple[StepStats, State]:
        out, final = self._eval_fn(self._x(x), self._y(y), self._state(state), bool(predictions))
        out = out.numpy()
        stats = StepStats(float(out[0]), int(out[1]), self._n_tokens(x))
        if predictions:
            stats.predictions = self._predictions(out[2:], x)
        return stats, _freeze(final)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: State) -> tuple[float, dict[str, np.ndarray], State]:
        loss, grads, final = self._grads_fn(self._x(x), self._y(y), self._state(state))
        named = {p.name: p.to_canonical(grads[self._var_index[id(p.tensor)]].numpy(), NUMPY_ARRAYS) for p in self.params}
        return float(loss), named, _freeze(final)

    def gradient_norms_over_time(self, x: np.ndarray, y: np.ndarray, state: State) -> dict[str, np.ndarray]:
        out = self._norms_fn(self._x(x, time_major=True), self._y(y, time_major=True), self._state(state))
        return {k: v.numpy() for k, v in out.items()}

    def state_to_numpy(self, state: State) -> list[tuple[np.ndarray, ...]]:
        return [tuple(np.array(a) for a in layer) for layer in state]

    def get_params(self) -> dict[str, np.ndarray]:
        return {p.name: p.to_canonical(np.array(p.tensor.numpy()), NUMPY_ARRAYS) for p in self.params}

    def optimizer_slots(self) -> dict[str, dict[str, np.ndarray]]:
        return {slot: {p.name: p.to_canonical(np.array(variables[self._var_index[id(p.tensor)]].numpy()), NUMPY_ARRAYS)
                       for p in self.params}
                for slot, variables in self._slots.items()}

    def load(self, params: dict[str, np.ndarray], slots: dict[str, dict[str, np.ndarray]]) -> None:
        for name, value in params.items():
            p = self._by_name[name]
            _assign(p, p.tensor, value, self.np_dtype)
        for slot, values in slots.items():
            for name, value in values.items():
                p = self._by_name[name]
                _assign(p, self._slots[slot][self._var_index[id(p.tensor)]], value, self.np_dtype)

    def set_dropout_seed(self, seed: int) -> None:
        self._seed.assign(int(seed))
        self._counter.assign(0)

    def peak_device_memory_mb(self) -> float | None:
        if self.device_kind != "gpu":
            return None
        return tf.config.experimental.get_memory_info(self.device.lstrip("/"))["peak"] / 2**20  # "GPU:0"

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device_kind if self.device_kind == "cpu" else f"{self.device_kind} ({self.device})",
            "kernel": self._kernel_description(),
            "dtype": self.settings.dtype,
            "threads": thread_settings(),
            "onednn": _onednn_setting(),
        }

    def _kernel_description(self) -> str:
        raise NotImplementedError


def _scaled(g: Any, scale: Any) -> Any:
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values * scale, g.indices, g.dense_shape)
    return g * scale


def _assign(slot: Slot[Any], var: Any, value: np.ndarray, dtype: np.dtype) -> None:
    """Set ``var`` (the slot's variable, or anything shaped like it) to the canonical
    ``value``; a parameter that is one row of the variable sets that row only."""
    value = slot.to_framework(np.asarray(value, dtype), NUMPY_ARRAYS)
    if slot.layout.row is not None:
        whole = np.array(var.numpy())
        whole[slot.layout.row] = value
        value = whole
    var.assign(value)


def _freeze(final: Sequence[Sequence[Any]]) -> State:
    return tuple(tuple(layer) for layer in final)


def _onednn_setting() -> str:
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return "default (on for x86 CPUs)" if value is None else value


# -- the unrolled cell, shared by impl "cell" and the fused impl's gradient norms -----


def unrolled_layers(
    model: TFModel, params: dict[str, Any], inputs: Any, state: State, train: bool, keep_trace: bool = False
) -> tuple[Any, list[tuple], list[list[tuple]]]:
    """The cell's step over a time-major window, layer after layer.

    Per layer, ``X U + b`` for the whole window is one GEMM, then the cell's recurrence
    runs step by step; each layer's output goes through dropout.
    Returns (top output (steps, batch, hidden), final state per layer, and with
    ``keep_trace`` the state tuple of every step per layer).
    """
    spec, cell = model.spec, model.spec.cell
    steps = inputs.shape[0]
    final, trace = [], []
    for layer in range(spec.num_layers):
        w = spec.layer_params(params, layer)
        in_size, width = w["U"].shape
        P = tf.reshape(tf.matmul(tf.reshape(inputs, [-1, in_size]), w["U"]) + w["b"], [steps, -1, width])
        z_ins = tf.unstack(P)
        recurrent = cell.recurrent_params(w)
        st = tuple(state[layer])
        outputs, states = [], []
        for t in range(steps):
            st = tuple(cell.recurrence(TF_OPS, recurrent, z_ins[t], st))
            outputs.append(st[-1])
            if keep_trace:
                states.append(st)
        final.append(st)
        trace.append(states)
        inputs = model._dropout(tf.stack(outputs), layer + 1, train)
    return inputs, final, trace


class TFCellModel(TFModel):
    """impl ``cell``: the cell's ``step`` unrolled in a ``tf.function``, any CellSpec."""

    time_major = True

    def _make_params(self, params: dict[str, np.ndarray]) -> list[Slot[Any]]:
        return [Slot(name, self._variable(params[name], name.replace(".", "_"))) for name in self.spec.param_shapes()]

    def _canonical_layers(self) -> dict[str, Any]:
        return {p.name: p.tensor for p in self.params if p.name.startswith("layers.")}

    def _recurrent(self, inputs: Any, state: State, train: bool) -> tuple[Any, list[tuple]]:
        top, final, _ = unrolled_layers(self, self._canonical_layers(), inputs, state, train)
        return top, final

    def _kernel_description(self) -> str:
        return f"{self.spec.cell.name} step equations unrolled in tf.function (X·U + b precomputed per window)"


class TFScanModel(TFCellModel):
    """impl ``scan``: a linear cell's window in one log-space scan per layer
    (``backends.tf.scan``); parameters, the gradient norms over time (the cell's equations
    unrolled, as for every impl) and all else as impl ``cell``'s."""

    def _recurrent(self, inputs: Any, state: State, train: bool) -> tuple[Any, list[tuple]]:
        params, final = self._canonical_layers(), []
        for layer in range(self.spec.num_layers):
            outputs, last = scan_layer(self.spec.cell, TF_OPS, self.spec.layer_params(params, layer), inputs, state[layer])
            final.append(last)
            inputs = self._dropout(outputs, layer + 1, train)
        return inputs, final

    def _kernel_description(self) -> str:
        return "linear recurrence by log-space scan (cumsum, cumulative_logsumexp), custom gradient, in tf.function"


class TFFusedModel(TFModel):
    """impl ``fused``: the cell's Keras layer in ``backends.tf.fused`` per layer.

    Gradient norms over time need every layer's state at every step, which the fused
    layers do not expose: :meth:`gradient_norms_over_time` unrolls the cell's step
    equations on the fused layers' CURRENT weights (mapped to the canonical layout), so it
    measures the same function but not the fused kernel's own arithmetic.
    """

    time_major = False

    def __init__(self, spec: ModelSpec, *args: Any) -> None:
        self.fused = FUSED_LAYERS[type(spec.cell)]
        self._state_in, self._state_out = self.fused.state_in, self.fused.state_out
        super().__init__(spec, *args)

    def _make_layer(self, layer: int) -> Any:
        options = dict(
            units=self.spec.hidden_size,
            use_bias=True,
            kernel_initializer="zeros",  # overwritten by the given weights right away
            recurrent_initializer="zeros",
            bias_initializer="zeros",
            dropout=0.0,
            recurrent_dropout=0.0,
            return_sequences=True,
            return_state=True,
            go_backwards=False,
            stateful=False,
            unroll=False,
            dtype=self.settings.dtype,
            name=f"{self.spec.cell.name}_{layer}",
        )
        return self.fused.make(self.spec.cell, options, self.device_kind == "gpu")

    def _make_params(self, params: dict[str, np.ndarray]) -> list[Slot[Any]]:
        spec = self.spec
        out: list[Slot[Any]] = []
        if spec.input_kind == "tokens":
            out.append(Slot("embedding", self._variable(params["embedding"], "embedding")))
        self.layers = []
        for layer in range(spec.num_layers):
            keras_layer = self._make_layer(layer)
            keras_layer.build((None, None, spec.layer_input_size(layer)))
            for name, (var, layout) in self.fused.held(keras_layer).items():
                slot = Slot(layer_key(layer, name), var, layout)
                _assign(slot, var, params[slot.name], self.np_dtype)
                out.append(slot)
            for var in self.fused.frozen(keras_layer):
                var.assign(np.zeros(var.shape, self.np_dtype))
            self.layers.append(keras_layer)
        out.append(Slot("softmax.W", self._variable(params["softmax.W"], "softmax_W")))
        out.append(Slot("softmax.b", self._variable(params["softmax.b"], "softmax_b")))
        return out

    def _canonical_layers(self) -> dict[str, Any]:
        return {p.name: p.to_canonical(p.tensor.value, TF_ARRAYS) for p in self.params if p.name.startswith("layers.")}

    def _recurrent(self, inputs: Any, state: State, train: bool) -> tuple[Any, list[tuple]]:
        final = []
        for layer, keras_layer in enumerate(self.layers):
            given = [state[layer][k] for k in self._state_in]
            seq, *last = keras_layer(inputs, initial_state=given, training=False)
            final.append(tuple(last[k] for k in self._state_out))
            inputs = self._dropout(seq, layer + 1, train)
        return inputs, final

    def _kernel_description(self) -> str:
        return self.fused.kernel(self.spec.cell, self.layers[0], self.device_kind == "gpu")

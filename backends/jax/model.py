"""The whole model in JAX: embedding (or the input values), dropout, stacked recurrent
layers, the scored steps' output layer and head, clipping and the update, as pure
functions of the weights compiled by XLA.

The impls share everything but the recurrent layer:

- ``cell``: the cell's own ``recurrence`` (the equations written once in ``cells/``) on
  ``jax.numpy`` arrays under ``jax.lax.scan``, the window's input projection one GEMM;
- ``fused``: the cell's Flax layer in ``backends.jax.fused`` under ``flax.linen.RNN``, its
  variables mapped from the canonical weights inside the compiled step;
- ``scan``: a cell that declares its step linear in the state (``CellSpec.linear_recurrence``,
  minGRU): the window's ``a`` and ``b`` in one pass, ``h_t = a_t * h_{t-1} + b_t`` by
  ``jax.lax.associative_scan`` (a parallel prefix scan; no logs, so ``a`` and ``b`` of any sign).

The trained weights and the optimizer's slots are kept in the canonical names and layout
(a Flax tensor is a permutation or a block of a canonical one, and every update rule is
element-wise, so updating either is the same arithmetic); gradients, checkpoints and
``get_params`` need no mapping back. ``jax.grad`` differentiates the loss, and one
``jax.jit`` function per window shape runs forward, backward, clipping and the update,
the weights and slots donated to it. Each function is compiled ahead of its first call
(``lower().compile()``), timed apart from the steps (:meth:`JaxModel.compile_seconds`),
and kept per model function and argument shapes for the process, so models of one shape
(the conformance suite's) compile once. Activations are time-major inside.
"""
from __future__ import annotations

import time
from functools import lru_cache, partial
from typing import Any

import numpy as np

from backends.base import OPTIMIZER_SLOTS, Model, State, StepStats, TrainSettings
from backends.jax.fused import FUSED_LAYERS
from backends.jax.runtime import import_jax, resolve_device, thread_setting
from backends.spec import ModelSpec
from cells.base import Ops
from cells.errors import BenchError

jax = import_jax()  # the settings' thread count is applied by build_model before this, when it imports first
import jax.numpy as jnp  # noqa: E402

from backends.layout import ArrayOps  # noqa: E402

JAX_OPS = Ops(tanh=jnp.tanh, sigmoid=jax.nn.sigmoid)
JAX_ARRAYS = ArrayOps(take_columns=lambda a, columns: jnp.take(a, jnp.asarray(columns), axis=-1), transpose=jnp.transpose)


def build_model(spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> "JaxModel":
    if settings.impl not in ("cell", "fused", "scan"):
        raise BenchError(f"backend 'jax' has no impl {settings.impl!r}; choose one of: cell, fused, scan")
    device = resolve_device(settings.device)
    return JaxModel(spec, params, settings, device)


# -- the recurrent layers ------------------------------------------------------------------


def cell_layer(spec: ModelSpec, p: dict[str, Any], inputs: Any, state: tuple, perturb: Any = None) -> tuple[Any, tuple]:
    """One layer of the cell's equations over a time-major window ``(steps, batch, in)``:
    the outputs ``(steps, batch, hidden)`` and the final state.

    ``perturb`` ``(steps, n_states, batch, hidden)`` (zeros) is added to each state the
    moment the step computes it, before the step's later equations read it (the LSTM's
    ``h = tanh(s) o`` reads ``s``): its gradient is then the gradient with respect to that
    state as a node of the graph, through every use, what the other backends measure."""
    cell = spec.cell
    steps, batch, n_in = inputs.shape
    projection = (inputs.reshape(steps * batch, n_in) @ p["U"] + p["b"]).reshape(steps, batch, -1)
    recurrent = cell.recurrent_params(p)

    def step(carry: tuple, xs: Any) -> tuple[tuple, Any]:
        if perturb is None:
            new = tuple(cell.recurrence(JAX_OPS, recurrent, xs, carry))
        else:
            new = perturbed_recurrence(cell, recurrent, xs[0], carry, xs[1])
        return new, new[-1]

    final, outputs = jax.lax.scan(step, tuple(state), (projection, perturb) if perturb is not None else projection)
    return outputs, final


def _compose(earlier: tuple, later: tuple) -> tuple:
    """Two steps of ``h -> a h + b`` as one: ``later`` after ``earlier``."""
    return later[0] * earlier[0], later[0] * earlier[1] + later[1]


def linear_scan(a: Any, b: Any, h0: Any) -> Any:
    """Every ``h_t`` ``(steps, batch, hidden)`` of ``h_t = a_t * h_{t-1} + b_t`` from ``h0``
    ``(batch, hidden)``, time on axis 0, by ``jax.lax.associative_scan`` over the steps'
    affine maps (``h_0`` folded into the first step's ``b``); differentiated by ``jax.grad``.
    No logs, so ``a`` and ``b`` may have any sign (an ``a`` that broadcasts is expanded)."""
    a = jnp.broadcast_to(a, b.shape)
    b = b.at[0].add(a[0] * h0)
    _, hs = jax.lax.associative_scan(_compose, (a, b), axis=0)
    return hs


def scan_layer(spec: ModelSpec, p: dict[str, Any], inputs: Any, state: tuple) -> tuple[Any, tuple]:
    """One layer of a linear cell over a time-major window ``(steps, batch, in)``: the
    window's input projection in one GEMM, its ``a`` and ``b`` in one call of the cell's
    ``linear_recurrence``, then every ``h_t`` at once by :func:`linear_scan`. Returns the
    outputs and the final state."""
    cell = spec.cell
    steps, batch, n_in = inputs.shape
    projection = (inputs.reshape(steps * batch, n_in) @ p["U"] + p["b"]).reshape(steps, batch, -1)
    a, b = cell.linear_recurrence(JAX_OPS, cell.recurrent_params(p), projection)
    (h0,) = state
    hs = linear_scan(a, b, h0)
    return hs, (hs[-1],)


def perturbed_recurrence(cell: Any, params: dict[str, Any], z_in: Any, state: tuple, bump: Any) -> tuple:
    """The cell's ``recurrence`` with ``bump[k]`` added to new state ``k`` where it is
    computed, so that every later equation of the step reads the perturbed value: the
    step's equations traced to a jaxpr and evaluated equation by equation (any cell, no
    knowledge of its equations)."""
    from jax.extend.core import Literal

    closed = jax.make_jaxpr(lambda r, z, c: tuple(cell.recurrence(JAX_OPS, r, z, c)))(params, z_in, state)
    jaxpr = closed.jaxpr
    bumps: dict[Any, Any] = {}
    for k, var in enumerate(jaxpr.outvars):
        if not isinstance(var, Literal):
            bumps[var] = bumps[var] + bump[k] if var in bumps else bump[k]
    env: dict[Any, Any] = {}
    read = lambda var: var.val if isinstance(var, Literal) else env[var]  # noqa: E731
    for var, value in zip(jaxpr.constvars, closed.consts):
        env[var] = value
    for var, value in zip(jaxpr.invars, jax.tree_util.tree_leaves((params, z_in, state))):
        env[var] = value
    computed = set()
    for eqn in jaxpr.eqns:
        out = eqn.primitive.bind(*[read(v) for v in eqn.invars], **eqn.params)
        for var, value in zip(eqn.outvars, out if eqn.primitive.multiple_results else [out]):
            env[var] = value + bumps[var] if var in bumps else value
            computed.add(var)
    # a state the step passes through unchanged (or a constant) is perturbed as it leaves
    return tuple(read(var) if var in computed else read(var) + bump[k] for k, var in enumerate(jaxpr.outvars))


def flax_variables(spec: ModelSpec, p: dict[str, Any]) -> dict[str, Any]:
    """The Flax layer's variables from one layer's canonical weights (gate blocks in Flax's
    order; one tensor per gate where a path has ``{gate}``)."""
    entry = FUSED_LAYERS[type(spec.cell)]
    tree: dict[str, Any] = {}
    for name in spec.cell.param_names:
        value = entry.layout(name).to_framework(p[name], JAX_ARRAYS)
        path = entry.params[name].path
        if "{gate}" in path:
            parts = jnp.split(value, len(entry.gates), axis=-1)
            placed = {path.format(gate=gate): part for gate, part in zip(entry.gates, parts)}
        else:
            placed = {path: value}
        for where, tensor in placed.items():
            module, leaf = where.rsplit(".", 1)
            tree.setdefault(module, {})[leaf] = tensor
    return {"params": {"cell": tree}}


def fused_layer(spec: ModelSpec, p: dict[str, Any], inputs: Any, state: tuple, dtype: Any) -> tuple[Any, tuple]:
    entry = FUSED_LAYERS[type(spec.cell)]
    layer = _flax_layer(spec.cell, spec.hidden_size, np.dtype(dtype).name)
    given = tuple(state[k] for k in entry.state_in)
    carry, outputs = layer.apply(flax_variables(spec, p), inputs, initial_carry=given if len(given) > 1 else given[0])
    carry = carry if len(given) > 1 else (carry,)
    return outputs, tuple(carry[k] for k in entry.state_out)


@lru_cache(maxsize=None)
def _flax_layer(cell: Any, hidden_size: int, dtype: str) -> Any:
    return FUSED_LAYERS[type(cell)].make(cell, hidden_size, jnp.dtype(dtype))


# -- the model's pure functions ------------------------------------------------------------


class Functions:
    """The model's computations as pure functions of (weights, slots, state, window), for
    one spec and one set of train settings; jitted, and compiled per argument shapes."""

    def __init__(self, spec: ModelSpec, settings: TrainSettings) -> None:
        self.spec, self.settings = spec, settings
        self.dtype = jnp.dtype(settings.dtype)
        self.train = jax.jit(self._train, donate_argnums=(0, 1))
        self.eval = jax.jit(partial(self._eval, predictions=False))
        self.eval_predictions = jax.jit(partial(self._eval, predictions=True))
        self.grads = jax.jit(self._grads)
        self.norms = jax.jit(self._norms)

    # forward

    def _inputs(self, p: dict[str, Any], x: Any) -> Any:
        if self.spec.input_kind == "tokens":
            return jnp.take(p["embedding"], x.T, axis=0)
        return jnp.swapaxes(x.astype(self.dtype).reshape(x.shape[0], x.shape[1], self.spec.vocab_size), 0, 1)

    def _dropout(self, a: Any, key: Any) -> Any:
        keep = self.spec.keep_prob
        if key is None or keep >= 1.0:
            return a
        return a * jax.random.bernoulli(key, keep, a.shape).astype(a.dtype) / jnp.asarray(keep, a.dtype)

    def _layer(self, layer: int, p: dict[str, Any], inputs: Any, state: tuple) -> tuple[Any, tuple]:
        weights = self.spec.layer_params(p, layer)
        if self.settings.impl == "fused":
            return fused_layer(self.spec, weights, inputs, state, self.dtype)
        if self.settings.impl == "scan":
            return scan_layer(self.spec, weights, inputs, state)
        return cell_layer(self.spec, weights, inputs, state)

    def _forward(self, p: dict[str, Any], x: Any, state: list, key: Any) -> tuple[Any, list]:
        """The top layer's outputs at the scored steps ``(scored, batch, hidden)`` and the final state."""
        keys = list(jax.random.split(key, self.spec.num_layers + 1)) if key is not None else [None] * (self.spec.num_layers + 1)
        inputs = self._dropout(self._inputs(p, x), keys[0])
        final = []
        for layer in range(self.spec.num_layers):
            outputs, last = self._layer(layer, p, inputs, state[layer])
            final.append(last)
            inputs = self._dropout(outputs, keys[layer + 1])
        return inputs[self._scored(x.shape[1])], final

    def _scored(self, steps: int) -> Any:
        return slice(None) if self.spec.scored_steps is None else np.asarray(self.spec.scored(steps))

    def _head(self, p: dict[str, Any], hidden: Any, y: Any) -> tuple[Any, Any, Any]:
        """Per scored step and example: (loss ``(scored, batch)``, correct count, predictions
        ``(scored, batch[, outputs])``). The output layer is one 2-D product over the
        ``scored x batch`` rows (a 3-D one made XLA transpose the logits' gradient)."""
        scored, batch = hidden.shape[:2]
        rows = hidden.reshape(scored * batch, -1)
        out = rows @ p["softmax.W"] + p["softmax.b"]
        if self.spec.head == "regress":
            targets = jnp.swapaxes(y.astype(self.dtype), 0, 1)[self._scored(y.shape[1])].reshape(out.shape)
            loss = ((out - targets) ** 2).sum(axis=-1)
            return loss.reshape(scored, batch), jnp.zeros((), jnp.int64), out.reshape(scored, batch, -1)
        targets = y.T[self._scored(y.shape[1])].reshape(-1)
        log_probs = jax.nn.log_softmax(out, axis=-1)
        ce = -jnp.take_along_axis(log_probs, targets[:, None], axis=-1)[:, 0]
        predicted = jnp.argmax(out, axis=-1)
        return ce.reshape(scored, batch), (predicted == targets).sum(), predicted.reshape(scored, batch)

    def _loss(self, p: dict[str, Any], x: Any, y: Any, state: list, key: Any) -> tuple[Any, tuple]:
        hidden, final = self._forward(p, x, state, key)
        rows, correct, predicted = self._head(p, hidden, y)
        loss_sum = rows.sum()
        loss = loss_sum * jnp.asarray(self.spec.loss_scale(x.shape[0], x.shape[1]), self.dtype)
        return loss, (loss_sum, correct, predicted, final)

    # steps

    def _train(self, p: dict, slots: dict, state: list, x: Any, y: Any, lr: Any, key: Any, counter: Any) -> tuple:
        use_key = jax.random.fold_in(key, counter) if self.spec.keep_prob < 1.0 else None
        grads, (loss_sum, correct, _, final) = jax.grad(self._loss, has_aux=True)(p, x, y, state, use_key)
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
        clip = self.settings.max_grad_norm
        if clip > 0:  # TensorFlow's formula: g * c / max(||g||, c)
            c = jnp.asarray(clip, self.dtype)
            grads = jax.tree_util.tree_map(lambda g: g * (c / jnp.maximum(norm, c)), grads)
        new_p, new_slots = self._update(p, slots, grads, lr)
        finite = jnp.isfinite(norm)  # else the runner stops the run; the weights stay as they were
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        stats = jnp.stack([loss_sum.astype(jnp.float64), correct.astype(jnp.float64), norm.astype(jnp.float64)])
        return keep(new_p, p), keep(new_slots, slots), stats, final

    def _update(self, p: dict, slots: dict, grads: dict, lr: Any) -> tuple[dict, dict]:
        s = self.settings
        if s.optimizer == "sgd":
            return {k: p[k] - lr * grads[k] for k in p}, slots
        if s.optimizer == "adagrad":
            acc = {k: slots["adagrad"][k] + grads[k] * grads[k] for k in p}
            return {k: p[k] - lr * grads[k] / jnp.sqrt(acc[k]) for k in p}, {"adagrad": acc}
        rho, eps = jnp.asarray(s.rmsprop_decay, self.dtype), jnp.asarray(s.rmsprop_epsilon, self.dtype)
        ms = {k: rho * slots["rmsprop"][k] + (1 - rho) * grads[k] * grads[k] for k in p}
        return {k: p[k] - lr * grads[k] / (jnp.sqrt(ms[k]) + eps) for k in p}, {"rmsprop": ms}

    def _eval(self, p: dict, state: list, x: Any, y: Any, predictions: bool) -> tuple:
        _, (loss_sum, correct, predicted, final) = self._loss(p, x, y, state, None)
        stats = jnp.stack([loss_sum.astype(jnp.float64), correct.astype(jnp.float64)])
        return stats, final, (jnp.swapaxes(predicted, 0, 1) if predictions else None)

    def _grads(self, p: dict, state: list, x: Any, y: Any) -> tuple:
        (loss, (_, _, _, final)), grads = jax.value_and_grad(self._loss, has_aux=True)(p, x, y, state, None)
        return loss, grads, final

    def _norms(self, p: dict, state: list, x: Any, y: Any) -> dict[str, Any]:
        """Gradient norms over time on the cell's own equations (for both impls: a Flax
        layer hides its per-step states). A zero added to every state as it leaves its step
        has the state's total derivative as its gradient."""
        spec = self.spec
        n_states, (batch, steps) = len(spec.cell.state_names), x.shape[:2]
        zeros = jnp.zeros((spec.num_layers, steps, n_states, batch, spec.hidden_size), self.dtype)

        def per_step(bumps: Any) -> Any:
            inputs = self._inputs(p, x)
            for layer in range(spec.num_layers):
                inputs, _ = cell_layer(spec, spec.layer_params(p, layer), inputs, state[layer], bumps[layer])
            frozen = {**p, "softmax.W": jax.lax.stop_gradient(p["softmax.W"]),
                      "softmax.b": jax.lax.stop_gradient(p["softmax.b"])}
            rows, _, _ = self._head(frozen, inputs[self._scored(steps)], y)
            return rows  # (scored, batch)

        out = {}
        for prefix, loss in (("dLT", lambda b: per_step(b)[-1].sum()), ("dL", lambda b: per_step(b).sum())):
            g = jax.grad(loss)(zeros)
            means = jnp.sqrt((g.astype(jnp.float64) ** 2).sum(axis=-1)).mean(axis=-1)  # (layers, steps, states)
            for k, name in enumerate(spec.cell.state_names):
                if prefix == "dLT" or k == n_states - 1:  # dL only for the output h
                    out[f"{prefix}_d{name}"] = means[:, :, k]
        return out


@lru_cache(maxsize=None)
def functions(spec: ModelSpec, settings: TrainSettings) -> Functions:
    """One :class:`Functions` per spec and train settings (the seed and threads aside)."""
    return Functions(spec, settings)


# compiled executables, per (functions, name, argument structure and shapes), for the process
_COMPILED: dict[tuple, Any] = {}


def _signature(args: tuple) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(args)
    return tree, tuple((np.shape(a), np.dtype(a.dtype).name) for a in leaves)


# -- the model ---------------------------------------------------------------------------


class JaxModel(Model):
    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings, device: Any) -> None:
        shapes = spec.param_shapes()
        for name, shape in shapes.items():
            if name not in params or tuple(np.shape(params[name])) != shape:
                got = tuple(np.shape(params[name])) if name in params else "missing"
                raise BenchError(f"jax backend: parameter {name!r} should be {shape}, got {got}")
        self.spec, self.settings, self.device = spec, settings, device
        self.np_dtype = np.dtype(settings.dtype)
        self.fn = functions(spec, TrainSettings(**{**settings.__dict__, "seed": 0, "threads": None}))
        # the gradient norms run the cell's equations whatever the impl and optimizer: one compile serves all
        self.norms_fn = functions(spec, TrainSettings(impl="cell", dtype=settings.dtype))
        self.params = {name: self._put(params[name]) for name in shapes}
        start = settings.adagrad_initial_accumulator if settings.optimizer == "adagrad" else 0.0
        self.slots = {kind: {name: self._put(np.full(shape, start)) for name, shape in shapes.items()}
                      for kind in OPTIMIZER_SLOTS[settings.optimizer]}
        self._compile_seconds = 0.0
        self.compiled_count = 0
        self.set_dropout_seed(settings.seed)

    def _put(self, value: Any, dtype: Any = None) -> Any:
        """A fresh device array in ``dtype`` (the model's by default), never sharing the caller's memory."""
        return jax.device_put(np.array(value, dtype=dtype or self.np_dtype), self.device)

    def _run(self, name: str, *args: Any) -> Any:
        """Function ``name`` on ``args``, compiled (and timed) the first time this process
        sees these argument shapes."""
        fn = self.norms_fn if name == "norms" else self.fn
        key = (id(fn), name, _signature(args))
        compiled = _COMPILED.get(key)
        if compiled is None:
            begin = time.perf_counter()
            compiled = getattr(fn, name).lower(*args).compile()
            self._compile_seconds += time.perf_counter() - begin
            self.compiled_count += 1
            _COMPILED[key] = compiled
        return compiled(*args)

    def _window(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        x = np.asarray(x)
        x = x.astype(np.int32) if self.spec.input_kind == "tokens" else x.astype(self.np_dtype)
        y = np.asarray(y).astype(self.np_dtype if self.spec.head == "regress" else np.int32)
        if self.spec.head == "regress":
            y = y.reshape(y.shape[0], y.shape[1], self.spec.n_classes)
        return jax.device_put(x, self.device), jax.device_put(y, self.device)

    # -- the Model interface ---------------------------------------------------------------

    def zero_state(self, batch_size: int) -> State:
        return [tuple(jax.device_put(np.zeros((batch_size, self.spec.hidden_size), self.np_dtype), self.device)
                      for _ in self.spec.cell.state_names) for _ in range(self.spec.num_layers)]

    def train_step(self, x: np.ndarray, y: np.ndarray, state: State, lr: float) -> tuple[StepStats, State]:
        batch, steps = x.shape[:2]
        xs, ys = self._window(x, y)
        counter = np.uint32(self._counter % 2**32)
        self._counter += 1
        self.params, self.slots, stats, final = self._run(
            "train", self.params, self.slots, list(state), xs, ys, np.asarray(lr, self.np_dtype), self._key, counter)
        loss_sum, correct, norm = np.asarray(stats).tolist()  # the one host-device sync of the step
        return StepStats(loss_sum, int(correct), batch * self.spec.n_scored(steps), norm), final

    def eval_step(self, x: np.ndarray, y: np.ndarray, state: State, predictions: bool = False) -> tuple[StepStats, State]:
        batch, steps = x.shape[:2]
        xs, ys = self._window(x, y)
        stats, final, predicted = self._run("eval_predictions" if predictions else "eval", self.params, list(state), xs, ys)
        loss_sum, correct = np.asarray(stats).tolist()
        out = StepStats(loss_sum, int(correct), batch * self.spec.n_scored(steps))
        if predictions:
            values = np.asarray(predicted)
            out.predictions = values.astype(self.np_dtype) if self.spec.head == "regress" else values.astype(np.int64)
        return out, final

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: State) -> tuple[float, dict[str, np.ndarray], State]:
        xs, ys = self._window(x, y)
        loss, grads, final = self._run("grads", self.params, list(state), xs, ys)
        return float(loss), {name: np.array(g) for name, g in grads.items()}, final

    def gradient_norms_over_time(self, x: np.ndarray, y: np.ndarray, state: State) -> dict[str, np.ndarray]:
        xs, ys = self._window(x, y)
        return {key: np.array(value) for key, value in self._run("norms", self.params, list(state), xs, ys).items()}

    def state_to_numpy(self, state: State) -> list[tuple[np.ndarray, ...]]:
        return [tuple(np.array(a) for a in layer) for layer in state]

    def get_params(self) -> dict[str, np.ndarray]:
        return {name: np.array(value) for name, value in self.params.items()}

    def optimizer_slots(self) -> dict[str, dict[str, np.ndarray]]:
        return {kind: {name: np.array(value) for name, value in values.items()} for kind, values in self.slots.items()}

    def load(self, params: dict[str, np.ndarray], slots: dict[str, dict[str, np.ndarray]]) -> None:
        self.params.update({name: self._put(value) for name, value in params.items()})
        for kind, values in slots.items():
            self.slots[kind].update({name: self._put(value) for name, value in values.items()})

    def set_dropout_seed(self, seed: int) -> None:
        self._key = jax.random.PRNGKey(seed % 2**63)
        self._counter = 0

    def compile_seconds(self) -> float | None:
        return self._compile_seconds

    def describe(self) -> dict[str, Any]:
        if self.settings.impl == "fused":
            entry = FUSED_LAYERS[type(self.spec.cell)]
            kernel = entry.kernel(self.spec.cell)
        elif self.settings.impl == "scan":
            kernel = "linear recurrence by lax.associative_scan, jax.grad, one jit train step (XLA)"
        else:
            kernel = "cell equations under lax.scan, jax.grad, one jit train step (XLA)"
        info: dict[str, Any] = {
            "device": self.device.device_kind if self.device.platform != "cpu" else "cpu",
            "kernel": kernel,
            "dtype": self.settings.dtype,
            **thread_setting(),
        }
        if self.device.platform != "cpu":
            jax = import_jax()
            info["matmul_precision"] = jax.config.jax_default_matmul_precision
        return info

"""A linear recurrence ``h_t = a_t * h_{t-1} + b_t`` over a whole window at once, on
TensorFlow tensors: the ``scan`` impl's layer, for any cell that declares
``linear_recurrence``. The same algorithm as torch's (``backends.torch.scan``, whose
docstring has the derivation): TensorFlow has no associative scan either, so the
recurrence is Heinsen's (2023) log-space form, ``A_t = sum_{s<=t} log a_s``
(``tf.math.cumsum``) and

    h_t = exp(A_t) h_0 + exp(A_t + cumulative_logsumexp_s(log b_s - A_s))

(``tf.math.cumulative_logsumexp``), ``b`` split into its positive and negative parts (a
candidate of either sign), ``h_0`` through ``exp(A_t)``. The gradient is declared with
``tf.custom_gradient``: the same scan backwards in time, ``g_t = dh_t + a_{t+1} g_{t+1}``,
``da_t = g_t h_{t-1}``, ``db_t = g_t``, ``dh_0 = a_1 g_1`` (autodiff through the logs would
be ``0 / 0`` at ``b = 0``).

An ``a`` that rounds to 0 stands at the dtype's smallest normal number in the logs (a change
of ``1e-38 h_{t-1}`` in float32). A negative ``a``, where the log-space form does not apply,
cannot be refused with a message inside a traced ``tf.function`` (a value is not known
while tracing): its logarithm is NaN, which reaches the loss, and the run stops as
diverged instead of computing another function. minGRU's and minLSTM's ``a`` are gates in
[0, 1].
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from backends.tf.runtime import import_tf
from cells.base import CellSpec, Ops

tf = import_tf()


def _scan(a: Any, b: Any, h0: Any) -> Any:
    """The log-space scan itself: every ``h_t``, time on axis 0."""
    tiny = tf.constant(np.finfo(a.dtype.as_numpy_dtype).tiny, a.dtype)
    # a < 0 -> log of a negative -> NaN on purpose (module docstring); a in [0, tiny) -> tiny
    A = tf.math.cumsum(tf.math.log(tf.where(a >= 0, tf.maximum(a, tiny), a)), axis=0)
    h = h0 * tf.math.exp(A)
    nothing = tf.fill(tf.shape(b), tf.constant(-np.inf, b.dtype))
    for sign in (1.0, -1.0):
        held = sign * b > 0
        # log of the part a sign holds (the other branch's argument kept positive: no NaN anywhere)
        part = tf.where(held, tf.math.log(tf.where(held, sign * b, tf.ones_like(b))), nothing)
        h += sign * tf.math.exp(A + tf.math.cumulative_logsumexp(part - A, axis=0))
    return h


@tf.custom_gradient
def _linear_scan(a: Any, b: Any, h0: Any) -> tuple[Any, Any]:
    h = _scan(a, b, h0)

    def grad(dh: Any) -> tuple[Any, Any, Any]:
        # g_t = dh_t + a_{t+1} g_{t+1}: the scan on reversed time; a_{T+1} multiplies g_{T+1} = 0
        a_next = tf.concat([a[1:], tf.ones_like(a[:1])], axis=0)
        g = tf.reverse(_scan(tf.reverse(a_next, [0]), tf.reverse(dh, [0]), tf.zeros_like(h0)), [0])
        h_prev = tf.concat([h0[None], h[:-1]], axis=0)
        return g * h_prev, g, a[0] * g[0]

    return h, grad


def linear_scan(a: Any, b: Any, h0: Any) -> Any:
    """Every ``h_t`` ``(steps, batch, hidden)`` of ``h_t = a_t * h_{t-1} + b_t`` from ``h0``
    ``(batch, hidden)``, time on axis 0, differentiable in ``a``, ``b`` and ``h0`` (an ``a``
    that broadcasts, a parameter shared by every step, is expanded first)."""
    return _linear_scan(tf.broadcast_to(a, tf.shape(b)), b, h0)


def scan_layer(cell: CellSpec, ops: Ops, params: dict[str, Any], inputs: Any,
               state: Sequence[Any]) -> tuple[Any, tuple[Any]]:
    """One layer of a linear cell over a time-major window ``(steps, batch, in)``: the
    window's input projection in one GEMM, its ``a`` and ``b`` in one call of the cell's
    ``linear_recurrence``, the recurrence in one scan. Returns the outputs and the final state."""
    steps = inputs.shape[0]
    in_size, width = params["U"].shape
    P = tf.reshape(tf.matmul(tf.reshape(inputs, [-1, in_size]), params["U"]) + params["b"], [steps, -1, width])
    a, b = cell.linear_recurrence(ops, cell.recurrent_params(params), P)
    (h0,) = state
    hs = linear_scan(a, b, h0)
    return hs, (hs[-1],)

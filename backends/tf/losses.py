"""The softmax layer and its cross-entropy as one function, gradient by hand.

``tf.nn.sparse_softmax_cross_entropy_with_logits`` computes its gradient in every forward,
evaluation included, and the passes around the layer's products over the rows x classes
logits are a large share of a CPU training step. Here:

- ``top_k(logits, 1)`` gives the row maximum and the predicted id (the first maximum on
  ties, as ``argmax``) in one pass;
- ``tf.nn.softmax`` (oneDNN's kernel on x86) gives the probabilities, and the
  log-normaliser comes from the probability at the maximum, ``p_max = 1 / sum exp(l - max)``
  (at least 1 / classes, so its logarithm never underflows): ``ce = max - l_target -
  log p_max``;
- the backward folds the per-row upstream gradient into the small operands:
  ``d hidden = u * (G W^T)``, ``dW = (u * hidden)^T G``, ``db = G^T u`` with ``G`` the
  softmax minus one-hot.

``docs/performance.md`` has the profiles and the before and after.
"""
from __future__ import annotations

from typing import Any

from backends.tf.runtime import import_tf

tf = import_tf()


def linear_softmax_cross_entropy(hidden: Any, weight: Any, bias: Any, labels: Any) -> tuple[Any, Any]:
    """``(ce, predicted)`` for ``(rows, hidden)`` states, a ``(hidden, classes)`` weight, a
    ``(classes,)`` bias and ``(rows,)`` int labels: per-row ``-log softmax(hidden W + b)
    [label]`` (differentiable in the first three) and the row argmax (first maximum on ties).
    """
    ce, predicted = _linear_softmax_cross_entropy(hidden, weight, bias, labels)
    return ce, tf.stop_gradient(predicted)


@tf.custom_gradient
def _linear_softmax_cross_entropy(hidden: Any, weight: Any, bias: Any, labels: Any) -> tuple[Any, Any]:
    logits = tf.nn.bias_add(tf.matmul(hidden, weight), bias)
    top, predicted = tf.math.top_k(logits, k=1)
    probs = tf.nn.softmax(logits)
    p_max = tf.gather(probs, predicted, batch_dims=1)[:, 0]
    picked = tf.gather(logits, labels[:, None], batch_dims=1)[:, 0]
    ce = top[:, 0] - picked - tf.math.log(p_max)

    def grad(upstream: Any, _: Any = None) -> tuple[Any, Any, Any, None]:
        rows = tf.range(tf.shape(labels, out_type=labels.dtype)[0])
        where = tf.stack([rows, labels], axis=1)
        softmax_minus_one_hot = tf.tensor_scatter_nd_sub(probs, where, tf.ones_like(upstream))
        per_row = upstream[:, None]
        d_hidden = tf.matmul(softmax_minus_one_hot, weight, transpose_b=True) * per_row
        d_weight = tf.matmul(hidden * per_row, softmax_minus_one_hot, transpose_a=True)
        d_bias = tf.linalg.matvec(softmax_minus_one_hot, upstream, transpose_a=True)
        return d_hidden, d_weight, d_bias, None

    return (ce, predicted[:, 0]), grad

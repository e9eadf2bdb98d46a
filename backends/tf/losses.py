"""Softmax cross-entropy for the hot path, with its gradient written by hand.

``tf.nn.sparse_softmax_cross_entropy_with_logits`` computes the gradient (softmax minus
one-hot) in its forward pass, whether or not anyone asks for it, and on the CPU its Eigen
kernel runs the exponentials slowly: for ptb-small's 400 x 10,000 logits on one thread it
took 21-24 ms forward and 25-27 ms forward + backward, against 7 ms and 12.6 ms for the
function below (``docs/performance.md``). Evaluation needs the forward alone, so it gains
the most.
"""
from __future__ import annotations

from typing import Any

from backends.tf import runtime

tf = runtime.import_tf()


@tf.custom_gradient
def softmax_cross_entropy(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per-row ``-log softmax(logits)[label]`` for ``(rows, classes)`` logits and int labels.

    The forward keeps ``exp(logits - max)`` and its row sums, so the backward is one
    multiply and a scatter of the one-hot: the exponentials are computed once.
    """
    top = tf.reduce_max(logits, axis=-1, keepdims=True)
    exps = tf.exp(logits - top)
    sums = tf.reduce_sum(exps, axis=-1, keepdims=True)
    picked = tf.gather(logits, labels[:, None], batch_dims=1)[:, 0]
    ce = (tf.math.log(sums) + top)[:, 0] - picked

    def grad(upstream: Any) -> tuple[Any, None]:
        rows = tf.range(tf.shape(labels, out_type=labels.dtype)[0])
        where = tf.stack([rows, labels], axis=1)
        return tf.tensor_scatter_nd_sub(exps * (upstream[:, None] / sums), where, upstream), None

    return ce, grad

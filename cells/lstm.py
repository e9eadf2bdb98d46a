"""The LSTM cell of the seed tutorial (and of TensorFlow's BasicLSTMCell)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cells.base import CellSpec, Ops
from cells.options import IN_DTYPE, LARGEST, Bound, DtypeLimit, Option


class LSTMCell(CellSpec):
    """Long short-term memory: cell state s, output h, gates g, i, f, o.

    ``∘`` is the element-wise product::

        g   = tanh(b^g + x_t U^g + h_{t-1} V^g)      squashed input
        i   = σ(b^i + x_t U^i + h_{t-1} V^i)          input gate
        f   = σ(b^f + x_t U^f + h_{t-1} V^f)          forget gate
        o   = σ(b^o + x_t U^o + h_{t-1} V^o)          output gate
        s_t = s_{t-1} ∘ f + g ∘ i                     cell state
        h_t = tanh(s_t) ∘ o                           output

    The gate blocks of ``U``, ``V`` and ``b`` are stacked in the order g, i, f, o, as the
    equations are written. The forget bias enters as the initial value of ``b^f``: adding
    a constant inside σ (TensorFlow 1's ``forget_bias``) and starting a trainable bias at
    that constant give identical gradients, so identical training, and the second form is
    the only one every framework's fused layer can express.
    """

    name = "lstm"
    gates = ("g", "i", "f", "o")
    state_names = ("s", "h")
    options = (Option("forget_bias", 1.0, "LSTM forget-gate bias at initialisation (0.0 in the published PTB runs)",
                      float, bound=Bound(DtypeLimit("max", sign=-1), LARGEST, IN_DTYPE)),)

    def __init__(self, forget_bias: float = 1.0) -> None:
        self.options[0].check(forget_bias, "float64")
        self.forget_bias = float(forget_bias)

    def adjust_biases(self, params: dict[str, np.ndarray], hidden_size: int) -> None:
        params["b"][self.gate_slice("f", hidden_size)] += self.forget_bias

    def recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any, state: Sequence[Any]) -> tuple[Any, Any]:
        s_prev, h_prev = state
        z = z_in + h_prev @ params["V"]  # z_in = x_t U + b
        n = z.shape[-1] // 4
        g = ops.tanh(z[:, 0 * n : 1 * n])
        i = ops.sigmoid(z[:, 1 * n : 2 * n])
        f = ops.sigmoid(z[:, 2 * n : 3 * n])
        o = ops.sigmoid(z[:, 3 * n : 4 * n])
        s = s_prev * f + g * i
        h = ops.tanh(s) * o
        return s, h

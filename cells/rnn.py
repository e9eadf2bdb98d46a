"""The vanilla (Elman) recurrent cell of the seed tutorial."""
from __future__ import annotations

from typing import Any, Sequence

from cells.base import CellSpec, Ops
from cells.options import Option

ACTIVATIONS = ("tanh", "sigmoid")


class RNNCell(CellSpec):
    """Vanilla (Elman) RNN: one state h, activation tanh or σ::

        h_t = φ(b + x_t U + h_{t-1} V)

    with φ = tanh by default (what every framework's RNN layer uses) or σ, the seed's form.
    Backpropagation multiplies one factor φ'·V per step, at most 1 (tanh) or 0.25 (σ) times
    ``V``: the vanishing gradient this benchmark measures.
    """

    name = "rnn"
    gates = ("h",)
    state_names = ("h",)
    options = (Option("activation", "tanh", "vanilla RNN activation (tanh, or the seed tutorial's sigmoid)", str,
                      choices=ACTIVATIONS),)

    def __init__(self, activation: str = "tanh") -> None:
        self.options[0].check(activation)
        self.activation = activation

    def recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any, state: Sequence[Any]) -> tuple[Any]:
        (h_prev,) = state
        phi = ops.tanh if self.activation == "tanh" else ops.sigmoid
        h = phi(z_in + h_prev @ params["V"])  # z_in = x_t U + b
        return (h,)

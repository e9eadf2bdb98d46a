"""The gated recurrent unit (Cho et al. 2014), in its two forms."""
from __future__ import annotations

from typing import Any, Sequence

from cells.base import CellSpec, Ops
from cells.options import Option

RESET_GATES = ("after", "before")


class GRUCell(CellSpec):
    """Gated recurrent unit: reset gate r, update gate z, candidate n, one state h::

        r  = σ(x_t U^r + b^r + h_{t-1} V^r + b_h^r)          reset gate
        z  = σ(x_t U^z + b^z + h_{t-1} V^z + b_h^z)          update gate
        n  = tanh(x_t U^n + b^n + r ∘ (h_{t-1} V^n + b_h^n))  candidate, reset after (default)
        n  = tanh(x_t U^n + b^n + (r ∘ h_{t-1}) V^n)          candidate, reset before
        h_t = (1 - z) ∘ n + z ∘ h_{t-1}

    The gate blocks of ``U``, ``V`` and the biases are stacked in the order r, z, n.

    - ``reset_gate="after"``: the reset gate scales the recurrent product after it, which is
      what cuDNN, ``torch.nn.GRU`` and Keras's ``GRU(reset_after=True)`` compute, with their
      second, recurrent bias ``b_h`` (in r and z it only adds to ``b``; in n it is inside
      the reset).
    - ``reset_gate="before"``: the reset gate scales the state before the product, as in
      Cho et al. (2014) and TensorFlow 1's ``GRUCell``; one bias per gate, no ``b_h``. No
      framework's fused layer computes this form.

    ``z`` weights the old state: ``z = 1`` keeps h, as in every framework named above.
    """

    name = "gru"
    gates = ("r", "z", "n")
    state_names = ("h",)
    param_names = ("U", "V", "b", "b_h")
    biases = ("b", "b_h")
    options = (Option("reset_gate", "after", "GRU: where the reset gate acts, after the recurrent product (cuDNN's "
                      "and the frameworks' GRU) or before it (Cho et al. 2014, TensorFlow 1's GRUCell)", str,
                      choices=RESET_GATES),)

    def __init__(self, reset_gate: str = "after") -> None:
        self.options[0].check(reset_gate)
        self.reset_gate = reset_gate
        if reset_gate == "before":
            self.param_names, self.biases = ("U", "V", "b"), ("b",)

    def recurrence(self, ops: Ops, params: dict[str, Any], z_in: Any, state: Sequence[Any]) -> tuple[Any]:
        (h_prev,) = state
        n_ = z_in.shape[-1] // 3
        V = params["V"]
        if self.reset_gate == "after":
            hv = h_prev @ V + params["b_h"]  # z_in = x_t U + b
            r = ops.sigmoid(z_in[:, :n_] + hv[:, :n_])
            z = ops.sigmoid(z_in[:, n_ : 2 * n_] + hv[:, n_ : 2 * n_])
            n = ops.tanh(z_in[:, 2 * n_ :] + r * hv[:, 2 * n_ :])
        else:
            rz = ops.sigmoid(z_in[:, : 2 * n_] + h_prev @ V[:, : 2 * n_])
            r, z = rz[:, :n_], rz[:, n_:]
            n = ops.tanh(z_in[:, 2 * n_ :] + (r * h_prev) @ V[:, 2 * n_ :])
        h = (1.0 - z) * n + z * h_prev
        return (h,)

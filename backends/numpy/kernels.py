"""Hand-written forward and backpropagation through time, one kernel per cell.

A kernel runs one layer over a window, time-major, through two methods:

- ``forward(P, params, state) -> (hs, final_state, cache)``: ``P = x U + b``, the input
  projection of the whole window ``(steps, batch, blocks*hidden)`` the caller computed in one
  GEMM; ``params`` the recurrence's parameters by name (``V``, ...; the cell's
  ``recurrent_params``); ``state`` the initial state tuple. Returns every step's output
  ``(steps, batch, hidden)``, the final state tuple, and what the backward pass needs.
- ``backward(dhs, params, cache, trace) -> (dZ, grads, norms)``: ``dhs`` the gradient of the
  loss with respect to every step's output; returns ``dZ``, the gradient with respect to
  ``P`` (from which the caller gets dU, db and the layer input's gradient in one GEMM each),
  the gradient of each parameter in ``params`` by name, and with ``trace`` the per-example
  norms of the gradient with respect to each state at every step (``{"h": (steps, batch)}``,
  and ``"s"`` for a cell with a cell state).

The backward pass is the forward read backwards, with the same names prefixed by ``d``
(min-char-rnn style).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cells import CellSpec, GRUCell, LSTMCell, RNNCell


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(x) = (tanh(x/2) + 1) / 2: one transcendental, no overflow, writes into ``out``."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def per_example_norm(a: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis: (..., batch, hidden) -> (..., batch)."""
    return np.sqrt(np.einsum("...i,...i->...", a, a, dtype=np.float64))


class LSTMKernel:
    """Forward and BPTT of :class:`cells.LSTMCell` (gate blocks g, i, f, o)."""

    def forward(self, P: np.ndarray, params: dict[str, np.ndarray], state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
        V = params["V"]
        steps, batch, width = P.shape
        n = width // 4
        s_prev, h_prev = state
        gates = P  # overwritten in place by the gate activations
        ss = np.empty((steps, batch, n), P.dtype)
        tanh_ss = np.empty_like(ss)
        hs = np.empty_like(ss)
        for t in range(steps):
            z = gates[t]
            z += h_prev @ V
            np.tanh(z[:, :n], out=z[:, :n])  # g
            sigmoid(z[:, n:], out=z[:, n:])  # i, f, o are contiguous
            g, i, f, o = z[:, :n], z[:, n : 2 * n], z[:, 2 * n : 3 * n], z[:, 3 * n :]
            s = ss[t]
            np.multiply(s_prev, f, out=s)
            s += g * i
            np.tanh(s, out=tanh_ss[t])
            h = np.multiply(tanh_ss[t], o, out=hs[t])
            s_prev, h_prev = s, h
        cache = (gates, ss, tanh_ss, hs, state)
        return hs, (ss[-1].copy(), hs[-1].copy()), cache

    def backward(
        self, dhs: np.ndarray, params: dict[str, np.ndarray], cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        V = params["V"]
        gates, ss, tanh_ss, hs, (s0, h0) = cache
        steps, batch, n = ss.shape
        dZ = np.empty_like(gates)
        dh_next = np.zeros((batch, n), dhs.dtype)
        ds_next = np.zeros((batch, n), dhs.dtype)
        norms = {"h": np.empty((steps, batch)), "s": np.empty((steps, batch))} if trace else {}
        VT = V.T
        for t in reversed(range(steps)):
            z = gates[t]
            g, i, f, o = z[:, :n], z[:, n : 2 * n], z[:, 2 * n : 3 * n], z[:, 3 * n :]
            s_prev = ss[t - 1] if t > 0 else s0
            dh = dhs[t] + dh_next
            ds = dh * o * (1.0 - tanh_ss[t] ** 2)
            ds += ds_next
            dz = dZ[t]
            np.multiply(ds * i, 1.0 - g * g, out=dz[:, :n])  # dg
            np.multiply(ds * g, i * (1.0 - i), out=dz[:, n : 2 * n])  # di
            np.multiply(ds * s_prev, f * (1.0 - f), out=dz[:, 2 * n : 3 * n])  # df
            np.multiply(dh * tanh_ss[t], o * (1.0 - o), out=dz[:, 3 * n :])  # do
            ds_next = ds * f
            dh_next = dz @ VT
            if trace:
                norms["h"][t] = per_example_norm(dh)
                norms["s"][t] = per_example_norm(ds)
        h_prev = np.concatenate([h0[None], hs[:-1]]).reshape(steps * batch, n)
        dV = h_prev.T @ dZ.reshape(steps * batch, 4 * n)
        return dZ, {"V": dV}, norms


class RNNKernel:
    """Forward and BPTT of :class:`cells.RNNCell` (tanh or σ)."""

    def __init__(self, activation: str) -> None:
        self.activation = activation

    def forward(self, P: np.ndarray, params: dict[str, np.ndarray], state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
        V = params["V"]
        (h_prev,) = state
        hs = P  # overwritten in place: h_t = φ(P_t + h_{t-1} V)
        for t in range(P.shape[0]):
            a = hs[t]
            a += h_prev @ V
            if self.activation == "tanh":
                np.tanh(a, out=a)
            else:
                sigmoid(a, out=a)
            h_prev = a
        return hs, (hs[-1].copy(),), (hs, state)

    def backward(
        self, dhs: np.ndarray, params: dict[str, np.ndarray], cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        V = params["V"]
        hs, (h0,) = cache
        steps, batch, n = hs.shape
        dZ = np.empty_like(hs)
        dh_next = np.zeros((batch, n), dhs.dtype)
        norms = {"h": np.empty((steps, batch))} if trace else {}
        VT = V.T
        for t in reversed(range(steps)):
            h = hs[t]
            dh = dhs[t] + dh_next
            dphi = 1.0 - h * h if self.activation == "tanh" else h * (1.0 - h)
            np.multiply(dh, dphi, out=dZ[t])
            dh_next = dZ[t] @ VT
            if trace:
                norms["h"][t] = per_example_norm(dh)
        h_prev = np.concatenate([h0[None], hs[:-1]]).reshape(steps * batch, n)
        dV = h_prev.T @ dZ.reshape(steps * batch, n)
        return dZ, {"V": dV}, norms


class GRUKernel:
    """Forward and BPTT of :class:`cells.GRUCell` (gate blocks r, z, n), both forms.

    With ``a`` a gate's pre-activation and ``dh`` the total gradient at ``h_t``::

        dn = dh (1 - z),  dz = dh (h_{t-1} - n),  da_n = dn (1 - n^2)
        after:   da_r = da_n hv_n r (1 - r),   d(h V + b_h) = [da_r, da_z, da_n r]
        before:  dq = da_n V_n^T (q = r h_{t-1}),   da_r = dq h_{t-1} r (1 - r)
        da_z = dz z (1 - z),   dh_{t-1} = dh z + (the recurrent products' input gradients)
    """

    def __init__(self, reset_gate: str) -> None:
        self.after = reset_gate == "after"

    def forward(self, P: np.ndarray, params: dict[str, np.ndarray], state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
        V = params["V"]
        steps, batch, width = P.shape
        n_ = width // 3
        (h_prev,) = state
        gates = P  # overwritten in place by r, z, n
        hs = np.empty((steps, batch, n_), P.dtype)
        kept = np.empty((steps, batch, n_), P.dtype)  # after: hv_n = h V_n + b_h^n; before: q = r h_{t-1}
        for t in range(steps):
            a = gates[t]
            if self.after:
                hv = h_prev @ V
                hv += params["b_h"]
                a[:, : 2 * n_] += hv[:, : 2 * n_]
                sigmoid(a[:, : 2 * n_], out=a[:, : 2 * n_])
                kept[t] = hv[:, 2 * n_ :]
                a[:, 2 * n_ :] += a[:, :n_] * kept[t]
            else:
                a[:, : 2 * n_] += h_prev @ V[:, : 2 * n_]
                sigmoid(a[:, : 2 * n_], out=a[:, : 2 * n_])
                np.multiply(a[:, :n_], h_prev, out=kept[t])
                a[:, 2 * n_ :] += kept[t] @ V[:, 2 * n_ :]
            np.tanh(a[:, 2 * n_ :], out=a[:, 2 * n_ :])
            z, n = a[:, n_ : 2 * n_], a[:, 2 * n_ :]
            h = hs[t]
            np.subtract(h_prev, n, out=h)
            h *= z
            h += n  # (1 - z) n + z h_{t-1} = n + z (h_{t-1} - n)
            h_prev = h
        return hs, (hs[-1].copy(),), (gates, kept, hs, state)

    def backward(
        self, dhs: np.ndarray, params: dict[str, np.ndarray], cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        V = params["V"]
        gates, kept, hs, (h0,) = cache
        steps, batch, n_ = hs.shape
        dZ = np.empty_like(gates)
        dHV = np.empty_like(gates) if self.after else None  # gradient of h V + b_h
        dh_next = np.zeros((batch, n_), dhs.dtype)
        norms = {"h": np.empty((steps, batch))} if trace else {}
        VT = V.T
        for t in reversed(range(steps)):
            a = gates[t]
            r, z, n = a[:, :n_], a[:, n_ : 2 * n_], a[:, 2 * n_ :]
            h_prev = hs[t - 1] if t > 0 else h0
            dh = dhs[t] + dh_next
            dz = dZ[t]
            da_n = dz[:, 2 * n_ :]
            np.multiply(dh * (1.0 - z), 1.0 - n * n, out=da_n)
            np.multiply(dh * (h_prev - n), z * (1.0 - z), out=dz[:, n_ : 2 * n_])
            if self.after:
                np.multiply(da_n * kept[t], r * (1.0 - r), out=dz[:, :n_])
                dhv = dHV[t]
                dhv[:, : 2 * n_] = dz[:, : 2 * n_]
                np.multiply(da_n, r, out=dhv[:, 2 * n_ :])
                dh_next = dh * z + dhv @ VT
            else:
                dq = da_n @ VT[2 * n_ :]
                np.multiply(dq * h_prev, r * (1.0 - r), out=dz[:, :n_])
                dh_next = dh * z + dq * r + dz[:, : 2 * n_] @ VT[: 2 * n_]
            if trace:
                norms["h"][t] = per_example_norm(dh)
        h_prevs = np.concatenate([h0[None], hs[:-1]]).reshape(steps * batch, n_)
        if self.after:
            dHV = dHV.reshape(steps * batch, 3 * n_)
            return dZ, {"V": h_prevs.T @ dHV, "b_h": dHV.sum(axis=0)}, norms
        flat = dZ.reshape(steps * batch, 3 * n_)
        dV = np.concatenate([h_prevs.T @ flat[:, : 2 * n_], kept.reshape(steps * batch, n_).T @ flat[:, 2 * n_ :]], axis=1)
        return dZ, {"V": dV}, norms


# The built-in cells' kernels, cell type -> factory (as the fused tables are keyed). Exact
# types only: a subclass may change the equations (as a plugin that subclasses the RNN
# does), and running the parent's BPTT for it would be silently wrong.
KERNELS: dict[type[CellSpec], Callable[[Any], Any]] = {
    LSTMCell: lambda cell: LSTMKernel(),
    RNNCell: lambda cell: RNNKernel(cell.activation),
    GRUCell: lambda cell: GRUKernel(cell.reset_gate),
}


def find_kernel(cell: CellSpec) -> Any | None:
    """The kernel for ``cell``: its own :meth:`~cells.base.CellSpec.numpy_kernel` if it
    brings one, else the built-in one for its exact type, else None."""
    own = cell.numpy_kernel()
    if own is not None:
        return own
    factory = KERNELS.get(type(cell))
    return factory(cell) if factory is not None else None


def why_no_kernel(cell: CellSpec) -> str | None:
    """Why the numpy backend cannot run ``cell`` (None when it can)."""
    if find_kernel(cell) is not None:
        return None
    return (f"the numpy backend has no hand-written BPTT for cell {cell.name!r}; the cell must define "
            "numpy_kernel() (see README, 'Adding a cell')")


def make_kernel(cell: CellSpec) -> Any:
    """The hand-written kernel for ``cell`` (an object with the two methods above); a
    BenchError for a cell that has none."""
    kernel = find_kernel(cell)
    if kernel is None:
        from cells.errors import BenchError

        raise BenchError(why_no_kernel(cell))
    return kernel

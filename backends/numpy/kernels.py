"""Hand-written forward and backpropagation through time, one kernel per cell.

A kernel runs one layer over a window, time-major. The caller has already computed the
input projection of the whole window in one GEMM, ``P = x U + b`` of shape
``(steps, batch, blocks*hidden)``; the kernel adds ``h_{t-1} V`` step by step. The backward
pass is the forward read backwards, with the same names prefixed by ``d`` (min-char-rnn
style), and returns ``dZ`` (the gradient of the pre-activations, from which the caller gets
dU, db and the gradient of the layer's input in one GEMM each) and ``dV``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cells import CellSpec, LSTMCell, RNNCell


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

    def forward(self, P: np.ndarray, V: np.ndarray, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
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
        self, dhs: np.ndarray, V: np.ndarray, cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
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
        return dZ, dV, norms


class RNNKernel:
    """Forward and BPTT of :class:`cells.RNNCell` (tanh or σ)."""

    def __init__(self, activation: str) -> None:
        self.activation = activation

    def forward(self, P: np.ndarray, V: np.ndarray, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
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
        self, dhs: np.ndarray, V: np.ndarray, cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
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
        return dZ, dV, norms


def why_no_kernel(cell: CellSpec) -> str | None:
    """Why the numpy backend cannot run ``cell`` (None when it can). A built-in kernel serves
    its own cell's exact type only: a subclass may change the equations (as a plugin that
    subclasses the RNN does), and running the parent's BPTT for it would be silently wrong."""
    if hasattr(cell, "numpy_kernel") or type(cell) in (LSTMCell, RNNCell):
        return None
    return (f"the numpy backend has no hand-written BPTT for cell {cell.name!r}; the cell must define "
            "numpy_kernel() (see README, 'Adding a cell')")


def make_kernel(cell: CellSpec) -> Any:
    """The hand-written kernel for ``cell``; a plugin cell may bring its own as
    ``cell.numpy_kernel()`` (an object with the two methods above)."""
    if why := why_no_kernel(cell):
        from cells.errors import BenchError

        raise BenchError(why)
    if hasattr(cell, "numpy_kernel"):
        return cell.numpy_kernel()
    return LSTMKernel() if type(cell) is LSTMCell else RNNKernel(cell.activation)

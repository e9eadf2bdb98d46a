"""minLSTM's forward and backpropagation through time in NumPy (cellbench's kernel interface:
``forward(P, params, state)`` and ``backward(dhs, params, cache, trace)``, README "Adding a cell")."""
from __future__ import annotations

from typing import Any

import numpy as np

from backends.numpy.kernels import per_example_norm, sigmoid


class MinLSTMKernel:
    """``P = x U + b`` holds every step's gates and candidate already: the gates of the whole
    window are vectorised, and only the recurrence runs step by step, forward and backward.

    With ``s = f + i``, ``f' = f/s`` and ``i' = i/s = 1 - f'``, the step is
    ``h_t = h~_t + f'_t (h_{t-1} - h~_t)``. With ``dh`` the total gradient at ``h_t``::

        dh_{t-1} += dh f'
        dh~      = dh i'
        df'      = dh (h_{t-1} - h~_t)
        df~      = df' f' i' (1 - f)      (f's pre-activation: ∂f'/∂f = i/s², σ' = f(1 - f))
        di~      = -df' f' i' (1 - i)     (∂f'/∂i = -f/s²)

    The loop backward only carries ``dh``; every other term is one vectorised pass over the
    window once all ``dh`` are known.
    """

    def forward(self, P: np.ndarray, params: dict[str, np.ndarray], state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
        steps, batch, width = P.shape
        n = width // 3
        (h0,) = state
        gates = sigmoid(P[:, :, :2 * n], out=P[:, :, :2 * n])  # in place: P's gate blocks become f, i
        f, i = gates[:, :, :n], gates[:, :, n:]
        candidates = P[:, :, 2 * n:]
        forget = f / (f + i)  # f'; i' = 1 - f' is not stored
        hs = np.empty((steps, batch, n), P.dtype)
        h_prev = h0
        for t in range(steps):
            h = hs[t]
            np.subtract(h_prev, candidates[t], out=h)
            h *= forget[t]
            h += candidates[t]  # f' h_{t-1} + i' h~ = h~ + f' (h_{t-1} - h~), as f' + i' = 1
            h_prev = h
        return hs, (hs[-1].copy(),), (P, forget, hs, h0)

    def backward(
        self, dhs: np.ndarray, params: dict[str, np.ndarray], cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        P, forget, hs, h0 = cache
        steps, batch, n = hs.shape
        dH = np.empty_like(hs)  # total gradient at every h_t
        dh_next = np.zeros((batch, n), dhs.dtype)
        for t in reversed(range(steps)):
            np.add(dhs[t], dh_next, out=dH[t])
            dh_next = dH[t] * forget[t]
        f, i, candidates = P[:, :, :n], P[:, :, n:2 * n], P[:, :, 2 * n:]
        h_prevs = np.concatenate([h0[None].astype(hs.dtype, copy=False), hs[:-1]])
        inject = 1.0 - forget  # i'
        dZ = np.empty_like(P)
        common = dH * (h_prevs - candidates) * forget * inject  # df' f' i'
        np.multiply(common, 1.0 - f, out=dZ[:, :, :n])
        np.multiply(common, i - 1.0, out=dZ[:, :, n:2 * n])
        np.multiply(dH, inject, out=dZ[:, :, 2 * n:])
        norms = {"h": per_example_norm(dH)} if trace else {}
        return dZ, {}, norms

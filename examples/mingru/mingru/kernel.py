"""minGRU's forward and backpropagation through time in NumPy (cellbench's kernel interface:
``forward(P, params, state)`` and ``backward(dhs, params, cache, trace)``, README "Adding a cell")."""
from __future__ import annotations

from typing import Any

import numpy as np

from backends.numpy.kernels import per_example_norm, sigmoid


class MinGRUKernel:
    """``P = x U + b`` holds every step's gate and candidate already: the gates of the whole
    window are one vectorised σ, and only the interpolation runs step by step.

    With ``dh`` the total gradient at ``h_t``::

        dz~ = dh (h~_t - h_{t-1}) z (1 - z)    (z's pre-activation)
        dh~ = dh z
        dh_{t-1} += dh (1 - z)
    """

    def forward(self, P: np.ndarray, params: dict[str, np.ndarray], state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple, Any]:
        steps, batch, width = P.shape
        n = width // 2
        (h_prev,) = state
        z = sigmoid(P[:, :, :n], out=P[:, :, :n])  # in place: P's gate half becomes z
        candidates = P[:, :, n:]
        hs = np.empty((steps, batch, n), P.dtype)
        for t in range(steps):
            h = hs[t]
            np.subtract(candidates[t], h_prev, out=h)
            h *= z[t]
            h += h_prev  # (1 - z) h_{t-1} + z h~ = h_{t-1} + z (h~ - h_{t-1})
            h_prev = h
        return hs, (hs[-1].copy(),), (P, hs, state)

    def backward(
        self, dhs: np.ndarray, params: dict[str, np.ndarray], cache: Any, trace: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        P, hs, (h0,) = cache
        steps, batch, n = hs.shape
        z, candidates = P[:, :, :n], P[:, :, n:]
        dZ = np.empty_like(P)
        dh_next = np.zeros((batch, n), dhs.dtype)
        norms = {"h": np.empty((steps, batch))} if trace else {}
        for t in reversed(range(steps)):
            h_prev = hs[t - 1] if t > 0 else h0
            dh = dhs[t] + dh_next
            np.multiply(dh * (candidates[t] - h_prev), z[t] * (1.0 - z[t]), out=dZ[t, :, :n])
            np.multiply(dh, z[t], out=dZ[t, :, n:])
            dh_next = dh * (1.0 - z[t])
            if trace:
                norms["h"][t] = per_example_norm(dh)
        return dZ, {}, norms

"""The float32 drift of every backend's ``scan`` against a float64 step-by-step loop as the
window grows: ``python tests/benchmarks/scan_drift.py [--lengths 64,256,1024,4096]
[--batch 16] [--hidden 256]`` prints a markdown table (docs/performance.md, "Scan: float32
drift against length").

The same ``a``, ``b`` and ``h0`` for every backend: minGRU's at its initialisation,
``a = 1 - σ(x)`` and ``b = σ(x) h~`` with ``x`` and ``h~`` standard normal (so ``a`` is in
(0, 1), mean 0.5, and ``b`` of both signs), rounded to float32 once; the float64 loop runs
on those float32 values, so what is measured is the scan's arithmetic alone. The error is
``max_t ||h32_t - h64_t|| / ||h64_t||`` (norms over batch x hidden), the largest relative
error of any step's state.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bench.registry import backend_names, get_backend  # noqa: E402


def window(steps: int, batch: int, hidden: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 ``a``, ``b``, ``h0`` as minGRU makes them at initialisation (module docstring)."""
    rng = np.random.default_rng(seed)
    z = 0.5 * (np.tanh(0.5 * rng.standard_normal((steps, batch, hidden))) + 1.0)
    a, b = 1.0 - z, z * rng.standard_normal((steps, batch, hidden))
    return a.astype(np.float32), b.astype(np.float32), rng.standard_normal((batch, hidden)).astype(np.float32)


def loop64(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """Every ``h_t`` by the float64 step-by-step loop."""
    hs, h = np.empty(b.shape), h0.astype(np.float64)
    for t in range(len(a)):
        h = a[t].astype(np.float64) * h + b[t]
        hs[t] = h
    return hs


def _numpy(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    from backends.numpy.scan import ScanKernel
    from cells.base import CellSpec

    class Given(CellSpec):  # a and b handed over as the two halves of z_in
        name, gates, state_names, param_names, biases = "given", ("a", "b"), ("h",), ("U", "b"), ("b",)

        def linear_recurrence(self, ops, params, z_in):  # type: ignore[no-untyped-def]
            n = z_in.shape[-1] // 2
            return z_in[..., :n], z_in[..., n:]

    hs, _, _ = ScanKernel(Given()).forward(np.concatenate([a, b], axis=-1), {}, (h0,))
    return hs


def _torch(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    import torch

    from backends.torch.scan import linear_scan

    torch.set_num_threads(1)
    with torch.no_grad():
        return linear_scan(*(torch.from_numpy(v) for v in (a, b, h0))).numpy()


def _jax(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    from backends.jax.runtime import import_jax

    import_jax(threads=1)
    import jax.numpy as jnp

    from backends.jax.model import linear_scan

    return np.asarray(linear_scan(*(jnp.asarray(v) for v in (a, b, h0))))


def _tf(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    from backends.tf.runtime import configure_threads, import_tf

    tf = import_tf()
    configure_threads(1)
    from backends.tf.scan import linear_scan

    return linear_scan(*(tf.constant(v) for v in (a, b, h0))).numpy()


SCANS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]]] = {
    "numpy": ("element-wise loop", _numpy),
    "torch": ("log-space (logcumsumexp)", _torch),
    "jax": ("lax.associative_scan", _jax),
    "tf": ("log-space (cumulative_logsumexp)", _tf),
}


def drift(backend: str, steps: int, batch: int, hidden: int, seed: int = 0) -> float:
    """The float32 scan's largest per-step relative error against the float64 loop."""
    a, b, h0 = window(steps, batch, hidden, seed)
    ours = SCANS[backend][1](a, b, h0)
    assert ours.dtype == np.float32, ours.dtype
    exact = loop64(a, b, h0)
    errors = np.linalg.norm((ours - exact).reshape(steps, -1), axis=1) / np.linalg.norm(exact.reshape(steps, -1), axis=1)
    return float(errors.max())


def scan_backends() -> list[str]:
    """The installed backends with a ``scan`` impl that can run here."""
    return [name for name in backend_names() if name in SCANS and "scan" in get_backend(name).impls
            and not get_backend(name).unavailable_reason()]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="64,256,1024,4096", help="window lengths T, comma-separated")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        lengths = [int(t) for t in args.lengths.split(",")]
    except ValueError:
        parser.error(f"--lengths: not comma-separated integers: {args.lengths!r}")
    if min(lengths) < 1 or args.batch < 1 or args.hidden < 1:
        parser.error("lengths, --batch and --hidden must be at least 1")
    backends = scan_backends()
    print(f"float32 scan against a float64 loop, max_t ||h32_t - h64_t|| / ||h64_t||; batch {args.batch}, "
          f"hidden {args.hidden}, minGRU's a and b at initialisation; CPU: {cpu_name()}, one thread\n")
    print("| backend | scan | " + " | ".join(f"T = {t:,}" for t in lengths) + " |")
    print("|---|---|" + "---:|" * len(lengths))
    for name in backends:
        cells = [f"{drift(name, t, args.batch, args.hidden):.1e}" for t in lengths]
        print(f"| {name} | {SCANS[name][0]} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""This machine's float32 GEMM peak: the yardstick for each run's achieved GFLOP/s."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.records import atomic_write_bytes, cpu_model, utc_now


def _best_gflops(matmul: Callable[[], Any], n: int, seconds: float) -> float:
    matmul()  # warm-up: threads, caches
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        matmul()
        best = max(best, 2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def measure_peak(threads: int | None = None, n: int = 2048, seconds: float = 3.0) -> dict[str, Any]:
    """Best observed float32 GFLOP/s of an n x n x n product, per library available."""
    from threadpoolctl import threadpool_limits

    threads = threads or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    out = np.empty_like(a)
    gflops = {}
    with threadpool_limits(limits=threads):
        gflops["numpy"] = _best_gflops(lambda: np.matmul(a, b, out=out), n, seconds)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tout = torch.empty_like(ta)
        gflops["torch"] = _best_gflops(lambda: torch.matmul(ta, tb, out=tout), n, seconds)
    return {"cpu": cpu_model(), "threads": threads, "n": n, "measured_at": utc_now(), "gflops": gflops}


def record_peak(results_dir: str | Path, measurement: dict[str, Any]) -> Path:
    """Append to ``<results_dir>/roofline.json`` (reports match runs by CPU model and threads)."""
    path = Path(results_dir) / "roofline.json"
    data = json.loads(path.read_text()) if path.exists() else {"measurements": []}
    data["measurements"].append(measurement)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
    return path


def model_gemms(spec: Any, batch: int, steps: int, training: bool) -> list[tuple[int, int, int, int]]:
    """The matrix products of one window, as ``(m, k, n, count)``: what any implementation of
    the model must compute (``bench.metrics.flops_per_token`` counts the same products).

    Per layer: the input projection of the whole window (one product), the recurrent product
    at every step; the softmax layer over all the window's tokens. Training adds, per forward
    product, one for the input gradient and one for the weight gradient; the recurrent weight
    gradient over the window is one product (``H^T dZ``), the step's state gradient is not.
    """
    rows, width, hidden = batch * steps, spec.cell.n_blocks * spec.hidden_size, spec.hidden_size
    out: list[tuple[int, int, int, int]] = []
    for layer in range(spec.num_layers):
        size_in = spec.layer_input_size(layer)
        out += [(rows, size_in, width, 1), (batch, hidden, width, steps)]
        if training:
            out += [(rows, width, size_in, 1), (size_in, rows, width, 1),  # dX, dU
                    (batch, width, hidden, steps), (hidden, rows, width, 1)]  # dh per step, dV
    out.append((rows, hidden, spec.n_classes, 1))
    if training:
        out += [(rows, spec.n_classes, hidden, 1), (hidden, rows, spec.n_classes, 1)]  # dh, dW
    return out


def gemm_ceiling(spec: Any, batch: int, steps: int, training: bool, threads: int | None = None,
                 repeats: int = 7) -> dict[str, float]:
    """Tokens/s if a window cost nothing but its matrix products, each at the best rate NumPy or
    torch reaches for that very shape: the ceiling for this model on this machine.

    The 2048^3 peak flatters small products (a 20 x 200 x 800 recurrent step runs far below
    it); against this ceiling an implementation's shortfall is its own overhead
    (element-wise work, memory passes, framework dispatch), not the shapes.
    """
    from threadpoolctl import threadpool_limits

    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    seconds, flops = 0.0, 0.0
    best_by_shape: dict[tuple[int, int, int], float] = {}
    with threadpool_limits(limits=threads or os.cpu_count() or 1):
        if torch is not None:
            torch.set_num_threads(threads or os.cpu_count() or 1)
        for m, k, n, count in model_gemms(spec, batch, steps, training):
            if (m, k, n) not in best_by_shape:
                a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
                out = np.empty((m, n), np.float32)
                candidates = [lambda: np.matmul(a, b, out=out)]
                if torch is not None:
                    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
                    candidates.append(lambda: torch.matmul(ta, tb, out=tout))
                best = math.inf
                for matmul in candidates:
                    matmul()
                    for _ in range(repeats):
                        start = time.perf_counter()
                        matmul()
                        best = min(best, time.perf_counter() - start)
                best_by_shape[(m, k, n)] = best
            seconds += count * best_by_shape[(m, k, n)]
            flops += count * 2.0 * m * k * n
    return {"tok_s": batch * steps / seconds, "gflops": flops / seconds / 1e9}

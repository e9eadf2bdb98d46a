"""This machine's float32 GEMM peak: the yardstick for each run's achieved GFLOP/s."""
from __future__ import annotations

import json
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

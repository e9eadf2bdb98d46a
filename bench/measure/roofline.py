"""This machine's float32 GEMM peak: the yardstick for each run's achieved GFLOP/s."""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bench import interrupts
from bench.documents import ROOFLINE_FILE  # in a results directory: `bench roofline` writes it, `bench report` reads it
from bench.errors import BenchError
from bench.run.records import atomic_write_bytes, cpu_model, utc_now



@contextmanager
def _thread_limit(threads: int | None) -> Iterator[int]:
    """NumPy's BLAS and torch held to ``threads`` (default: every core) while measuring."""
    from threadpoolctl import threadpool_limits

    threads = threads or os.cpu_count() or 1
    with threadpool_limits(limits=threads):
        try:
            import torch
        except ImportError:
            pass
        else:
            torch.set_num_threads(threads)
        yield threads


def _matmuls(a: np.ndarray, b: np.ndarray) -> dict[str, Callable[[], Any]]:
    """``a @ b`` into a preallocated output, per library available (NumPy's BLAS, torch)."""
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    calls: dict[str, Callable[[], Any]] = {"numpy": lambda: np.matmul(a, b, out=out)}
    try:
        import torch
    except ImportError:
        return calls
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(np.empty_like(out))
    calls["torch"] = lambda: torch.matmul(ta, tb, out=tout)
    return calls


def _best_gflops(matmul: Callable[[], Any], n: int, seconds: float) -> float:
    matmul()  # warm-up: threads, caches
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        interrupts.check()  # between products: a 2048^3 one is a fraction of a second
        start = time.perf_counter()
        matmul()
        best = max(best, 2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def measure_peak(threads: int | None = None, n: int = 2048, seconds: float = 3.0) -> dict[str, Any]:
    """Best observed float32 GFLOP/s of an n x n x n product, per library available."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    with _thread_limit(threads) as threads:
        gflops = {lib: _best_gflops(matmul, n, seconds) for lib, matmul in _matmuls(a, b).items()}
    return {"cpu": cpu_model(), "threads": threads, "n": n, "measured_at": utc_now(), "gflops": gflops}


def read_measurements(path: Path) -> dict[str, Any]:
    """The measurements recorded in ``path`` (none if it does not exist yet); a file that is
    not such a record is refused before measuring, not after."""
    from bench.documents import Unreadable, read_document

    if not os.path.lexists(path):
        return {"measurements": []}
    try:
        return read_document(path, "roofline")[1]
    except Unreadable as exc:
        raise BenchError(f"{path} is not a roofline file ({exc}); move it away or pass --results-dir DIR") from None


def record_peak(results_dir: str | Path, measurement: dict[str, Any]) -> Path:
    """Append to ``<results_dir>/roofline.json`` (reports match runs by CPU model and threads);
    a file there that is not a roofline file is refused, never overwritten."""
    path = Path(results_dir) / ROOFLINE_FILE
    data = read_measurements(path)
    data["measurements"].append(measurement)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
    return path


def model_gemms(spec: Any, batch: int, steps: int, training: bool) -> list[tuple[int, int, int, int]]:
    """The matrix products of one window, as ``(m, k, n, count)``: what any implementation of
    the model must compute (``bench.run.metrics.flops_per_token`` counts the same products).

    Per layer: the input projection of the whole window (one product), the recurrent product
    at every step; the softmax layer over all the window's tokens. Training adds, per forward
    product, one for the input gradient and one for the weight gradient; the recurrent weight
    gradient over the window is one product (``H^T dZ``), the step's state gradient is not.
    """
    rows, width, hidden = batch * steps, spec.cell.n_blocks * spec.hidden_size, spec.hidden_size
    out: list[tuple[int, int, int, int]] = []
    for layer in range(spec.num_layers):
        size_in = spec.layer_input_size(layer)
        out.append((rows, size_in, width, 1))
        if training:
            out += [(rows, width, size_in, 1), (size_in, rows, width, 1)]  # dX, dU
        for k, n in spec.cell.recurrent_products(hidden):
            out.append((batch, k, n, steps))
            if training:
                out += [(batch, n, k, steps), (k, rows, n, 1)]  # dh per step, dV
    out.append((rows, hidden, spec.n_classes, 1))
    if training:
        out += [(rows, spec.n_classes, hidden, 1), (hidden, rows, spec.n_classes, 1)]  # dh, dW
    return out


def gemm_ceiling(spec: Any, batch: int, steps: int, threads: int | None = None,
                 repeats: int = 7) -> dict[str, dict[str, float]]:
    """Per phase ("train", "eval"): tokens/s if a window cost nothing but its matrix products,
    each at the best rate NumPy or torch reaches for that very shape: the ceiling for this
    model on this machine.

    The 2048^3 peak flatters small products (a 20 x 200 x 800 recurrent step runs far below
    it); against this ceiling an implementation's shortfall is its own overhead
    (element-wise work, memory passes, framework dispatch), not the shapes. Each shape is
    timed once: evaluation's products are among training's.
    """
    rng = np.random.default_rng(0)
    best: dict[tuple[int, int, int], float] = {}
    with _thread_limit(threads):
        for m, k, n, _ in model_gemms(spec, batch, steps, training=True):
            if (m, k, n) in best:
                continue
            interrupts.check()
            a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
            best[(m, k, n)] = math.inf
            for matmul in _matmuls(a, b).values():
                matmul()  # warm-up
                for _ in range(repeats):
                    start = time.perf_counter()
                    matmul()
                    best[(m, k, n)] = min(best[(m, k, n)], time.perf_counter() - start)
    out = {}
    for phase, training in (("train", True), ("eval", False)):
        gemms = model_gemms(spec, batch, steps, training)
        seconds = sum(count * best[(m, k, n)] for m, k, n, count in gemms)
        flops = sum(count * 2.0 * m * k * n for m, k, n, count in gemms)
        out[phase] = {"tok_s": batch * steps / seconds, "gflops": flops / seconds / 1e9}
    return out

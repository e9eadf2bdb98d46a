"""Importing JAX, and the process-wide settings it allows: threads, float64 and devices.

XLA reads its flags (``XLA_FLAGS``) once, when its CPU client starts, so the thread setting
must be in the environment before the first computation; ``jax_enable_x64`` likewise
before the first array. :func:`import_jax` does both, first.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from cells.errors import BenchError

# XLA's CPU runtime has no flag for a thread count: its intra-op pool has one thread per
# core. One thread is what it can do: matrix products and every other op run on the
# calling thread (the flag jax-ml/jax#743 names).
_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"
_started: dict[str, Any] = {}


def import_jax(threads: int | None = None) -> Any:
    """``jax``, with XLA's CPU threads limited to one when ``threads == 1`` and float64
    enabled (arrays are created in the model's dtype explicitly). The first call decides:
    a later call with another thread setting cannot change XLA's pool."""
    if "threads" not in _started and "jax" not in sys.modules:
        if threads == 1 and _ONE_THREAD not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_ONE_THREAD}".strip()
        _started["threads"] = threads
    import jax

    jax.config.update("jax_enable_x64", True)
    # float32 means IEEE float32, as in the other backends: XLA's default precision on an
    # NVIDIA GPU rounds float32 matrix products through TF32 tensor cores (10-bit
    # mantissa), which no float32 reference matches; on the CPU this changes nothing
    jax.config.update("jax_default_matmul_precision", "highest")
    return jax


def thread_setting() -> dict[str, Any]:
    """What XLA runs with: its flags and the threads its CPU pool may use (1 when the flag
    above is set, else one per core), for the record."""
    flags = os.environ.get("XLA_FLAGS", "")
    one = _ONE_THREAD in flags
    return {"threads": 1 if one else (os.cpu_count() or 1), "xla_flags": flags}


def versions() -> dict[str, str]:
    jax = import_jax()
    import flax
    import jaxlib

    out = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__}
    try:
        out["xla_backend"] = jax.default_backend()
    except RuntimeError:  # pragma: no cover - no backend initialises at all
        pass
    return out


def resolve_device(setting: str) -> Any:
    """The ``jax.Device`` of the ``--device`` setting: ``gpu`` needs a GPU jaxlib sees."""
    jax = import_jax()
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if setting == "gpu" and not gpus:
        import jaxlib

        raise BenchError(
            f"--device gpu: JAX sees no GPU (jaxlib {jaxlib.__version__}, platforms: "
            f"{', '.join(sorted({d.platform for d in jax.devices()}))}; for NVIDIA GPUs install jax[cuda12]); "
            "use --device cpu or auto")
    if setting in ("gpu", "auto") and gpus:
        return gpus[0]
    return jax.devices("cpu")[0]

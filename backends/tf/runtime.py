"""Importing TensorFlow, and the process-wide settings it allows: threads and devices."""
from __future__ import annotations

import os
from typing import Any

from cells.errors import BenchError


def import_tf() -> Any:
    """``tensorflow``, imported with its C++ logs quieted (unless the user chose a level)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def versions() -> dict[str, str]:
    tf = import_tf()
    import keras

    out = {"tensorflow": tf.__version__, "keras": keras.__version__}
    try:
        info = tf.sysconfig.get_build_info()
    except Exception:  # pragma: no cover - very old or unusual builds
        info = {}
    for key in ("cuda_version", "cudnn_version", "is_cuda_build", "is_rocm_build"):
        if key in info:
            out[key] = str(info[key])
    return out


def configure_threads(threads: int | None) -> None:
    """Set intra/inter-op parallelism to ``threads``.

    TensorFlow accepts this only before its runtime initialises (the first op, device
    listing with ``list_logical_devices``, ...). Later it raises RuntimeError; then the
    values already in force stay and :func:`thread_settings` reports them.
    """
    if not threads:
        return
    tf = import_tf()
    threading = tf.config.threading
    for get, set_ in (
        (threading.get_intra_op_parallelism_threads, threading.set_intra_op_parallelism_threads),
        (threading.get_inter_op_parallelism_threads, threading.set_inter_op_parallelism_threads),
    ):
        if get() == threads:
            continue
        try:
            set_(threads)
        except RuntimeError:  # runtime already initialised with other values: keep going
            pass


def thread_settings() -> dict[str, int]:
    """What TensorFlow reports (0 means "TensorFlow's default: one per core")."""
    tf = import_tf()
    return {
        "intra_op": int(tf.config.threading.get_intra_op_parallelism_threads()),
        "inter_op": int(tf.config.threading.get_inter_op_parallelism_threads()),
    }


def resolve_device(device: str) -> tuple[str, str]:
    """(TensorFlow device string, "cpu" or "gpu") for the ``--device`` setting."""
    tf = import_tf()
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise BenchError(
            "--device gpu: TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty; "
            "is tensorflow[and-cuda] installed and CUDA_VISIBLE_DEVICES set?); use --device cpu or auto"
        )
    if device in ("gpu", "auto") and gpus:
        return "/GPU:0", "gpu"
    return "/CPU:0", "cpu"

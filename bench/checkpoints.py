"""Checkpoints: the model's arrays plus the run's progress, one ``.npz`` per run, replaced
atomically at every epoch end so ``--resume`` always finds a complete one."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.records import atomic_write_bytes

META_KEY = "__meta__"


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{META_KEY: np.array(json.dumps(meta))}, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta); meta holds the config, the last completed epoch and the history."""
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise BenchError(f"cannot read checkpoint {path}: {exc}") from exc
    if META_KEY not in arrays:
        raise BenchError(f"{path} is not a cellbench checkpoint")
    meta = json.loads(str(arrays.pop(META_KEY)))
    return arrays, meta

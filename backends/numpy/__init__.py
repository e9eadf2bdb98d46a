"""NumPy backend: forward and backpropagation through time written from scratch, each
cell's own kernel (impl ``cell``) or, for a cell that declares its step linear in the state
and the derivative of that step, the window's recurrence computed from those declarations
alone (impl ``scan``, ``backends.numpy.scan``).

It is the reference the other backends are checked against (in float64), and a contender
in its own right (in float32).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from backends.base import SCAN_IMPL, Backend, MemoryProfile, Model, TrainSettings
from backends.spec import ModelSpec
from cells.base import CellSpec


class NumpyBackend(Backend):
    name: ClassVar[str] = "numpy"
    impls: ClassVar[tuple[str, ...]] = ("cell", "scan")
    default_impl: ClassVar[str] = "cell"
    framework: ClassVar[str | None] = "numpy"
    # its checkpoint hands over its arrays, where the frameworks copy theirs out of tensors
    memory: ClassVar[MemoryProfile] = MemoryProfile(50 * 2**20, {"cell": (3, 3), "scan": (3, 5)}, 2.5, (2, 1))

    @classmethod
    def unsupported(cls, cell: CellSpec, impl: str) -> str | None:
        from backends.numpy.kernels import why_no_kernel
        from backends.numpy.scan import why_no_scan

        return why_no_scan(cell) if impl == SCAN_IMPL else why_no_kernel(cell)

    @classmethod
    def versions(cls) -> dict[str, str]:
        return {"numpy": np.__version__}

    @classmethod
    def make_model(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        from backends.numpy.model import NumpyModel

        if settings.device == "gpu":
            from cells.errors import BenchError

            raise BenchError("the numpy backend runs on the CPU only; use --device cpu (or auto)")
        return NumpyModel(spec, params, settings)

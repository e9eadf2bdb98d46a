"""PyTorch backend: the cell equations unrolled under autograd ("cell"), torch's own
recurrent layers, cuDNN on a GPU ("fused": the cells of ``backends.torch.fused``), or a
linear cell's window in one log-space scan ("scan": the cells that declare
``CellSpec.linear_recurrence``).

This module must stay cheap to import (listing backends imports it): torch is imported
only inside ``make_model`` and ``versions``, and the models live in ``backends.torch.model``.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from backends.base import Backend, MemoryProfile, Model, TrainSettings
from backends.fused import FusedTable
from backends.spec import ModelSpec
from backends.torch.fused import FUSED_LAYERS


class TorchBackend(Backend):
    name: ClassVar[str] = "torch"
    impls: ClassVar[tuple[str, ...]] = ("cell", "fused", "scan")
    default_impl: ClassVar[str] = "fused"
    framework: ClassVar[str | None] = "torch"
    memory: ClassVar[MemoryProfile] = MemoryProfile(340 * 2**20, {"cell": (5, 7), "fused": (5, 7), "scan": (5, 16)}, 4.5, (4, 2))
    install_hint: ClassVar[str] = (
        "pip install 'cellbench[torch]' (on this project's machines: pip install torch==2.13.0)"
    )
    fused_layers: ClassVar[FusedTable | None] = FUSED_LAYERS

    @classmethod
    def versions(cls) -> dict[str, str]:
        import torch

        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return {
            "torch": torch.__version__,
            "cuda": torch.version.cuda or "none",
            "cudnn": str(cudnn) if cudnn is not None else "none",
        }

    @classmethod
    def make_model(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        from backends.torch.model import build_model

        return build_model(spec, params, settings)

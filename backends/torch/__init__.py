"""PyTorch backend: the cell equations unrolled under autograd ("cell"), or torch's own
recurrent layers, cuDNN on a GPU ("fused").

This module must stay cheap to import (listing backends imports it): torch is imported
only inside ``build`` and ``versions``, and the models live in ``backends.torch.model``.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from backends.base import Backend, Model, TrainSettings
from backends.spec import ModelSpec
from cells import CellSpec, LSTMCell, RNNCell


def fused_layer_kind(cell: CellSpec) -> str | None:
    """"lstm" (nn.LSTM), "rnn" (nn.RNN) or None when torch has no layer computing ``cell``.

    Exact types only: a subclass may change the equations, which torch's layers cannot follow.
    """
    if type(cell) is LSTMCell:
        return "lstm"
    if type(cell) is RNNCell and cell.activation == "tanh":
        return "rnn"
    return None


class TorchBackend(Backend):
    name: ClassVar[str] = "torch"
    impls: ClassVar[tuple[str, ...]] = ("cell", "fused")
    default_impl: ClassVar[str] = "fused"
    framework: ClassVar[str | None] = "torch"
    install_hint: ClassVar[str] = (
        "pip install 'cellbench[torch]' (on this project's machines: pip install torch==2.13.0)"
    )

    @classmethod
    def unsupported(cls, cell: CellSpec, impl: str) -> str | None:
        if impl == "fused" and fused_layer_kind(cell) is None:
            return f"torch has no fused layer for cell {cell.name!r} {cell.option_values()} (nn.RNN is tanh only); use --impl cell"
        return None

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
    def build(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        from backends.torch.model import build_model

        return build_model(spec, params, settings)

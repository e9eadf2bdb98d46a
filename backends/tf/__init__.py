"""TensorFlow backend: the cell's own step equations unrolled under ``tf.function``
(impl ``cell``), Keras 3's fused recurrent layers (impl ``fused``: the cells of
``backends.tf.fused``, ``keras.layers.LSTM``, which uses cuDNN on a GPU, and
``keras.layers.SimpleRNN``), or a linear cell's window in one log-space scan (impl
``scan``: the cells that declare ``CellSpec.linear_recurrence``).

This module never imports TensorFlow (importing it takes seconds); ``make_model`` and
``versions`` do, through :mod:`backends.tf.runtime`.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from backends.base import Backend, MemoryProfile, Model, TrainSettings
from backends.fused import FusedTable
from backends.spec import ModelSpec
from backends.tf.fused import FUSED_LAYERS


class TFBackend(Backend):
    name: ClassVar[str] = "tf"
    impls: ClassVar[tuple[str, ...]] = ("cell", "fused", "scan")
    default_impl: ClassVar[str] = "fused"
    framework: ClassVar[str | None] = "tensorflow"
    memory: ClassVar[MemoryProfile] = MemoryProfile(640 * 2**20, {"cell": (14, 4), "fused": (5, 7), "scan": (5, 16)}, 4.5, (4, 2))
    install_hint: ClassVar[str] = "pip install 'cellbench[tf]'"
    fused_layers: ClassVar[FusedTable | None] = FUSED_LAYERS

    @classmethod
    def versions(cls) -> dict[str, str]:
        from backends.tf.runtime import versions

        return versions()

    @classmethod
    def make_model(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        from backends.tf.model import build_model

        return build_model(spec, params, settings)

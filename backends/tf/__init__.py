"""TensorFlow backend: the cell's own step equations unrolled under ``tf.function``
(impl ``cell``) or Keras 3's fused recurrent layers (impl ``fused``: ``keras.layers.LSTM``,
which uses cuDNN on a GPU, and ``keras.layers.SimpleRNN``).

This module never imports TensorFlow (importing it takes seconds); ``build`` and
``versions`` do, through :mod:`backends.tf.runtime`.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from backends.base import Backend, Model, TrainSettings
from bench.model import ModelSpec


class TFBackend(Backend):
    name: ClassVar[str] = "tf"
    impls: ClassVar[tuple[str, ...]] = ("cell", "fused")
    default_impl: ClassVar[str] = "fused"
    framework: ClassVar[str | None] = "tensorflow"
    install_hint: ClassVar[str] = "pip install 'cellbench[tf]'"

    @classmethod
    def versions(cls) -> dict[str, str]:
        from backends.tf.runtime import versions

        return versions()

    @classmethod
    def build(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        from backends.tf.model import build_model

        return build_model(spec, params, settings)

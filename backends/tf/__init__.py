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
from backends.spec import ModelSpec
from cells import CellSpec, LSTMCell, RNNCell


def fused_layer_kind(cell: CellSpec) -> str | None:
    """"lstm" (keras.layers.LSTM), "rnn" (keras.layers.SimpleRNN, tanh or sigmoid) or None.

    Exact types only: a subclass may change the equations, which Keras's layers cannot follow.
    """
    if type(cell) is LSTMCell:
        return "lstm"
    if type(cell) is RNNCell:
        return "rnn"
    return None


class TFBackend(Backend):
    name: ClassVar[str] = "tf"
    impls: ClassVar[tuple[str, ...]] = ("cell", "fused")
    default_impl: ClassVar[str] = "fused"
    framework: ClassVar[str | None] = "tensorflow"
    install_hint: ClassVar[str] = "pip install 'cellbench[tf]'"

    @classmethod
    def unsupported(cls, cell: CellSpec, impl: str) -> str | None:
        if impl == "fused" and fused_layer_kind(cell) is None:
            return f"the tf backend has no fused layer for cell {cell.name!r}; use --impl cell"
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        from backends.tf.runtime import versions

        return versions()

    @classmethod
    def build(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        from backends.tf.model import build_model

        return build_model(spec, params, settings)

"""JAX backend: the cell's step equations under ``jax.lax.scan`` (impl ``cell``),
Flax's own recurrent cells under ``flax.linen.RNN`` (impl ``fused``: the cells of
``backends.jax.fused``), or a linear cell's window in one ``jax.lax.associative_scan``
(impl ``scan``: the cells that declare ``CellSpec.linear_recurrence``); every way the
whole train step (forward, backward, clipping, update) is one compiled XLA function.

This module never imports JAX; ``make_model`` and ``versions`` do, through
:mod:`backends.jax.runtime`, which sets XLA's thread flag first.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from backends.base import Backend, MemoryProfile, Model, TrainSettings
from backends.fused import FusedTable
from backends.jax.fused import FUSED_LAYERS
from backends.spec import ModelSpec


class JaxBackend(Backend):
    name: ClassVar[str] = "jax"
    impls: ClassVar[tuple[str, ...]] = ("cell", "fused", "scan")
    default_impl: ClassVar[str] = "cell"
    framework: ClassVar[str | None] = "jax"
    memory: ClassVar[MemoryProfile] = MemoryProfile(640 * 2**20, {"cell": (14, 7), "fused": (14, 7), "scan": (14, 16)}, 4.5, (6, 2))
    install_hint: ClassVar[str] = "pip install 'cellbench[jax]' (NVIDIA GPUs: pip install 'jax[cuda12]' flax)"
    fused_layers: ClassVar[FusedTable | None] = FUSED_LAYERS

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util

        if reason := super().unavailable_reason():
            return reason
        if importlib.util.find_spec("flax") is None:
            return f"flax is not installed; {cls.install_hint}"
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        from backends.jax.runtime import versions

        return versions()

    @classmethod
    def make_model(cls, spec: ModelSpec, params: dict[str, np.ndarray], settings: TrainSettings) -> Model:
        from backends.jax.runtime import import_jax

        import_jax(settings.threads)  # first: XLA reads its thread flag when it starts
        from backends.jax.model import build_model

        return build_model(spec, params, settings)

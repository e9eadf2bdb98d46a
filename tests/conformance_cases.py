"""The backend x impl x cell grid of the project's own tests, on top of the conformance kit
(``bench.testing``): every registered cell, in every choice of its options, so a new plugin
(backend, impl or cell) is tested without writing a test.
"""
from __future__ import annotations

import pytest

from bench import testing
from bench.errors import BenchError
from bench.registry import backend_names, cell_names, get_backend, get_cell_class, make_cell
from bench.testing import BATCH, STEPS, rel_err, window_stream

__all__ = ["BATCH", "STEPS", "rel_err", "window_stream", "build_pair", "cell_variants", "grid", "kit_cases", "make_variant", "small_spec"]


def cell_variants() -> list[str]:
    """Every registered cell with its default options, then once more for each other choice
    of each of its options that has choices: ``gru``, ``gru:reset_gate=before``."""
    keys = []
    for name in cell_names():
        keys.append(name)
        for option in get_cell_class(name).options:
            keys += [f"{name}:{option.name}={choice}" for choice in option.choices or () if choice != option.default]
    return keys


def make_variant(key: str):  # -> CellSpec
    name, _, setting = key.partition(":")
    return make_cell(name, **dict([setting.split("=", 1)])) if setting else make_cell(name)


def kit_cases() -> list:
    """Every conformance check (``bench.testing.cases``) of every cell variant."""
    return [case for key in cell_variants() for case in testing.cases(make_variant(key), cell_id=key)]


def grid() -> list:
    """One pytest param per (backend, impl, cell variant), skipped where the framework is missing."""
    params = []
    for backend_name in backend_names():
        try:
            backend = get_backend(backend_name)
        except BenchError:  # a backend that cannot even load fails its tests, loudly
            params.append(pytest.param(backend_name, "cell", "lstm", id=f"{backend_name}-load-error"))
            continue
        reason = backend.unavailable_reason()
        for impl in backend.impls:
            for cell_name in cell_variants():  # a plugin cell installed is in the grid
                marks = [pytest.mark.skip(reason=reason)] if reason else []
                params.append(pytest.param(backend_name, impl, cell_name, marks=marks, id=f"{backend_name}-{impl}-{cell_name}"))
    return params


def small_spec(cell_name: str, task: str):  # -> ModelSpec
    """The kit's small model (vocab 50, hidden 16, 2 layers, or the echo shape) of a cell variant."""
    return testing.small_spec(make_variant(cell_name), task)


def build_pair(backend_name: str, impl: str, spec, optimizer: str = "sgd", init_scale: float = 0.1):
    """The kit's (float64 reference, float32 model under test); skipped where unsupported."""
    try:
        return testing.build_pair(backend_name, impl, spec, optimizer, init_scale)
    except testing.Unsupported as why:
        pytest.skip(str(why))

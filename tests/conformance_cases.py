"""The small configurations conformance tests use, and the backend x impl x cell grid.

Shared by the conformance tests and the gradient-norm tests so a new plugin (backend, impl
or cell) is tested without writing a test.
"""
from __future__ import annotations

import numpy as np
import pytest

from backends.base import TrainSettings
from bench.errors import BenchError
from backends.spec import ModelSpec, init_params
from bench.registry import backend_names, cell_names, get_backend, get_cell_class, make_cell

BATCH, STEPS = 3, 7


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


def small_spec(cell_name: str, task: str) -> ModelSpec:
    """vocab 50, hidden 16, 2 layers (tokens, PTB-like loss) or the echo task's shape."""
    cell = make_variant(cell_name)
    if task == "tokens":
        return ModelSpec(cell, "tokens", 50, 16, 2, 50, 1.0, "sum_steps_mean_batch")
    return ModelSpec(cell, "scalar", 1, 16, 2, 2, 1.0, "mean")


def window_stream(spec: ModelSpec, n: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` consecutive windows of random inputs and targets."""
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(n):
        if spec.input_kind == "tokens":
            x = rng.integers(0, spec.vocab_size, (BATCH, STEPS))
        else:
            x = rng.integers(0, 2, (BATCH, STEPS)).astype(np.float32)
        y = rng.integers(0, spec.n_classes, (BATCH, STEPS))
        windows.append((x, y))
    return windows


def build_pair(backend_name: str, impl: str, spec: ModelSpec, optimizer: str = "sgd", init_scale: float = 0.1):
    """(the NumPy float64 reference, the backend under test in float32), same weights.

    init_scale 0.1 is ptb-small's; at 0.3 a vanilla RNN on random targets with lr 1.0 is
    chaotic (float32 and float64 NumPy part by 5% within 20 steps), which no backend can match.
    """
    params = init_params(spec, init_scale, np.random.default_rng(0))
    reference = get_backend("numpy").build(
        spec, params, TrainSettings(impl="cell", optimizer=optimizer, dtype="float64", threads=1)
    )
    backend = get_backend(backend_name)
    if why := backend.unsupported(spec.cell, impl):
        pytest.skip(why)
    model = backend.build(spec, params, TrainSettings(impl=impl, optimizer=optimizer, dtype="float32", threads=1))
    return reference, model


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """||actual - expected|| / ||expected||, the error measure of every conformance check."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))

"""The conformance kit catches what it exists to catch: a wrong NumPy kernel, a backend that
computes another function, and it skips (with the reason) what a backend cannot run."""
from __future__ import annotations

import importlib.util

import pytest

from backends.numpy.kernels import GRUKernel
from bench import testing
from bench.registry import get_backend
from cells import GRUCell, LSTMCell

# these hold a cell to torch (the backend under test, or the float64 reference of a cell
# without a NumPy kernel): tox's numpy env has no torch
NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


class _ScaledGradient(GRUKernel):
    """The GRU's kernel with its recurrent-weight gradient 1% off."""

    def backward(self, dhs, params, cache, trace=False):
        dZ, grads, norms = super().backward(dhs, params, cache, trace)
        return dZ, {**grads, "V": grads["V"] * 1.01}, norms


class _ForwardOff(GRUKernel):
    """The GRU's kernel computing a slightly different function from the cell's equations."""

    def forward(self, P, params, state):
        hs, final, cache = super().forward(P, params, state)
        hs *= 1.001
        return hs, final, cache


def _cell_with_kernel(kernel_class):
    class PluginGRU(GRUCell):
        name = "plugin-gru"

        def numpy_kernel(self):
            return kernel_class("after")

    return PluginGRU()


def test_a_correct_kernel_passes_finite_differences():
    testing.check_finite_differences(_cell_with_kernel(GRUKernel))


def test_a_wrong_gradient_is_caught_and_named():
    with pytest.raises(AssertionError, match=r"gradient layers\.0\.V differs from finite differences"):
        testing.check_finite_differences(_cell_with_kernel(_ScaledGradient))


def test_a_kernel_that_computes_another_function_is_caught():
    with pytest.raises(AssertionError, match="loss .*, the NumPy forward pass's"):
        testing.check_finite_differences(_cell_with_kernel(_ForwardOff))


@NEEDS_TORCH
def test_a_backend_that_differs_from_the_reference_fails_each_check(monkeypatch):
    """The torch cell impl of a cell whose torch equations differ (1e-3 on the state): the
    first window, training and the gradient norms each say what differs."""
    from backends.torch import unroll

    real = unroll.run_layer

    def off(cell, params, inputs, state, capture=None):
        outputs, final = real(cell, params, inputs, state, capture)
        return outputs * 1.001, final

    monkeypatch.setattr("backends.torch.model.run_layer", off)
    cell = _cell_with_kernel(GRUKernel)
    failures = {}
    for case in testing.cases(cell, backends=["torch"], checks=("first-window", "train-sgd", "gradient-norms")):
        if case.impl == "cell" and case.task == "tokens":
            with pytest.raises(AssertionError) as caught:
                case.run()
            failures[case.check_name] = str(caught.value)
    assert "against the reference exceeds" in failures["first-window"]
    assert "after 20 steps: relative error" in failures["train-sgd"]
    assert "gradient norm dLT_dh layer 0 step 0" in failures["gradient-norms"]


def test_cases_cover_every_backend_impl_task_and_check():
    cases = testing.cases(LSTMCell(), backends=["numpy", "torch"])
    # numpy/cell, torch/cell, torch/fused, torch/scan (every impl a backend declares, the ones
    # that cannot run the cell skipped when run); the checkpoint check on the token model only
    impls = [("numpy", impl) for impl in get_backend("numpy").impls] + [("torch", impl) for impl in get_backend("torch").impls]
    assert {(c.backend, c.impl) for c in cases} == set(impls)
    assert len(cases) == len(impls) * ((len(testing.CHECKS) - 1) * len(testing.TASKS) + 1)
    assert str(cases[0]) == "numpy-cell-lstm-tokens-first-window"


@NEEDS_TORCH
def test_what_a_backend_cannot_run_is_skipped_with_the_reason():
    case = next(c for c in testing.cases(GRUCell("before"), backends=["torch"]) if c.impl == "fused")
    with pytest.raises(testing.Unsupported, match="torch has no fused layer for cell 'gru' with reset_gate='before'"):
        case.run()


@NEEDS_TORCH
def test_a_cell_without_a_numpy_kernel_is_held_to_torch_in_float64():
    class NoKernel(GRUCell):
        name = "no-kernel"

    assert testing.reference_backend(NoKernel()) == ("torch", "cell")
    testing.check_finite_differences(NoKernel())


def test_check_cell_reports_every_case_outside_pytest():
    lines = []
    assert testing.check_cell(LSTMCell(), backends=["numpy"], report=lines.append) == 0
    assert lines[0] == "ok       numpy-cell-lstm-tokens-first-window"
    assert lines[-1].endswith("reference gradients of lstm = finite differences")
    # numpy's cell cases pass; its scan cases are skipped, each with the reason (the LSTM
    # declares no linear recurrence)
    assert all(line.startswith("ok") or (line.startswith("skipped  numpy-scan-") and "declares no linear recurrence" in line)
               for line in lines)
    assert any(line.startswith("skipped") for line in lines) and any(line.startswith("ok") for line in lines[1:])

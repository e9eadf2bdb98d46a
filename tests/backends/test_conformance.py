"""Every backend x impl x cell computes the NumPy float64 reference's function.

Dropout off, float32 under test, a PTB-like token model (vocab 50, hidden 16, 2 layers,
7 steps, batch 3) and the echo task's scalar-input model, from identical initial weights.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance_cases import build_pair, grid, rel_err, small_spec, window_stream

TASKS = ("tokens", "echo")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("backend_name,impl,cell_name", grid())
def test_first_window_loss_grads_and_state_match_reference(backend_name, impl, cell_name, task):
    spec = small_spec(cell_name, task)
    reference, model = build_pair(backend_name, impl, spec)
    x, y = window_stream(spec, 1)[0]

    ref_loss, ref_grads, ref_state = reference.loss_and_grads(x, y, reference.zero_state(x.shape[0]))
    loss, grads, state = model.loss_and_grads(x, y, model.zero_state(x.shape[0]))

    assert abs(loss - ref_loss) / abs(ref_loss) < 1e-5
    assert sorted(grads) == sorted(ref_grads)
    for name, ref_grad in ref_grads.items():
        assert grads[name].shape == ref_grad.shape, name
        assert rel_err(grads[name], ref_grad) < 1e-4, name
    for layer, (ours, theirs) in enumerate(zip(model.state_to_numpy(state), reference.state_to_numpy(ref_state))):
        for name, a, b in zip(spec.cell.state_names, ours, theirs):
            assert rel_err(a, b) < 1e-5, f"layer {layer} state {name}"


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1.0), ("adagrad", 0.3)])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("backend_name,impl,cell_name", grid())
def test_twenty_updates_with_state_carried_track_reference(backend_name, impl, cell_name, task, optimizer, lr):
    spec = small_spec(cell_name, task)
    reference, model = build_pair(backend_name, impl, spec, optimizer=optimizer)
    ref_state, state = reference.zero_state(3), model.zero_state(3)
    for step, (x, y) in enumerate(window_stream(spec, 20)):
        ref_stats, ref_state = reference.train_step(x, y, ref_state, lr)
        stats, state = model.train_step(x, y, state, lr)
        assert abs(stats.ce_sum - ref_stats.ce_sum) / ref_stats.ce_sum < 1e-3, f"step {step}"
        assert stats.n_tokens == ref_stats.n_tokens
    for name, value in reference.get_params().items():
        assert rel_err(model.get_params()[name], value) < 1e-3, name


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("backend_name,impl,cell_name", grid())
def test_gradient_norms_over_time_match_reference_at_init(backend_name, impl, cell_name, task):
    spec = small_spec(cell_name, task)
    reference, model = build_pair(backend_name, impl, spec)
    x, y = window_stream(spec, 1)[0]
    expected = reference.gradient_norms_over_time(x, y, reference.zero_state(3))
    actual = model.gradient_norms_over_time(x, y, model.zero_state(3))
    assert sorted(actual) == sorted(expected)
    for key, curve in expected.items():
        assert actual[key].shape == (spec.num_layers, x.shape[1]), key
        np.testing.assert_allclose(actual[key], curve, rtol=1e-4, err_msg=key)


@pytest.mark.parametrize("backend_name,impl,cell_name", grid())
def test_checkpoint_restore_continues_identically(backend_name, impl, cell_name):
    spec = small_spec(cell_name, "tokens")
    _, model = build_pair(backend_name, impl, spec, optimizer="adagrad")
    windows = window_stream(spec, 4)
    state = model.zero_state(3)
    for x, y in windows[:2]:
        _, state = model.train_step(x, y, state, 0.3)
    saved = {k: np.array(v) for k, v in model.checkpoint().items()}
    _, twin = build_pair(backend_name, impl, spec, optimizer="adagrad", init_scale=0.05)
    twin.restore(saved)
    for x, y in windows[2:]:
        a, _ = model.train_step(x, y, model.zero_state(3), 0.3)
        b, _ = twin.train_step(x, y, twin.zero_state(3), 0.3)
        assert a.ce_sum == pytest.approx(b.ce_sum, rel=1e-6)

"""The hand-written BPTT against central finite differences of the reference forward, float64."""
from __future__ import annotations

import numpy as np
import pytest

from backends.base import TrainSettings
from backends.numpy import NumpyBackend
from backends.spec import ModelSpec, init_params, reference_forward
from bench import testing
from cells import LSTMCell, RNNCell
from tests.conformance_cases import cell_variants, make_variant
from tests.kit_elsewhere import cell_key

CELLS = {"lstm": lambda: LSTMCell(forget_bias=1.0), "rnn-tanh": lambda: RNNCell("tanh")}


def _case(cell_key: str, input_kind: str, num_layers: int, reduction: str = "sum_steps_mean_batch"):
    """The finite-difference check's small float64 model (moved biases, a non-zero state)."""
    return testing.finite_difference_case(CELLS[cell_key](), input_kind, num_layers, reduction)


@pytest.mark.parametrize("variant", cell_variants())
def test_grads_match_finite_differences_for_every_parameter(variant, kit_elsewhere):
    """Tokens and scalar inputs, 1 and 2 layers, non-zero state and biases (the kit's check);
    skipped for a plugin cell whose own tests run the check in this session."""
    cell = make_variant(variant)
    if where := kit_elsewhere.finite_differences.get(cell_key(cell)):
        pytest.skip(f"this check runs in {where}, the cell's own tests")
    testing.check_finite_differences(cell)


def test_mean_reduction_scales_the_loss_by_tokens():
    _, _, model_sum, x, y, state = _case("lstm", "scalar", 1, "sum_steps_mean_batch")
    _, _, model_mean, *_ = _case("lstm", "scalar", 1, "mean")
    loss_sum, grads_sum, _ = model_sum.loss_and_grads(x, y, state)
    loss_mean, grads_mean, _ = model_mean.loss_and_grads(x, y, state)
    steps = x.shape[1]
    assert loss_mean == pytest.approx(loss_sum / steps)
    np.testing.assert_allclose(grads_mean["softmax.W"], grads_sum["softmax.W"] / steps)


def test_final_state_matches_reference():
    spec, params, model, x, y, state = _case("lstm", "tokens", 2)
    _, _, final = model.loss_and_grads(x, y, state)
    _, _, expected = reference_forward(spec, params, x, y, state)
    for ours, theirs in zip(final, expected):
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_gradient_norms_at_the_last_step_have_the_closed_form():
    """At t = T-1 only the softmax feeds h_t, so dL_T/dh_t = (softmax - onehot) W^T exactly."""
    spec, params, model, x, y, state = _case("rnn-tanh", "scalar", 1)
    norms = model.gradient_norms_over_time(x, y, state)
    assert set(norms) == {"dLT_dh", "dL_dh"}
    assert norms["dLT_dh"].shape == (1, x.shape[1])
    batch, steps = x.shape
    _, logits, _ = reference_forward(spec, params, x, y, state)
    probs = np.exp(logits[:, -1] - logits[:, -1].max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    probs[np.arange(batch), y[:, -1]] -= 1
    expected_last = np.linalg.norm(probs @ params["softmax.W"].T, axis=1).mean()
    assert norms["dLT_dh"][0, -1] == pytest.approx(expected_last, rel=1e-12)
    assert norms["dL_dh"][0, -1] == pytest.approx(expected_last, rel=1e-12)
    assert (norms["dL_dh"][0, :-1] != norms["dLT_dh"][0, :-1]).all()


def test_lstm_reports_cell_state_gradient_norms():
    _, _, model, x, y, state = _case("lstm", "tokens", 2)
    norms = model.gradient_norms_over_time(x, y, state)
    assert set(norms) == {"dLT_dh", "dLT_ds", "dL_dh"}
    assert all(v.shape == (2, x.shape[1]) and (v > 0).all() for v in norms.values())


def test_dropout_masks_repeat_after_reseeding():
    spec = ModelSpec(LSTMCell(), "tokens", 11, 5, 2, 11, 0.5, "sum_steps_mean_batch")
    params = init_params(spec, 0.1, np.random.default_rng(0))
    x = np.random.default_rng(1).integers(0, 11, (3, 4))
    losses = []
    for _ in range(2):
        model = NumpyBackend.build(spec, params, TrainSettings(impl="cell", dtype="float64"))
        model.set_dropout_seed(7)
        stats, _ = model.train_step(x, x, model.zero_state(3), 1.0)
        losses.append(stats.loss_sum)
    model.set_dropout_seed(8)
    other, _ = model.train_step(x, x, model.zero_state(3), 1.0)
    assert losses[0] == losses[1]
    assert other.loss_sum != losses[0]


def test_clipping_uses_the_global_norm_formula():
    spec, params, model, x, y, state = _case("lstm", "tokens", 1)
    _, grads, _ = model.loss_and_grads(x, y, state)
    norm = np.sqrt(sum((g**2).sum() for g in grads.values()))
    clipped = NumpyBackend.build(spec, params, TrainSettings(impl="cell", dtype="float64", max_grad_norm=norm / 4))
    stats, _ = clipped.train_step(x, y, state, 1.0)
    assert stats.grad_norm == pytest.approx(norm)
    for name, value in clipped.get_params().items():
        np.testing.assert_allclose(value, params[name] - grads[name] / 4, rtol=1e-10, atol=1e-14)


def test_adagrad_starts_from_the_initial_accumulator():
    spec, params, _, x, y, state = _case("rnn-tanh", "tokens", 1)
    model = NumpyBackend.build(spec, params, TrainSettings(impl="cell", dtype="float64", optimizer="adagrad", max_grad_norm=0))
    _, grads, _ = model.loss_and_grads(x, y, state)
    model.train_step(x, y, state, 0.3)
    for name, value in model.get_params().items():
        np.testing.assert_allclose(value, params[name] - 0.3 * grads[name] / np.sqrt(0.1 + grads[name] ** 2), rtol=1e-10)

"""The torch backend beyond the shared conformance grid: float64 agreement with the NumPy
reference to 1e-9, the fused layout (gate order, frozen bias_hh), dropout, devices, threads."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.base import TrainSettings  # noqa: E402
from backends.numpy import NumpyBackend  # noqa: E402
from backends.torch import TorchBackend  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from backends.spec import ModelSpec, init_params  # noqa: E402
from cells import LSTMCell, RNNCell  # noqa: E402
from tests.conformance_cases import rel_err  # noqa: E402

CELLS = {"lstm": lambda: LSTMCell(forget_bias=1.0), "rnn-tanh": lambda: RNNCell("tanh"), "rnn-sigmoid": lambda: RNNCell("sigmoid")}
IMPLS_FOR = {"lstm": ("cell", "fused"), "rnn-tanh": ("cell", "fused"), "rnn-sigmoid": ("cell",)}
CASES = [(cell, impl) for cell, impls in IMPLS_FOR.items() for impl in impls]
BATCH, STEPS, HIDDEN = 3, 5, 6


def _spec(cell_key: str, input_kind: str = "tokens", keep_prob: float = 1.0, layers: int = 2) -> ModelSpec:
    if input_kind == "tokens":
        return ModelSpec(CELLS[cell_key](), "tokens", 11, HIDDEN, layers, 11, keep_prob, "sum_steps_mean_batch")
    return ModelSpec(CELLS[cell_key](), "scalar", 1, HIDDEN, layers, 2, keep_prob, "mean")


def _data(spec: ModelSpec, seed: int = 3):
    rng = np.random.default_rng(seed)
    if spec.input_kind == "tokens":
        x = rng.integers(0, spec.vocab_size, (BATCH, STEPS))
    else:
        x = rng.integers(0, 2, (BATCH, STEPS)).astype(np.float32)
    y = rng.integers(0, spec.n_classes, (BATCH, STEPS))
    return x, y


def _params(spec: ModelSpec, scale: float = 0.5) -> dict[str, np.ndarray]:
    return init_params(spec, scale, np.random.default_rng(0))


def _settings(impl: str, **kw) -> TrainSettings:
    return TrainSettings(impl=impl, **{"dtype": "float64", "threads": 1, **kw})


def _pair(spec, impl, **kw):
    params = _params(spec)
    reference = NumpyBackend.build(spec, params, _settings("cell", **kw))
    return reference, TorchBackend.build(spec, params, _settings(impl, **kw)), params


def _random_state(model, spec, seed=5):
    """A non-zero initial state (every window after the first has one), in both worlds."""
    rng = np.random.default_rng(seed)
    arrays = [tuple(0.5 * rng.standard_normal((BATCH, HIDDEN)) for _ in spec.cell.state_names) for _ in range(spec.num_layers)]
    zero = model.zero_state(BATCH)
    if isinstance(zero[0][0], np.ndarray):
        return arrays
    return [tuple(torch.tensor(a, dtype=t.dtype) for a, t in zip(layer, z)) for layer, z in zip(arrays, zero)]


# -- float64 agreement with the NumPy reference ---------------------------------------------


@pytest.mark.parametrize("input_kind", ["tokens", "scalar"])
@pytest.mark.parametrize("cell_key,impl", CASES)
def test_float64_loss_grads_state_match_numpy_to_1e9(cell_key, impl, input_kind):
    spec = _spec(cell_key, input_kind)
    reference, model, _ = _pair(spec, impl)
    x, y = _data(spec)
    ref_loss, ref_grads, ref_final = reference.loss_and_grads(x, y, _random_state(reference, spec))
    loss, grads, final = model.loss_and_grads(x, y, _random_state(model, spec))
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert sorted(grads) == sorted(ref_grads)
    for name, expected in ref_grads.items():
        assert grads[name].shape == expected.shape, name
        assert rel_err(grads[name], expected) < 1e-9, name
    for ours, theirs in zip(model.state_to_numpy(final), reference.state_to_numpy(ref_final)):
        for a, b in zip(ours, theirs):
            assert rel_err(a, b) < 1e-12


@pytest.mark.parametrize("cell_key,impl", CASES)
def test_float64_gradient_norms_over_time_match_numpy_to_1e9(cell_key, impl):
    spec = _spec(cell_key, "tokens")
    reference, model, _ = _pair(spec, impl)
    x, y = _data(spec)
    expected = reference.gradient_norms_over_time(x, y, _random_state(reference, spec))
    actual = model.gradient_norms_over_time(x, y, _random_state(model, spec))
    assert sorted(actual) == sorted(expected)
    for key, curve in expected.items():
        np.testing.assert_allclose(actual[key], curve, rtol=1e-9, err_msg=key)


@pytest.mark.parametrize("max_grad_norm", [0.05, 0.0])
@pytest.mark.parametrize("optimizer,accumulator", [("sgd", 0.1), ("adagrad", 0.1), ("adagrad", 1e-12)])
@pytest.mark.parametrize("impl", ["cell", "fused"])
def test_float64_updates_with_and_without_clipping_match_numpy(impl, optimizer, accumulator, max_grad_norm):
    """0.05 is far below the gradient norm (clipping active, TF's formula); 0 means no clipping.
    A tiny initial accumulator exposes any epsilon in Adagrad's denominator."""
    spec = _spec("lstm")
    reference, model, _ = _pair(
        spec, impl, optimizer=optimizer, max_grad_norm=max_grad_norm, adagrad_initial_accumulator=accumulator
    )
    ref_state, state = reference.zero_state(BATCH), model.zero_state(BATCH)
    for seed in range(3):
        x, y = _data(spec, seed)
        ref_stats, ref_state = reference.train_step(x, y, ref_state, 0.5)
        stats, state = model.train_step(x, y, state, 0.5)
        assert stats.grad_norm == pytest.approx(ref_stats.grad_norm, rel=1e-10)
        assert stats.grad_norm > 0.05  # else the clipped case would not clip
        assert stats.loss_sum == pytest.approx(ref_stats.loss_sum, rel=1e-10)
        assert stats.n_correct == ref_stats.n_correct
    for name, value in reference.get_params().items():
        assert rel_err(model.get_params()[name], value) < 1e-9, name


@pytest.mark.parametrize("impl", ["cell", "fused"])
def test_eval_step_matches_numpy_including_predictions(impl):
    spec = _spec("lstm")
    reference, model, _ = _pair(spec, impl)
    x, y = _data(spec)
    ref_stats, _ = reference.eval_step(x, y, reference.zero_state(BATCH), predictions=True)
    stats, _ = model.eval_step(x, y, model.zero_state(BATCH), predictions=True)
    assert stats.loss_sum == pytest.approx(ref_stats.loss_sum, rel=1e-12)
    assert stats.n_correct == ref_stats.n_correct and stats.n_tokens == BATCH * STEPS
    assert stats.predictions.shape == (BATCH, STEPS)
    np.testing.assert_array_equal(stats.predictions, ref_stats.predictions)
    plain, _ = model.eval_step(x, y, model.zero_state(BATCH))
    assert plain.predictions is None and plain.loss_sum == stats.loss_sum


# -- the fused layout -------------------------------------------------------------------------


def test_fused_sigmoid_rnn_is_refused_with_the_cells_reason():
    spec = _spec("rnn-sigmoid")
    with pytest.raises(BenchError, match="tanh only"):
        TorchBackend.build(spec, _params(spec), _settings("fused"))
    TorchBackend.build(spec, _params(spec), _settings("cell"))  # the cell impl runs it


def test_fused_lstm_weights_sit_in_torchs_gate_order():
    """torch's weight_ih_l0 rows are gates (i, f, g, o); canonical U columns are (g, i, f, o)."""
    spec = _spec("lstm")
    params = _params(spec)
    model = TorchBackend.build(spec, params, _settings("fused"))
    n = HIDDEN
    module = model.rnns[1]
    canonical = {g: slice(k * n, (k + 1) * n) for k, g in enumerate("gifo")}
    for k, gate in enumerate("ifgo"):
        rows = slice(k * n, (k + 1) * n)
        np.testing.assert_array_equal(module.weight_ih_l0.detach().numpy()[rows], params["layers.1.U"][:, canonical[gate]].T)
        np.testing.assert_array_equal(module.weight_hh_l0.detach().numpy()[rows], params["layers.1.V"][:, canonical[gate]].T)
        np.testing.assert_array_equal(module.bias_ih_l0.detach().numpy()[rows], params["layers.1.b"][canonical[gate]])
    # the forget bias (1.0) landed in torch's f block
    assert np.all(module.bias_ih_l0.detach().numpy()[n : 2 * n] == 1.0)
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
@pytest.mark.parametrize("cell_key", ["lstm", "rnn-tanh"])
def test_fused_bias_hh_stays_zero_and_frozen_while_training(cell_key, optimizer):
    spec = _spec(cell_key)
    model = TorchBackend.build(spec, _params(spec), _settings("fused", optimizer=optimizer, dtype="float32"))
    state = model.zero_state(BATCH)
    before = model.get_params()
    for seed in range(3):
        _, state = model.train_step(*_data(spec, seed), state, 1.0)
    trained = {id(p) for group in model.optimizer.param_groups for p in group["params"]}
    for module in model.rnns:
        assert not module.bias_hh_l0.requires_grad
        assert id(module.bias_hh_l0) not in trained
        assert torch.count_nonzero(module.bias_hh_l0).item() == 0
    assert not np.array_equal(before["layers.0.b"], model.get_params()["layers.0.b"])  # the real bias trains


def test_checkpoint_is_portable_from_numpy_to_fused_torch_and_back():
    """Same keys and canonical layout (accumulators included) as the NumPy backend."""
    spec = _spec("lstm")
    reference, model, _ = _pair(spec, "fused", optimizer="adagrad")
    twin = NumpyBackend.build(spec, _params(spec), _settings("cell", optimizer="adagrad"))
    state = reference.zero_state(BATCH)
    for seed in range(2):
        _, state = reference.train_step(*_data(spec, seed), state, 0.3)
    saved = reference.checkpoint()
    model.restore(saved)
    assert sorted(model.checkpoint()) == sorted(saved)
    for key, value in model.checkpoint().items():
        assert rel_err(value, saved[key]) < 1e-15, key
    for seed in (7, 8):
        x, y = _data(spec, seed)
        a, _ = reference.train_step(x, y, reference.zero_state(BATCH), 0.3)
        b, _ = model.train_step(x, y, model.zero_state(BATCH), 0.3)
        assert b.loss_sum == pytest.approx(a.loss_sum, rel=1e-10)
    twin.restore(model.checkpoint())
    for name, value in reference.get_params().items():
        assert rel_err(twin.get_params()[name], value) < 1e-9, name


def test_checkpoint_before_any_step_holds_the_initial_accumulator():
    spec = _spec("rnn-tanh")
    model = TorchBackend.build(spec, _params(spec), _settings("fused", optimizer="adagrad", adagrad_initial_accumulator=0.25))
    arrays = model.checkpoint()
    assert np.all(arrays["adagrad/layers.0.U"] == 0.25)
    assert arrays["adagrad/layers.0.U"].shape == spec.param_shapes()["layers.0.U"]


def test_non_finite_gradient_skips_the_update():
    spec = _spec("lstm")
    model = TorchBackend.build(spec, _params(spec), _settings("cell"))
    broken = {f"param/{k}": v for k, v in model.get_params().items()}
    broken["param/softmax.b"] = np.full_like(broken["param/softmax.b"], np.nan)
    model.restore(broken)
    before = model.get_params()
    stats, _ = model.train_step(*_data(spec), model.zero_state(BATCH), 1.0)
    assert not np.isfinite(stats.grad_norm)
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


# -- dropout ----------------------------------------------------------------------------------


def _train_losses(model, spec, seed_for_masks, n=3):
    model.set_dropout_seed(seed_for_masks)
    state, losses = model.zero_state(BATCH), []
    for seed in range(n):
        stats, state = model.train_step(*_data(spec, seed), state, 0.5)
        losses.append(stats.loss_sum)
    return losses


@pytest.mark.parametrize("impl", ["cell", "fused"])
def test_dropout_masks_reproducible_after_set_dropout_seed_and_not_global(impl):
    spec = _spec("lstm", keep_prob=0.5)
    a = TorchBackend.build(spec, _params(spec), _settings(impl))
    b = TorchBackend.build(spec, _params(spec), _settings(impl))
    global_rng = torch.random.get_rng_state()
    first = _train_losses(a, spec, 11)
    assert torch.equal(torch.random.get_rng_state(), global_rng)  # masks come from the model's generator
    torch.manual_seed(12345)  # the global RNG does not matter
    assert _train_losses(b, spec, 11) == first
    c = TorchBackend.build(spec, _params(spec), _settings(impl))
    assert _train_losses(c, spec, 12) != first
    # dropout is off in evaluation: two evaluations agree
    x, y = _data(spec)
    assert a.eval_step(x, y, a.zero_state(BATCH))[0].loss_sum == a.eval_step(x, y, a.zero_state(BATCH))[0].loss_sum


def test_cell_and_fused_draw_the_same_masks():
    """Dropout acts at the same places with the same draws, so both impls train identically."""
    spec = _spec("lstm", keep_prob=0.6)
    cell = TorchBackend.build(spec, _params(spec), _settings("cell"))
    fused = TorchBackend.build(spec, _params(spec), _settings("fused"))
    np.testing.assert_allclose(_train_losses(fused, spec, 3), _train_losses(cell, spec, 3), rtol=1e-10)
    no_dropout = TorchBackend.build(_spec("lstm"), _params(spec), _settings("cell"))
    assert not np.allclose(_train_losses(no_dropout, spec, 3), _train_losses(cell, spec, 3))


def test_dropout_scales_the_kept_units():
    """Inverted dropout: kept activations are divided by keep_prob (expected value unchanged)."""
    spec = _spec("lstm", keep_prob=0.25)
    model = TorchBackend.build(spec, _params(spec), _settings("cell"))
    a = torch.ones(4000, dtype=torch.float64)
    dropped = model._dropout(a, train=True)
    assert set(torch.unique(dropped).tolist()) == {0.0, 4.0}
    assert abs(dropped.mean().item() - 1.0) < 0.15
    assert torch.equal(model._dropout(a, train=False), a)


# -- devices, threads, describe, import cost ----------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_gpu_without_cuda_is_a_bench_error():
    spec = _spec("lstm")
    with pytest.raises(BenchError, match=r"--device gpu: torch sees no CUDA GPU \(torch .* built"):
        TorchBackend.build(spec, _params(spec), _settings("fused", device="gpu"))
    auto = TorchBackend.build(spec, _params(spec), _settings("fused", device="auto"))
    assert auto.describe()["device"] == "cpu"


def test_threads_setting_is_applied():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    try:
        spec = _spec("rnn-tanh")
        model = TorchBackend.build(spec, _params(spec), _settings("cell", threads=wanted))
        assert torch.get_num_threads() == wanted
        assert model.describe()["threads"] == wanted
    finally:
        torch.set_num_threads(before)


def test_describe_tells_the_kernel_that_runs():
    spec = _spec("lstm")
    fused32 = TorchBackend.build(spec, _params(spec), _settings("fused", dtype="float32")).describe()
    assert fused32["dtype"] == "float32" and fused32["device"] == "cpu"
    if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        assert "mkldnn" in fused32["kernel"]
        from torch.profiler import profile

        model = TorchBackend.build(spec, _params(spec), _settings("fused", dtype="float32"))
        with profile() as prof:
            model.train_step(*_data(spec), model.zero_state(BATCH), 0.1)
        assert any("mkldnn_rnn" in e.name for e in prof.events())
    fused64 = TorchBackend.build(spec, _params(spec), _settings("fused")).describe()
    assert fused64["kernel"].startswith("aten")
    cell = TorchBackend.build(spec, _params(spec), _settings("cell")).describe()
    assert "one GEMM per window" in cell["kernel"]


def test_versions_name_torch_cuda_and_cudnn():
    versions = TorchBackend.versions()
    assert versions["torch"] == torch.__version__
    assert set(versions) == {"torch", "cuda", "cudnn"}
    assert all(isinstance(v, str) for v in versions.values())


def test_importing_the_backend_does_not_import_torch():
    code = "import sys, backends.torch; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_plugin_cell_runs_in_the_cell_impl_and_is_refused_by_fused():
    """A plugin cell with its own recurrence runs in the cell impl; fused layers cannot follow it."""

    class ScaledRNN(RNNCell):
        name = "scaled-rnn"

        def recurrence(self, ops, params, z_in, state):
            (h_prev,) = state
            return (ops.tanh(2.0 * (z_in + h_prev @ params["V"])),)

    spec = ModelSpec(ScaledRNN("tanh"), "scalar", 1, HIDDEN, 1, 2, 1.0, "mean")
    params = _params(spec)
    model = TorchBackend.build(spec, params, _settings("cell"))
    x, y = _data(spec)
    # tanh(2 (x U + b + h V)) is the plain tanh RNN with U, V and b doubled
    doubled = {k: 2.0 * v if k.startswith("layers.") else v for k, v in params.items()}
    tanh_spec = ModelSpec(RNNCell("tanh"), "scalar", 1, HIDDEN, 1, 2, 1.0, "mean")
    reference = NumpyBackend.build(tanh_spec, doubled, _settings("cell"))
    assert model.loss_and_grads(x, y, model.zero_state(BATCH))[0] == pytest.approx(
        reference.loss_and_grads(x, y, reference.zero_state(BATCH))[0], rel=1e-12
    )
    with pytest.raises(BenchError, match="no fused layer"):
        TorchBackend.build(spec, params, _settings("fused"))


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_hand_written_softmax_layer_matches_torch(scale):
    """Value and the gradients of hidden states, weight and bias (float64, under a
    non-uniform upstream gradient) against F.linear + F.cross_entropy; finite differences
    via gradcheck; a second backward through the same graph; the no-grad path (evaluation)
    gives the same values. Scale 1e3 checks the max-shift (no overflow)."""
    import torch.nn.functional as F

    from backends.torch.losses import linear_softmax_cross_entropy

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(13, 7, dtype=torch.float64, generator=gen).requires_grad_()
    weight = (torch.randn(7, 37, dtype=torch.float64, generator=gen) * scale).requires_grad_()
    bias = torch.randn(37, dtype=torch.float64, generator=gen).requires_grad_()
    targets = torch.randint(0, 37, (13,), generator=gen)
    weights = torch.rand(13, dtype=torch.float64, generator=gen) + 0.5
    inputs = (hidden, weight, bias)
    ce, predicted = linear_softmax_cross_entropy(hidden, weight, bias, targets)
    logits_ref = F.linear(hidden, weight.t(), bias)
    ce_ref = F.cross_entropy(logits_ref, targets, reduction="none")
    torch.testing.assert_close(ce, ce_ref, rtol=1e-12, atol=1e-9 * scale)
    assert torch.equal(predicted, logits_ref.detach().argmax(dim=1))
    grads = torch.autograd.grad((ce * weights).sum(), inputs, retain_graph=True)
    grads_ref = torch.autograd.grad((ce_ref * weights).sum(), inputs)
    for got, expected in zip(grads, grads_ref):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12 * scale)
    again = torch.autograd.grad((ce * weights).sum(), inputs)  # the saved gradient is not consumed
    for got, expected in zip(again, grads_ref):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12 * scale)
    with torch.no_grad():
        ce_eval, predicted_eval = linear_softmax_cross_entropy(hidden, weight, bias, targets)
    torch.testing.assert_close(ce_eval, ce.detach(), rtol=0, atol=0)
    assert torch.equal(predicted_eval, predicted)
    if scale == 1.0:
        assert torch.autograd.gradcheck(
            lambda h, w, b: linear_softmax_cross_entropy(h, w, b, targets)[0] * weights, inputs
        )


def test_hand_written_softmax_layer_predicts_the_first_maximum_on_ties():
    from backends.torch.losses import linear_softmax_cross_entropy

    hidden = torch.eye(3, dtype=torch.float64)
    weight = torch.tensor([[0.0, 2.0, 1.0, 2.0], [3.0, 3.0, 3.0, 3.0], [1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    bias = torch.zeros(4, dtype=torch.float64)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            _, predicted = linear_softmax_cross_entropy(hidden, weight.requires_grad_(grad), bias, torch.zeros(3, dtype=torch.long))
        assert predicted.tolist() == [1, 0, 0]

"""TensorFlow-backend specifics the shared conformance grid does not cover.

float64 against the NumPy float64 reference to 1e-9 (gradients, clipping, Adagrad with
epsilon 0, checkpoints), dropout seeding, retracing, devices, the sigmoid RNN under fused.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from backends.base import TrainSettings
from bench.errors import BenchError
from backends.spec import ModelSpec, init_params
from bench.registry import get_backend, make_cell
from tests.conformance_cases import BATCH, STEPS, rel_err, small_spec, window_stream

pytest.importorskip("tensorflow")

IMPLS = ("cell", "fused")


def _build(backend: str, spec: ModelSpec, impl: str = "cell", init_scale: float = 0.1, **settings):
    params = init_params(spec, init_scale, np.random.default_rng(0))
    settings.setdefault("threads", 1)
    return get_backend(backend).build(spec, params, TrainSettings(impl=impl, **settings))


def _pair64(spec: ModelSpec, impl: str, **settings):
    """(NumPy float64 reference, tf float64), same weights and settings."""
    return (
        _build("numpy", spec, "cell", dtype="float64", **settings),
        _build("tf", spec, impl, dtype="float64", **settings),
    )


def _sigmoid_rnn(task: str = "tokens") -> ModelSpec:
    cell = make_cell("rnn", activation="sigmoid")
    if task == "tokens":
        return ModelSpec(cell, "tokens", 50, 16, 2, 50, 1.0, "sum_steps_mean_batch")
    return ModelSpec(cell, "scalar", 1, 16, 2, 2, 1.0, "mean")


def test_importing_the_backend_does_not_import_tensorflow():
    code = "import sys, backends.tf; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_device_gpu_without_a_gpu_is_a_bench_error():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(BenchError, match="--device gpu"):
        _build("tf", small_spec("lstm", "tokens"), device="gpu")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell_name,task", [("lstm", "tokens"), ("rnn", "echo"), ("sigmoid-rnn", "tokens")])
def test_float64_loss_grads_state_and_norms_match_reference_to_1e9(impl, cell_name, task):
    spec = _sigmoid_rnn(task) if cell_name == "sigmoid-rnn" else small_spec(cell_name, task)
    reference, model = _pair64(spec, impl)
    x, y = window_stream(spec, 1)[0]
    ref_loss, ref_grads, ref_state = reference.loss_and_grads(x, y, reference.zero_state(BATCH))
    loss, grads, state = model.loss_and_grads(x, y, model.zero_state(BATCH))
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert sorted(grads) == sorted(ref_grads)
    for name, ref_grad in ref_grads.items():
        assert grads[name].dtype == np.float64
        assert rel_err(grads[name], ref_grad) < 1e-9, name
    for ours, theirs in zip(model.state_to_numpy(state), reference.state_to_numpy(ref_state)):
        for a, b in zip(ours, theirs):
            assert rel_err(a, b) < 1e-12
    expected = reference.gradient_norms_over_time(x, y, reference.zero_state(BATCH))
    actual = model.gradient_norms_over_time(x, y, model.zero_state(BATCH))
    assert sorted(actual) == sorted(expected)
    for key, curve in expected.items():
        np.testing.assert_allclose(actual[key], curve, rtol=1e-9, err_msg=key)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("optimizer,lr,max_grad_norm", [("sgd", 1.0, 0.5), ("adagrad", 0.3, 0.0)])
def test_float64_training_tracks_reference_exactly(impl, optimizer, lr, max_grad_norm):
    """Clipping active (0.5 < the gradient norms, about 1.5) or off (0), Adagrad with
    Keras's epsilon 0, the lr changed every step: the float64 weights stay within 1e-9."""
    spec = small_spec("lstm", "tokens")
    reference, model = _pair64(spec, impl, optimizer=optimizer, max_grad_norm=max_grad_norm)
    ref_state, state = reference.zero_state(BATCH), model.zero_state(BATCH)
    for step, (x, y) in enumerate(window_stream(spec, 6)):
        step_lr = lr / (1 + step)
        ref_stats, ref_state = reference.train_step(x, y, ref_state, step_lr)
        stats, state = model.train_step(x, y, state, step_lr)
        assert stats.loss_sum == pytest.approx(ref_stats.loss_sum, rel=1e-10)
        assert stats.grad_norm == pytest.approx(ref_stats.grad_norm, rel=1e-9)
        assert stats.n_correct == ref_stats.n_correct and stats.n_tokens == BATCH * STEPS
    for name, value in reference.get_params().items():
        assert rel_err(model.get_params()[name], value) < 1e-9, name
    if optimizer == "adagrad":
        ours, theirs = model.checkpoint(), reference.checkpoint()
        assert sorted(ours) == sorted(theirs)
        for key in theirs:
            assert rel_err(ours[key], theirs[key]) < 1e-9, key


@pytest.mark.parametrize("impl", IMPLS)
def test_numpy_checkpoint_restores_into_tf_and_continues_identically(impl):
    spec = small_spec("lstm", "tokens")
    reference, _ = _pair64(spec, impl, optimizer="adagrad")
    windows = window_stream(spec, 4)
    for x, y in windows[:2]:
        reference.train_step(x, y, reference.zero_state(BATCH), 0.3)
    model = _build("tf", spec, impl, init_scale=0.05, dtype="float64", optimizer="adagrad")
    model.restore(reference.checkpoint())
    for x, y in windows[2:]:
        a, _ = reference.train_step(x, y, reference.zero_state(BATCH), 0.3)
        b, _ = model.train_step(x, y, model.zero_state(BATCH), 0.3)
        assert b.loss_sum == pytest.approx(a.loss_sum, rel=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
def test_second_train_step_with_another_lr_does_not_retrace(impl):
    spec = small_spec("rnn", "tokens")
    model = _build("tf", spec, impl)
    state = model.zero_state(BATCH)
    for step, (x, y) in enumerate(window_stream(spec, 3)):
        _, state = model.train_step(x.astype(np.int32 if step else np.int64), y, state, 1.0 / (step + 1))
    assert model.trace_counts["train"] == 1
    assert model._train_fn.experimental_get_tracing_count() == 1
    for predictions in (False, True, False):
        model.eval_step(x, y, state, predictions=predictions)
    assert model.trace_counts["eval"] == 2  # one per value of `predictions`


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_is_reproducible_after_set_dropout_seed_and_train_only(impl):
    base = small_spec("lstm", "tokens")
    spec = ModelSpec(base.cell, "tokens", 50, 16, 2, 50, 0.5, "sum_steps_mean_batch")
    x, y = window_stream(spec, 1)[0]

    def one_step(seed, steps=1):
        model = _build("tf", spec, impl, seed=123)
        model.set_dropout_seed(seed)
        for _ in range(steps):
            stats, _ = model.train_step(x, y, model.zero_state(BATCH), 1.0)
        return stats.loss_sum, model.get_params()

    ce_a, params_a = one_step(7)
    ce_b, params_b = one_step(7)
    ce_c, _ = one_step(8)
    assert ce_a == ce_b
    for name in params_a:
        np.testing.assert_array_equal(params_a[name], params_b[name])
    assert ce_c != ce_a  # another seed, other masks

    model = _build("tf", spec, impl)
    first, _ = model.train_step(x, y, model.zero_state(BATCH), 0.0)  # lr 0: weights unchanged
    second, _ = model.train_step(x, y, model.zero_state(BATCH), 0.0)
    assert first.loss_sum != second.loss_sum  # the masks change from step to step
    # evaluation never drops: identical to the dropout-free reference
    reference = _build("numpy", spec, "cell", dtype="float64")
    ours, _ = model.eval_step(x, y, model.zero_state(BATCH), predictions=True)
    theirs, _ = reference.eval_step(x, y, reference.zero_state(BATCH), predictions=True)
    assert ours.loss_sum == pytest.approx(theirs.loss_sum, rel=1e-5)
    np.testing.assert_array_equal(ours.predictions, theirs.predictions)
    assert ours.predictions.shape == (BATCH, STEPS)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_finite_gradient_norm_skips_the_update(impl):
    spec = small_spec("rnn", "tokens")
    model = _build("tf", spec, impl)
    arrays = model.checkpoint()
    arrays["param/softmax.b"] = np.full_like(arrays["param/softmax.b"], np.nan)
    model.restore(arrays)
    before = model.get_params()
    x, y = window_stream(spec, 1)[0]
    stats, _ = model.train_step(x, y, model.zero_state(BATCH), 1.0)
    assert not np.isfinite(stats.grad_norm)
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_sigmoid_rnn_runs_under_fused_as_keras_simplernn():
    """Keras's SimpleRNN takes activation="sigmoid" (generic loop, no cuDNN), so the tf
    fused impl runs what torch's nn.RNN (tanh or relu only) declines."""
    from backends.tf import TFBackend
    from backends.torch import TorchBackend

    spec = _sigmoid_rnn()
    assert TFBackend.unsupported(spec.cell, "fused") is None
    assert TorchBackend.unsupported(spec.cell, "fused") is not None
    model = _build("tf", spec, "fused")
    assert model.layers[0].activation.__name__ == "sigmoid"
    assert "sigmoid" in model.describe()["kernel"]


def test_describe_and_versions_report_what_ran():
    model = _build("tf", small_spec("lstm", "tokens"), "fused", threads=1)
    info = model.describe()
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert "cudnn" not in info["kernel"].lower()
    assert set(info["threads"]) == {"intra_op", "inter_op"}
    versions = get_backend("tf").versions()
    assert versions["tensorflow"] and versions["keras"]


def test_threads_after_tensorflow_initialised_do_not_crash_and_are_reported_truthfully():
    import tensorflow as tf

    _build("tf", small_spec("rnn", "tokens"), threads=1)  # TF's runtime is initialised now
    model = _build("tf", small_spec("rnn", "tokens"), threads=3)
    assert model.describe()["threads"] == {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def test_fused_lstm_layout_is_keras_gate_order():
    """Canonical g, i, f, o blocks land in Keras's i, f, c, o order, forget bias included."""
    spec = small_spec("lstm", "tokens")
    params = init_params(spec, 0.1, np.random.default_rng(0))
    model = get_backend("tf").build(spec, params, TrainSettings(impl="fused", dtype="float64", threads=1))
    H = spec.hidden_size
    cell = model.layers[0].cell
    kernel, bias = np.array(cell.kernel.numpy()), np.array(cell.bias.numpy())
    U = params["layers.0.U"]
    for keras_block, ours in enumerate((1, 2, 0, 3)):  # i, f, c(=g), o
        np.testing.assert_array_equal(kernel[:, keras_block * H : (keras_block + 1) * H], U[:, ours * H : (ours + 1) * H])
    np.testing.assert_array_equal(bias[H : 2 * H], np.ones(H))  # Keras's f block holds the forget bias
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, params[name])


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_hand_written_softmax_layer_matches_tensorflows_op(scale):
    """Value and the gradients of hidden states, weight and bias against matmul + bias +
    tf.nn.sparse_softmax_cross_entropy_with_logits in float64, under a non-uniform upstream
    gradient; predicted ids against argmax. Scale 1e3 checks the max-shift (no overflow,
    the log-normaliser from the probability at the maximum never underflows)."""
    import tensorflow as tf

    from backends.tf.losses import linear_softmax_cross_entropy

    rng = np.random.default_rng(3)
    hidden = tf.constant(rng.normal(size=(13, 7)))
    weight = tf.constant(rng.normal(size=(7, 37)) * scale)
    bias = tf.constant(rng.normal(size=37))
    labels = tf.constant(rng.integers(0, 37, 13).astype(np.int32))
    weights = tf.constant(rng.uniform(0.5, 2.0, 13))

    def reference(h, w, b, y):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.matmul(h, w) + b), None

    results = []
    for fn in (linear_softmax_cross_entropy, reference):
        with tf.GradientTape() as tape:
            tape.watch([hidden, weight, bias])
            ce, predicted = fn(hidden, weight, bias, labels)
            loss = tf.reduce_sum(ce * weights)
        results.append((ce.numpy(), [g.numpy() for g in tape.gradient(loss, [hidden, weight, bias])], predicted))
    (ce, grads, predicted), (ce_ref, grads_ref, _) = results
    assert np.all(np.isfinite(ce)) and all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_allclose(ce, ce_ref, rtol=1e-12, atol=1e-9 * scale)
    for got, expected in zip(grads, grads_ref):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_array_equal(predicted.numpy(), tf.argmax(tf.matmul(hidden, weight) + bias, axis=-1).numpy())


def test_hand_written_softmax_layer_gradient_matches_finite_differences():
    import tensorflow as tf

    from backends.tf.losses import linear_softmax_cross_entropy

    rng = np.random.default_rng(4)
    inputs = [tf.constant(rng.normal(size=(5, 3))), tf.constant(rng.normal(size=(3, 11))), tf.constant(rng.normal(size=11))]
    labels = tf.constant(rng.integers(0, 11, 5).astype(np.int32))
    weights = tf.constant(rng.uniform(0.5, 2.0, 5))
    theoretical, numerical = tf.test.compute_gradient(
        lambda h, w, b: tf.reduce_sum(linear_softmax_cross_entropy(h, w, b, labels)[0] * weights), inputs
    )
    for got, expected in zip(theoretical, numerical):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_hand_written_softmax_layer_predicts_the_first_maximum_on_ties():
    import tensorflow as tf

    from backends.tf.losses import linear_softmax_cross_entropy

    weight = tf.constant([[0.0, 2.0, 1.0, 2.0], [3.0, 3.0, 3.0, 3.0], [1.0, 0.0, 1.0, 1.0]], tf.float64)
    _, predicted = linear_softmax_cross_entropy(tf.eye(3, dtype=tf.float64), weight, tf.zeros(4, tf.float64), tf.zeros(3, tf.int32))
    assert predicted.numpy().tolist() == [1, 0, 0]

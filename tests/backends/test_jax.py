"""The JAX backend beyond the shared conformance grid: float64 agreement with the NumPy
reference to 1e-9, the Flax layout and the fused refusals, compile time kept apart from
step time, threads, devices, dropout and the lazy import."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")

from backends.base import TrainSettings  # noqa: E402
from backends.jax import JaxBackend  # noqa: E402
from backends.numpy import NumpyBackend  # noqa: E402
from backends.spec import ModelSpec, init_params  # noqa: E402
from bench.config import make_config  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.run.runner import RunOptions, run  # noqa: E402
from cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from cells.base import CellSpec  # noqa: E402
from tests.conformance_cases import rel_err  # noqa: E402

BATCH, STEPS, HIDDEN = 3, 5, 6
CASES = [("lstm", "cell"), ("lstm", "fused"), ("rnn-sigmoid", "fused"), ("gru", "cell")]
CELLS = {"lstm": LSTMCell, "rnn-sigmoid": lambda: RNNCell("sigmoid"), "gru": GRUCell}


def _spec(cell_key: str, input_kind: str = "tokens", keep_prob: float = 1.0) -> ModelSpec:
    if input_kind == "tokens":
        return ModelSpec(CELLS[cell_key](), "tokens", 11, HIDDEN, 2, 11, keep_prob, "sum_steps_mean_batch")
    return ModelSpec(CELLS[cell_key](), "vector", 2, HIDDEN, 2, 1, keep_prob, "mean", "regress", (-1,))


def _data(spec: ModelSpec, seed: int = 3):
    rng = np.random.default_rng(seed)
    if spec.input_kind == "tokens":
        return rng.integers(0, spec.vocab_size, (BATCH, STEPS)), rng.integers(0, spec.n_classes, (BATCH, STEPS))
    return rng.uniform(0, 1, (BATCH, STEPS, 2)), rng.uniform(0, 2, (BATCH, STEPS, 1))


def _settings(impl: str, **kw) -> TrainSettings:
    return TrainSettings(impl=impl, **{"dtype": "float64", "threads": 1, **kw})


def _pair(spec: ModelSpec, impl: str, **kw):
    params = init_params(spec, 0.5, np.random.default_rng(0))
    return NumpyBackend.build(spec, params, _settings("cell", **kw)), JaxBackend.build(spec, params, _settings(impl, **kw))


# -- float64 agreement with the NumPy reference ---------------------------------------------


@pytest.mark.parametrize("cell_key,impl", CASES)
@pytest.mark.parametrize("input_kind", ["tokens", "regress"])
def test_float64_loss_grads_state_and_norms_match_numpy_to_1e9(cell_key, impl, input_kind):
    spec = _spec(cell_key, "tokens" if input_kind == "tokens" else "vector")
    reference, model = _pair(spec, impl)
    x, y = _data(spec)
    ref_loss, ref_grads, ref_state = reference.loss_and_grads(x, y, reference.zero_state(BATCH))
    loss, grads, state = model.loss_and_grads(x, y, model.zero_state(BATCH))
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert sorted(grads) == sorted(ref_grads)
    for name, ref_grad in ref_grads.items():
        assert grads[name].dtype == np.float64 and rel_err(grads[name], ref_grad) < 1e-9, name
    for ours, theirs in zip(model.state_to_numpy(state), reference.state_to_numpy(ref_state)):
        for a, b in zip(ours, theirs):
            assert rel_err(a, b) < 1e-12
    expected = reference.gradient_norms_over_time(x, y, ref_state)
    actual = model.gradient_norms_over_time(x, y, state)  # from a non-zero state
    assert sorted(actual) == sorted(expected)
    for key, curve in expected.items():
        np.testing.assert_allclose(actual[key], curve, rtol=1e-9, err_msg=key)


@pytest.mark.parametrize("impl", ["cell", "fused"])
@pytest.mark.parametrize("optimizer,max_grad_norm", [("sgd", 0.5), ("adagrad", 0.0), ("rmsprop", 0.5)])
def test_float64_updates_track_numpy_with_and_without_clipping(impl, optimizer, max_grad_norm):
    """Clipping active (0.5, below the norms) or off, every optimizer, the lr changed every
    step (no recompilation: it is an argument): weights, slots and norms within 1e-9."""
    spec = _spec("lstm")
    reference, model = _pair(spec, impl, optimizer=optimizer, max_grad_norm=max_grad_norm)
    ref_state, state = reference.zero_state(BATCH), model.zero_state(BATCH)
    for step in range(4):
        x, y = _data(spec, seed=step)
        ref_stats, ref_state = reference.train_step(x, y, ref_state, 0.3 / (1 + step))
        stats, state = model.train_step(x, y, state, 0.3 / (1 + step))
        assert stats.loss_sum == pytest.approx(ref_stats.loss_sum, rel=1e-10)
        assert stats.grad_norm == pytest.approx(ref_stats.grad_norm, rel=1e-9)
        assert (stats.n_correct, stats.n_tokens) == (ref_stats.n_correct, ref_stats.n_tokens)
    ours, theirs = model.checkpoint(), reference.checkpoint()
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert rel_err(ours[key], theirs[key]) < 1e-9, key
    assert model.compiled_count <= 1  # one window shape, one compiled train step (0: compiled by an earlier model)


def test_eval_step_matches_numpy_including_predictions():
    spec = _spec("lstm", "vector")
    reference, model = _pair(spec, "fused")
    x, y = _data(spec)
    ours, _ = model.eval_step(x, y, model.zero_state(BATCH), predictions=True)
    theirs, _ = reference.eval_step(x, y, reference.zero_state(BATCH), predictions=True)
    assert ours.loss_sum == pytest.approx(theirs.loss_sum, rel=1e-12)
    assert ours.predictions.shape == (BATCH, 1, 1)
    np.testing.assert_allclose(ours.predictions, theirs.predictions, rtol=1e-12)


# -- the fused impl: Flax's layout and what it refuses --------------------------------------


def test_fused_lstm_variables_are_flax_gate_tensors_of_the_canonical_weights():
    from backends.jax.model import flax_variables

    cell = LSTMCell()
    p = {name: np.random.default_rng(1).standard_normal(shape) for name, shape in cell.param_shapes(3, 4).items()}
    tree = flax_variables(ModelSpec(cell, "vector", 3, 4, 1, 2), p)["params"]["cell"]
    for gate, k in (("g", 0), ("i", 1), ("f", 2), ("o", 3)):  # canonical blocks g, i, f, o
        block = slice(4 * k, 4 * (k + 1))
        np.testing.assert_array_equal(tree[f"i{gate}"]["kernel"], p["U"][:, block])
        np.testing.assert_array_equal(tree[f"h{gate}"]["kernel"], p["V"][:, block])
        np.testing.assert_array_equal(tree[f"h{gate}"]["bias"], p["b"][block])
        assert "bias" not in tree[f"i{gate}"]  # Flax's input kernels have none: b is the one bias


@pytest.mark.parametrize("reset_gate,why", [
    ("after", "flax.linen.GRUCell has a recurrent bias in n only, none in r and z, so it cannot train the cell's b_h"),
    ("before", "flax.linen.GRUCell resets after the recurrent product"),
])
def test_fused_refuses_the_gru_with_flaxs_reason_in_one_line(reset_gate, why):
    assert JaxBackend.unsupported(GRUCell(reset_gate), "fused") == (
        f"jax has no fused layer for cell 'gru' with reset_gate={reset_gate!r} ({why}); use --impl cell")
    assert JaxBackend.unsupported(GRUCell(reset_gate), "cell") is None
    spec = ModelSpec(GRUCell(reset_gate), "scalar", 1, 4, 1, 2)
    with pytest.raises(BenchError, match="no fused layer for cell 'gru'"):
        JaxBackend.build(spec, init_params(spec, 0.1, np.random.default_rng(0)), _settings("fused"))


class DoubleState(CellSpec):
    """A plugin cell whose second state reads the first within the step (as the LSTM's h
    reads s): the gradient norms must see that use, with no knowledge of the equations."""

    name = "double-state"
    gates = ("a",)
    state_names = ("s", "h")

    def recurrence(self, ops, params, z_in, state):
        s = ops.tanh(z_in + state[1] @ params["V"])
        return s, ops.sigmoid(s) * s


def test_plugin_cell_runs_in_the_cell_impl_and_is_refused_by_fused():
    """Its gradient norms over time match torch's ``cell`` impl (autograd of the state
    tensors themselves, every use counted) to 1e-9 in float64."""
    pytest.importorskip("torch")
    from backends.torch import TorchBackend

    cell = DoubleState()
    assert JaxBackend.unsupported(cell, "fused") == "jax has no fused layer for cell 'double-state'; use --impl cell"
    spec = ModelSpec(cell, "scalar", 1, HIDDEN, 2, 2, 1.0, "mean")
    params = init_params(spec, 0.5, np.random.default_rng(0))
    model = JaxBackend.build(spec, params, _settings("cell"))
    reference = TorchBackend.build(spec, params, _settings("cell"))
    x, y = np.random.default_rng(2).integers(0, 2, (BATCH, STEPS)).astype(float), np.ones((BATCH, STEPS), int)
    expected = reference.gradient_norms_over_time(x, y, reference.zero_state(BATCH))
    actual = model.gradient_norms_over_time(x, y, model.zero_state(BATCH))
    assert sorted(actual) == sorted(expected) == ["dLT_dh", "dLT_ds", "dL_dh"]
    for key, curve in expected.items():
        np.testing.assert_allclose(actual[key], curve, rtol=1e-9, err_msg=key)


# -- compile time, threads, devices, dropout, import cost -----------------------------------


def test_compile_time_is_recorded_and_kept_out_of_tokens_per_s(tmp_path):
    config = make_config("echo", backend="jax", impl="cell", cell="rnn", epochs=2, total_series_length=600,
                         threads=1, seed=11)  # a seed no other test uses: a fresh compile
    record = run(config, RunOptions(results_dir=str(tmp_path), quiet=True)).record
    first, second = (epoch["train"] for epoch in record["epochs"])
    assert first["compile_seconds"] >= 0 and second["compile_seconds"] == 0  # shapes compiled once, in epoch 1
    for metrics in (first, second, record["final"]["test"]):
        processed = metrics["tokens"]  # every step is scored on the echo task
        assert metrics["tokens_per_s"] == pytest.approx(processed / (metrics["seconds"] - metrics["compile_seconds"]))
    # XLA's pool is fixed when this process first started JAX (one thread only if the first
    # model asked for one: the next test); the record says what it runs with
    from backends.jax.runtime import thread_setting

    assert record["backend"]["threads"] == thread_setting()["threads"] and record["environment"]["threads"] == 1


def test_threads_one_sets_xlas_flag_before_jax_starts_and_the_record_says_so():
    code = (
        "import json, os, sys, numpy as np\n"
        "from backends.jax import JaxBackend\n"
        "from backends.base import TrainSettings\n"
        "from backends.spec import ModelSpec, init_params\n"
        "from cells import RNNCell\n"
        "assert 'jax' not in sys.modules\n"
        "spec = ModelSpec(RNNCell(), 'scalar', 1, 4, 1, 2)\n"
        "m = JaxBackend.build(spec, init_params(spec, 0.1, np.random.default_rng(0)), TrainSettings(impl='cell', threads=1))\n"
        "print(json.dumps(m.describe()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        **__import__("os").environ, "XLA_FLAGS": ""})
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout.strip().splitlines()[-1])
    assert described["threads"] == 1 and "--xla_cpu_multi_thread_eigen=false" in described["xla_flags"]


def test_device_gpu_without_a_gpu_is_a_one_line_bench_error():
    import jax

    try:
        if jax.devices("gpu"):
            pytest.skip("a GPU is visible")
    except RuntimeError:
        pass
    spec = _spec("lstm")
    params = init_params(spec, 0.1, np.random.default_rng(0))
    with pytest.raises(BenchError, match=r"^--device gpu: JAX sees no GPU \(jaxlib .*\); use --device cpu or auto$"):
        JaxBackend.build(spec, params, _settings("cell", device="gpu"))
    assert JaxBackend.build(spec, params, _settings("cell", device="auto")).describe()["device"] == "cpu"


@pytest.mark.parametrize("impl", ["cell", "fused"])
def test_dropout_is_reproducible_after_set_dropout_seed_and_train_only(impl):
    spec = _spec("lstm", keep_prob=0.5)
    x, y = _data(spec)

    def one_step(seed):
        model = JaxBackend.build(spec, init_params(spec, 0.1, np.random.default_rng(0)), _settings(impl, seed=123))
        model.set_dropout_seed(seed)
        first, _ = model.train_step(x, y, model.zero_state(BATCH), 0.0)
        second, _ = model.train_step(x, y, model.zero_state(BATCH), 0.0)
        return first.loss_sum, second.loss_sum, model

    a1, a2, model = one_step(7)
    b1, b2, _ = one_step(7)
    c1, _, _ = one_step(8)
    assert (a1, a2) == (b1, b2) and a1 != a2 and c1 != a1  # same seed, same masks; a new mask every step
    reference = NumpyBackend.build(spec, init_params(spec, 0.1, np.random.default_rng(0)), _settings("cell"))
    ours, _ = model.eval_step(x, y, model.zero_state(BATCH))
    theirs, _ = reference.eval_step(x, y, reference.zero_state(BATCH))
    assert ours.loss_sum == pytest.approx(theirs.loss_sum, rel=1e-12)  # evaluation never drops


def test_non_finite_gradient_norm_skips_the_update():
    spec = _spec("lstm")
    model = JaxBackend.build(spec, init_params(spec, 0.1, np.random.default_rng(0)), _settings("cell"))
    arrays = model.checkpoint()
    arrays["param/softmax.b"] = np.full_like(arrays["param/softmax.b"], np.nan)
    model.restore(arrays)
    before = model.get_params()
    stats, _ = model.train_step(*_data(spec), model.zero_state(BATCH), 1.0)
    assert not np.isfinite(stats.grad_norm)
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_importing_and_listing_the_backend_does_not_import_jax():
    code = ("import sys, backends.jax; from backends.jax import JaxBackend; from cells import LSTMCell\n"
            "JaxBackend.unsupported(LSTMCell(), 'fused'); JaxBackend.unavailable_reason()\n"
            "print(sorted(m for m in ('jax', 'flax', 'jaxlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_versions_name_jax_jaxlib_and_flax():
    versions = JaxBackend.versions()
    assert {"jax", "jaxlib", "flax"} <= set(versions) and all(isinstance(v, str) for v in versions.values())

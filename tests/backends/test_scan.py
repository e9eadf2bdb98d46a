"""The ``scan`` impl beyond the conformance grid: which cells it runs (and the one line it
says for the others), the default ``recurrence`` a linear cell gets, and each backend's scan
against a float64 step-by-step loop for gates that round to 0 and candidates of both signs,
the state carried across windows."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from backends.base import SCAN_IMPL, TrainSettings
from backends.spec import ModelSpec, init_params
from bench.cli import main
from bench.registry import backend_names, get_backend, make_cell
from cells import GRUCell, LSTMCell, RNNCell
from cells.base import NUMPY_OPS, CellSpec
from mingru import MinGRUCell
from tests.conformance_cases import rel_err

STEPS, BATCH, HIDDEN = 37, 3, 4
SCAN_BACKENDS = [name for name in backend_names() if SCAN_IMPL in get_backend(name).impls]
NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
NEEDS_JAX = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
NEEDS_TF = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")


class _Given(MinGRUCell):
    """A linear cell whose ``a`` and ``b`` are the two halves of ``z_in`` as they are: the
    numpy scan's own recurrence and adjoint, seen through the kernel interface."""

    name = "given"

    def linear_recurrence(self, ops, params, z_in):
        n = z_in.shape[-1] // 2
        return z_in[..., :n], z_in[..., n:]

    def linear_recurrence_grad(self, params, z_in, da, db):
        return np.concatenate([da, db], axis=-1), {}


# -- which cells it runs -------------------------------------------------------------------


@pytest.mark.parametrize("cell", [LSTMCell(), GRUCell(), GRUCell("before"), RNNCell(), RNNCell("sigmoid")],
                         ids=lambda c: c.name)
def test_built_in_cells_are_not_linear_and_scan_says_why_in_one_line(cell):
    assert not cell.is_linear
    for name in SCAN_BACKENDS:
        why = get_backend(name).unsupported(cell, SCAN_IMPL)
        assert why and "\n" not in why
        assert why.startswith(f"{name} has no scan for cell {cell.name!r}: it declares no linear recurrence")
        assert why.endswith("use --impl cell")


def test_mingru_is_linear_and_every_scan_backend_runs_it():
    assert MinGRUCell().is_linear
    assert SCAN_BACKENDS  # torch and jax at least, where installed
    for name in SCAN_BACKENDS:
        assert get_backend(name).unsupported(MinGRUCell(), SCAN_IMPL) is None


def test_bench_run_scan_with_a_non_linear_cell_exits_2_with_that_line(capsys, tmp_path):
    backend = SCAN_BACKENDS[0]
    code = main(["run", "--backend", backend, "--impl", "scan", "--cell", "lstm", "--epochs", "1",
                 "--total-series-length", "1500", "--quiet", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert get_backend(backend).unsupported(LSTMCell(), "scan") in err
    assert not list(tmp_path.glob("*.json"))  # refused before a record exists


def test_the_default_recurrence_is_a_h_plus_b():
    """A cell that declares only ``linear_recurrence`` steps by ``h_t = a_t h_{t-1} + b_t``."""
    rng = np.random.default_rng(0)
    cell = MinGRUCell()
    z_in, h = rng.standard_normal((BATCH, 2 * HIDDEN)), rng.standard_normal((BATCH, HIDDEN))
    a, b = cell.linear_recurrence(NUMPY_OPS, {}, z_in)
    (stepped,) = cell.recurrence(NUMPY_OPS, {}, z_in, (h,))
    np.testing.assert_array_equal(stepped, a * h + b)
    # written on the last axis, the same lines give a whole window's a and b at once
    window = rng.standard_normal((5, BATCH, 2 * HIDDEN))
    a_all, b_all = cell.linear_recurrence(NUMPY_OPS, {}, window)
    for t in range(5):
        a_t, b_t = cell.linear_recurrence(NUMPY_OPS, {}, window[t])
        np.testing.assert_array_equal(a_all[t], a_t)
        np.testing.assert_array_equal(b_all[t], b_t)


def test_a_cell_with_neither_recurrence_says_so():
    class Nothing(MinGRUCell):
        name = "nothing"
        linear_recurrence = CellSpec.linear_recurrence  # the base's: nothing declared

    assert not Nothing().is_linear
    with pytest.raises(NotImplementedError, match="defines neither its recurrence nor a linear recurrence"):
        Nothing().recurrence(NUMPY_OPS, {}, np.zeros((1, 2)), (np.zeros((1, 1)),))


# -- each backend's scan against a float64 step-by-step loop ----------------------------------


def _window(seed: int = 0) -> tuple[np.ndarray, ...]:
    """a in (0, 1) with a sixth of it exactly 0 (1 - σ(x) for large x rounds there) and a few
    at 1 - 1e-12, b of both signs (and some exactly 0), h0 and the loss weights w."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, (STEPS, BATCH, HIDDEN))
    a[rng.uniform(size=a.shape) < 1 / 6] = 0.0
    a[rng.uniform(size=a.shape) < 1 / 20] = 1 - 1e-12
    b = rng.standard_normal((STEPS, BATCH, HIDDEN))
    b[rng.uniform(size=b.shape) < 1 / 10] = 0.0
    return a, b, rng.standard_normal((BATCH, HIDDEN)), rng.standard_normal((STEPS, BATCH, HIDDEN))


def _loop(a: np.ndarray, b: np.ndarray, h0: np.ndarray, w: np.ndarray) -> tuple[float, ...]:
    """loss = sum(w * h) and its gradients in a, b, h0 by the float64 step-by-step loop and
    its adjoint written out: g_t = w_t + a_{t+1} g_{t+1}."""
    hs, h = [], h0
    for t in range(len(a)):
        h = a[t] * h + b[t]
        hs.append(h)
    hs = np.stack(hs)
    g, next_g = np.zeros_like(hs), np.zeros_like(h0)
    for t in reversed(range(len(a))):
        next_g = w[t] + (a[t + 1] * next_g if t + 1 < len(a) else 0.0)
        g[t] = next_g
    h_prev = np.concatenate([h0[None], hs[:-1]])
    return float((w * hs).sum()), hs, g * h_prev, g, a[0] * g[0]


@NEEDS_TORCH
def test_torch_scan_equals_the_float64_loop_loss_and_every_gradient():
    import torch

    from backends.torch.scan import linear_scan

    a, b, h0, w = _window()
    loss, hs, da, db, dh0 = _loop(a, b, h0, w)
    ta, tb, th0 = (torch.tensor(v, requires_grad=True) for v in (a, b, h0))
    out = linear_scan(ta, tb, th0)
    t_loss = (torch.tensor(w) * out).sum()
    t_loss.backward()
    assert abs(t_loss.item() - loss) <= 1e-9 * abs(loss)
    assert rel_err(out.detach().numpy(), hs) < 1e-9
    for name, ours, theirs in (("a", ta.grad, da), ("b", tb.grad, db), ("h0", th0.grad, dh0)):
        assert rel_err(ours.numpy(), theirs) < 1e-9, name
    # autograd through the loop itself agrees too (the adjoint above is not the only witness)
    la, lb, lh = (torch.tensor(v, requires_grad=True) for v in (a, b, h0))
    h, total = lh, 0.0
    for t in range(STEPS):
        h = la[t] * h + lb[t]
        total = total + (torch.tensor(w[t]) * h).sum()
    total.backward()
    assert rel_err(ta.grad.numpy(), la.grad.numpy()) < 1e-9 and rel_err(th0.grad.numpy(), lh.grad.numpy()) < 1e-9


@NEEDS_TORCH
def test_torch_scan_refuses_a_negative_a_in_one_line():
    import torch

    from backends.torch.scan import scan_layer
    from cells.errors import BenchError

    class Negative(MinGRUCell):
        name = "negative"

        def linear_recurrence(self, ops, params, z_in):
            a, b = super().linear_recurrence(ops, params, z_in)
            return a - 2.0, b

    params = {"U": torch.ones(2, 2, dtype=torch.float64), "b": torch.zeros(2, dtype=torch.float64)}
    with pytest.raises(BenchError, match="a < 0, where torch's log-space scan does not apply"):
        scan_layer(Negative(), params, torch.ones(3, 1, 2, dtype=torch.float64), (torch.zeros(1, 1, dtype=torch.float64),))


@NEEDS_JAX
def test_jax_scan_equals_the_float64_loop_loss_and_every_gradient():
    from backends.jax.runtime import import_jax

    jax = import_jax()
    import jax.numpy as jnp

    from backends.jax.model import linear_scan

    a, b, h0, w = _window(1)
    loss, hs, da, db, dh0 = _loop(a, b, h0, w)

    def f(a, b, h0):
        return jnp.sum(jnp.asarray(w) * linear_scan(a, b, h0))

    value, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0))
    assert abs(float(value) - loss) <= 1e-9 * abs(loss)
    assert rel_err(np.asarray(linear_scan(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0))), hs) < 1e-9
    for name, ours, theirs in zip(("a", "b", "h0"), grads, (da, db, dh0)):
        assert rel_err(np.asarray(ours), theirs) < 1e-9, name


def test_numpy_scan_equals_the_float64_loop_loss_and_every_gradient():
    from backends.numpy.scan import ScanKernel

    a, b, h0, w = _window(2)
    loss, hs, da, db, _ = _loop(a, b, h0, w)
    P = np.concatenate([a, b], axis=-1)
    kernel = ScanKernel(_Given())
    ours, (last,), cache = kernel.forward(P.copy(), {}, (h0,))
    assert abs(float((w * ours).sum()) - loss) <= 1e-9 * abs(loss)
    assert rel_err(ours, hs) < 1e-12 and np.array_equal(last, ours[-1])
    dZ, grads, norms = kernel.backward(w, {}, cache, trace=True)
    assert rel_err(dZ[..., :HIDDEN], da) < 1e-12 and rel_err(dZ[..., HIDDEN:], db) < 1e-12 and grads == {}
    np.testing.assert_allclose(norms["h"], np.linalg.norm(db, axis=-1), rtol=1e-12)  # |g_t| per example


def test_numpy_scan_needs_the_cells_derivative_and_says_so():
    class NoGrad(MinGRUCell):
        name = "no-grad"
        linear_recurrence_grad = CellSpec.linear_recurrence_grad

    assert NoGrad().is_linear and not NoGrad().has_linear_grad and MinGRUCell().has_linear_grad
    why = get_backend("numpy").unsupported(NoGrad(), SCAN_IMPL)
    assert why.startswith("numpy has no scan for cell 'no-grad': NumPy has no autodiff") and "\n" not in why
    assert get_backend("numpy").unsupported(LSTMCell(), SCAN_IMPL).endswith("declares no linear recurrence "
                                                                          "(h_t = a_t * h_{t-1} + b_t, "
                                                                          "CellSpec.linear_recurrence); use --impl cell")


@NEEDS_TF
def test_tf_scan_equals_the_float64_loop_loss_and_every_gradient():
    from backends.tf.runtime import import_tf

    tf = import_tf()
    from backends.tf.scan import linear_scan

    a, b, h0, w = _window(3)
    loss, hs, da, db, dh0 = _loop(a, b, h0, w)
    ta, tb, th0 = (tf.constant(v) for v in (a, b, h0))
    with tf.GradientTape() as tape:
        tape.watch([ta, tb, th0])
        out = linear_scan(ta, tb, th0)
        t_loss = tf.reduce_sum(tf.constant(w) * out)
    grads = tape.gradient(t_loss, [ta, tb, th0])
    assert abs(float(t_loss) - loss) <= 1e-9 * abs(loss)
    assert rel_err(out.numpy(), hs) < 1e-9
    for name, ours, theirs in zip(("a", "b", "h0"), grads, (da, db, dh0)):
        assert rel_err(ours.numpy(), theirs) < 1e-9, name


# -- the state carried across windows, through the models --------------------------------------


def _models(backend: str) -> tuple:
    spec = ModelSpec(make_cell("mingru"), "vector", 2, HIDDEN, 2, 1, 1.0, "mean", "regress", None)
    params = init_params(spec, 0.5, np.random.default_rng(0))
    settings = {"dtype": "float64", "threads": 1}
    return (spec, get_backend(backend).build(spec, params, TrainSettings(impl="cell", **settings)),
            get_backend(backend).build(spec, params, TrainSettings(impl="scan", **settings)))


@pytest.mark.parametrize("backend", SCAN_BACKENDS)
def test_the_state_carried_across_windows_is_the_cell_impls(backend):
    """Three windows in a row, each starting from the state the last left: the scan impl's
    losses, final states and weights track the cell impl's to 1e-9 in float64."""
    spec, cell_model, scan_model = _models(backend)
    rng = np.random.default_rng(4)
    cell_state, scan_state = cell_model.zero_state(BATCH), scan_model.zero_state(BATCH)
    for _ in range(3):
        x, y = rng.uniform(-1, 1, (BATCH, 6, 2)), rng.uniform(-1, 1, (BATCH, 6, 1))
        cell_stats, cell_state = cell_model.train_step(x, y, cell_state, 0.5)
        scan_stats, scan_state = scan_model.train_step(x, y, scan_state, 0.5)
        assert scan_stats.loss_sum == pytest.approx(cell_stats.loss_sum, rel=1e-9)
        for ours, theirs in zip(scan_model.state_to_numpy(scan_state), cell_model.state_to_numpy(cell_state)):
            for s, c in zip(ours, theirs):
                assert np.abs(s).max() > 0 and rel_err(s, c) < 1e-9
    for key, value in cell_model.get_params().items():
        assert rel_err(scan_model.get_params()[key], value) < 1e-9, key


# -- the float32 drift against length (tests/benchmarks/scan_drift.py, docs/performance.md) ---

# The stated bound: the log-space scans (torch, TF) lose ~3e-8 per step relative (A_t grows
# like t, and exp(A_t + ...) keeps float32's relative precision of A_t, not of h_t), measured
# 3.2e-5 at T = 1,024; bound 1e-7 T. The loop (numpy) and the associative scan (JAX) do not
# grow with T: bound 1e-6 at every length (measured 4e-8 and 6e-8).
DRIFT_BOUND = {"torch": lambda t: 1e-7 * t, "tf": lambda t: 1e-7 * t, "numpy": lambda t: 1e-6, "jax": lambda t: 1e-6}


@pytest.mark.parametrize("backend", SCAN_BACKENDS)
def test_float32_drift_stays_within_its_bound_as_the_window_grows(backend):
    from tests.benchmarks.scan_drift import drift

    errors = {steps: drift(backend, steps, 2, 16) for steps in (64, 1024)}
    for steps, error in errors.items():
        assert 0 < error <= DRIFT_BOUND[backend](steps), (steps, error)


def test_bench_list_shows_which_impls_each_cell_has_on_each_backend(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    impls = {}
    for i, line in enumerate(lines):
        if line.strip().startswith("impls: "):
            cell = next(lines[j].split()[0] for j in range(i - 1, -1, -1) if not lines[j].startswith("   "))
            impls[cell] = dict(part.split(" ", 1) for part in line.strip()[len("impls: "):].split("; "))
    for cell in ("lstm", "gru", "rnn", "mingru"):
        for backend in backend_names():
            expected = [i for i in get_backend(backend).impls if not get_backend(backend).unsupported(make_cell(cell), i)]
            assert impls[cell][backend] == (", ".join(expected) or "none"), (cell, backend)
    assert all("scan" in runs for runs in impls["mingru"].values())
    assert not any("scan" in runs for runs in impls["lstm"].values())
    assert "fused" in impls["lstm"].get("torch", "fused")

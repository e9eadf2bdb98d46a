"""The conformance kit: hold a cell to the float64 reference on every installed backend.

For plugin authors (and used by cellbench's own tests). In a plugin's test suite::

    import pytest
    from bench import testing
    from mycell import MyCell

    @pytest.mark.parametrize("case", testing.cases(MyCell()), ids=str)
    def test_conformance(case):
        case.check()  # skips, with the reason, where a backend or impl cannot run the cell

    def test_numpy_kernel_against_finite_differences():
        testing.check_finite_differences(MyCell())

The reference is the NumPy backend in float64, running the cell's hand-written NumPy kernel
(``numpy_kernel()``, see the README's "Adding a cell"). A cell without one is held to the
torch ``cell`` impl in float64 instead (autograd of the cell's own ``recurrence``); either
way, :func:`check_finite_differences` checks the reference's gradients against central
differences of the NumPy float64 forward pass (``backends.spec.reference_forward``), so the
chain ends at the cell's equations evaluated in NumPy.

Every backend and impl runs in float32, dropout off, from the reference's initial weights,
on four model shapes (:func:`small_spec`): a token model (vocabulary 50, hidden 16, 2
layers, the PTB loss), the echo task's scalar-input model, the copy task's (one-hot vector
inputs, a classifier scored at every step) and the adding problem's (two input features, a
regression head read at the last step only). The checks, each a :class:`Case`:

- ``first-window``: loss, every parameter's gradient, the carried state;
- ``train-sgd`` / ``train-adagrad`` / ``train-rmsprop``: 20 updates with the state carried
  (SGD lr 1, 0.1 on the adding model; Adagrad lr 0.3, RMSProp lr 0.01; clip 5): every
  step's loss and the final weights;
- ``gradient-norms``: ``||dL/dh_t||`` (and ``dL/ds_t``) per layer and step at initialisation;
- ``checkpoint``: a model restored from another's checkpoint continues identically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from backends.base import TrainSettings
from backends.spec import ModelSpec, init_params, random_window, reference_forward
from bench.errors import BenchError
from bench.registry import backend_names, get_backend
from cells.base import CellSpec

BATCH, STEPS, WINDOWS = 3, 7, 20
TASKS = ("tokens", "echo", "copy", "adding")
CHECKS = ("first-window", "train-sgd", "train-adagrad", "train-rmsprop", "gradient-norms", "checkpoint")
# check -> (optimizer, learning rate) of a training check; on the adding model SGD at lr 1
# diverges (losses in the thousands, where float32 cannot follow float64), so it takes 0.1
TRAINING = {"train-sgd": ("sgd", 1.0), "train-adagrad": ("adagrad", 0.3), "train-rmsprop": ("rmsprop", 0.01)}
SGD_LR = {"adding": 0.1}
# float32 against float64: what one window's arithmetic may differ by, and 20 steps of it
LOSS_RTOL, GRAD_RTOL, STATE_RTOL, TRAIN_RTOL, NORM_RTOL, RESTORE_RTOL = 1e-5, 1e-4, 1e-5, 1e-3, 1e-4, 1e-6


class Unsupported(Exception):
    """This backend or impl cannot run the cell (its reason, as ``bench run`` would say it)."""


# -- the models and data every check uses ------------------------------------------------


def small_spec(cell: CellSpec, task: str) -> ModelSpec:
    """Hidden 16, 2 layers: ``tokens`` (vocabulary 50, the PTB loss), ``echo`` (one value in,
    2 classes), ``copy`` (one-hot of 6 in, 5 classes at every step), ``adding`` (2 values in,
    one regression output read at the last step)."""
    if task == "tokens":
        return ModelSpec(cell, "tokens", 50, 16, 2, 50, 1.0, "sum_steps_mean_batch")
    if task == "copy":
        return ModelSpec(cell, "vector", 6, 16, 2, 5, 1.0, "mean")
    if task == "adding":
        return ModelSpec(cell, "vector", 2, 16, 2, 1, 1.0, "mean", "regress", (-1,))
    return ModelSpec(cell, "scalar", 1, 16, 2, 2, 1.0, "mean")


def window_stream(spec: ModelSpec, n: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` consecutive windows ``(batch 3, steps 7)`` of random inputs and targets."""
    rng = np.random.default_rng(seed)
    return [random_window(spec, BATCH, STEPS, rng) for _ in range(n)]


def reference_backend(cell: CellSpec) -> tuple[str, str]:
    """(backend, impl) of the float64 reference for ``cell``: NumPy where the cell has a
    NumPy kernel, else torch's ``cell`` impl; :class:`Unsupported` where neither can run."""
    if "numpy" in backend_names() and not get_backend("numpy").unsupported(cell, "cell"):
        return "numpy", "cell"
    if "torch" in backend_names():
        torch_backend = get_backend("torch")
        if not torch_backend.unavailable_reason() and not torch_backend.unsupported(cell, "cell"):
            return "torch", "cell"
    raise Unsupported(f"no float64 reference for cell {cell.name!r}: it has no NumPy kernel and torch is not installed")


def build_pair(backend_name: str, impl: str, spec: ModelSpec, optimizer: str = "sgd",
               init_scale: float = 0.1, device: str = "cpu") -> tuple[Any, Any]:
    """(the float64 reference, on the CPU, and the backend under test in float32 on
    ``device``), from the same weights.

    init_scale 0.1 is ptb-small's; at 0.3 a vanilla RNN on random targets with lr 1.0 is
    chaotic (float32 and float64 NumPy part by 5% within 20 steps), which no backend can match.
    """
    backend = get_backend(backend_name)
    if why := backend.unavailable_reason() or backend.unsupported(spec.cell, impl):
        raise Unsupported(why)
    params = init_params(spec, init_scale, np.random.default_rng(0))
    ref_name, ref_impl = reference_backend(spec.cell)
    reference = get_backend(ref_name).build(
        spec, params, TrainSettings(impl=ref_impl, optimizer=optimizer, dtype="float64", threads=1))
    model = backend.build(spec, params, TrainSettings(impl=impl, optimizer=optimizer, dtype="float32", threads=1,
                                                      device=device))
    return reference, model


def rel_err(actual: Any, expected: Any) -> float:
    """||actual - expected|| / ||expected||, the error measure of every check."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def _close(what: str, actual: Any, expected: Any, rtol: float) -> None:
    error = rel_err(actual, expected)
    if not error < rtol:  # NaN fails too
        raise AssertionError(f"{what}: relative error {error:.3g} against the reference exceeds {rtol:g}")


# -- the checks --------------------------------------------------------------------------


def check_first_window(reference: Any, model: Any, spec: ModelSpec) -> None:
    """Loss, every gradient and the carried state of one window from the zero state."""
    x, y = window_stream(spec, 1)[0]
    ref_loss, ref_grads, ref_state = reference.loss_and_grads(x, y, reference.zero_state(BATCH))
    loss, grads, state = model.loss_and_grads(x, y, model.zero_state(BATCH))
    _close("loss", loss, ref_loss, LOSS_RTOL)
    if sorted(grads) != sorted(ref_grads):
        raise AssertionError(f"gradients named {sorted(grads)}, the reference's {sorted(ref_grads)}")
    for name, ref_grad in ref_grads.items():
        if np.shape(grads[name]) != np.shape(ref_grad):
            raise AssertionError(f"gradient {name}: shape {np.shape(grads[name])}, the reference's {np.shape(ref_grad)}")
        _close(f"gradient {name}", grads[name], ref_grad, GRAD_RTOL)
    for layer, (ours, theirs) in enumerate(zip(model.state_to_numpy(state), reference.state_to_numpy(ref_state))):
        for name, a, b in zip(spec.cell.state_names, ours, theirs):
            _close(f"layer {layer} state {name}", a, b, STATE_RTOL)


def check_training(reference: Any, model: Any, spec: ModelSpec, lr: float) -> None:
    """20 updates, the state carried from window to window: each step's loss, then every weight."""
    ref_state, state = reference.zero_state(BATCH), model.zero_state(BATCH)
    for step, (x, y) in enumerate(window_stream(spec, WINDOWS)):
        ref_stats, ref_state = reference.train_step(x, y, ref_state, lr)
        stats, state = model.train_step(x, y, state, lr)
        _close(f"step {step} loss", stats.loss_sum, ref_stats.loss_sum, TRAIN_RTOL)
        if stats.n_tokens != ref_stats.n_tokens:
            raise AssertionError(f"step {step}: {stats.n_tokens} tokens, the reference's {ref_stats.n_tokens}")
    ours = model.get_params()
    for name, value in reference.get_params().items():
        _close(f"{name} after {WINDOWS} steps", ours[name], value, TRAIN_RTOL)


def check_gradient_norms(reference: Any, model: Any, spec: ModelSpec) -> None:
    """The gradient norms over time steps, per layer and state, at initialisation."""
    x, y = window_stream(spec, 1)[0]
    expected = reference.gradient_norms_over_time(x, y, reference.zero_state(BATCH))
    actual = model.gradient_norms_over_time(x, y, model.zero_state(BATCH))
    if sorted(actual) != sorted(expected):
        raise AssertionError(f"gradient norms for {sorted(actual)}, the reference has {sorted(expected)}")
    for key, curve in expected.items():
        if np.shape(actual[key]) != (spec.num_layers, STEPS):
            raise AssertionError(f"gradient norms {key}: shape {np.shape(actual[key])}, want {(spec.num_layers, STEPS)}")
        bad = ~np.isclose(actual[key], curve, rtol=NORM_RTOL, atol=0)
        if bad.any():
            layer, step = np.argwhere(bad)[0]
            raise AssertionError(f"gradient norm {key} layer {layer} step {step}: {actual[key][layer, step]:.7g}, "
                                 f"the reference's {curve[layer, step]:.7g} (rtol {NORM_RTOL:g})")


def check_checkpoint(backend_name: str, impl: str, spec: ModelSpec, device: str = "cpu") -> None:
    """For each optimizer with state (Adagrad, RMSProp): train two windows, checkpoint,
    restore into a model built from other weights: the two continue with the same losses."""
    for optimizer, lr in (("adagrad", 0.3), ("rmsprop", 0.01)):
        _, model = build_pair(backend_name, impl, spec, optimizer=optimizer, device=device)
        windows = window_stream(spec, 4)
        state = model.zero_state(BATCH)
        for x, y in windows[:2]:
            _, state = model.train_step(x, y, state, lr)
        saved = {key: np.array(value) for key, value in model.checkpoint().items()}
        _, twin = build_pair(backend_name, impl, spec, optimizer=optimizer, init_scale=0.05, device=device)
        twin.restore(saved)
        for step, (x, y) in enumerate(windows[2:]):
            a, _ = model.train_step(x, y, model.zero_state(BATCH), lr)
            b, _ = twin.train_step(x, y, twin.zero_state(BATCH), lr)
            _close(f"{optimizer}: restored model, step {step} loss", b.loss_sum, a.loss_sum, RESTORE_RTOL)


@dataclass(frozen=True)
class Case:
    """One check of one cell on one backend and impl, for one task."""

    cell: CellSpec = field(compare=False)
    cell_id: str
    backend: str
    impl: str
    task: str
    check_name: str
    device: str = "cpu"  # where the backend under test runs (the reference runs on the CPU)

    def __str__(self) -> str:
        where = "" if self.device == "cpu" else f"-{self.device}"
        return f"{self.backend}-{self.impl}{where}-{self.cell_id}-{self.task}-{self.check_name}"

    def run(self) -> None:
        """Raise AssertionError saying what differs, or :class:`Unsupported` with the reason."""
        spec = small_spec(self.cell, self.task)
        if self.check_name == "checkpoint":
            return check_checkpoint(self.backend, self.impl, spec, self.device)
        optimizer, lr = TRAINING.get(self.check_name, ("sgd", 1.0))
        if optimizer == "sgd":
            lr = SGD_LR.get(self.task, lr)
        reference, model = build_pair(self.backend, self.impl, spec, optimizer=optimizer, device=self.device)
        if self.check_name == "first-window":
            check_first_window(reference, model, spec)
        elif self.check_name == "gradient-norms":
            check_gradient_norms(reference, model, spec)
        else:
            check_training(reference, model, spec, lr)

    def check(self) -> None:
        """:meth:`run` under pytest: an unsupported combination is skipped with its reason."""
        import pytest  # the kit is for test suites; nothing else imports pytest

        try:
            self.run()
        except Unsupported as why:
            pytest.skip(str(why))


def cases(cell: CellSpec, cell_id: str | None = None, backends: list[str] | None = None,
          checks: tuple[str, ...] = CHECKS, device: str = "cpu") -> list[Case]:
    """Every check of ``cell`` on every installed backend (or ``backends``) and impl, on
    every task (the checkpoint check on the token model only), the backend under test on
    ``device`` (``gpu``: each backend's GPU, an error where it has none)."""
    out = []
    for backend_name in backends or backend_names():
        try:
            impls = get_backend(backend_name).impls
        except BenchError:  # a backend that cannot even load fails its cases, loudly
            impls = ("cell",)
        for impl in impls:
            for check_name in checks:
                for task in ("tokens",) if check_name == "checkpoint" else TASKS:
                    out.append(Case(cell, cell_id or cell.name, backend_name, impl, task, check_name, device))
    return out


def check_cell(cell: CellSpec, backends: list[str] | None = None, report: Callable[[str], None] = print) -> int:
    """Every case and the finite-difference check outside pytest; prints one line per case
    and returns the number of failures."""
    failures = 0
    for case in cases(cell, backends=backends):
        try:
            case.run()
            report(f"ok       {case}")
        except Unsupported as why:
            report(f"skipped  {case}: {why}")
        except AssertionError as what:
            failures += 1
            report(f"FAILED   {case}: {what}")
    try:
        check_finite_differences(cell)
        report(f"ok       {reference_backend(cell)[0]} float64 reference gradients of {cell.name} = finite differences")
    except AssertionError as what:
        failures += 1
        report(f"FAILED   finite differences: {what}")
    return failures


# -- the reference's gradients against finite differences -------------------------------


# name -> (input kind, vocabulary or features, outputs, head, scored steps): every input
# kind, both heads, every step and a subset of steps (an unscored step between scored ones)
FD_SHAPES: dict[str, tuple[str, int, int, str, tuple[int, ...] | None]] = {
    "tokens": ("tokens", 11, 7, "classify", None),
    "scalar": ("scalar", 1, 2, "classify", None),
    "vector": ("vector", 3, 4, "classify", (0, -2, -1)),
    "regress": ("vector", 2, 2, "regress", (1, -1)),
}


def finite_difference_case(cell: CellSpec, shape: str, num_layers: int,
                           reduction: str = "sum_steps_mean_batch") -> tuple[ModelSpec, dict, Any, np.ndarray, np.ndarray, list]:
    """(spec, params, float64 reference model, x, y, state in the model's form) for one of
    :data:`FD_SHAPES`: hidden 5, 3 x 4 windows, weights ±0.5, biases moved off their initial
    values and the state a first window left, so that every term of the backward pass counts."""
    input_kind, vocab, classes, head, scored = FD_SHAPES[shape]
    spec = ModelSpec(cell, input_kind, vocab, 5, num_layers, classes, 1.0, reduction, head, scored)
    rng = np.random.default_rng(0)
    params = init_params(spec, 0.5, rng)
    for name in params:
        if name.rsplit(".", 1)[-1] in cell.biases:
            params[name] += 0.5 * rng.standard_normal(params[name].shape)
    batch, steps = 3, 4

    def window() -> tuple[np.ndarray, np.ndarray]:
        x, y = random_window(spec, batch, steps, rng)
        return (x.astype(np.float64) if input_kind != "tokens" else x), (y.astype(np.float64) if head == "regress" else y)

    ref_name, ref_impl = reference_backend(cell)
    model = get_backend(ref_name).build(spec, params, TrainSettings(impl=ref_impl, dtype="float64", threads=1))
    # the state after a first window: non-zero, as in every window after a run's first
    state = model.loss_and_grads(*window(), model.zero_state(batch))[2]
    x, y = window()
    return spec, params, model, x, y, state


def numeric_gradient(spec: ModelSpec, params: dict, x: np.ndarray, y: np.ndarray, state: list,
                     name: str, eps: float = 1e-5) -> np.ndarray:
    """Central differences of the NumPy float64 forward pass with respect to ``params[name]``."""
    value = params[name]
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        old = value[index]
        value[index] = old + eps
        plus = reference_forward(spec, params, x, y, state)[0]
        value[index] = old - eps
        minus = reference_forward(spec, params, x, y, state)[0]
        value[index] = old
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def check_finite_differences(cell: CellSpec, tolerance: float = 1e-6) -> None:
    """The float64 reference's loss equals the NumPy forward pass's and each of its gradients
    the forward pass's central differences, for every :data:`FD_SHAPES` (token, scalar and
    vector inputs; both heads; every step or a subset scored), 1 and 2 layers."""
    for shape in FD_SHAPES:
        for num_layers in (1, 2):
            spec, params, model, x, y, state = finite_difference_case(cell, shape, num_layers)
            np_state = [tuple(np.array(a, np.float64) for a in layer) for layer in model.state_to_numpy(state)]
            loss, grads, _ = model.loss_and_grads(x, y, state)
            where = f"{shape} model, {num_layers} layer(s)"
            expected = reference_forward(spec, params, x, y, np_state)[0]
            if not abs(loss - expected) <= 1e-12 * abs(expected):
                raise AssertionError(f"{where}: loss {loss!r}, the NumPy forward pass's {expected!r}")
            if sorted(grads) != sorted(spec.param_shapes()):
                raise AssertionError(f"{where}: gradients named {sorted(grads)}, the parameters {sorted(spec.param_shapes())}")
            for name in params:
                numeric = numeric_gradient(spec, params, x, y, np_state, name)
                error = np.linalg.norm(grads[name] - numeric) / max(np.linalg.norm(grads[name]) + np.linalg.norm(numeric), 1e-300)
                if not error < tolerance:
                    raise AssertionError(f"{where}: gradient {name} differs from finite differences by {error:.2e} (relative)")

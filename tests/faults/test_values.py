"""Every value in range before work starts; absurd but valid values end alike on every backend.

The bad-value cases are generated from each field's declared bound (``bench.config.Bound``),
and the bounds themselves are held to a table stated here, independently of the code.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.run import budget
from bench.fanout import preflight
from bench.cli import main
from bench.config import all_options, make_config, presets, validate
from bench.registry import backend_names, cell_names
from cells.options import DTYPES
from bench.data import echo_windows
from bench.errors import BenchError
from bench.registry import get_backend
from bench.run.runner import EXIT_DIVERGED, EXIT_OK, RunOptions, run

F32_MAX, F32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38  # float32's largest, smallest normal
F64_MAX, F64_TINY = 1.7976931348623157e308, 2.2250738585072014e-308
INT32_MAX = 2**31 - 1

# Each numeric setting's valid range in float32 (float64 where it differs), stated independently.
EXPECTED = {
    "forget_bias": ((-F32_MAX, F32_MAX), (-F64_MAX, F64_MAX)),
    "hidden_size": (1, INT32_MAX), "num_layers": (1, INT32_MAX), "num_steps": (1, INT32_MAX),
    "batch_size": (1, INT32_MAX), "eval_batch_size": (1, INT32_MAX), "eval_num_steps": (1, INT32_MAX),
    "total_series_length": (1, INT32_MAX), "echo_step": (1, INT32_MAX), "epochs": (1, INT32_MAX),
    "max_lr_epoch": (0, INT32_MAX), "max_tokens": (0, INT32_MAX), "grad_probe_windows": (0, INT32_MAX),
    "copy_lag": (1, INT32_MAX), "copy_length": (1, INT32_MAX), "copy_categories": (2, 1_000_000),
    "adding_length": (2, 10**9), "batches_per_epoch": (1, INT32_MAX), "eval_sequences": (1, INT32_MAX),
    "selective_length": (1, INT32_MAX), "selective_tokens": (1, INT32_MAX), "selective_vocab": (4, 1_000_000),
    "seed": (0, 2**63 - 1),  # numpy refuses negative seeds; torch and TF take 64-bit ones
    "threads": (1, 1024),
    "init_scale": ((F32_TINY, F32_MAX / 2), (F64_TINY, F64_MAX / 2)),  # uniform(-s, s) spans 2 s
    "keep_prob": ((F32_TINY, 1.0), (F64_TINY, 1.0)),
    "learning_rate": ((F32_TINY, F32_MAX), (F64_TINY, F64_MAX)),
    "lr_decay": ((F32_TINY, F32_MAX), (F64_TINY, F64_MAX)),
    "max_grad_norm": ((0.0, F32_MAX), (0.0, F64_MAX)),
    "adagrad_initial_accumulator": ((F32_TINY, F32_MAX), (F64_TINY, F64_MAX)),  # sqrt(a) divides
}
BOUNDED = [o for o in all_options().values() if o.bound]
IMPLS = [("numpy", "cell"), ("torch", "cell"), ("torch", "fused"), ("tf", "cell"), ("tf", "fused")]


def _expected(name: str, dtype: str) -> tuple[float, float]:
    value = EXPECTED[name]
    return value[DTYPES.index(dtype)] if isinstance(value[0], tuple) else value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# -- the declared bounds ---------------------------------------------------------------


def test_every_numeric_setting_declares_its_bound():
    numeric = {o.name for o in all_options().values() if o.type in (int, float)}
    assert {f.name for f in BOUNDED} == numeric == set(EXPECTED)


@pytest.mark.parametrize("dtype", DTYPES)
def test_declared_bounds_are_the_documented_ranges(dtype):
    for f in BOUNDED:
        assert f.bound.limits(dtype) == _expected(f.name, dtype), f.name


def _bad_values(name: str, integer: bool, dtype: str) -> list:
    """The class of bad values for one setting: just outside each end, far outside, and the
    values of another kind; for floats NaN and both infinities too."""
    low, high = _expected(name, dtype)
    if integer:
        return [low - 1, high + 1, -(2**64), 2**200, 1.0, "3", True]
    with np.errstate(over="ignore"):
        below = np.nextafter(low, -math.inf)  # the largest subnormal below the smallest normal
        above = np.nextafter(high, math.inf)  # inf when high is float64's largest
    return [float(below), float(above), -1e309, 1e309, math.nan, 10**400, "0.1", True]


BAD_VALUES = [
    pytest.param(f.name, dtype, value, id=f"{f.name}-{dtype}-{value!r}"[:60])
    for f in BOUNDED
    for dtype in (DTYPES if isinstance(EXPECTED[f.name][0], tuple) else DTYPES[:1])
    for value in _bad_values(f.name, f.type is int, dtype)
]


@pytest.mark.parametrize("name,dtype,value", BAD_VALUES)
def test_out_of_range_values_are_refused_with_the_range(name, dtype, value):
    with pytest.raises(BenchError) as caught:
        make_config("echo", **{name: value, "dtype": dtype})
    message = str(caught.value)
    assert message.startswith(f"{_flag(name)} must be "), message
    assert ", got " in message and "\n" not in message, message


@pytest.mark.parametrize("name", [f.name for f in BOUNDED])
def test_each_end_of_a_range_is_accepted(name):
    low, high = _expected(name, "float32")
    for value in (low, high):
        base = make_config("ptb-tiny" if name == "max_tokens" else "echo")  # an option of its own task
        config = base.replace(**{name: value})
        try:
            validate(config)
        except BenchError as exc:  # only a rule joining settings may refuse an end, never the bound
            assert not str(exc).startswith(f"{_flag(name)} must be an") and "must be a number" not in str(exc), exc


# -- any value at all: a valid Config or one BenchError, nothing else ------------------

_ANY = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.text(max_size=12), st.none(), st.booleans(),
    st.sampled_from(["numpy", "torch", "tf", "rnn", "lstm", "cell", "fused", "ptb", "echo", "float64", "sgd",
                     "sum_steps_mean_batch", "gpu", "sigmoid", "\x00", "../x", "ptb\n"]),
    st.sampled_from([0, 1, 2, 3, 15, 20, 1500, 2**31 - 1, 2**31, 2**63 - 1, 2**63, F32_MAX, F32_TINY, 5e-324]),
)


@settings(max_examples=400, deadline=None)
@given(preset=st.one_of(st.none(), st.sampled_from(list(presets())), st.text(max_size=8)),
       overrides=st.dictionaries(st.sampled_from(list(all_options())), _ANY, max_size=6))
def test_any_settings_give_a_valid_config_or_one_bench_error(preset, overrides):
    try:
        config = make_config(preset, **overrides)
    except BenchError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    validate(config)
    for f in BOUNDED:
        value = config.as_dict().get(f.name)  # None: an option of another cell or task
        low, high = _expected(f.name, config.dtype)
        assert value is None or low <= value <= high, (f.name, value)


# -- rules that join settings ------------------------------------------------------------


def test_echo_lag_must_be_below_the_steps_the_windows_cover():
    # rows of 300 steps, 20 windows of 15 cover all 300: lag 299 learnable, 300 not
    assert make_config("echo", total_series_length=1500, echo_step=299).echo_step == 299
    for lag in (300, 99_999):  # 99,999 used to give all-zero targets and accuracy 1.0
        with pytest.raises(BenchError, match=f"--echo-step must be below 300, .* got {lag:,}"):
            make_config("echo", total_series_length=1500, echo_step=lag)
    # rows of 29 steps, one window of 15: only 15 steps are seen, so the lag must be below 15
    with pytest.raises(BenchError, match="--echo-step must be below 15"):
        make_config("echo", total_series_length=145, echo_step=20)
    # training's 5 windows of 5 cover 25 steps, evaluation's one window of 20 only 20
    with pytest.raises(BenchError, match="--echo-step must be below 20, .*--eval-num-steps 20"):
        make_config("echo", total_series_length=145, num_steps=5, eval_num_steps=20, echo_step=22)


def test_the_echo_data_refuses_what_validation_refuses_with_the_same_words():
    with pytest.raises(BenchError) as from_config:
        make_config("echo", total_series_length=1500, echo_step=300)
    with pytest.raises(BenchError) as from_data:
        list(echo_windows(1500, 300, 5, 15, np.random.default_rng(0)))
    assert str(from_config.value) == str(from_data.value)


def test_a_growing_learning_rate_must_stay_representable():
    make_config("echo", lr_decay=2.0, epochs=100, learning_rate=0.3)  # 0.3 * 2**99 = 1.9e29 fits float32
    with pytest.raises(BenchError, match=r"--lr-decay must be below 2.48.* got 10"):
        make_config("echo", lr_decay=10.0, epochs=100)
    with pytest.raises(BenchError, match="--lr-decay must be below"):
        make_config("echo", lr_decay=1e30, epochs=100, dtype="float64")  # 1e30 ** 99 overflows float64 itself
    make_config("echo", lr_decay=10.0, epochs=100, dtype="float64")


# -- memory ------------------------------------------------------------------------------


def test_a_run_larger_than_the_memory_is_refused_with_the_estimate():
    config = make_config("echo", hidden_size=65_000, num_layers=2)
    with pytest.raises(BenchError, match=r"needs about 945.0 GiB of memory \(2 x 65,000 units: weights and optimizer "
                                         r"944.4 GiB.*\); 21.3 GiB available; lower --hidden-size or --num-layers"):
        budget.check_memory(config, available=int(21.3 * 2**30))
    small = budget.check_memory(make_config("echo"), available=2**30)
    assert 40 * 2**20 < small.total < 100 * 2**20  # numpy's ~44 MB measured (docs/performance.md)


def test_the_largest_part_names_the_flags_to_lower():
    logits = make_config("ptb-tiny", batch_size=4000, num_steps=200)
    with pytest.raises(BenchError, match="lower --batch-size or --num-steps"):
        budget.check_memory(logits, available=2**30)
    data = make_config("echo", total_series_length=2**31 - 1, batch_size=1, eval_batch_size=1)
    with pytest.raises(BenchError, match="lower --total-series-length"):
        budget.check_memory(data, available=2**30)


def test_memory_available_is_known_here():
    assert budget.available_bytes() > 0


# -- seeds -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend,impl", IMPLS)
def test_every_backend_builds_and_trains_at_the_largest_seed(backend, impl):
    """2**63 - 1 is the largest seed accepted: numpy's SeedSequence, torch's generator and TF's
    int64 dropout seed all take it (dropout on, so the seed is used)."""
    from backends.base import TrainSettings
    from backends.spec import init_params
    from bench.run.factory import model_spec
    from bench.tasks import Shape
    from bench.tasks import SEED_DROPOUT, SEED_INIT, SEED_TRAIN_DATA, rng_for

    if reason := get_backend(backend).unavailable_reason():
        pytest.skip(reason)
    seed = 2**63 - 1
    config = make_config("echo", seed=seed, keep_prob=0.5, total_series_length=150, num_steps=5)
    spec = model_spec(config, Shape("scalar", 1, 2))
    params = init_params(spec, config.init_scale, rng_for(seed, SEED_INIT))
    model = get_backend(backend).build(spec, params, TrainSettings(impl=impl, optimizer="adagrad", seed=seed))
    model.set_dropout_seed(int(rng_for(seed, SEED_DROPOUT, 0).integers(2**31)))
    x, y = next(echo_windows(150, 3, 5, 5, rng_for(seed, SEED_TRAIN_DATA, 0)))
    stats, _ = model.train_step(x, y, model.zero_state(5), 0.3)
    assert math.isfinite(stats.loss_sum) and math.isfinite(stats.grad_norm)
    assert any(not np.array_equal(model.get_params()[k], params[k].astype(np.float32)) for k in params)


# -- absurd but valid values: diverged or completed, alike on every backend ----------------

ABSURD = {  # cells alternate to cover both within the time budget; weights absurd from the start
    # also go through the gradient probe, which runs before the first update
    "lr 1e30 float32 adagrad": dict(cell="lstm", learning_rate=1e30),
    "lr 3e38 float32 sgd": dict(cell="rnn", optimizer="sgd", learning_rate=3e38),
    "lr 1e300 float64": dict(cell="rnn", dtype="float64", learning_rate=1e300),
    "init 1e30": dict(cell="lstm", init_scale=1e30, grad_probe_windows=1),
    "init 1e3": dict(cell="rnn", init_scale=1e3, grad_probe_windows=1),
    "forget bias 1e30": dict(cell="lstm", forget_bias=1e30, grad_probe_windows=1),
    "forget bias -1e30": dict(cell="lstm", forget_bias=-1e30, grad_probe_windows=1),
    "clip 1e38, lr 1e30": dict(cell="rnn", optimizer="sgd", learning_rate=1e30, max_grad_norm=1e38),
    # tokens: sparse embedding gradients, clipped (ptb-tiny clips at 5), Adagrad's slots
    "ptb lr 3e38 adagrad": dict(preset="ptb-tiny", cell="lstm", optimizer="adagrad", learning_rate=3e38,
                                max_tokens=600),
}


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("case", ABSURD)
def test_absurd_values_end_alike_on_every_backend(case, tmp_path, capfd, request):
    """Diverged (exit 3) or completed with finite numbers on every backend x impl, the same on
    all; never a failure, a traceback or a warning (warnings are errors here)."""
    settings = {"grad_probe_windows": 0, **ABSURD[case]}
    preset = settings.pop("preset", "echo")
    if preset == "echo":
        settings.update(total_series_length=150, num_steps=5, eval_num_steps=5)
    data_dir = str(request.getfixturevalue("ptb_dir")) if preset != "echo" else None
    statuses = {}
    for backend, impl in IMPLS:
        if get_backend(backend).unavailable_reason():
            continue
        config = make_config(preset, backend=backend, impl=impl, epochs=1, **settings)
        result = run(config, RunOptions(results_dir=str(tmp_path), quiet=True, data_dir=data_dir))
        status = result.record["status"]
        assert (status, result.exit_code) in (("completed", EXIT_OK), ("diverged", EXIT_DIVERGED)), (backend, impl)
        if status == "completed":
            final = result.record["final"]
            numbers = [final[split][key] for split in ("train", "valid", "test") for key in ("loss", "accuracy")]
            assert all(math.isfinite(n) for n in numbers), (backend, impl, numbers)
        statuses[f"{backend}/{impl}"] = status
    assert len(set(statuses.values())) == 1, statuses
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Warning:" not in err.replace("WARNING:tensorflow", "")


def test_a_test_split_of_few_windows_still_gives_a_sample(tmp_path):
    config = make_config("echo", total_series_length=150, epochs=1)  # 2 test windows of 5 x 15
    assert run(config, RunOptions(results_dir=str(tmp_path), quiet=True)).record["status"] == "completed"


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_gradient_summaries_of_overflowed_norms_are_nan_without_a_warning():
    from bench.run.metrics import gradient_summary

    assert all(math.isnan(v) for v in gradient_summary(np.full(4, np.inf)).values())
    assert math.isnan(gradient_summary(np.array([np.inf, 1.0, 2.0]))["ratio"])
    assert gradient_summary(np.array([np.inf, 1.0, 2.0]))["decay_per_step"] == pytest.approx(0.5)
    assert gradient_summary(np.array([1e308, 1e-308]))["ratio"] == math.inf


# -- the command line: exit 2, one line, nothing written, no child started ---------------


@pytest.fixture
def no_children(monkeypatch):
    """Fail the test if a child process or a measurement starts."""
    import bench.fanout.jobs
    import bench.measure.roofline
    import bench.measure.speed

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(bench.fanout.jobs.subprocess, "run", refuse)
    monkeypatch.setattr(bench.measure.speed.subprocess, "run", refuse)
    monkeypatch.setattr(bench.measure.roofline, "measure_peak", refuse)


def _one_line_error(capsys, argv, message, results_dir):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err
    assert not results_dir.exists() or not list(results_dir.rglob("*.json"))


RUN_CASES = [
    (["--seed", "-1"], "--seed must be an integer in [0, 2**63 - 1]"),
    (["--seed", str(2**63)], "got 9223372036854775808"),
    (["--hidden-size", str(2**31)], "--hidden-size must be an integer in [1, 2**31 - 1]"),
    (["--learning-rate", "nan"], "--learning-rate must be a number in [1.1754943508222875e-38, 3.4028234663852886e+38]"),
    (["--learning-rate", "1e39"], "(representable in float32), got 1e+39"),
    (["--init-scale", "inf"], "--init-scale must be a number"),
    (["--forget-bias=-inf"], "--forget-bias must be a number in [-3.4028234663852886e+38"),
    (["--forget-bias", "nan"], "got nan"),
    (["--adagrad-initial-accumulator", "0"], "--adagrad-initial-accumulator must be a number in [1.1754943508222875e-38"),
    (["--adagrad-initial-accumulator", "1e-40"], "got 1e-40"),
    (["--max-grad-norm", "1e39"], "--max-grad-norm must be"),
    (["--lr-decay", "1e39"], "--lr-decay must be"),
    (["--threads", "0"], "--threads must be an integer in [1, 1024]"),
    (["--threads", "100000"], "got 100000"),
    (["--echo-step", "99999"], "--echo-step must be below 300"),
    (["--echo-step", "300"], "no target is learnable at or beyond it"),
    (["--num-layers", "0"], "--num-layers must be an integer in [1, 2**31 - 1]"),
    (["--hidden-size", str(2**20)], "of memory"),
    (["--keep-prob", "0"], "--keep-prob must be a number in"),
]


@pytest.mark.parametrize("argv,message", RUN_CASES)
def test_run_refuses_bad_values_in_one_line(capsys, tmp_path, argv, message):
    results = tmp_path / "results"
    _one_line_error(capsys, ["run", "--epochs", "1", "--total-series-length", "1500", "--quiet", *argv,
                             "--results-dir", str(results)], message, results)


FIRST_CELL = cell_names()[0]  # matrix and sweep check runs in bench list's order
FIRST_BACKEND = backend_names()[0]
FIRST_IMPL = get_backend(FIRST_BACKEND).impls[0]

MATRIX_CASES = [
    (["matrix", "--hidden-size", "x"], "the flags passed to every run: argument --hidden-size: invalid int value: 'x'"),
    (["matrix", "--epochs", "1", "--no-such-flag", "3"], "unrecognized arguments: --no-such-flag 3"),
    (["matrix", "--cells", ","], "--cells must list at least one cell, got ','"),
    (["matrix", "--backends", ""], "--backends must list at least one backend"),
    (["matrix", "--cells", "rnn,,lstm"], "--cells must not have an empty cell"),
    (["matrix", "--cells", "rnn,rnn"], "--cells must give each cell once, got rnn twice"),
    (["matrix", "--impls", ""], "--impls must list at least one impl"),
    (["matrix", "--backends", "numpy", "--impls", "fused"], "unknown impl 'fused'; choose one of: cell"),
    (["matrix", "--backends", "numpy,nmupy"], "unknown backend 'nmupy'"),
    (["matrix", "--cells", "no-such-cell"], "unknown cell 'no-such-cell'"),
    (["matrix", "--seed", "-1"], f"{FIRST_BACKEND}/{FIRST_IMPL} {FIRST_CELL}: --seed must be an integer in [0, 2**63 - 1]"),  # bench list order
    (["matrix", "--echo-step", "99999"], "--echo-step must be below"),
    (["matrix", "--hidden-size", str(2**20)], "of memory"),
    (["matrix", "--resume", "x.npz"], "--resume continues one run"),
    (["sweep", "--param", "echo_step", "--values", "1,2,99999"], f"numpy {FIRST_CELL} echo_step=99999: --echo-step must be below"),
    (["sweep", "--param", "hidden_size", "--values", "4,x"], "argument --hidden-size: invalid int value: 'x'"),
    (["sweep", "--param", "echo_step", "--values", ""], "--values must list at least one value"),
    (["sweep", "--param", "echo_step", "--values", "1,,2"], "--values must not have an empty value"),
    (["sweep", "--param", "echo_step", "--values", "2,2"], "--values must give each value once"),
    (["sweep", "--param", "learning_rate", "--values", "0.1,1e-1"], "--values must differ, got '0.1' and '1e-1'"),
    (["sweep", "--param", "seed", "--values=-1,2"], "--seed must be an integer in [0, 2**63 - 1]"),
    (["sweep", "--param", "backend", "--values", "numpy,torch"], "--param backend cannot be swept: "),
    (["sweep", "--param", "cell", "--values", "rnn"], "--param cell cannot be swept: "),
    (["sweep", "--param", "impl", "--values", "cell"], "--param impl cannot be swept: "),
    (["sweep", "--param", "task", "--values", "ptb"], "--param task cannot be swept: "),
    (["sweep", "--param", "hidden_sise", "--values", "1"], "unknown setting 'hidden_sise' (did you mean 'hidden_size'?)"),
    (["sweep", "--param", "echo_step", "--values", "1,2", "--echo-step", "4"], "--echo-step is the swept setting"),
    (["sweep", "--param", "echo_step", "--values", "1", "--cells", "rnn,"], "--cells must not have an empty cell"),
    (["sweep", "--param", "echo_step", "--values", "1", "--backend", "nmupy"], "unknown backend 'nmupy'"),
    (["speed", "--rounds", "0"], "--rounds must be an integer in [1, 2**31 - 1], got 0"),
    (["speed", "--steps", "-3"], "--steps must be an integer in [1, 2**31 - 1], got -3"),
    (["speed", "--warmup", "-1"], "--warmup must be an integer in [0, 2**31 - 1], got -1"),
    (["speed", "--threads", "0"], "--threads must be an integer in [1, 1024]"),
    (["speed", "--cells", ""], "--cells must list at least one cell"),
    (["speed", "--preset", "ptb-huge"], "unknown preset 'ptb-huge'"),
    (["roofline", "--threads", "5000"], "--threads must be an integer in [1, 1024]"),
]


@pytest.mark.parametrize("argv,message", MATRIX_CASES)
def test_commands_check_everything_before_any_child_starts(capsys, tmp_path, no_children, argv, message):
    results = tmp_path / "results"
    flag = "--results-dir" if argv[0] in ("matrix", "sweep", "roofline") else None
    _one_line_error(capsys, argv + ([flag, str(results)] if flag else []), message, results)


def test_speed_out_and_roofline_results_dir_must_be_writable(capsys, tmp_path, no_children):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(capsys, ["speed", "--out", str(blocker / "speed.json")], "--out", tmp_path / "none")
    _one_line_error(capsys, ["roofline", "--results-dir", str(blocker / "r")], "is not a writable directory",
                    tmp_path / "none")
    (tmp_path / "roofline.json").write_text("{not json")
    _one_line_error(capsys, ["roofline", "--results-dir", str(tmp_path)], "is not a roofline file",
                    tmp_path / "none")


def test_matrix_refuses_a_data_setting_that_does_not_fit_before_running(capsys, tmp_path, ptb_dir, no_children):
    results = tmp_path / "results"
    _one_line_error(capsys, ["matrix", "--preset", "ptb-tiny", "--data-dir", str(ptb_dir), "--batch-size", "1000",
                             "--results-dir", str(results)], "too few for batch 1000", results)
    _one_line_error(capsys, ["sweep", "--param", "num_steps", "--values", "5,400", "--preset", "ptb-tiny",
                             "--data-dir", str(tmp_path / "none"), "--results-dir", str(results)],
                    "python -m bench data ptb", results)


def test_argparse_usage_errors_stay_argparses(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["speed", "--rounds", "x"])
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_run_help_shows_each_range(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("range [0, 2**63 - 1]", "range [1, 1024]", "range [1.2e-38, 3.4e+38] in float32",
                 "one of: sgd, adagrad"):
        assert text in out


def test_a_valid_sweep_passes_the_preflight(tmp_path):
    preflight.check_sweep("learning_rate", ["-0.5e-3"[1:], "2"], ["rnn", "lstm"], "numpy", None,
                          ["--results-dir", str(tmp_path)])
    preflight.check_matrix(["numpy"], ["rnn", "lstm"], None, ["--epochs", "1", "--results-dir", str(tmp_path)])
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == "[]"  # created, nothing written

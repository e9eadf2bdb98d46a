"""Class 4: Ctrl-C, SIGTERM or SIGHUP at any moment (imports, model build, training,
evaluation, the final evaluation, twice in a row) ends in exit 130 and one line, never a
traceback; a run that has a record says `interrupted` and where, never `running`; a matrix
or sweep records its child as interrupted, prints its summary and exits 130."""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench.runner as runner
from bench.runner import EXIT_INTERRUPTED
from tests.faults.helpers import cli, leftovers, records_in

ECHO = ["--epochs", "3", "--total-series-length", "1500", "--quiet"]
LINUX = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc to see the handlers installed")


# -- every phase, in-process: the handling is the same whatever raised the interrupt -----

def _raise_in(monkeypatch, name: str, when=lambda *a, **k: True):
    """``name`` (in bench.runner, or ``module.function``) raises KeyboardInterrupt when ``when`` says."""
    module = importlib.import_module(f"bench.{name.rsplit('.', 1)[0]}" if "." in name else "bench.runner")
    name = name.rsplit(".", 1)[-1]
    original = getattr(module, name)

    def interrupted(*args, **kwargs):
        if when(*args, **kwargs):
            raise KeyboardInterrupt("SIGINT")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupted)


def _nth_call(n: int):
    calls = {"n": 0}

    def when(*args, **kwargs):
        calls["n"] += 1
        return calls["n"] == n
    return when


PHASES = {
    # name: (function in bench.runner, when, expected phase, expected epoch)
    "first gradient probe": ("measure_gradient_norms", _nth_call(1), "gradient-probe", 1),
    "training step": ("train_epoch", _nth_call(2), "train", 2),
    "per-epoch evaluation": ("evaluate", _nth_call(2), "evaluate:valid", 2),
    "later gradient probe": ("measure_gradient_norms", _nth_call(3), "gradient-probe", 2),
    "checkpoint write": ("runfiles.save_checkpoint", _nth_call(2), "checkpoint", 2),
    "final evaluation": ("evaluate", lambda m, t, split, *a, **k: split == "test", "final-evaluate:test", None),
    "sample": ("sample_predictions", _nth_call(1), "sample", None),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_an_interrupt_in_any_phase_is_recorded_with_where_and_resumes(phase, tmp_path, capsys, monkeypatch):
    name, when, expected_phase, expected_epoch = PHASES[phase]
    _raise_in(monkeypatch, name, when)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    monkeypatch.undo()
    assert code == EXIT_INTERRUPTED and "Traceback" not in err
    (record,) = records_in(tmp_path)
    assert record["status"] == "interrupted"
    assert (record["failure"]["phase"], record["failure"]["epoch"]) == (expected_phase, expected_epoch)
    assert not leftovers(tmp_path)
    if record["checkpoint"]:  # resume finishes it, with the numbers of an uninterrupted run
        assert cli(capsys, ["run", "--resume", record["checkpoint"], "--quiet"])[0] == 0
        (resumed,) = records_in(tmp_path)
        reference = tmp_path / "reference"
        assert cli(capsys, ["run", *ECHO, "--results-dir", str(reference)])[0] == 0
        (clean,) = records_in(reference)
        assert resumed["status"] == "completed" and resumed["final"]["test"]["loss"] == clean["final"]["test"]["loss"]


class _LibraryError(RuntimeError):
    """What a library (TensorFlow tracing a function) may raise from our KeyboardInterrupt."""


def _library_error_from_interrupt(*args, **kwargs):
    try:
        raise KeyboardInterrupt("SIGINT")
    except KeyboardInterrupt as exc:
        raise _LibraryError("tracing failed") from exc


@pytest.mark.parametrize("where", ["train_epoch", "make_task", "backend build"])
def test_a_librarys_error_raised_from_the_interrupt_is_the_interrupt(where, tmp_path, capsys, monkeypatch):
    if where == "backend build":
        from backends.numpy import NumpyBackend

        monkeypatch.setattr(NumpyBackend, "build", classmethod(_library_error_from_interrupt))
    else:
        monkeypatch.setattr(runner, where, _library_error_from_interrupt)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_INTERRUPTED and "Traceback" not in err and err.count("\n") == 1, err
    assert [r["status"] for r in records_in(tmp_path)] == (["interrupted"] if where == "train_epoch" else [])


@pytest.mark.parametrize("where", ["make_task", "make_cell", "get_backend"])
def test_an_interrupt_while_setting_up_writes_nothing(where, tmp_path, capsys, monkeypatch):
    _raise_in(monkeypatch, where)
    code, out, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_INTERRUPTED
    assert err == "interrupted by SIGINT while setting up: nothing was written\n"
    assert records_in(tmp_path) == []


# -- real signals, in a process of its own -------------------------------------------------

def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_handlers(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the process catches SIGTERM (Python alone catches only SIGINT): our handlers are in."""
    deadline = time.monotonic() + timeout
    mask = 1 << (signal.SIGTERM - 1)
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            return
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt")), 16)
        if caught & mask:
            return
        time.sleep(0.002)
    raise AssertionError("the handlers never appeared")


def _wait_for_epoch(directory: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in directory.glob("*.json"):
            try:
                if json.loads(path.read_text())["epochs"]:
                    return
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError("no epoch completed")


def _assert_clean_interrupt(process: subprocess.Popen, results: Path) -> str:
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err, err
    said = [line for line in err.strip().splitlines() if not line.startswith("already stopping")]
    assert said[-1].startswith(("interrupted", "run ")), err
    for record in records_in(results):
        assert record["status"] == "interrupted" and record["failure"]["phase"], record["failure"]
    assert not leftovers(results)
    return err


@LINUX
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_a_signal_during_imports_build_or_training(tmp_path, delay, sig):
    process = _start(["run", "--epochs", "1000", "--total-series-length", "1500", "--results-dir", "r"], tmp_path)
    _wait_for_handlers(process)
    time.sleep(delay)
    process.send_signal(sig)
    _assert_clean_interrupt(process, tmp_path / "r")


@LINUX
@pytest.mark.parametrize("delay", [0.5, 2.0, 4.0])
def test_a_signal_while_tensorflow_imports_and_builds(tmp_path, delay):
    pytest.importorskip("tensorflow")
    process = _start(["run", "--backend", "tf", "--epochs", "1000", "--total-series-length", "1500", "--threads", "1",
                      "--results-dir", "r"], tmp_path)
    _wait_for_handlers(process)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _assert_clean_interrupt(process, tmp_path / "r")


@LINUX
@pytest.mark.parametrize("pause", [0.0, 0.001, 0.02, 0.2])
def test_signals_in_a_row_cannot_cut_the_last_write(tmp_path, pause):
    process = _start(["run", "--epochs", "1000", "--total-series-length", "1500", "--results-dir", "r"], tmp_path)
    _wait_for_epoch(tmp_path / "r")
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        process.send_signal(sig)
        time.sleep(pause)
    err = _assert_clean_interrupt(process, tmp_path / "r")
    (record,) = records_in(tmp_path / "r")
    assert len(record["epochs"]) >= 1 and record["checkpoint"]
    assert err.count("already stopping") <= 1 and err.count("interrupted by") == 1, err


@LINUX
@pytest.mark.parametrize("command", ["matrix", "sweep"])
@pytest.mark.parametrize("to", ["group", "parent"])
def test_ctrl_c_on_matrix_and_sweep(tmp_path, command, to):
    """Ctrl-C in a terminal signals the whole group; `kill` the parent alone: either way the
    child in flight records `interrupted`, the parent prints what ran and exits 130."""
    specific = (["--backends", "numpy", "--cells", "rnn,lstm"] if command == "matrix"
                else ["--param", "echo_step", "--values", "1,2", "--cells", "rnn"])
    process = _start([command, *specific, "--epochs", "1000", "--total-series-length", "1500", "--results-dir", "r"],
                     tmp_path)
    _wait_for_epoch(tmp_path / "r")
    if to == "group":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=180)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    rows = out.splitlines()
    assert rows[0].startswith("combination")
    assert "interrupted" in rows[1] and "not run" in rows[2], out
    (record,) = records_in(tmp_path / "r")
    assert record["status"] == "interrupted" and record["checkpoint"]
    assert not leftovers(tmp_path / "r")

"""Class 4: Ctrl-C, SIGTERM or SIGHUP at any moment (imports, model build, training,
evaluation, the final evaluation, twice in a row) ends in exit 130 and one line, never a
traceback; a run that has a record says `interrupted` and where, never `running`; a matrix
or sweep records its child as interrupted, prints its summary and exits 130.

The handler only notes a signal; the stop is raised by ``interrupts.check()`` at the next
phase boundary or window. So the process tests below do not ask for an exit within so
many seconds (a busy machine's imports take what they take): they freeze the process
(SIGSTOP) at a phase it has reached, see how far it has trained, signal it, let it go on,
and fail as soon as it trains past the epoch it was in, or does not end 130."""
from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

import bench.run.runner as runner
import bench.measure.speed as speed
from bench import interrupts
from bench.run.runner import EXIT_INTERRUPTED
from tests.faults.helpers import cli, leftovers, records_in

ECHO = ["--epochs", "3", "--total-series-length", "1500", "--quiet"]
LINUX = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc to see the handlers installed")


# -- every phase, in-process: the handling is the same whatever raised the interrupt -----

def _raise_in(monkeypatch, name: str, when=lambda *a, **k: True):
    """``name`` (in bench.run.runner, or ``module.function`` of bench.run) raises KeyboardInterrupt when ``when`` says."""
    module = importlib.import_module(f"bench.run.{name.rsplit('.', 1)[0]}" if "." in name else "bench.run.runner")
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
    # name: (function in bench.run.runner, when, expected phase, expected epoch)
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


@pytest.mark.parametrize("where", ["train_epoch", "build_task", "backend build"])
def test_a_librarys_error_raised_from_the_interrupt_is_the_interrupt(where, tmp_path, capsys, monkeypatch):
    if where == "backend build":
        from backends.numpy import NumpyBackend

        monkeypatch.setattr(NumpyBackend, "build", classmethod(_library_error_from_interrupt))
    elif where == "build_task":  # the task's windows, read as the run sets up (bench.run.plan)
        from bench.run.plan import RunPlan

        monkeypatch.setattr(RunPlan, "build_task", _library_error_from_interrupt)
    else:
        monkeypatch.setattr(runner, where, _library_error_from_interrupt)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_INTERRUPTED and "Traceback" not in err and err.count("\n") == 1, err
    assert [r["status"] for r in records_in(tmp_path)] == (["interrupted"] if where == "train_epoch" else [])


@pytest.mark.parametrize("where", ["plan.get_task_class", "plan.make_cell", "plan.get_backend"])
def test_an_interrupt_while_setting_up_writes_nothing(where, tmp_path, capsys, monkeypatch):
    _raise_in(monkeypatch, where)
    code, out, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_INTERRUPTED
    assert err == "interrupted by SIGINT while setting up: nothing was written\n"
    assert records_in(tmp_path) == []


# -- the handler notes a signal and never raises; the stop lands at the next check ---------

def test_the_handler_notes_a_signal_and_never_raises(capfd):
    with interrupts.handled():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            assert interrupts._handler(sig, None) is None  # called directly: nothing raised, whichever comes
        assert interrupts.stop_asked() == "SIGTERM"  # the first one is the stop
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            interrupts.check()
        interrupts.check()  # taken once, never raised again
    assert capfd.readouterr().err == interrupts.ALREADY_STOPPING.decode()  # one note for the later two


def _until_noted(timeout: float = 10.0) -> None:
    """Spin (bytecodes, where Python runs a pending handler) until our handler has run."""
    deadline = time.monotonic() + timeout
    while interrupts.stop_asked() is None and time.monotonic() < deadline:
        pass


def test_a_signal_where_python_drops_exceptions_still_stops_at_the_next_check(capfd):
    """Inside a garbage-collector callback (JAX registers one; importlib's module locks are
    the same kind of place) Python drops what is raised: "Exception ignored in ...". A
    handler that raised there lost the stop; the flag it leaves is taken by the next check."""
    landed = []

    def callback(phase: str, info: dict) -> None:
        if phase == "start" and not landed:
            landed.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
            _until_noted()

    with interrupts.handled():
        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        assert landed and interrupts.stop_asked() == "SIGTERM"
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            interrupts.check()
    assert "Exception ignored" not in capfd.readouterr().err


def _numpy_models_with(monkeypatch, train_step_hook: Callable[[int], None]) -> None:
    """NumPy models whose train step calls ``train_step_hook(n)`` (n: 1-based) before stepping."""
    from backends.numpy import NumpyBackend

    build = NumpyBackend.build.__func__

    def hooked(cls, spec, params, settings):
        model = build(cls, spec, params, settings)
        step, calls = model.train_step, {"n": 0}

        def train_step(*args, **kwargs):
            calls["n"] += 1
            train_step_hook(calls["n"])
            return step(*args, **kwargs)

        model.train_step = train_step
        return model

    monkeypatch.setattr(NumpyBackend, "build", classmethod(hooked))


def test_a_signal_swallowed_inside_a_step_stops_the_run_at_the_next_window(tmp_path, capsys, monkeypatch):
    def swallowing(n: int) -> None:
        if n == 5:
            try:  # a library that drops whatever is raised in it
                os.kill(os.getpid(), signal.SIGTERM)
                _until_noted()
            except BaseException:
                pass

    _numpy_models_with(monkeypatch, swallowing)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_INTERRUPTED and "Traceback" not in err, err
    (record,) = records_in(tmp_path)
    assert record["status"] == "interrupted" and record["epochs"] == []
    failure = record["failure"]
    assert (failure["phase"], failure["epoch"], failure["step"]) == ("train", 1, 6)  # the window after it
    assert failure["message"].startswith("interrupted by SIGTERM")


def test_a_signal_while_an_epoch_is_saved_lands_after_its_checkpoint(tmp_path, capsys, monkeypatch):
    import bench.run.runfiles as runfiles

    save = runfiles.save_checkpoint

    def signalled_while_saving(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        _until_noted()
        return save(*args, **kwargs)

    monkeypatch.setattr(runfiles, "save_checkpoint", signalled_while_saving)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_INTERRUPTED and "Traceback" not in err, err
    (record,) = records_in(tmp_path)
    assert record["status"] == "interrupted" and len(record["epochs"]) == 1 and Path(record["checkpoint"]).is_file()
    assert (record["failure"]["phase"], record["failure"]["epoch"], record["failure"]["step"]) == ("train", 2, None)


def test_a_signal_stops_a_speed_measurement_and_its_process(monkeypatch):
    """``bench speed`` waits for each measurement's process: a stop between polls kills it."""
    children: list[subprocess.Popen] = []
    popen = subprocess.Popen
    monkeypatch.setattr(speed.subprocess, "Popen", lambda *a, **k: children.append(popen(*a, **k)) or children[-1])
    never_ends = {"preset": "echo", "backend": "numpy", "impl": "cell", "cell": "rnn", "steps": 10**9, "warmup": 0,
                  "threads": 1}
    with interrupts.handled():
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
                speed._measure_apart(never_ends)
        finally:
            timer.cancel()
    (child,) = children
    assert child.poll() is not None  # killed, not left running


# -- real signals, in a process of its own -------------------------------------------------

# Each backend's framework, by the folder of its libraries in /proc/PID/maps: once one is
# mapped, the run is importing the framework or building its model (numpy has no such phase).
FRAMEWORK_PACKAGES = {"numpy": None, "torch": "torch", "tf": "tensorflow", "jax": "jaxlib"}
PHASES_REACHED = ("start-up", "framework", "training")
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HANG_SECONDS = 120  # bounds a run that neither ends nor trains on: it hangs; a stop never waits this long


class _Process:
    """``python -m bench ARGV`` in a session of its own, its output in files (a pipe nobody
    reads would fill up and block it)."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.cwd = cwd
        with open(cwd / "stdout", "w") as out, open(cwd / "stderr", "w") as err:
            self.popen = subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=cwd, stdout=out, stderr=err,
                                          start_new_session=True)
        self.pid = self.popen.pid

    def out(self) -> str:
        return (self.cwd / "stdout").read_text()

    def err(self) -> str:
        return (self.cwd / "stderr").read_text()

    def send_signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running {timeout:.0f} s after its signal: {self.err()[-2000:]}") from None


@pytest.fixture
def processes() -> Iterator[list[_Process]]:
    started: list[_Process] = []
    yield started
    for process in started:  # a failed test leaves nothing running
        process.kill()


def _start(processes: list[_Process], argv: list[str], cwd: Path) -> _Process:
    processes.append(_Process(argv, cwd))
    return processes[-1]


def _wait_until(process: _Process, reached: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Until ``reached()``; a process that ends first, or never gets there, fails the test."""
    deadline = time.monotonic() + timeout
    while not reached():
        code = process.popen.poll()
        assert code is None, f"ended ({code}) before {what}: {process.err()[-2000:]}"
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.005)


def _catches_sigterm(pid: int) -> bool:
    """Whether the process catches SIGTERM (Python alone catches only SIGINT): our handlers are in."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _maps(pid: int, package: str) -> bool:
    try:
        return f"/{package}/" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _epochs_so_far(directory: Path) -> int | None:
    """Completed epochs in the run's record; None while it has none (writes are atomic)."""
    records = records_in(directory)
    return len(records[0]["epochs"]) if records else None


@contextmanager
def _frozen(process: _Process) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block: what is seen of it holds when it is signalled."""
    os.kill(process.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while (state := Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) not in "Tt":
            assert state != "Z", f"ended ({process.popen.wait()}) before its signal: {process.err()[-2000:]}"
            assert time.monotonic() < deadline, "SIGSTOP did not stop it"
            time.sleep(0.001)
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


def _signal_frozen(process: _Process, results: Path, sig: int) -> int | None:
    """Signal the process where it is now; returns its completed epochs then (None: no record yet)."""
    with _frozen(process):
        seen = _epochs_so_far(results)
        process.send_signal(sig)
    return seen


def _assert_stopped_where_signalled(process: _Process, results: Path, seen: int | None, sig: int, note: str) -> None:
    """Exit 130 with the signal named, no traceback, nothing dropped; never a window trained
    after a signal before the record (``seen`` None), never more than the epoch under way after
    one in training: a run that goes on training fails as soon as its record shows it."""
    name = signal.Signals(sig).name
    limit = 0 if seen is None else seen + 1
    deadline = time.monotonic() + HANG_SECONDS
    while process.popen.poll() is None:
        now = _epochs_so_far(results)
        assert now is None or now <= limit, f"{note}: trained on after {name}: {now} epochs, {seen} when signalled"
        assert time.monotonic() < deadline, f"{note}: still running {HANG_SECONDS} s after {name}"
        time.sleep(0.02)
    err = process.err()
    assert process.popen.returncode == EXIT_INTERRUPTED, f"{note}: exit {process.popen.returncode}: {err[-3000:]}"
    assert "Traceback" not in err and "Exception ignored" not in err, f"{note}: {err[-3000:]}"
    assert err.count(f"interrupted by {name}") == 1, f"{note}: {err[-3000:]}"
    records = records_in(results)
    for record in records:
        assert record["status"] == "interrupted" and record["failure"]["message"].startswith(f"interrupted by {name}")
    if seen is None:  # signalled before the record: stopped before the first window, at the latest
        assert not records or (records[0]["epochs"] == [] and records[0]["failure"]["step"] is None), note
    else:
        (record,) = records
        assert seen <= len(record["epochs"]) <= seen + 1, note
        assert bool(record["checkpoint"]) == bool(record["epochs"]), note  # every completed epoch resumable
    assert not leftovers(results), note


def _run_argv(backend: str) -> list[str]:
    return ["run", "--backend", backend, "--epochs", "1000", "--total-series-length", "1500", "--threads", "1",
            "--quiet", "--results-dir", "r"]


def _skip_unless_installed(backend: str) -> None:
    """Found, not imported: importing TensorFlow here would cost this process seconds."""
    package = FRAMEWORK_PACKAGES[backend]
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")


CASES = [(backend, phase) for backend in FRAMEWORK_PACKAGES for phase in PHASES_REACHED
         if FRAMEWORK_PACKAGES[backend] or phase != "framework"]


def _signal_after(process: _Process, results: Path, reached: Callable[[], bool], phase: str, offset: float,
                  sig: int) -> int | None:
    """Once the process has ``reached()`` its phase and ``offset`` seconds later, signal it frozen."""
    _wait_until(process, reached, phase)
    time.sleep(offset)
    return _signal_frozen(process, results, sig)


def _phase_reached(process: _Process, backend: str, phase: str, results: Path) -> Callable[[], bool]:
    return {"start-up": lambda: _catches_sigterm(process.pid),
            "framework": lambda: _maps(process.pid, FRAMEWORK_PACKAGES[backend]),
            "training": lambda: _epochs_so_far(results) is not None}[phase]


@LINUX
@pytest.mark.parametrize("backend,phase", CASES, ids=[f"{b}-{p}" for b, p in CASES])
def test_a_signal_at_each_phase_of_each_backend_stops_the_run_there(tmp_path, processes, backend, phase):
    """Start-up: once the handlers are in (the imports of bench.cli under way); framework:
    once the framework's libraries are mapped (the rest of its import, the model's build);
    training: once the record exists (the first windows: JAX's and TF's compile). Each at a
    random moment of the next 0.3 s; the signals take turns (INT, TERM and HUP are alike)."""
    _skip_unless_installed(backend)
    sig, offset = SIGNALS[CASES.index((backend, phase)) % len(SIGNALS)], random.uniform(0.0, 0.3)
    results = tmp_path / "r"
    process = _start(processes, _run_argv(backend), tmp_path)
    seen = _signal_after(process, results, _phase_reached(process, backend, phase, results), phase, offset, sig)
    _assert_stopped_where_signalled(process, results, seen, sig, f"{backend} {phase} +{offset:.2f} s")


@LINUX
@pytest.mark.slow
@pytest.mark.parametrize("backend", list(FRAMEWORK_PACKAGES))
def test_signals_at_random_moments_of_the_frameworks_import_and_build(tmp_path, processes, backend):
    """The loop of the bug report: a handler that raised lost the stop when it ran inside a
    callback whose exceptions Python drops (JAX's garbage-collector callback, importlib's
    module locks), and the run trained on to `completed`; a JAX run SIGTERMed 0.2 to 0.5 s
    after jaxlib was mapped did so about half the time. Signals at random moments of that
    stretch (of the start-up, for numpy), each a run of its own; the moment is printed on
    failure."""
    _skip_unless_installed(backend)
    rng = random.Random()
    phase = "framework" if FRAMEWORK_PACKAGES[backend] else "start-up"
    for attempt in range(4 if backend == "jax" else 2):
        cwd = tmp_path / str(attempt)
        cwd.mkdir()
        results = cwd / "r"
        process = _start(processes, _run_argv(backend), cwd)
        offset, sig = rng.uniform(0.0, 0.6), rng.choice(SIGNALS)
        seen = _signal_after(process, results, _phase_reached(process, backend, phase, results), phase, offset, sig)
        _assert_stopped_where_signalled(process, results, seen, sig, f"{backend}, {sig.name} {phase} +{offset:.2f} s")


@LINUX
def test_a_signal_stops_the_roofline_measurement(tmp_path, processes):
    """`bench roofline` measures for seconds per library: a stop lands between two products
    and nothing is recorded."""
    process = _start(processes, ["roofline", "--threads", "1", "--results-dir", "r"], tmp_path)
    _wait_until(process, lambda: _catches_sigterm(process.pid), "its handlers")
    time.sleep(random.uniform(0.0, 1.5))
    process.send_signal(signal.SIGTERM)
    assert process.wait(HANG_SECONDS) == EXIT_INTERRUPTED, process.err()
    assert "Traceback" not in process.err() and "interrupted by SIGTERM" in process.err()
    assert not (tmp_path / "r" / "roofline.json").exists()


def _wait_for_epoch(process: _Process, directory: Path) -> None:
    _wait_until(process, lambda: bool(_epochs_so_far(directory)), "an epoch's end")


@LINUX
@pytest.mark.parametrize("pause", [0.0, 0.02])
def test_signals_in_a_row_cannot_cut_the_last_write(tmp_path, processes, pause):
    process = _start(processes, _run_argv("numpy"), tmp_path)
    _wait_for_epoch(process, tmp_path / "r")
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        process.send_signal(sig)
        time.sleep(pause)
    assert process.wait(HANG_SECONDS) == EXIT_INTERRUPTED, process.err()
    err = process.err()
    assert "Traceback" not in err
    (record,) = records_in(tmp_path / "r")
    assert record["status"] == "interrupted" and len(record["epochs"]) >= 1 and record["checkpoint"]
    assert err.count("already stopping") <= 1 and err.count("interrupted by") == 1, err
    assert not leftovers(tmp_path / "r")


@LINUX
@pytest.mark.parametrize("command", ["matrix", "sweep"])
@pytest.mark.parametrize("to", ["group", "parent"])
def test_ctrl_c_on_matrix_and_sweep(tmp_path, processes, command, to):
    """Ctrl-C in a terminal signals the whole group; `kill` the parent alone (its wait for
    the child then sees the stop at its next poll): either way the child in flight records
    `interrupted`, the parent prints what ran and exits 130."""
    specific = (["--backends", "numpy", "--cells", "rnn,lstm"] if command == "matrix"
                else ["--param", "echo_step", "--values", "1,2", "--cells", "rnn"])
    process = _start(processes, [command, *specific, "--epochs", "1000", "--total-series-length", "1500",
                                 "--results-dir", "r"], tmp_path)
    _wait_for_epoch(process, tmp_path / "r")
    if to == "group":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    assert process.wait(HANG_SECONDS + 60) == EXIT_INTERRUPTED, process.err()
    assert "Traceback" not in process.err()
    rows = process.out().splitlines()
    assert rows[0].startswith("combination")
    assert "interrupted" in rows[1] and "not run" in rows[2], rows
    (record,) = records_in(tmp_path / "r")
    assert record["status"] == "interrupted" and record["checkpoint"]
    assert not leftovers(tmp_path / "r")

"""The exit statuses of `bench matrix` and `bench sweep` (bench/exits.py, results/README.md):
0 when every run completed, 3 when one diverged, 4 when the machine stopped one (aborted)
or killed it (lost), 2 for bad input before any run or found by a run, 130 when stopped,
the gravest winning; the summary's last line names the runs behind it. Real tiny runs
through the CLI; where a run must meet the machine, its child process is started with
that fault planted (its launch monkeypatched), and the rest of the run is real."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import bench.fanout.jobs as matrix
from bench.cli import main
from bench.exits import fan_out_exit
from tests.faults.helpers import records_in

ECHO = ["--epochs", "1", "--total-series-length", "1500", "--threads", "1", "--quiet"]
DIVERGES = "1e38"  # as a learning rate, with --max-grad-norm 0: the loss overflows in epoch 1


def _at_final_evaluation(fault: str) -> str:
    """Code that makes ``fault`` (a statement) happen in place of the run's second
    evaluation: the final one of a 1-epoch run, after epoch 1's record was written."""
    return ("import bench.run.runner as r\nevaluate, calls = r.evaluate, []\n"
            "def at_final(*args, **kwargs):\n    calls.append(1)\n"
            f"    if len(calls) == 2:\n        {fault}\n    return evaluate(*args, **kwargs)\n"
            "r.evaluate = at_final")


# Planted in a child `bench run` before its main: the fault, then the real run.
FAULTS = {
    "lost": _at_final_evaluation("os.kill(os.getpid(), signal.SIGKILL)"),  # the OOM killer's way
    "aborted": _at_final_evaluation("raise MemoryError"),
    # the disk filled between the matrix's checks and the run's own check of its space
    "bad input": "os.statvfs = lambda path: type('Full', (), {'f_bavail': 0, 'f_frsize': 4096})()",
}
CHILD = "import os, signal, sys\n{fault}\nfrom bench.cli import main\nsys.exit(main(sys.argv[1:]))"


def _plant(monkeypatch: pytest.MonkeyPatch, faults: dict[str, str]) -> None:
    """The child of each run whose arguments contain a key of ``faults`` starts with that
    fault (a key of FAULTS); the other runs start as they would."""
    real = subprocess.Popen

    def launch(command: list[str], **kwargs: Any) -> subprocess.Popen:
        joined = " ".join(command)
        fault = next((FAULTS[f] for marker, f in faults.items() if marker in joined), None)
        if fault is not None:
            assert command[1:4] == ["-m", "bench", "run"], command
            command = [sys.executable, "-c", CHILD.format(fault=fault), *command[3:]]
        return real(command, **kwargs)

    monkeypatch.setattr(matrix.subprocess, "Popen", launch)


def _sweep(capsys: pytest.CaptureFixture, tmp_path: Path, values: str) -> tuple[int, list[str]]:
    code = main(["sweep", "--param", "learning_rate", "--values", values, "--cells", "rnn", "--backend", "numpy",
                 *ECHO, "--max-grad-norm", "0", "--results-dir", str(tmp_path)])
    return code, capsys.readouterr().out.splitlines()


def test_a_matrix_whose_runs_all_complete_exits_0(capsys, tmp_path):
    code = main(["matrix", "--backends", "numpy", "--cells", "rnn", *ECHO, "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1] == "exit 0: 1 of 1 completed", out
    assert [r["status"] for r in records_in(tmp_path)] == ["completed"]


def test_a_sweep_with_a_diverged_run_exits_3_and_names_it(capsys, tmp_path):
    code, out = _sweep(capsys, tmp_path, f"0.3,{DIVERGES}")
    assert code == 3 and out[-1] == f"exit 3: diverged: numpy rnn learning_rate={DIVERGES}; 1 of 2 completed", out
    assert sorted(r["status"] for r in records_in(tmp_path)) == ["completed", "diverged"]


@pytest.mark.parametrize("fault,record,detail", [
    ("lost", "running", "its process was killed by SIGKILL"),
    ("aborted", "aborted", "aborted: out of memory in final-evaluate:test"),
])
def test_a_run_the_machine_stopped_makes_the_matrix_exit_4(capsys, tmp_path, monkeypatch, fault, record, detail):
    _plant(monkeypatch, {"--cell lstm": fault})
    code = main(["matrix", "--backends", "numpy", "--cells", "rnn,lstm", *ECHO, "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 4 and out[-1] == f"exit 4: {fault}: numpy/cell lstm; 1 of 2 completed", out
    assert any(line.startswith("numpy/cell lstm") and fault in line and detail in line for line in out), out
    by_cell = {r["config"]["cell"]: r for r in records_in(tmp_path)}
    assert by_cell["rnn"]["status"] == "completed" and by_cell["lstm"]["status"] == record
    assert len(by_cell["lstm"]["epochs"]) == 1  # the epoch before the fault is kept


def test_bad_input_before_any_run_exits_2_in_one_line(capsys, tmp_path):
    results = tmp_path / "results"
    code = main(["matrix", "--backends", "numpy", "--cells", "gur", *ECHO, "--results-dir", str(results)])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: unknown cell 'gur'") and err.count("\n") == 1, err
    assert out == "" and not results.exists()


def test_bad_input_a_run_finds_makes_the_sweep_exit_2(capsys, tmp_path, monkeypatch):
    _plant(monkeypatch, {"--learning-rate=0.5": "bad input"})
    code, out = _sweep(capsys, tmp_path, "0.3,0.5")
    assert code == 2 and out[-1] == "exit 2: bad input: numpy rnn learning_rate=0.5; 1 of 2 completed", out
    assert any("free some space" in line for line in out), out
    assert [r["status"] for r in records_in(tmp_path)] == ["completed"]  # the refused run wrote nothing


def test_a_stopped_matrix_exits_130_keeping_the_run_in_flight(tmp_path):
    """SIGINT to `bench matrix` while its first run trains: that run stops and records its
    completed epochs as interrupted, the second never starts."""
    argv = [sys.executable, "-m", "bench", "matrix", "--backends", "numpy", "--cells", "rnn,lstm", "--epochs", "1000",
            "--total-series-length", "1500", "--threads", "1", "--quiet", "--results-dir", str(tmp_path)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(json.loads(p.read_text() or "{}").get("epochs")
                                                      for p in tmp_path.glob("*.json")):
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    last = out.splitlines()[-1]
    assert last == "exit 130: stopped by SIGINT; interrupted: numpy/cell rnn; not run: 1; 0 of 2 completed", out
    (record,) = records_in(tmp_path)
    assert record["status"] == "interrupted" and record["config"]["cell"] == "rnn" and record["epochs"]


def test_the_gravest_status_wins_and_the_summary_names_every_cause(capsys, tmp_path, monkeypatch):
    _plant(monkeypatch, {"--learning-rate=0.5": "lost"})
    code, out = _sweep(capsys, tmp_path, f"0.3,{DIVERGES},0.5")
    assert code == 4, out
    assert out[-1] == (f"exit 4: lost: numpy rnn learning_rate=0.5; also diverged: numpy rnn learning_rate={DIVERGES}; "
                       "1 of 3 completed"), out


@pytest.mark.parametrize("statuses,stopped,expected", [
    (["completed", "skipped"], False, 0),
    ([], False, 0),
    (["completed", "diverged"], False, 3),
    (["diverged", "lost"], False, 4),
    (["aborted", "diverged"], False, 4),
    (["lost", "bad input", "diverged"], False, 2),
    (["bad input", "failed (exit 1)"], False, 1),  # a run's bug: its traceback was relayed
    (["failed (exit 7)"], False, 1),  # an exit status no run gives is a bug too
    (["failed (exit 1)", "not run"], False, 130),
    (["interrupted", "diverged"], False, 130),
    (["completed", "lost"], True, 130),  # a run we stopped and then killed past its grace
])
def test_fan_out_exit_precedence(statuses, stopped, expected):
    assert fan_out_exit(statuses, stopped=stopped) == expected

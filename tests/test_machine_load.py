"""bench speed and bench roofline record the machine's load, warn when it was busy, and
print a table that fits the terminal (the figures themselves are not asserted)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

import bench.run.metrics
import bench.measure.roofline
from bench.cli import main
from bench.run.metrics import LoadMeter
from bench.documents import Unreadable, check, read_document
from bench.measure.speed import terminal_table

REPO_ROOT = Path(__file__).resolve().parent.parent
LOAD_FIELDS = {"logical_cpus", "threads", "seconds", "loadavg_before", "loadavg_after", "others_cpu_s", "others_cores",
               "busy"}
SPEED = ["speed", "--preset", "echo", "--backends", "numpy", "--cells", "rnn,lstm", "--rounds", "1", "--steps", "1",
         "--warmup", "0", "--threads", "1"]


@pytest.fixture
def brief_peak(monkeypatch):
    """The GEMM yardstick measured for a moment (its figure is not what these tests check)."""
    real = bench.measure.roofline.measure_peak
    monkeypatch.setattr(bench.measure.roofline, "measure_peak",
                        lambda threads=None, n=2048, seconds=3.0: real(threads, n=128, seconds=0.02))


@pytest.fixture
def quiet_machine(monkeypatch):
    """Nothing but us on the machine: the system's busy time is exactly our own."""
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.4, 0.3))
    monkeypatch.setattr(bench.run.metrics, "_system_busy_seconds", bench.run.metrics._own_seconds)


@pytest.fixture
def busy_machine(monkeypatch):
    """Other processes keep every core busy, and one more: busy whatever the thread count."""
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (3.9, 3.5, 3.0))
    monkeypatch.setattr(bench.run.metrics, "_system_busy_seconds",
                        lambda: bench.run.metrics._own_seconds() + (cores + 1) * time.perf_counter())


def _width(monkeypatch, columns: int) -> None:
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *args, **kwargs: os.terminal_size((columns, 24)))


def test_speed_prints_what_fits_the_terminal_and_keeps_everything_in_out(tmp_path, capsys, monkeypatch, brief_peak,
                                                                         quiet_machine):
    _width(monkeypatch, 60)
    monkeypatch.chdir(tmp_path)  # a short --out: a path is printed whole, whatever the width
    out = tmp_path / "speed.json"
    assert main([*SPEED, "--out", "speed.json"]) == 0
    printed, err = capsys.readouterr()
    assert printed and all(len(line) <= 60 for line in printed.splitlines()), printed
    assert "numpy/cell    rnn" in printed and "numpy/cell    lstm" in printed
    assert "are in speed.json)" in printed  # says where the full table went
    assert "busy" not in err
    table = json.loads(out.read_text())
    read_document(out, "speed")  # the new fields answer to the schema
    fields = {key for row in table["rows"] for key in row}
    assert {"eval_tok_s", "train_ceiling_tok_s", "eval_pct_ceiling", "train_min", "eval_gflops"} <= fields
    load = table["machine_load"]
    assert set(load) == LOAD_FIELDS
    assert (load["threads"], load["logical_cpus"], load["busy"]) == (1, os.cpu_count(), False)
    assert load["loadavg_before"] == load["loadavg_after"] == [0.5, 0.4, 0.3]
    assert load["others_cores"] < 0.25 and load["seconds"] > 0


def test_speed_on_a_busy_machine_says_so_in_one_line_and_in_the_table(tmp_path, capsys, monkeypatch, brief_peak,
                                                                      busy_machine):
    _width(monkeypatch, 200)
    out = tmp_path / "speed.json"
    assert main([*SPEED, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "busy" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: the machine was busy: load 3.9 on {os.cpu_count()} cores "
                                  "while measuring with 1 thread")
    assert warnings[0].endswith("figures may be low")
    assert json.loads(out.read_text())["machine_load"]["busy"] is True


@pytest.mark.parametrize("machine,busy", [("quiet_machine", False), ("busy_machine", True)])
def test_roofline_records_the_load_and_warns_only_when_busy(tmp_path, capsys, request, brief_peak, machine, busy):
    request.getfixturevalue(machine)
    assert main(["roofline", "--threads", "1", "--results-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert ("warning: the machine was busy: load 3.9" in err) is busy
    _, data = read_document(tmp_path / "roofline.json", "roofline")
    (measurement,) = data["measurements"]
    assert set(measurement["machine_load"]) == LOAD_FIELDS and measurement["machine_load"]["busy"] is busy


def test_the_system_busy_time_counts_our_own_work():
    """/proc/stat is read right: CPU time we burn shows in the machine's busy time."""
    before = bench.run.metrics._system_busy_seconds()
    if before is None:
        pytest.skip("no /proc/stat on this platform")
    own = bench.run.metrics._own_seconds()
    while bench.run.metrics._own_seconds() - own < 0.3:
        pass
    assert bench.run.metrics._system_busy_seconds() - before >= 0.2  # jiffies of 10 ms: well within 0.1 s


def test_a_load_of_the_other_cores_alone_is_not_busy(monkeypatch):
    """Others on the cores our threads leave free compete with nothing; one core more does."""
    cores = os.cpu_count() or 1
    for others, busy in ((cores - 1, False), (cores - 1 + 1.0, True)):
        monkeypatch.setattr(bench.run.metrics, "_system_busy_seconds",
                            lambda others=others: bench.run.metrics._own_seconds() + others * time.perf_counter())
        meter = LoadMeter(threads=1)
        time.sleep(0.05)
        assert meter.finish()["busy"] is busy


def test_the_terminal_table_drops_columns_to_fit_and_keeps_the_essentials():
    rows = [{"backend": "torch", "impl": "fused", "cell": "lstm", "train_tok_s": 6701.0, "eval_tok_s": 19561.0,
             "train_pct_peak": 60.5, "train_pct_ceiling": 70.1, "compile_s": 1.3},
            {"backend": "numpy", "impl": "cell", "cell": "mingru", "train_tok_s": 3350.5, "eval_tok_s": 9000.0,
             "train_pct_peak": 30.0, "train_pct_ceiling": 35.0},
            {"backend": "tf", "impl": "fused", "cell": "gru", "error": "RuntimeError: " + "a long reason " * 12}]
    wide = terminal_table(rows, 200)
    assert "eval tok/s" in wide and "% ceiling" in wide and "compile s" in wide
    assert "2.00x" in wide and "1.00x" in wide  # torch over numpy, the slowest row
    assert "--out FILE keeps all 9 fields of every row" in wide
    for width in (80, 60, 40):
        text = terminal_table(rows, width, "speed.json")
        header = text.splitlines()[0].split()
        assert header[:4] == ["backend/impl", "cell", "train", "tok/s"]
        assert all(len(line) <= width for line in text.splitlines()), text
        assert "tf/fused gru failed: RuntimeError:" in text and text.rstrip().endswith("speed.json)")
    assert "% ceiling" not in terminal_table(rows, 60)  # the least telling column goes first
    gpu = [{k: v for k, v in row.items() if k != "train_pct_peak"} for row in rows]
    assert "% peak" not in terminal_table(gpu, 200)  # no row has it: no column of dashes


def test_the_committed_speed_tables_and_rooflines_still_read():
    """Files written before the load was recorded answer to the schemas that now type it."""
    reference = REPO_ROOT / "results" / "reference"
    paths = sorted((reference / "speed").glob("*.json"))
    assert paths
    for path in paths:
        assert "machine_load" not in read_document(path, "speed")[1]
    read_document(reference / "roofline.json", "roofline")


def test_a_malformed_load_is_refused():
    table = {"preset": "echo", "rows": [], "peak_gflops": None, "rounds": 1, "steps": 1,
             "machine_load": {"logical_cpus": 2, "threads": 1, "busy": "yes"}}
    with pytest.raises(Unreadable, match="busy"):
        check(table, "speed")
    check({**table, "machine_load": {**table["machine_load"], "busy": False}}, "speed")

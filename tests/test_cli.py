"""Bad input: one line on stderr, exit status 2, no traceback, no record left behind."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from bench.cli import main
from bench.registry import cell_names

ECHO_QUICK = ["--epochs", "1", "--total-series-length", "1500", "--quiet"]


def _fails_cleanly(capsys, argv, message, results_dir):
    code = main(argv + ["--results-dir", str(results_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err
    assert not list(results_dir.glob("*.json")) if results_dir.exists() else True


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--backend", "tensorflw"], "unknown backend 'tensorflw'"),
        (["--cell", "gur"], "unknown cell 'gur' (did you mean 'gru'?); choose one of: " + ", ".join(cell_names())),
        (["--task", "mnist"], "unknown task 'mnist'"),
        (["--preset", "ptb-huge"], "unknown preset 'ptb-huge'"),
        (["--hidden-size", "0"], "--hidden-size must be an integer in [1, 2**31 - 1], got 0"),
        (["--learning-rate", "-1"], "--learning-rate must be a number in [1.1754943508222875e-38, "),
        (["--num-steps", "400"], "--num-steps must be at most 300, the length of each batch row"),
        (["--impl", "fused"], "backend 'numpy' has no impl 'fused'"),
        (["--device", "gpu"], "numpy backend runs on the CPU only"),
    ],
)
def test_bad_run_arguments(capsys, tmp_path, argv, message):
    _fails_cleanly(capsys, ["run", *ECHO_QUICK, *argv], message, tmp_path / "results")


def test_batch_too_large_for_ptb(capsys, tmp_path, ptb_dir):
    argv = ["run", "--preset", "ptb-tiny", "--data-dir", str(ptb_dir), "--batch-size", "1000", "--quiet"]
    _fails_cleanly(capsys, argv, "too few for batch 1000", tmp_path / "results")


def test_missing_corpus_names_the_command_and_flag(capsys, tmp_path):
    argv = ["run", "--preset", "ptb-tiny", "--data-dir", str(tmp_path / "none")]
    _fails_cleanly(capsys, argv, "python -m bench data ptb", tmp_path / "results")


def test_truncated_corpus(capsys, tmp_path, ptb_dir):
    corpus = tmp_path / "ptb"
    shutil.copytree(ptb_dir, corpus)
    (corpus / "ptb.train.txt").write_bytes((corpus / "ptb.train.txt").read_bytes()[:1000])
    argv = ["run", "--preset", "ptb-tiny", "--data-dir", str(corpus)]
    _fails_cleanly(capsys, argv, "truncated or altered", tmp_path / "results")


def test_unwritable_results_directory(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(["run", *ECHO_QUICK, "--results-dir", str(blocker / "results")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "is not a writable directory" in err and "--results-dir" in err


def test_run_writes_a_completed_record(capsys, tmp_path):
    assert main(["run", *ECHO_QUICK, "--cell", "rnn", "--results-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed"
    assert record["config"]["cell"] == "rnn" and record["config"]["total_series_length"] == 1500
    assert record["final"]["test"]["tokens"] > 0


def test_list_shows_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("backends:", "numpy", "cells:", "lstm", "rnn", "tasks:", "echo", "ptb", "presets:", "ptb-medium"):
        assert word in out


def test_list_says_which_fused_layers_compute_each_cell(capsys):
    """From the backends' own tables: the GRU's reset-before form and the sigmoid RNN differ."""
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fused = {lines[i - 1].split()[0]: line.strip() for i, line in enumerate(lines) if line.strip().startswith("fused layers:")}
    assert fused["gru"] == "fused layers: tf, torch; with --reset-gate before: none"
    assert fused["rnn"] == "fused layers: jax, tf, torch; with --activation sigmoid: jax, tf"
    assert fused["lstm"] == "fused layers: jax, tf, torch"
    assert not any(line.rstrip().endswith("::") for line in lines)


def test_matrix_and_sweep_summaries_show_each_runs_test_metric():
    from bench.fanout.jobs import final_result

    ptb = ["epoch 13/13 | ...", "final: valid ppl 119.72 acc 0.2500, test ppl 114.60 acc 0.2610", "test sample ..."]
    adding = ["final: valid loss 0.0323 (0.194 x baseline), test loss 0.0310 (0.186 x baseline)"]
    assert final_result(ptb) == "test ppl 114.60 acc 0.2610"
    assert final_result(adding) == "test loss 0.0310 (0.186 x baseline)"
    assert final_result(["run x interrupted in train epoch 2"]) == ""  # no final line: nothing claimed


@pytest.mark.parametrize("argv", [
    ["matrix", "--backends", "numpy", "--cells", "rnn"],
    ["sweep", "--param", "echo_step", "--values", "2", "--cells", "rnn"],
], ids=["matrix", "sweep"])
def test_matrix_and_sweep_without_results_dir_write_where_bench_run_does(argv, tmp_path, monkeypatch, capsys):
    """Issue 23: without --results-dir the preflight crashed on None (exit 1)."""
    from bench.run.records import DEFAULT_RESULTS_DIR

    monkeypatch.chdir(tmp_path)
    assert main([*argv, *ECHO_QUICK, "--threads", "1"]) == 0, capsys.readouterr().err
    (path,) = (tmp_path / DEFAULT_RESULTS_DIR).glob("*.json")
    assert json.loads(path.read_text())["status"] == "completed"


def _brief_peak(threads: int) -> dict:
    from bench.measure.roofline import measure_peak

    return measure_peak(threads, n=128, seconds=0.02)


def _report_of_one_run(tmp_path, capsys, roofline_dir: str | None) -> tuple[str, str]:
    """(the run's efficiency_pct in report.csv, report.md's last line) for a run in
    results/runs and, when given, this machine's peak recorded in ``roofline_dir``."""
    from bench.measure.roofline import record_peak

    assert main(["run", *ECHO_QUICK, "--cell", "rnn", "--threads", "1"]) == 0
    if roofline_dir:
        record_peak(roofline_dir, _brief_peak(1))
    assert main(["report"]) == 0
    capsys.readouterr()
    text = (tmp_path / "results" / "runs" / "report.md").read_text()
    with open(tmp_path / "results" / "runs" / "report.csv") as f:
        (row,) = csv.DictReader(f)
    (note,) = [line for line in text.splitlines() if line.startswith(("% of peak: ", "No % of peak: "))]
    return row["efficiency_pct"], note


@pytest.mark.parametrize("where,says", [
    ("results", "% of peak: against the float32 GEMM peaks in results/roofline.json (bench roofline), measured on "),
    ("results/runs", "% of peak: against the float32 GEMM peaks recorded under results/runs (bench roofline), "),
], ids=["above-the-records", "among-the-records"])
def test_report_finds_the_peak_that_bench_roofline_recorded(where, says, tmp_path, monkeypatch, capsys):
    """Issue 23: `bench roofline` writes results/roofline.json, `bench report` reads results/runs;
    the default places meet, and the report says where the peak came from."""
    monkeypatch.chdir(tmp_path)
    efficiency, note = _report_of_one_run(tmp_path, capsys, where)
    assert float(efficiency) > 0
    assert note.startswith(says) and note.endswith("; a run is matched by its CPU model and thread count.")


def test_report_says_why_there_is_no_peak(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    efficiency, note = _report_of_one_run(tmp_path, capsys, None)
    assert efficiency == ""
    assert note == ("No % of peak: no roofline.json under results/runs or in results; python -m bench roofline "
                    "--results-dir results/runs on the runs' machine adds one.")


def test_report_says_a_roofline_file_above_is_unreadable(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "roofline.json").write_text("[1, 2]")
    efficiency, note = _report_of_one_run(tmp_path, capsys, None)
    assert efficiency == "" and note.startswith("No % of peak: results/roofline.json is not a roofline file (")

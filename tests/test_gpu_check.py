"""The GPU check (``tests/benchmarks/gpu_check.py``) on a machine without a GPU: what it
refuses, in one line and exit 2, and the layout of what it writes (its parts run on the CPU
with ``--device cpu``), so that a GPU's few minutes go to GPU work only."""
from __future__ import annotations

import importlib.util
import json

import pytest

from tests.benchmarks import gpu_check

NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def _refusal(capsys, argv: list[str]) -> str:
    assert gpu_check.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@NEEDS_TORCH
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    err = _refusal(capsys, [str(out), "--backends", "torch"])
    assert err.startswith("gpu-check: no GPU: torch ") and "sees no CUDA GPU" in err
    assert not out.exists()


def test_what_is_missing_is_named_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "NEEDED", ("numpy", "a_package_nobody_has", "another_one_missing"))
    err = _refusal(capsys, [str(tmp_path / "out"), "--backends", "torch", "--device", "cpu"])
    assert "missing Python packages: a_package_nobody_has, another_one_missing" in err


@pytest.mark.parametrize("argv,message", [
    (["--checks", "first-window,lucky-guess"], "--checks: unknown lucky-guess; choose of first-window,"),
    (["--cells", "lstm,transformer"], "unknown cell transformer; choose of"),
    (["--conformance-cells", "grux:reset_gate=before"], "unknown cell grux"),
    (["--presets", "ptb-huge"], "unknown preset ptb-huge; choose of"),
])
def test_a_bad_choice_is_refused_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert message in _refusal(capsys, [str(out), "--device", "cpu", "--backends", "torch", *argv])
    assert not out.exists()


def test_an_output_directory_with_files_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "summary.md").write_text("an earlier check")
    assert "is not an empty directory" in _refusal(capsys, [str(tmp_path), "--device", "cpu"])
    assert (tmp_path / "summary.md").read_text() == "an earlier check"


@pytest.mark.parametrize("argv", [["--parts", "speed,lunch"], ["--backends", "tf"], ["--backends", ""],
                                  ["--rounds", "0"], ["--workers", "-1"], ["--steps", "x"]])
def test_bad_arguments_exit_2_with_usage(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.parse_args([str(tmp_path), *argv])
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


@NEEDS_TORCH
def test_every_part_writes_its_file_and_the_summary_says_it(tmp_path, capsys):
    """The whole check at its smallest, on the CPU: one cell, one backend, one check."""
    out = tmp_path / "gpu"
    argv = [str(out), "--device", "cpu", "--backends", "torch", "--cells", "rnn", "--conformance-cells", "rnn",
            "--checks", "first-window", "--presets", "ptb-small", "--rounds", "1", "--steps", "1", "--warmup", "1",
            "--workers", "1"]
    assert gpu_check.main(argv) == 0, capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "conformance.json", "determinism.json", "environment.json", "speed-ptb-small.json", "summary.md"]
    environment = json.loads((out / "environment.json").read_text())
    assert environment["device"] == "cpu" and environment["torch"]["version"]
    conformance = json.loads((out / "conformance.json").read_text())
    # torch's cell and fused impls x 4 tasks pass; its scan impl runs only cells that declare a
    # linear recurrence, which the rnn does not: its 4 cases are skipped, each saying so
    assert conformance["counts"] == {"passed": 8, "failed": 0, "skipped": 4}
    assert {c["case"] for c in conformance["cases"]} >= {"torch-fused-rnn-copy-first-window"}
    skipped = [c for c in conformance["cases"] if c["status"] == "skipped"]
    assert {c["impl"] for c in skipped} == {"scan"}
    assert all("declares no linear recurrence" in c["message"] for c in skipped)
    speed = json.loads((out / "speed-ptb-small.json").read_text())
    assert {(r["impl"], r["cell"]) for r in speed["rows"]} == {("cell", "rnn"), ("fused", "rnn")}
    assert all(r["kernel"] for r in speed["rows"])
    determinism = json.loads((out / "determinism.json").read_text())
    assert [(r["impl"], r.get("identical")) for r in determinism] == [("cell", True), ("fused", True), ("scan", None)]
    assert "declares no linear recurrence" in determinism[2]["skipped"]
    summary = (out / "summary.md").read_text()
    for heading in ("## Conformance", "passed 8, failed 0, skipped 4", "## Speed, ptb-small", "## Same seed twice",
                    "| torch/fused | rnn |"):
        assert heading in summary

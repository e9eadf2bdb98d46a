"""The training loop: determinism, records, divergence, interrupts and resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from backends.numpy.model import NumpyModel
from bench.config import make_config
from bench.documents import load_record
from bench.run.runner import EXIT_DIVERGED, EXIT_INTERRUPTED, RunOptions, run


def _echo(**overrides):
    return make_config("echo", **{"epochs": 3, "total_series_length": 1500, **overrides})


def _options(tmp_path, **kw):
    return RunOptions(results_dir=str(tmp_path), quiet=True, **kw)


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = run(_echo(seed=3), _options(tmp_path)).record
    b = run(_echo(seed=3), _options(tmp_path)).record
    c = run(_echo(seed=4), _options(tmp_path)).record
    strip = lambda r: [{k: v for k, v in e["train"].items() if k in ("loss", "accuracy", "tokens")} for e in r["epochs"]]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    assert a["run_id"] != b["run_id"]


def test_record_holds_config_environment_and_metrics(tmp_path):
    result = run(_echo(cell="rnn"), _options(tmp_path))
    record = load_record(result.record_path)
    assert record["status"] == "completed" and result.exit_code == 0
    assert record["config"]["cell"] == "rnn" and record["seed"] == 0
    env = record["environment"]
    assert env["python"] and env["cpu"] and env["threads"] >= 1 and "numpy" in env["libraries"]
    assert set(env["git"]) == {"commit", "dirty"}
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]
    assert set(record["final"]) >= {"valid", "test", "train", "epochs_completed"}
    assert record["backend"]["name"] == "numpy" and record["backend"]["impl"] == "cell"
    assert not list(tmp_path.glob(".*.tmp"))


def test_ptb_tiny_reports_perplexity(tmp_path, ptb_dir):
    record = run(make_config("ptb-tiny"), _options(tmp_path, data_dir=str(ptb_dir))).record
    final = record["final"]
    assert final["test"]["perplexity"] > 1 and final["valid"]["perplexity"] > 1
    assert record["epochs"][1]["learning_rate"] == 0.5
    # training lowers the training perplexity below the uniform 10,000
    assert record["epochs"][-1]["train"]["perplexity"] < 10_000


def test_diverging_run_stops_and_says_so(tmp_path, ptb_dir):
    config = make_config("ptb-tiny", learning_rate=1e38, max_grad_norm=0.0)
    result = run(config, _options(tmp_path, data_dir=str(ptb_dir)))
    assert result.exit_code == EXIT_DIVERGED
    record = load_record(result.record_path)
    assert record["status"] == "diverged"
    assert record["failure"]["epoch"] == 1 and record["failure"]["step"] >= 1
    assert record["final"] is None


def _interrupt_at(monkeypatch, epoch_step):
    calls = {"n": 0}
    original = NumpyModel.train_step

    def train_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == epoch_step:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NumpyModel, "train_step", train_step)


def test_interrupt_keeps_completed_epochs_and_resume_is_bit_identical(tmp_path, monkeypatch):
    config = _echo(keep_prob=0.8, epochs=4)  # dropout on: resume must redraw the same masks
    reference = run(config, _options(tmp_path / "ref")).record

    windows_per_epoch = 1500 // 5 // 15
    _interrupt_at(monkeypatch, 2 * windows_per_epoch + 7)  # inside epoch 3
    interrupted = run(config, _options(tmp_path / "run"))
    assert interrupted.exit_code == EXIT_INTERRUPTED
    record = load_record(interrupted.record_path)
    assert record["status"] == "interrupted"
    assert len(record["epochs"]) == 2 and record["failure"]["epoch"] == 3
    monkeypatch.undo()

    checkpoint = tmp_path / "run" / "checkpoints" / f"{record['run_id']}.npz"
    resumed = run(config, _options(tmp_path / "run", resume=str(checkpoint))).record
    assert resumed["run_id"] == record["run_id"] and resumed["status"] == "completed"
    assert len(resumed["resumed"]) == 1
    strip = lambda m: {k: v for k, v in m.items() if k in ("loss", "accuracy", "tokens", "perplexity")}
    for ours, theirs in zip(resumed["epochs"], reference["epochs"]):
        assert strip(ours["train"]) == strip(theirs["train"])
    assert strip(resumed["final"]["test"]) == strip(reference["final"]["test"])


def test_resume_refuses_changed_settings(tmp_path):
    first = run(_echo(epochs=1), _options(tmp_path, keep_checkpoint=True))
    checkpoint = tmp_path / "checkpoints" / f"{first.record['run_id']}.npz"
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="hidden_size: checkpoint 4 vs now 8"):
        run(_echo(epochs=2, hidden_size=8), _options(tmp_path, resume=str(checkpoint)))
    extended = run(_echo(epochs=2), _options(tmp_path, resume=str(checkpoint))).record
    assert len(extended["epochs"]) == 2


def test_sigterm_writes_an_interrupted_record(tmp_path):
    cmd = [sys.executable, "-m", "bench", "run", "--epochs", "1000", "--total-series-length", "1500",
           "--results-dir", str(tmp_path), "--quiet"]
    process = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        records = list(tmp_path.glob("*.json"))
        if records and json.loads(records[0].read_text())["epochs"]:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, err
    record = load_record(records[0])
    assert record["status"] == "interrupted" and len(record["epochs"]) >= 1
    assert "Traceback" not in err


def test_record_has_peak_memory(tmp_path):
    record = run(_echo(epochs=1), _options(tmp_path)).record
    assert record["peak_rss_mb"] > 10
    assert record["peak_device_memory_mb"] is None  # the CPU: resident memory covers it


@pytest.mark.parametrize("backend,impl,dtype,tolerance", [
    ("numpy", "cell", "float64", 1e-12), ("torch", "fused", "float32", 1e-5), ("tf", "fused", "float32", 1e-5)])
def test_eval_window_length_changes_speed_not_perplexity(ptb_dir, backend, impl, dtype, tolerance):
    """The PTB presets score 35 steps per call where the published runs scored 1: with the
    state carried and the remainder scored, the same tokens give the same perplexity."""
    import numpy as np

    from backends.base import TrainSettings
    from backends.spec import init_params
    from bench.run.factory import model_spec
    from bench.tasks import Shape
    from bench.registry import get_backend
    from bench.run.progress import Bar
    from bench.run.runner import evaluate
    from bench.tasks import make_task

    if backend != "numpy":
        pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[backend])
    config = make_config("ptb-tiny", max_tokens=1000)
    spec = model_spec(config, Shape("tokens", 10_000, 10_000))
    params = init_params(spec, 0.5, np.random.default_rng(0))  # large weights: states far from zero
    model = get_backend(backend).build(spec, params, TrainSettings(impl=impl, dtype=dtype, threads=1))
    scores = {}
    for steps in (1, 7, 35):
        task = make_task(config.replace(eval_num_steps=steps), str(ptb_dir))
        scores[steps] = evaluate(model, task, "valid", config.eval_batch_size, lambda n: Bar("valid", n, False))
    assert scores[1]["tokens"] == scores[7]["tokens"] == scores[35]["tokens"] == 999
    for steps in (7, 35):
        assert scores[steps]["loss"] == pytest.approx(scores[1]["loss"], rel=tolerance)
        assert scores[steps]["accuracy"] == pytest.approx(scores[1]["accuracy"], abs=2 / 999)

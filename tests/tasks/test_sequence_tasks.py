"""The copy task and the adding problem through the runner: independent sequences (a zero
state per window, fresh training sequences, fixed held-out sets), settings the task fixes,
the regression head's record, and a task from a plugin package."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from bench.cli import main
from bench.config import make_config
from bench.errors import BenchError
from bench.documents import load_record
from bench.run.runner import RunOptions, evaluate, run
from bench.tasks import make_task
from tests.test_registry import _install


def _options(tmp_path):
    return RunOptions(results_dir=str(tmp_path), quiet=True)


@pytest.mark.parametrize("preset,lag_flag,lag,steps", [("copy", "copy_lag", 50, 70), ("adding", "adding_length", 400, 400)])
def test_the_task_fixes_the_window_length_to_its_sequence_length(preset, lag_flag, lag, steps):
    config = make_config(preset, **{lag_flag: lag})
    assert config.num_steps == config.eval_num_steps == steps
    with pytest.raises(BenchError, match=f"--num-steps is fixed by the {preset} task's settings to {steps}"):
        make_config(preset, **{lag_flag: lag, "num_steps": 35})


def test_held_out_sets_must_split_into_whole_batches():
    with pytest.raises(BenchError, match="--eval-sequences must be a multiple of --eval-batch-size 100"):
        make_config("copy", eval_sequences=150)


def test_bad_flags_are_one_line_and_exit_2(capsys, tmp_path):
    assert main(["run", "--preset", "copy-tiny", "--copy-lag", "0", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--copy-lag must be" in err
    assert main(["run", "--preset", "adding-tiny", "--adding-length", "1", "--results-dir", str(tmp_path)]) == 2
    assert "--adding-length must be" in capsys.readouterr().err


@pytest.mark.parametrize("preset,head", [("copy-tiny", "classify"), ("adding-tiny", "regress")])
def test_a_tiny_run_records_the_head_baseline_and_long_gradient_norms(tmp_path, preset, head):
    config = make_config(preset, cell="lstm", grad_probe_windows=1)
    record = load_record(run(config, _options(tmp_path)).record_path)
    assert record["status"] == "completed"
    task = record["task"]
    assert task["head"] == head and task["independent_sequences"] and task["memoryless_baseline"] > 0
    test = record["final"]["test"]
    assert ("accuracy" in test) == (head == "classify") and math.isfinite(test["loss"])
    steps = config.num_steps
    norms = record["gradient_norms"]
    assert [n["epoch"] for n in norms] == [0, 1, 2]  # at initialisation and after each epoch
    assert all(len(n["curves"]["dLT_dh"][0]) == steps for n in norms)  # over the whole sequence
    sample = record["sample"]
    scored = sample["scored_steps"]
    assert scored == (list(range(steps)) if head == "classify" else [steps - 1])
    assert np.shape(sample["targets"])[:2] == np.shape(sample["predictions"])[:2] == (3, len(scored))
    # throughput counts every step computed, the loss only the scored ones
    assert test["tokens"] == config.eval_sequences * len(scored)


def test_training_draws_fresh_sequences_each_update_and_epoch_and_held_out_sets_are_fixed():
    config = make_config("adding-tiny")
    task = make_task(config)
    first = [x for x, _ in task.train_windows(0)]
    assert len(first) == config.batches_per_epoch
    assert not any(np.array_equal(first[0], x) for x in first[1:])
    assert not np.array_equal(first[0], next(iter(task.train_windows(1)))[0])
    assert np.array_equal(first[0], next(iter(task.train_windows(0)))[0])  # seeded: a resume draws the same
    valid = lambda: [x for x, _ in task.eval_windows["valid"]()]  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(valid(), valid()))
    assert not np.array_equal(valid()[0], next(iter(task.eval_windows["test"]()))[0])


def test_every_window_of_independent_sequences_starts_from_zeros():
    """Scoring a held-out set equals scoring each of its batches alone from the zero state:
    nothing carries over from one batch of sequences to the next."""
    from bench.run.factory import build_model, model_spec

    config = make_config("copy-tiny", cell="gru", threads=1)
    task = make_task(config)
    model = build_model(config, model_spec(config, task.shape))
    whole = evaluate(model, task, "valid", config.eval_batch_size, lambda total: _NoBar())
    alone = [model.eval_step(x, y, model.zero_state(config.eval_batch_size))[0] for x, y in task.eval_windows["valid"]()]
    assert whole["loss"] == pytest.approx(sum(s.loss_sum for s in alone) / sum(s.n_tokens for s in alone), rel=1e-12)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def tick(self, totals):
        return None


def test_list_shows_the_tasks_with_their_options(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for text in ("copy", "adding", "--copy-lag", "--adding-length", "copy-tiny", "adding-tiny"):
        assert text in out
    # each preset says where its settings come from, and what an epoch is for sequence tasks
    assert "30 epochs of 100 updates; Arjovsky, Shah & Bengio 2016" in out


@pytest.fixture
def parity_plugin(tmp_path, monkeypatch):
    """An installed package declaring a task of its own, built on the sequence-task base."""
    _install(tmp_path, monkeypatch, "parity_plugin", '''
        import numpy as np

        from bench.tasks import Shape
        from bench.tasks.sequences import SEQUENCE_OPTIONS, SequenceTask
        from cells.options import Option, size

        class ParityTask(SequenceTask):
            """The parity of a sequence of bits, read at its last step."""
            name = "parity"
            summary = "parity of --parity-length random bits, answered at the last step"
            options = (Option("parity_length", 8, "parity: bits per sequence", int, bound=size()), *SEQUENCE_OPTIONS)
            presets = {"parity-tiny": dict(hidden_size=8, batch_size=8, optimizer="adagrad", learning_rate=0.3,
                                           epochs=2, batches_per_epoch=4, eval_batch_size=8, eval_sequences=16,
                                           loss_reduction="mean")}
            default_preset = "parity-tiny"

            @classmethod
            def sequence_length(cls, config):
                return config.parity_length

            @classmethod
            def batch(cls, config, n, rng):
                bits = rng.integers(0, 2, (n, config.parity_length))
                targets = np.zeros_like(bits)
                targets[:, -1] = bits.sum(axis=1) % 2
                return bits.astype(np.float32), targets

            @classmethod
            def model_shape(cls, config):
                return Shape("scalar", 1, 2, scored_steps=(-1,))

            @classmethod
            def baseline(cls, config):
                return float(np.log(2))  # without memory of the earlier bits, a coin flip
    ''', "[bench.tasks]\nparity = parity_plugin:ParityTask\n")
    yield
    sys.modules.pop("parity_plugin", None)


def test_a_plugin_task_is_listed_its_option_is_a_flag_and_it_runs(parity_plugin, tmp_path, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "parity" in out and "--parity-length" in out and "parity-tiny" in out
    code = main(["run", "--task", "parity", "--parity-length", "6", "--cell", "gru", "--threads", "1",
                 "--results-dir", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    (path,) = tmp_path.glob("*parity*.json")
    record = load_record(path)
    assert record["status"] == "completed" and record["config"]["parity_length"] == 6
    assert record["config"]["num_steps"] == 6 and record["task"]["scored_steps"] == [-1]
    assert record["final"]["test"]["tokens"] == 16  # one scored step per held-out sequence


@pytest.mark.parametrize("preset", ["copy-tiny", "adding-tiny"])
def test_an_interrupted_sequence_run_resumes_to_the_same_numbers(preset, tmp_path, monkeypatch):
    """Fresh training sequences are drawn from the seed and the epoch, so a run interrupted
    in epoch 2 and resumed from its checkpoint ends exactly as an uninterrupted one."""
    import bench.run.plan as factory
    from bench.run.runner import EXIT_INTERRUPTED
    from tests.test_resume_all_backends import _interrupting

    config = make_config(preset, epochs=3, threads=1)
    reference = run(config, _options(tmp_path / "ref")).record
    real_get_backend = factory.get_backend
    updates = config.batches_per_epoch
    monkeypatch.setattr(factory, "get_backend", lambda name: _interrupting(real_get_backend(name), updates + 2))
    interrupted = run(config, _options(tmp_path / "run"))
    monkeypatch.undo()
    assert interrupted.exit_code == EXIT_INTERRUPTED and len(load_record(interrupted.record_path)["epochs"]) == 1
    checkpoint = tmp_path / "run" / "checkpoints" / f"{interrupted.record['run_id']}.npz"
    resumed = run(config, RunOptions(results_dir=str(tmp_path / "run"), resume=str(checkpoint), quiet=True)).record
    keys = ("loss", "tokens")
    assert [{k: e[s][k] for s in ("train", "valid") for k in keys} for e in resumed["epochs"]] == \
        [{k: e[s][k] for s in ("train", "valid") for k in keys} for e in reference["epochs"]]
    assert resumed["final"]["test"]["loss"] == reference["final"]["test"]["loss"]


def test_a_resume_that_changes_the_lag_names_the_lag(capsys, tmp_path):
    """The window length follows the lag on resume too, so the refusal names what the user
    changed, not a window length they never gave."""
    assert main(["run", "--preset", "copy-tiny", "--keep-checkpoint", "--results-dir", str(tmp_path), "--quiet"]) == 0
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.npz")
    capsys.readouterr()
    assert main(["run", "--resume", str(checkpoint), "--copy-lag", "7", "--epochs", "3"]) == 2
    assert "copy_lag: checkpoint 5 vs now 7" in capsys.readouterr().err

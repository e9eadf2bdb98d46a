"""Selective copying: the generator follows the reference's definition (BorealisAI/minRNNs,
Feng et al. 2024), the task's settings and presets, and short training runs on NumPy and
torch through the runner, their record and the report over it."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.cli import main
from bench.config import make_config
from bench.data.selective_copy import MARKER, selective_copy_baseline, selective_copy_batch
from bench.documents import load_record
from bench.errors import BenchError
from bench.run.runner import RunOptions, run
from bench.tasks import make_task


class _Fixed:
    """A generator whose draws are given: the data tokens, then each row's positions."""

    def __init__(self, data, positions):
        self.data, self.positions = np.array(data), [np.array(p) for p in positions]

    def integers(self, low, high, shape):
        assert (low, high) == (1, 4) and self.data.shape == shape  # data tokens 1 .. vocab - 2
        return self.data

    def choice(self, length, tokens, replace):
        assert (length, tokens, replace) == (6, 2, False)
        return self.positions.pop(0)


def test_a_hand_computed_example():
    """Vocabulary 5 (marker 0, data 1-3, noise 4), 2 tokens among 6 steps; row 0 draws tokens
    3, 1 and positions 4, 1: the tokens fill the positions in sorted order, 3 at step 1 and
    1 at step 4, and are answered in that order at the two markers."""
    x, y = selective_copy_batch(2, 6, 2, 5, _Fixed([[3, 1], [2, 2]], [[4, 1], [0, 5]]))
    assert x.tolist() == [[4, 3, 4, 4, 1, 4, 0, 0],
                          [2, 4, 4, 4, 4, 2, 0, 0]]
    assert y.tolist() == [[0, 0, 0, 0, 0, 0, 3, 1],
                          [0, 0, 0, 0, 0, 0, 2, 2]]
    assert x.dtype == y.dtype == np.int64


def test_the_generator_follows_the_definition():
    length, tokens, vocab = 40, 5, 9
    x, y = selective_copy_batch(500, length, tokens, vocab, np.random.default_rng(3))
    assert x.shape == y.shape == (500, length + tokens)
    assert (x[:, length:] == MARKER).all()  # the answer steps
    body = x[:, :length]
    data = body != vocab - 1
    assert (data.sum(axis=1) == tokens).all()  # distinct positions: none lost to a collision
    values = body[data].reshape(500, tokens)  # row-major: each row's tokens in position order
    assert ((values >= 1) & (values <= vocab - 2)).all()
    assert set(np.unique(values)) == set(range(1, vocab - 1))  # every data token, neither marker nor noise
    assert (y[:, length:] == values).all()  # answered in order
    assert (y[:, :length] == 0).all()
    # positions uniform over the noise steps: each step holds a token tokens / length of the time
    share = data.mean(axis=0)
    assert share.min() > 0.02 and share.max() < 0.25 and share.mean() == pytest.approx(tokens / length)


def test_the_model_shape_scores_the_answers_only_against_a_uniform_guess():
    config = make_config("selective-copy-tiny")
    shape = make_task(config).shape
    assert (shape.input_kind, shape.vocab_size, shape.n_classes, shape.head) == ("tokens", 6, 6, "classify")
    assert shape.scored_steps == (-3, -2, -1)
    assert make_task(config).baseline == selective_copy_baseline(6) == pytest.approx(math.log(4))


def test_the_published_and_cpu_presets():
    published = make_config("selective-copy")
    assert (published.selective_length, published.selective_tokens, published.selective_vocab) == (4096, 16, 16)
    assert published.num_steps == published.eval_num_steps == 4112
    assert published.batch_size == 64 and published.num_layers == 3 and published.max_grad_norm == 1.0
    assert published.epochs * published.batches_per_epoch == 400_000 and published.eval_sequences == 12_800
    cpu = make_config("selective-copy-cpu")
    assert (cpu.selective_tokens, cpu.selective_vocab) == (16, 16) and cpu.selective_length < 4096
    assert cpu.epochs * cpu.batches_per_epoch < 400_000 and cpu.eval_sequences < 12_800


def test_settings_that_do_not_fit_are_refused():
    with pytest.raises(BenchError, match="--selective-tokens 20 cannot exceed --selective-length 10"):
        make_config("selective-copy-tiny", selective_length=10, selective_tokens=20)
    with pytest.raises(BenchError, match="--selective-vocab must be"):
        make_config("selective-copy-tiny", selective_vocab=3)
    with pytest.raises(BenchError, match="--num-steps is fixed by the selective-copy task's settings to 15"):
        make_config("selective-copy-tiny", num_steps=12)


def test_list_states_the_published_and_cpu_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for text in ("selective-copy", "--selective-length", "--selective-tokens", "--selective-vocab",
                 "selective-copy-cpu", "published protocol: Feng et al. 2024", "CPU scale of selective-copy"):
        assert text in out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_few_updates_lower_the_loss_on_a_batch(backend):
    """The model the task asks for trains: a few updates on one batch lower its loss there."""
    if backend == "torch":
        pytest.importorskip("torch")
    from bench.run.factory import build_model, model_spec

    config = make_config("selective-copy-tiny", backend=backend, impl="cell", cell="lstm", threads=1, hidden_size=16)
    task = make_task(config)
    model = build_model(config, model_spec(config, task.shape))
    x, y = next(iter(task.train_windows(0)))
    before, _ = model.eval_step(x, y, model.zero_state(len(x)))
    for _ in range(20):
        model.train_step(x, y, model.zero_state(len(x)), config.learning_rate)
    after, _ = model.eval_step(x, y, model.zero_state(len(x)))
    assert before.n_tokens == after.n_tokens == len(x) * 3  # the answers only
    assert after.loss_sum < 0.8 * before.loss_sum


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_tiny_run_writes_a_record_the_report_reads(backend, tmp_path, capsys):
    if backend == "torch":
        pytest.importorskip("torch")
    config = make_config("selective-copy-tiny", backend=backend, cell="lstm", threads=1)
    record = load_record(run(config, RunOptions(results_dir=str(tmp_path / "runs"), quiet=True)).record_path)
    assert record["status"] == "completed"
    task = record["task"]
    assert task["scored_steps"] == [-3, -2, -1] and task["memoryless_baseline"] == pytest.approx(math.log(4))
    test = record["final"]["test"]
    assert test["tokens"] == config.eval_sequences * 3 and 0 <= test["accuracy"] <= 1
    assert np.shape(record["sample"]["targets"])[1] == 3
    if backend == "numpy":  # the report over it (one backend is enough)
        assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
        assert "selective-copy" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")

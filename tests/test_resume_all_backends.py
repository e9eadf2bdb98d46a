"""Interrupt a run inside epoch 3, resume it, and compare with an uninterrupted run, for
every backend x impl: on the CPU with the same seed the final numbers are identical."""
from __future__ import annotations

import pytest

import bench.run.plan as factory
from bench.config import make_config
from bench.registry import get_backend, make_cell
from bench.documents import load_record
from bench.run.runner import EXIT_INTERRUPTED, RunOptions, run
from tests.conformance_cases import grid

METRICS = ("loss", "accuracy", "tokens")


def _interrupting(backend_cls, after_steps):
    """The backend, but its models raise KeyboardInterrupt on train step ``after_steps``."""

    class Interrupting(backend_cls):
        @classmethod
        def build(cls, spec, params, settings):
            model = backend_cls.build(spec, params, settings)
            count = {"n": 0}
            train_step = model.train_step

            def interrupting_train_step(*args, **kwargs):
                count["n"] += 1
                if count["n"] == after_steps:
                    raise KeyboardInterrupt
                return train_step(*args, **kwargs)

            model.train_step = interrupting_train_step
            return model

    return Interrupting


@pytest.mark.parametrize("backend_name,impl,cell_name", [p for p in grid() if p.values[2] in ("lstm", "gru")])
def test_resumed_run_ends_with_the_same_numbers(backend_name, impl, cell_name, tmp_path, monkeypatch):
    if why := get_backend(backend_name).unsupported(make_cell(cell_name), impl):
        pytest.skip(why)  # JAX's fused impl has no GRU
    config = make_config("echo", backend=backend_name, impl=impl, cell=cell_name, epochs=4,
                         total_series_length=1500, keep_prob=0.8, threads=1)
    reference = run(config, RunOptions(results_dir=str(tmp_path / "ref"), quiet=True)).record

    real_get_backend = factory.get_backend
    monkeypatch.setattr(factory, "get_backend", lambda name: _interrupting(real_get_backend(name), 2 * 20 + 5))
    interrupted = run(config, RunOptions(results_dir=str(tmp_path / "run"), quiet=True))
    monkeypatch.undo()
    assert interrupted.exit_code == EXIT_INTERRUPTED
    record = load_record(interrupted.record_path)
    assert record["status"] == "interrupted" and len(record["epochs"]) == 2

    checkpoint = tmp_path / "run" / "checkpoints" / f"{record['run_id']}.npz"
    resumed = run(config, RunOptions(results_dir=str(tmp_path / "run"), resume=str(checkpoint), quiet=True)).record
    assert resumed["status"] == "completed"
    for ours, theirs in zip(resumed["epochs"], reference["epochs"]):
        assert {k: ours["train"][k] for k in METRICS} == {k: theirs["train"][k] for k in METRICS}
    assert {k: resumed["final"]["test"][k] for k in METRICS} == {k: reference["final"]["test"][k] for k in METRICS}

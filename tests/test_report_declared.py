"""A record declares what the report needs of its task, cell and preset (schema 5), so a
report reads the records alone: no registry, whatever is installed. Records written before
get the same declarations from what is installed (bench.report.legacy)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from bench.config import make_config
from bench.report.build import write_report
from bench.report.declared import Declared
from bench.report.legacy import legacy_declared
from bench.run.runner import RunOptions, run


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """An echo pair and an adding pair (a task with a baseline and derived window length)."""
    directory = tmp_path_factory.mktemp("declared")
    for cell in ("rnn", "gru"):
        run(make_config("echo", cell=cell, epochs=2, total_series_length=1500), RunOptions(results_dir=str(directory), quiet=True))
        run(make_config("adding-tiny", cell=cell, epochs=2), RunOptions(results_dir=str(directory), preset="adding-tiny",
                                                                          quiet=True))
    return directory


def _records(directory):
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def test_a_record_declares_its_tasks_metric_derived_settings_and_preset(results):
    by_task = {r["config"]["task"]: r["declared"] for r in _records(results)}
    assert by_task["echo"]["main_metric"] == "accuracy" and by_task["adding"]["main_metric"] is None
    assert by_task["adding"]["derived_settings"] == ["eval_num_steps", "num_steps"]
    assert by_task["echo"]["derived_settings"] == [] and not by_task["echo"]["reports_perplexity"]
    assert by_task["adding"]["preset"] == "adding-tiny" and by_task["adding"]["preset_settings"]["task"] == "adding"
    assert "echo_step" in by_task["echo"]["task_options"]
    # no cell's option is a setting of the configuration the preset describes
    assert not {"forget_bias", "activation", "reset_gate"} & set(by_task["echo"]["preset_settings"])


def test_older_records_get_the_same_declarations_from_what_is_installed(results):
    for record in _records(results):
        block = record.pop("declared")
        new, old = Declared.from_block(block), legacy_declared(record)
        # the legacy set is wider: records before schema 3 kept every cell's and task's options
        assert new.not_configuration <= old.not_configuration
        assert dataclasses.replace(old, not_configuration=new.not_configuration) == new, record["run_id"]


def test_a_report_of_declaring_records_asks_no_registry(results, tmp_path, monkeypatch):
    """Every door to what is installed shut, the report comes out the same."""
    write_report(results, tmp_path / "open")
    import bench.registry
    import bench.report.legacy

    def shut(*args, **kwargs):
        raise AssertionError("the report asked what is installed")

    for name in ("get_task_class", "get_cell_class", "task_names", "cell_names", "declared_options", "get_backend"):
        monkeypatch.setattr(bench.registry, name, shut)
    monkeypatch.setattr(bench.report.legacy, "legacy_declared", shut)
    write_report(results, tmp_path / "shut")
    assert (tmp_path / "shut" / "report.md").read_text() == (tmp_path / "open" / "report.md").read_text()


def test_a_record_of_a_task_not_installed_here_is_still_reported(results, tmp_path):
    """A plugin's task that is gone: its records say what the report needs."""
    for record in _records(results):
        record["config"]["task"] = record["task"]["name"] = "gone_" + record["config"]["task"]
        (tmp_path / f"{record['run_id']}.json").write_text(json.dumps(record))
    summary = write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "gone_echo" in text and "gone_adding" in text, summary

"""A record never moves backwards, a checkpoint a record names is never deleted by a run that
did not write it, and a record that cannot be written where it belongs is written elsewhere,
the run's one line saying where (issue 22, items 2, 3, 4 and 11): each case as it was found,
through the command line in this process."""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

import bench.run.runner as runner
import bench.storage as storage
from bench.exits import EXIT_ABORTED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR
from bench.fanout.jobs import _outcome
from bench.run.records import rescue_dir, status_of_misplaced
from tests.faults.helpers import cli, leftovers, records_in

ECHO = ["--total-series-length", "1500", "--threads", "1", "--quiet"]


@pytest.fixture(autouse=True)
def rescue_here(tmp_path, monkeypatch) -> Path:
    """The rescue directory under this test's own directory, never the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return rescue_dir()


def _kept_run(capsys, results: Path, epochs: int = 1) -> tuple[dict, Path, Path]:
    """A completed run that kept its checkpoint: its record, the record's path, the checkpoint."""
    code, _, err = cli(capsys, ["run", *ECHO, "--epochs", str(epochs), "--keep-checkpoint",
                                "--results-dir", str(results)])
    assert code == EXIT_OK, err
    (record,) = records_in(results)
    return record, results / f"{record['run_id']}.json", Path(record["checkpoint"])


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# -- item 3: a resume never deletes a checkpoint it did not write ------------------------

def test_a_no_op_resume_into_another_directory_keeps_the_kept_checkpoint(tmp_path, capsys):
    """As found: `--resume base/checkpoints/X.npz --epochs 2 --results-dir other` of a run
    with 2 epochs deleted the --keep-checkpoint file; the original record named nothing."""
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base", epochs=2)
    before = checkpoint.read_bytes()
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "2",
                                "--results-dir", str(tmp_path / "other"), "--quiet"])
    assert code == EXIT_OK, err
    assert checkpoint.read_bytes() == before and json.loads(record_path.read_text())["checkpoint"] == str(checkpoint)
    (other,) = records_in(tmp_path / "other")
    assert other["status"] == "completed" and len(other["epochs"]) == 2 and other["checkpoint"] is None


def test_a_resume_into_another_directory_writes_its_checkpoints_there(tmp_path, capsys):
    """It trains on from the checkpoint into a new record; the original's files stay as they were."""
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    before, record_before = checkpoint.read_bytes(), record_path.read_bytes()
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "2", "--keep-checkpoint",
                                "--results-dir", str(tmp_path / "other"), "--quiet"])
    assert code == EXIT_OK, err
    assert checkpoint.read_bytes() == before and record_path.read_bytes() == record_before
    (other,) = records_in(tmp_path / "other")
    assert len(other["epochs"]) == 2 and Path(other["checkpoint"]).parent == tmp_path / "other" / "checkpoints"


def test_a_resume_whose_checkpoints_would_replace_another_records_is_refused(tmp_path, capsys):
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    before = checkpoint.read_bytes()
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "2", "--results-dir",
                                str(tmp_path / "other"), "--checkpoint-dir", str(checkpoint.parent), "--quiet"])
    line = _one_line(err)
    assert code == EXIT_USER_ERROR and f"is the checkpoint of the record in {tmp_path / 'base'}" in line, line
    assert "pass --checkpoint-dir DIR" in line and checkpoint.read_bytes() == before
    assert records_in(tmp_path / "other") == []


def test_a_no_op_resume_in_place_keeps_the_checkpoint_and_names_it(tmp_path, capsys):
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--quiet"])  # --epochs from the checkpoint: 1
    assert code == EXIT_OK, err
    assert checkpoint.is_file() and json.loads(record_path.read_text())["checkpoint"] == str(checkpoint)


def test_a_resume_that_trains_deletes_the_checkpoint_it_wrote_when_it_completes(tmp_path, capsys):
    """The documented rule still holds for the checkpoint the run itself rewrote."""
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    assert cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "2", "--quiet"])[0] == EXIT_OK
    extended = json.loads(record_path.read_text())
    assert len(extended["epochs"]) == 2 and extended["checkpoint"] is None and not checkpoint.exists()


# -- item 4: a record never moves backwards ----------------------------------------------

def test_a_stale_checkpoint_is_refused_before_it_takes_a_record_back(tmp_path, capsys):
    """As found: a copy of the checkpoint of epoch 1 of a run that went on to 3 epochs,
    resumed, turned the completed 3-epoch record into one of fewer epochs."""
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    copy = tmp_path / "copy.npz"
    shutil.copy(checkpoint, copy)
    assert cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "3", "--quiet"])[0] == EXIT_OK
    completed = record_path.read_bytes()
    code, _, err = cli(capsys, ["run", "--resume", str(copy), "--epochs", "3", "--quiet"])
    line = _one_line(err)
    assert code == EXIT_USER_ERROR, line
    assert "already holds 3 epoch(s)" in line and "(completed) and the checkpoint only 1" in line, line
    assert "pass --results-dir DIR to continue from epoch 1 in a new record there" in line
    assert record_path.read_bytes() == completed and not (tmp_path / f"{record['run_id']}.npz").exists()
    assert not leftovers(tmp_path)


def test_the_refusal_names_the_checkpoint_the_record_names(tmp_path, capsys):
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    copy = tmp_path / "copy.npz"
    shutil.copy(checkpoint, copy)
    assert cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "2", "--keep-checkpoint", "--quiet"])[0] == 0
    code, _, err = cli(capsys, ["run", "--resume", str(copy), "--epochs", "2", "--quiet"])
    assert code == EXIT_USER_ERROR and f"resume from the checkpoint it names ({checkpoint})" in _one_line(err)


def _interrupt_train_epoch(monkeypatch, call: int) -> None:
    original, calls = runner.train_epoch, {"n": 0}

    def train_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt("SIGINT")
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "train_epoch", train_epoch)


def test_ctrl_c_before_an_extension_adds_an_epoch_leaves_the_completed_record(tmp_path, capsys, monkeypatch):
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    completed = record_path.read_bytes()
    _interrupt_train_epoch(monkeypatch, 1)
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "3", "--quiet"])
    assert code == EXIT_INTERRUPTED and "Traceback" not in err, err
    assert record_path.read_bytes() == completed, "the completed record moved backwards"
    assert err.strip().splitlines()[-1] == (
        f"run {record['run_id']} interrupted; its record {record_path} still says completed after 1 epoch(s), "
        "which this run did not go past: left as it was")
    assert checkpoint.is_file() and not leftovers(tmp_path)


def test_an_extension_interrupted_after_an_epoch_records_it(tmp_path, capsys, monkeypatch):
    """More epochs is forward, whatever the status: the interrupted record keeps all of them."""
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    _interrupt_train_epoch(monkeypatch, 2)
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "3", "--quiet"])
    assert code == EXIT_INTERRUPTED, err
    extended = json.loads(record_path.read_text())
    assert extended["status"] == "interrupted" and len(extended["epochs"]) == 2 and extended["checkpoint"]


@pytest.mark.parametrize("content", ["not json", "[]", '{"run_id": "someone-else", "epochs": []}'])
def test_a_file_at_the_records_name_that_is_not_its_record_is_refused(tmp_path, capsys, content):
    record, record_path, checkpoint = _kept_run(capsys, tmp_path / "base")
    record_path.write_text(content)
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "2", "--quiet"])
    line = _one_line(err)
    assert code == EXIT_USER_ERROR and f"{record_path} is not a record of run {record['run_id']}" in line, line
    assert record_path.read_text() == content


# -- item 2 and 11: a record that cannot be written where it belongs ----------------------

def _read_only_after(monkeypatch, directory: Path, records: int) -> None:
    """``directory`` refuses every new file (EROFS, as a read-only mount does) once
    ``records`` records were written into it. Running as root, chmod would not stop a write;
    every file of ours is created through ``storage._new_temporary``."""
    original, written = storage._new_temporary, {"n": 0}

    def new_temporary(dir_fd, where, stem, *args, **kwargs):
        if Path(where).resolve() == directory.resolve():
            if written["n"] >= records:
                raise OSError(errno.EROFS, "Read-only file system")
            written["n"] += stem.endswith(".json")
        return original(dir_fd, where, stem, *args, **kwargs)

    monkeypatch.setattr(storage, "_new_temporary", new_temporary)


def test_a_record_the_results_directory_refuses_is_written_elsewhere_and_said(tmp_path, capsys, monkeypatch,
                                                                            rescue_here):
    """As found: the results directory turned read-only after the first record. The run is
    aborted (its epoch's record cannot be written), and its final record, every completed
    epoch, is in the rescue directory, which its one line names."""
    results = tmp_path / "results"
    _read_only_after(monkeypatch, results, records=1)
    code, _, err = cli(capsys, ["run", *ECHO, "--epochs", "2", "--results-dir", str(results)])
    line = _one_line(err)
    (on_disk,) = records_in(results)
    rescued = rescue_here / f"{on_disk['run_id']}.json"
    assert code == EXIT_ABORTED and line.startswith(f"run {on_disk['run_id']} aborted: read-only file system"), line
    assert line.endswith(f"its final record could not be written to {results / rescued.name} (Read-only file system); "
                         f"it is at {rescued} instead, with its 1 completed epoch(s)"), line
    assert "the record keeps" not in line  # item 11: never said of a record that was not written
    saved = json.loads(rescued.read_text())
    assert saved["status"] == "aborted" and len(saved["epochs"]) == 1
    assert saved["failure"]["reason"] == "read-only file system"
    assert on_disk["status"] == "running" and on_disk["epochs"] == []  # what the directory kept: its first record
    assert status_of_misplaced(line) == "aborted"


def test_a_completed_run_whose_final_record_is_refused_says_completed_and_where(tmp_path, capsys, monkeypatch,
                                                                             rescue_here):
    """Exit 4 (the record is not where asked), and `bench matrix`'s summary still says
    completed: it reads the status from the run's last line."""
    results = tmp_path / "results"
    _read_only_after(monkeypatch, results, records=2)  # the first record and epoch 1's
    code, _, err = cli(capsys, ["run", *ECHO, "--epochs", "1", "--results-dir", str(results)])
    line = _one_line(err)
    (on_disk,) = records_in(results)
    rescued = rescue_here / f"{on_disk['run_id']}.json"
    assert code == EXIT_ABORTED and line.startswith(f"run {on_disk['run_id']} completed; its final record"), line
    assert json.loads(rescued.read_text())["status"] == "completed" and len(on_disk["epochs"]) == 1
    outcome = _outcome("numpy/cell lstm", code, ["earlier output", line], 0.0)
    assert outcome.status == "completed" and outcome.detail == line


def test_a_record_written_nowhere_says_what_still_holds_its_epochs(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    (tmp_path / "cache").write_text("a file where the cache directory would be")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "cache" / "tmp"))  # under that file too
    _read_only_after(monkeypatch, results, records=2)
    code, _, err = cli(capsys, ["run", *ECHO, "--epochs", "1", "--results-dir", str(results)])
    line = _one_line(err)
    (on_disk,) = records_in(results)
    assert code == EXIT_ABORTED and "its final record could not be written to" in line and ", nor elsewhere (" in line
    assert line.endswith(f"{results / (on_disk['run_id'] + '.json')} holds it as of 1 completed epoch(s); the "
                         f"checkpoint {results / 'checkpoints' / (on_disk['run_id'] + '.npz')} holds 1 epoch(s)"), line
    assert (results / "checkpoints" / f"{on_disk['run_id']}.npz").is_file()  # not deleted: the record names it


def test_an_aborted_run_whose_record_is_written_says_what_it_keeps(tmp_path, capsys, monkeypatch):
    """The one line of an abort, said once the record is written (item 11)."""
    results = tmp_path / "results"
    original, calls = runner.evaluate, {"n": 0}

    def evaluate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError()
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", evaluate)
    code, _, err = cli(capsys, ["run", *ECHO, "--epochs", "3", "--results-dir", str(results)])
    line = _one_line(err)
    assert code == EXIT_ABORTED and line.endswith("; the record keeps the 1 completed epoch(s)"), line
    (record,) = records_in(results)
    assert record["status"] == "aborted" and len(record["epochs"]) == 1

"""Class 7: nothing left behind, nothing split. A killed writer's temporary files are removed
by the next run into that directory (a live writer's are not); the resume hint carries every
flag the resumed run needs, so it updates the same record and finds the corpus; completed
runs' checkpoints do not pile up (deleted unless --keep-checkpoint, shown in `bench list`
and `run --help`). Plus class 8: every error of ours is one line; argparse's stay argparse's."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

import bench.run.runner as runner
from bench.run.runner import EXIT_INTERRUPTED
from bench.storage import STALE_AFTER_SECONDS, remove_stale_temporaries, writer_tag
from tests.faults.helpers import cli, leftovers, records_in

ECHO = ["--epochs", "3", "--total-series-length", "1500", "--quiet"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("name,age,removed", [
    (".r.json.{dead}.abc.tmp", 0, True),  # kill -9 in the middle of a record write
    (".c.npz.{dead}.abc.tmp", 0, True),
    (".run.{dead}.space.reserve", 0, True),
    (".r.json.{live}.abc.tmp", 10 * STALE_AFTER_SECONDS, False),  # a live writer's: never
    (".run.{live}.space.reserve", 10 * STALE_AFTER_SECONDS, False),
    (".r.json.pid1h00000000.abc.tmp", 0, False),  # another host's, young
    (".r.json.pid1h00000000.abc.tmp", 2 * STALE_AFTER_SECONDS, True),  # another host's, old
    (".r.json.legacy123.tmp", 2 * STALE_AFTER_SECONDS, True),  # an older cellbench's
    (".r.json.legacy123.tmp", 60, False),
    ("r.json.{dead}.abc.tmp", 0, False),  # not hidden: not ours
    (".notes.txt", 10 * STALE_AFTER_SECONDS, False),
])
def test_a_dead_writers_leftovers_are_removed_and_nothing_else(tmp_path, name, age, removed):
    live, dead = writer_tag(), writer_tag().replace(f"pid{os.getpid()}", f"pid{_dead_pid()}")
    path = tmp_path / name.format(live=live, dead=dead)
    path.write_text("x")
    os.utime(path, (time.time() - age, time.time() - age))
    assert (path in remove_stale_temporaries(tmp_path)) is removed
    assert path.exists() is not removed


@pytest.mark.parametrize("name", [".r.json.{dead}.abc.tmp", ".run.{dead}.space.reserve", ".killed-run.lock"])
def test_cleaning_leftovers_never_follows_a_link_named_like_one(tmp_path, name):
    dead = writer_tag().replace(f"pid{os.getpid()}", f"pid{_dead_pid()}")
    (tmp_path / "outside").mkdir()
    target = tmp_path / "outside" / "precious"
    target.write_bytes(b"not ours")
    link = tmp_path / name.format(dead=dead)
    link.symlink_to(target)
    assert remove_stale_temporaries(tmp_path) == []
    assert link.is_symlink() and target.read_bytes() == b"not ours"


def test_cleaning_leftovers_never_enters_a_directory_that_is_a_link(tmp_path):
    """A results directory that is a link is refused for writing; cleaning it removes nothing
    from wherever it points."""
    dead = writer_tag().replace(f"pid{os.getpid()}", f"pid{_dead_pid()}")
    (tmp_path / "elsewhere").mkdir()
    stale = tmp_path / "elsewhere" / f".r.json.{dead}.abc.tmp"
    stale.write_text("x")
    (tmp_path / "results").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert remove_stale_temporaries(tmp_path / "results") == [] and stale.exists()
    assert remove_stale_temporaries(tmp_path / "elsewhere") == [tmp_path / "elsewhere" / stale.name]


def test_the_next_run_clears_a_killed_runs_leftovers(tmp_path, capsys):
    """kill -9 at several moments, then one more run into the same directories."""
    for delay in (0.6, 1.2, 2.0):
        process = subprocess.Popen([sys.executable, "-m", "bench", "run", "--epochs", "1000", "--total-series-length",
                                    "1500", "--results-dir", str(tmp_path), "--quiet"])
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
    dead = writer_tag().replace(f"pid{os.getpid()}", f"pid{_dead_pid()}")
    (tmp_path / f".x.json.{dead}.abc.tmp").write_text("half a record")
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    (tmp_path / "checkpoints" / f".x.npz.{dead}.abc.tmp").write_text("half a checkpoint")
    assert leftovers(tmp_path)
    assert cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])[0] == 0
    assert leftovers(tmp_path) == []
    statuses = sorted(r["status"] for r in records_in(tmp_path))
    assert statuses.count("completed") == 1 and set(statuses) <= {"completed", "running"}  # killed runs say running


def test_a_stale_run_lock_is_removed_and_a_held_one_kept(tmp_path):
    from bench.storage import RunLock

    (tmp_path / ".killed-run.lock").write_text("")  # its holder is gone: nobody holds the lock
    held = RunLock(tmp_path, "live-run")
    removed = remove_stale_temporaries(tmp_path)
    assert removed == [tmp_path / ".killed-run.lock"] and held.path.exists()
    held.release()
    assert not held.path.exists()


def test_the_same_run_cannot_be_resumed_twice_at_once(tmp_path, capsys, monkeypatch):
    _interrupt_second_epoch(monkeypatch)
    cli(capsys, ["run", "--epochs", "400", "--total-series-length", "1500", "--results-dir", str(tmp_path), "--quiet"])
    monkeypatch.undo()
    (record,) = records_in(tmp_path)
    first = subprocess.Popen([sys.executable, "-m", "bench", "run", "--resume", record["checkpoint"], "--quiet"],
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".*.lock")) and time.monotonic() < deadline:
        time.sleep(0.05)
    code, _, err = cli(capsys, ["run", "--resume", record["checkpoint"], "--quiet"])
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) == EXIT_INTERRUPTED
    assert code == 2 and "is already running in another process" in err and err.count("\n") == 1
    (record,) = records_in(tmp_path)
    assert record["status"] == "interrupted" and len(record["resumed"]) == 1 and not leftovers(tmp_path)


def _interrupt_second_epoch(monkeypatch):
    original, calls = runner.train_epoch, {"n": 0}

    def train_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("SIGINT")
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "train_epoch", train_epoch)


def test_the_resume_hint_carries_every_flag_and_updates_the_same_record(ptb_dir, tmp_path, capsys, monkeypatch):
    results, elsewhere = tmp_path / "my results", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _interrupt_second_epoch(monkeypatch)
    code, _, err = cli(capsys, ["run", "--preset", "ptb-tiny", "--epochs", "3", "--data-dir", str(ptb_dir),
                                "--results-dir", str(results), "--tag", "mine", "--quiet"])
    monkeypatch.undo()
    assert code == EXIT_INTERRUPTED
    hint = shlex.split(err.split("resume: ", 1)[1])
    assert hint[:4] == ["python", "-m", "bench", "run"]
    assert hint[hint.index("--results-dir") + 1] == str(results) and hint[hint.index("--data-dir") + 1] == str(ptb_dir)
    monkeypatch.chdir(elsewhere)  # the hint works from anywhere
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    assert cli(capsys, hint[3:] + ["--quiet"])[0] == 0
    (record,) = records_in(results)
    assert record["status"] == "completed" and len(record["epochs"]) == 3 and record["tag"] == "mine"
    assert record["preset"] == "ptb-tiny" and record["command"][-1] == "--quiet"
    assert record["resumed"][0]["command"][4:6] == ["--resume", hint[5]] and record["resumed"][0]["environment"]
    assert list(elsewhere.iterdir()) == []


def test_resume_with_only_the_checkpoint_finds_record_and_corpus(ptb_dir, tmp_path, capsys, monkeypatch):
    _interrupt_second_epoch(monkeypatch)
    cli(capsys, ["run", "--preset", "ptb-tiny", "--epochs", "3", "--data-dir", str(ptb_dir),
                 "--results-dir", str(tmp_path / "r"), "--quiet"])
    monkeypatch.undo()
    (record,) = records_in(tmp_path / "r")
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, ["run", "--resume", record["checkpoint"], "--quiet"])[0] == 0
    (record,) = records_in(tmp_path / "r")
    assert record["status"] == "completed"


@pytest.mark.parametrize("how,kept", [("completed", False), ("completed --keep-checkpoint", True),
                                      ("interrupted", True), ("diverged in epoch 2", True)])
def test_checkpoint_policy(tmp_path, capsys, monkeypatch, how, kept):
    argv = ["run", *ECHO, "--results-dir", str(tmp_path)]
    if how.endswith("--keep-checkpoint"):
        argv.append("--keep-checkpoint")
    if how == "interrupted":
        _interrupt_second_epoch(monkeypatch)
    if how.startswith("diverged"):
        original, calls = runner.has_diverged, {"n": 0}

        def diverged_in_epoch_2(stats):
            calls["n"] += 1
            return calls["n"] > 20 + 20 + 5 or original(stats)  # epoch 1: 20 train and 20 valid windows

        monkeypatch.setattr(runner, "has_diverged", diverged_in_epoch_2)
    cli(capsys, argv)
    (record,) = records_in(tmp_path)
    files = list((tmp_path / "checkpoints").glob("*.npz"))
    assert bool(files) is kept and bool(record["checkpoint"]) is kept
    if kept:
        assert record["checkpoint"] == str(files[0])


def test_the_policy_is_shown_in_list_and_help(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli(capsys, ["run", *ECHO, "--keep-checkpoint"])
    code, out, _ = cli(capsys, ["list"])
    assert "deleted when the run completes" in out and "1 file(s)" in out
    with pytest.raises(SystemExit):
        cli(capsys, ["run", "--help"])
    assert "--keep-checkpoint" in capsys.readouterr().out


# -- class 8: one line -----------------------------------------------------------------

def test_an_error_message_with_newlines_is_printed_on_one_line(capsys, monkeypatch):
    from bench.errors import BenchError

    def broken(*args, **kwargs):
        raise BenchError("plugin says:\nline two\nline three")

    import bench.run.plan as plan

    monkeypatch.setattr(plan, "get_backend", broken)
    code, _, err = cli(capsys, ["run", *ECHO])
    assert code == 2 and err == "error: plugin says: line two line three\n"


def test_argparse_usage_errors_stay_argparses(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(capsys, ["run", "--hidden-size", "many"])
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err


def test_a_closed_pipe_is_not_a_traceback():
    done = subprocess.run(f"{shlex.quote(sys.executable)} -m bench list | head -1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.startswith("backends") and "Traceback" not in done.stderr and "Broken pipe" not in done.stderr

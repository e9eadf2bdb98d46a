"""Class 6: the environment is checked up front (directories that cannot be written, corpus
files that cannot be read, no room for a checkpoint: exit 2 before training), and a fault of
the machine mid-run (disk full, I/O error, out of memory) ends `aborted` (exit 4) with its
reason, one line, and every completed epoch kept: epoch 1 is never lost because epoch 2's
checkpoint did not fit."""
from __future__ import annotations

import errno
import importlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench.run.runner import EXIT_ABORTED, EXIT_USER_ERROR
from bench.storage import SpaceReserve
from tests.faults.helpers import cli, leftovers, records_in

ECHO = ["--epochs", "3", "--total-series-length", "1500", "--quiet"]


def _bad_dir(tmp_path: Path, kind: str) -> tuple[str, str]:
    """A directory that cannot be used, and what the refusal must say is true of it."""
    if kind in ("file in the way", "a file"):
        (tmp_path / "blocker").write_text("")
        if kind == "a file":
            return str(tmp_path / "blocker"), "(it is a regular file, not a directory)"
        return str(tmp_path / "blocker" / "dir"), f"({tmp_path / 'blocker'} is a regular file, not a directory)"
    return {"under /dev/null": ("/dev/null/dir", "(/dev/null is a character device, not a directory)"),
            "under /proc": ("/proc/cellbench-test/dir", "(/proc/cellbench-test cannot be created in /proc: ")}[kind]


@pytest.mark.parametrize("kind", ["file in the way", "a file", "under /dev/null", "under /proc"])
@pytest.mark.parametrize("flag", ["--results-dir", "--checkpoint-dir"])
def test_an_unwritable_directory_is_exit_2_before_training(tmp_path, capsys, kind, flag):
    """The refusal says what is true: a file where a directory should be, or one that cannot be created."""
    directory, truth = _bad_dir(tmp_path, kind)
    argv = ["run", *ECHO, flag, directory]
    if flag == "--checkpoint-dir":
        argv += ["--results-dir", str(tmp_path / "results")]
    code, _, err = cli(capsys, argv)
    assert code == EXIT_USER_ERROR and err.count("\n") == 1 and "is not a writable directory" in err and flag in err
    assert truth in err and "does not exist" not in err, err
    assert records_in(tmp_path / "results") == []


def _corpus_copy(ptb_dir: Path, tmp_path: Path) -> Path:
    corpus = tmp_path / "ptb"
    shutil.copytree(ptb_dir, corpus)
    return corpus


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev-zero", "dangling-link", "empty", "not-utf8"])
def test_an_unreadable_corpus_file_is_exit_2_before_training(ptb_dir, tmp_path, kind):
    """In a process of its own: a FIFO named ptb.train.txt must not hang the run."""
    corpus = _corpus_copy(ptb_dir, tmp_path)
    train = corpus / "ptb.train.txt"
    train.unlink()
    {"directory": lambda: train.mkdir(), "fifo": lambda: os.mkfifo(train), "dev-zero": lambda: train.symlink_to("/dev/zero"),
     "dangling-link": lambda: train.symlink_to(tmp_path / "nowhere"), "empty": lambda: train.write_bytes(b""),
     "not-utf8": lambda: train.write_bytes(b"\xff\xfe" * 100)}[kind]()
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--preset", "ptb-tiny", "--data-dir", str(corpus),
                           "--results-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert done.stderr.count("\n") == 1 and "ptb.train.txt" in done.stderr and "Traceback" not in done.stderr
    assert records_in(tmp_path / "r") == []


def test_a_data_dir_that_is_a_file_is_exit_2_and_said_to_be_one(tmp_path, capsys):
    (tmp_path / "corpus").write_text("")
    code, _, err = cli(capsys, ["run", "--preset", "ptb-tiny", "--data-dir", str(tmp_path / "corpus")])
    assert code == EXIT_USER_ERROR and "is a regular file, not a directory" in err and "does not exist" not in err, err


def test_a_missing_data_dir_is_said_to_be_missing(tmp_path, capsys):
    code, _, err = cli(capsys, ["run", "--preset", "ptb-tiny", "--data-dir", str(tmp_path / "corpus")])
    assert code == EXIT_USER_ERROR and f"{tmp_path / 'corpus'} does not exist" in err, err


def test_bench_data_checks_the_directory_before_downloading(tmp_path, capsys, monkeypatch):
    import urllib.request

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded into a directory it cannot write")

    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    (tmp_path / "blocker").write_text("")
    code, _, err = cli(capsys, ["data", "ptb", "--data-dir", str(tmp_path / "blocker" / "ptb")])
    assert code == EXIT_USER_ERROR and "is not a writable directory" in err and "--data-dir" in err
    assert f"({tmp_path / 'blocker'} is a regular file, not a directory)" in err, err


def _tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("archive,message", [
    (b"<html>not found</html>", "did not give a readable .tgz archive"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 50, "did not give a readable .tgz archive"),
    (_tgz({"README": b"hello"}), "not the PTB archive"),
    (_tgz({f"simple-examples/data/ptb.{s}.txt": b"the cat\n" for s in ("train", "valid", "test")}), "truncated or altered"),
])
def test_a_bad_download_is_exit_2_and_installs_nothing(tmp_path, capsys, monkeypatch, archive, message):
    import urllib.request

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response(archive))
    code, _, err = cli(capsys, ["data", "ptb", "--data-dir", str(tmp_path / "ptb")])
    assert code == EXIT_USER_ERROR and message in err and err.count("\n") == 1
    assert not (tmp_path / "ptb").exists()  # nor the directory it would have created


def test_too_little_space_for_a_checkpoint_is_exit_2_up_front(tmp_path, capsys, monkeypatch):
    real = os.statvfs

    class Tiny:
        def __init__(self, path):
            self.f_bavail, self.f_frsize = 10, real(path).f_frsize

    monkeypatch.setattr(os, "statvfs", Tiny)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_USER_ERROR and "free some space" in err and err.count("\n") == 1
    assert records_in(tmp_path) == []


# -- faults mid-run ----------------------------------------------------------------------

def _failing_on(monkeypatch, name: str, exc: BaseException, calls: set[int]):
    """bench.run.<name> (``module.function``, or a function of bench.run.runner) raises ``exc`` on the
    given 1-based calls."""
    module = importlib.import_module(f"bench.run.{name.rsplit('.', 1)[0]}" if "." in name else "bench.run.runner")
    name = name.rsplit(".", 1)[-1]
    original = getattr(module, name)
    count = {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] in calls:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def _aborted(tmp_path, capsys, reason: str) -> dict:
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_ABORTED and "Traceback" not in err and err.count("\n") == 1, err
    assert "aborted" in err and reason in err
    (record,) = records_in(tmp_path)
    assert record["status"] == "aborted" and record["failure"]["reason"] == reason
    assert not leftovers(tmp_path)
    return record


def test_epoch_2s_checkpoint_not_fitting_keeps_epoch_1_and_2_and_resumes(tmp_path, capsys, monkeypatch):
    _failing_on(monkeypatch, "runfiles.save_checkpoint", OSError(errno.ENOSPC, "No space left on device"), {2})
    record = _aborted(tmp_path, capsys, "disk full")
    assert len(record["epochs"]) == 2 and record["failure"]["phase"] == "checkpoint"
    assert record["checkpoint"]  # epoch 1's, intact
    monkeypatch.undo()
    assert cli(capsys, ["run", "--resume", record["checkpoint"], "--quiet"])[0] == 0
    (resumed,) = records_in(tmp_path)
    assert cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path / "ref")])[0] == 0
    (reference,) = records_in(tmp_path / "ref")
    assert [e["train"]["loss"] for e in resumed["epochs"]] == [e["train"]["loss"] for e in reference["epochs"]]
    assert resumed["final"]["test"] == {**resumed["final"]["test"], "loss": reference["final"]["test"]["loss"]}


@pytest.mark.parametrize("error,reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk full"),
    (OSError(errno.EIO, "Input/output error"), "I/O error"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
])
def test_a_record_write_that_fails_mid_run_is_aborted_with_its_reason(tmp_path, capsys, monkeypatch, error, reason):
    """The record of epoch 2 cannot be written once; the reserve gives the room for its
    final state, which keeps both completed epochs."""
    _failing_on(monkeypatch, "runfiles.atomic_write_bytes", error, {3})  # 1: start, 2: epoch 1, 3: epoch 2
    record = _aborted(tmp_path, capsys, reason)
    assert len(record["epochs"]) == 2 and record["failure"]["phase"] == "record"


def test_a_reserve_that_cannot_grow_stops_the_run_early(tmp_path, capsys, monkeypatch):
    original = SpaceReserve.ensure

    def ensure(self, size):
        if self.size and size > self.size:  # the first, minimum one fits; growing does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, size)

    monkeypatch.setattr(SpaceReserve, "ensure", ensure)
    monkeypatch.setattr(SpaceReserve, "MINIMUM", 1)
    record = _aborted(tmp_path, capsys, "disk full")
    assert record["failure"]["phase"] == "start" and record["epochs"] == []


def test_a_disk_that_stays_full_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    """Nothing can be written at all any more (the reserve's room taken by someone else):
    exit 4 and one line; the record on disk holds the last state written."""
    _failing_on(monkeypatch, "runfiles.atomic_write_bytes", OSError(errno.ENOSPC, "No space left on device"), set(range(3, 99)))
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path)])
    assert code == EXIT_ABORTED and "final record could not be written" in err and "Traceback" not in err
    (record,) = records_in(tmp_path)
    assert len(record["epochs"]) == 1


def test_out_of_memory_mid_run_is_aborted(tmp_path, capsys, monkeypatch):
    _failing_on(monkeypatch, "evaluate", MemoryError(), {2})
    record = _aborted(tmp_path, capsys, "out of memory")
    assert len(record["epochs"]) == 1 and record["failure"]["phase"] == "evaluate:valid"


@pytest.fixture
def small_disk(tmp_path):
    """A real 1.5 MiB file system (tmpfs): needs root and mount; skipped where either is missing."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_real_full_disk_keeps_every_completed_epoch_and_resumes(small_disk, tmp_path):
    """The record and the checkpoint grow every epoch until the 1.5 MiB disk is full."""
    argv = [sys.executable, "-m", "bench", "run", "--epochs", "60", "--total-series-length", "3000", "--quiet"]
    done = subprocess.run(argv + ["--results-dir", str(small_disk / "r")], capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_ABORTED and done.stderr.count("\n") == 1 and "disk full" in done.stderr, done.stderr
    (record,) = records_in(small_disk / "r")
    assert record["status"] == "aborted" and len(record["epochs"]) >= 5 and record["checkpoint"]
    assert not leftovers(small_disk)
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    resumed = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", record["checkpoint"], "--quiet"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    reference = subprocess.run(argv + ["--results-dir", str(tmp_path / "ref")], capture_output=True, timeout=600)
    assert reference.returncode == 0
    (ours,), (theirs,) = records_in(small_disk / "r"), records_in(tmp_path / "ref")
    assert ours["status"] == "completed" and ours["final"]["test"]["loss"] == theirs["final"]["test"]["loss"]


@pytest.mark.parametrize("content", ["{", "[]", '{"measurements": 3}', "\xff", "[" * 50_000 + "]" * 50_000])
def test_a_roofline_file_that_is_not_ours_is_refused_never_overwritten(tmp_path, content):
    from bench.errors import BenchError
    from bench.measure.roofline import record_peak

    path = tmp_path / "roofline.json"
    path.write_text(content, errors="surrogateescape") if content != "\xff" else path.write_bytes(b"\xff")
    before = path.read_bytes()
    with pytest.raises(BenchError, match="move it away"):
        record_peak(tmp_path, {"cpu": "x", "threads": 1, "gflops": {"numpy": 1.0}})
    assert path.read_bytes() == before

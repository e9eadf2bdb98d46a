"""Class 9: no link in a results directory sends a write outside it. Every name the tool
writes at is predictable (a resumed run reuses its record's, checkpoint's, lock's and space
reserve's; a report its files'), so a symbolic link placed at one, to a file or a directory
elsewhere, is refused in one line (exit 2) naming the link, and what it points at is left
byte for byte as it was."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.run.runner import EXIT_USER_ERROR
from bench.storage import LINK_REFUSAL, SpaceReserve, atomic_write_bytes, reserve_path, writer_tag
from tests.faults.helpers import cli, leftovers, records_in

ECHO = ["--epochs", "1", "--total-series-length", "1500", "--quiet"]
PRECIOUS = b"someone else's file\n\x00\xff"


def _outside(tmp_path: Path, name: str = "precious.bin") -> Path:
    """A file outside every results directory of the test, which must never change."""
    target = tmp_path / "outside" / name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(PRECIOUS)
    return target


def _refused(code: int, err: str, link: Path) -> None:
    assert code == EXIT_USER_ERROR and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{link} {LINK_REFUSAL}" in err, err


def _tree(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` (links not followed) and its bytes: what must not change."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.is_symlink()}


# -- a run --------------------------------------------------------------------------------

def test_a_results_directory_that_is_a_link_is_refused(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "results").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path / "results")])
    _refused(code, err, tmp_path / "results")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("dangling", [False, True])
def test_a_checkpoints_directory_that_is_a_link_is_refused(tmp_path, capsys, dangling):
    elsewhere = tmp_path / "elsewhere"
    if not dangling:
        elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = cli(capsys, ["run", *ECHO, "--results-dir", str(tmp_path / "results")])
    _refused(code, err, tmp_path / "results" / "checkpoints")
    assert records_in(tmp_path / "results") == []
    assert (list(elsewhere.iterdir()) == []) if not dangling else not elsewhere.exists()


def _kept_run(results: Path, capsys) -> tuple[dict, Path, Path]:
    """A completed one-epoch run whose checkpoint is kept: (record, its path, checkpoint)."""
    assert cli(capsys, ["run", *ECHO, "--keep-checkpoint", "--results-dir", str(results)])[0] == 0
    (record,) = records_in(results)
    return record, results / f"{record['run_id']}.json", Path(record["checkpoint"])


@pytest.mark.parametrize("name", ["space reserve", "run lock", "record", "checkpoint"])
def test_a_link_at_a_name_a_resumed_run_writes_is_refused_before_anything_is_written(tmp_path, capsys, name):
    """The space reserve's name once made a file outside grow to 1 MiB of NUL bytes."""
    results = tmp_path / "results"
    record, record_path, checkpoint = _kept_run(results, capsys)
    run_id = record["run_id"]
    if name in ("record", "checkpoint"):  # the real file moved out, a link left at its name
        real = record_path if name == "record" else checkpoint
        target = tmp_path / "outside" / real.name
        target.parent.mkdir()
        shutil.move(real, target)
        link = real
    else:
        target = _outside(tmp_path)
        link = reserve_path(results, run_id) if name == "space reserve" else results / f".{run_id}.lock"
    link.symlink_to(target)
    before, outside = _tree(results), target.read_bytes()
    code, _, err = cli(capsys, ["run", "--resume", str(checkpoint), "--epochs", "2", "--quiet"])
    _refused(code, err, link)
    assert target.read_bytes() == outside and _tree(results) == before
    assert [p for p in leftovers(results) if not Path(p).is_symlink()] == []


# -- the writes themselves, whatever called them ------------------------------------------

def test_a_link_at_the_space_reserves_name_is_never_grown(tmp_path):
    target = _outside(tmp_path)
    reserve_path(tmp_path, "run").symlink_to(target)
    with pytest.raises(BenchError, match=LINK_REFUSAL):
        SpaceReserve(tmp_path, "run")
    assert target.read_bytes() == PRECIOUS


def test_a_dead_namesakes_space_reserve_is_replaced_not_grown_through(tmp_path):
    """A regular file at our name (a dead process that had our pid) is removed and a new
    reserve created: the old inode, perhaps hard-linked elsewhere, keeps its bytes."""
    stale = reserve_path(tmp_path, "run")
    stale.write_bytes(PRECIOUS)
    elsewhere = tmp_path / "hard-link"
    elsewhere.hardlink_to(stale)
    reserve = SpaceReserve(tmp_path, "run")
    assert stale.stat().st_size == SpaceReserve.MINIMUM and elsewhere.read_bytes() == PRECIOUS
    reserve.release()
    assert not stale.exists()


def test_a_link_at_a_temporary_name_is_refused_not_written_through(tmp_path, monkeypatch):
    import bench.storage

    monkeypatch.setattr(bench.storage, "_token", lambda: "deadbeef")  # a name known in advance
    target = _outside(tmp_path)
    (tmp_path / f".r.json.{writer_tag()}.deadbeef.tmp").symlink_to(target)
    with pytest.raises(BenchError, match=LINK_REFUSAL):
        atomic_write_bytes(tmp_path / "r.json", b"{}")
    assert target.read_bytes() == PRECIOUS and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("where", ["file", "directory"])
def test_an_atomic_write_refuses_a_link_at_its_name_or_its_directory(tmp_path, where):
    target = _outside(tmp_path)
    if where == "file":
        path = tmp_path / "r.json"
        path.symlink_to(target)
    else:
        (tmp_path / "results").symlink_to(target.parent, target_is_directory=True)
        path = tmp_path / "results" / "r.json"
    with pytest.raises(BenchError, match=LINK_REFUSAL):
        atomic_write_bytes(path, b"{}")
    assert _tree(target.parent) == {target.name: PRECIOUS}


# -- bench report ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_record(tmp_path_factory) -> Path:
    """A results directory holding one echo record (and nothing else)."""
    from bench.cli import main

    results = tmp_path_factory.mktemp("one-record")
    assert main(["run", *ECHO, "--results-dir", str(results)]) == 0
    shutil.rmtree(results / "checkpoints", ignore_errors=True)
    return results


def _report_dir(one_record: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(one_record, results)
    return results


@pytest.mark.parametrize("name", ["report.md", "report.csv", "report.html", "a plot"])
def test_a_link_at_a_report_file_is_refused(one_record, tmp_path, capsys, name):
    results = _report_dir(one_record, tmp_path)
    assert cli(capsys, ["report", str(results)])[0] == 0  # once, to learn the plots' names
    plots = sorted(results.glob("*.png"))
    assert plots
    link = plots[0] if name == "a plot" else results / name
    link.unlink()
    target = _outside(tmp_path)
    link.symlink_to(target)
    code, _, err = cli(capsys, ["report", str(results)])
    _refused(code, err, link)
    assert target.read_bytes() == PRECIOUS


def test_a_report_out_directory_that_is_a_link_is_refused(one_record, tmp_path, capsys):
    results = _report_dir(one_record, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = cli(capsys, ["report", str(results), "--out", str(tmp_path / "out")])
    _refused(code, err, tmp_path / "out")
    assert list(elsewhere.iterdir()) == []


# -- roofline, speed, matrix -----------------------------------------------------------------

MEASUREMENT = {"cpu": "test cpu", "threads": 1, "gflops": {"numpy": 1.0}}


def test_a_link_at_roofline_json_is_refused(tmp_path, capsys, monkeypatch):
    import bench.measure.roofline

    monkeypatch.setattr(bench.measure.roofline, "measure_peak", lambda threads: dict(MEASUREMENT))
    bench.measure.roofline.record_peak(tmp_path / "outside", dict(MEASUREMENT))  # a real roofline file: readable
    target = tmp_path / "outside" / "roofline.json"
    outside = target.read_bytes()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "roofline.json").symlink_to(target)
    code, _, err = cli(capsys, ["roofline", "--results-dir", str(tmp_path / "results")])
    _refused(code, err, tmp_path / "results" / "roofline.json")
    assert target.read_bytes() == outside


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_at_speed_out_is_refused(tmp_path, capsys, monkeypatch, dangling):
    import bench.measure.speed

    row = {"backend": "numpy", "impl": "cell", "cell": "rnn", "tok_s": 1.0}
    monkeypatch.setattr(bench.measure.speed, "run_speed", lambda *args, **kwargs: ([row], [1.0]))
    target = tmp_path / "outside" / "speed.json"
    if not dangling:
        target = _outside(tmp_path, "speed.json")
    (tmp_path / "speed.json").symlink_to(target)
    argv = ["speed", "--backends", "numpy", "--cells", "rnn", "--out", str(tmp_path / "speed.json")]
    code, _, err = cli(capsys, argv)
    _refused(code, err, tmp_path / "speed.json")
    assert (target.read_bytes() == PRECIOUS) if not dangling else not target.exists()


@pytest.mark.parametrize("command", ["matrix", "sweep"])
def test_a_matrix_or_sweep_into_a_linked_results_directory_is_refused_before_any_run(tmp_path, capsys, monkeypatch,
                                                                                      command):
    import bench.fanout.jobs

    def no_run(*args, **kwargs):
        raise AssertionError("a run started before the results directory was checked")

    monkeypatch.setattr(bench.fanout.jobs.subprocess, "Popen", no_run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "results").symlink_to(elsewhere, target_is_directory=True)
    argv = (["matrix", "--backends", "numpy"] if command == "matrix"
            else ["sweep", "--param", "echo_step", "--values", "1,2"])
    code, _, err = cli(capsys, [*argv, "--cells", "rnn", "--results-dir", str(tmp_path / "results"), *ECHO])
    _refused(code, err, tmp_path / "results")
    assert list(elsewhere.iterdir()) == []


def test_a_record_written_through_storage_keeps_the_users_permissions(tmp_path):
    """The temporary is created with 0o666 less the umask, not mkstemp's 0o600."""
    mask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "r.json", json.dumps({}).encode())
    finally:
        os.umask(mask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644

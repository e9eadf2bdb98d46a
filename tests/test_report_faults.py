"""Hostile input to ``bench report``: each file is read safely or listed as unreadable with a
one-line reason, in bounded time and memory; nothing raises."""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from bench.config import make_config
from bench.reading import MAX_JSON_BYTES, Unreadable, check, load_schema
from bench.report import load_records, write_report
from bench.runner import RunOptions, run

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE = REPO_ROOT / "results" / "reference"
PTB_RECORD = REFERENCE / "ptb-small" / "20261123T160500-ptb-numpy-cell-lstm-dc6baf9b.json"


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict[str, Any]:
    """A real record, as the runner writes it today."""
    directory = tmp_path_factory.mktemp("valid")
    result = run(make_config("echo", epochs=2, total_series_length=1500), RunOptions(results_dir=str(directory), quiet=True))
    return json.loads(result.record_path.read_text())


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail, rather than hang, if the block takes longer (a FIFO opened blocking would)."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


# --- files that are not records ------------------------------------------------------

def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # left bound until the process ends: the file stays a socket


def _link_to(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def _link_to_directory(path: Path) -> None:
    (path.parent / "elsewhere").mkdir()
    path.symlink_to(path.parent / "elsewhere", target_is_directory=True)


def _sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.touch()
        os.truncate(path, size)
    return make


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _valid_with(prefix: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(prefix + PTB_RECORD.read_bytes())


HOSTILE_FILES = {
    "fifo": (_fifo, "not a regular file (a FIFO)"),
    "unix socket": (_socket, "No such device or address"),
    "link to /dev/zero": (_link_to("/dev/zero"), "not a regular file (a character device)"),
    "link to a directory": (_link_to_directory, "not a regular file (a directory)"),
    "dangling link": (_link_to("/nonexistent/cellbench"), "No such file or directory"),
    "sparse 1 GiB file": (_sparse(2**30), "over the 67,108,864-byte limit"),
    "one byte over the limit": (_sparse(MAX_JSON_BYTES + 1), "over the 67,108,864-byte limit"),
    "100,000-deep nesting": (_bytes(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    "100,000-deep nesting in a record": (
        _bytes(b'{"schema_version": 2, "run_id": "x", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "nested too deeply"),
    "empty": (_bytes(b""), "not JSON (Expecting value"),
    "whitespace": (_bytes(b" \n\t "), "not JSON (Expecting value"),
    "binary": (_bytes(bytes(range(256)) * 4), "not UTF-8 text"),
    "NUL bytes": (_bytes(b"\x00" * 64), "not JSON"),
    "UTF-8 byte-order mark": (_valid_with(b"\xef\xbb\xbf"), "not JSON (Unexpected UTF-8 BOM"),
    "UTF-16": (lambda path: path.write_text(PTB_RECORD.read_text(), encoding="utf-16"), "not UTF-8 text"),
    "truncated record": (lambda path: path.write_bytes(PTB_RECORD.read_bytes()[:5000]), "not JSON"),
    "5,000-digit integer": (_bytes(b'{"schema_version": ' + b"9" * 5000 + b"}"), "not JSON (Exceeds the limit"),
    "array": (_bytes(b"[]"), "not a cellbench run record, `bench speed --out` table or roofline.json"),
    "number": (_bytes(b"3"), "not a cellbench run record"),
    "string": (_bytes(b'"record"'), "not a cellbench run record"),
    "null": (_bytes(b"null"), "not a cellbench run record"),
    "foreign object": (_bytes(b'{"hello": "world"}'), "not a cellbench run record"),
    "schema version 0": (lambda path: write(path, {**json.loads(PTB_RECORD.read_text()), "schema_version": 0}),
                         "schema version 0, this cellbench reads 1, 2"),
    "schema version 3": (lambda path: write(path, {**json.loads(PTB_RECORD.read_text()), "schema_version": 3}),
                         "schema version 3"),
    "schema version '2'": (lambda path: write(path, {**json.loads(PTB_RECORD.read_text()), "schema_version": "2"}),
                           "schema version '2'"),
    "schema version true": (lambda path: write(path, {**json.loads(PTB_RECORD.read_text()), "schema_version": True}),
                            "schema version True"),
    "run id only": (_bytes(b'{"run_id": "x"}'), "schema version None"),
    "speed table with bad rows": (lambda path: write(path, {"preset": "echo", "rows": [1], "peak_gflops": None,
                                                            "rounds": 1, "steps": 1}), "rows[0]: 1 is not of type object"),
    "roofline.json with no peak": (lambda path: write(path.with_name("roofline.json"), {"measurements": [
        {"cpu": "x", "threads": 1, "gflops": {}}]}), "measurements[0].gflops: {} breaks minProperties 1"),
}


@pytest.mark.parametrize("make, reason", HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
def test_a_hostile_file_is_listed_with_its_reason_in_bounded_time_and_memory(tmp_path, make, reason):
    write(tmp_path / "valid.json", json.loads(PTB_RECORD.read_text()))
    make(tmp_path / "hostile.json")
    tracemalloc.start()
    try:
        with deadline(20):
            records, bad = load_records(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r["run_id"] for r in records] == [PTB_RECORD.stem]
    assert len(bad) == 1, bad
    path, why = bad[0]
    assert Path(path).name in ("hostile.json", "roofline.json")
    assert reason in why and "\n" not in why and len(why) <= 300, why
    assert peak < 64 * 2**20  # nothing near the size of the file was read


def test_links_to_directories_are_not_followed_so_a_loop_ends(tmp_path):
    write(tmp_path / "runs" / "a.json", json.loads(PTB_RECORD.read_text()))
    (tmp_path / "runs" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "checkpoints").mkdir()
    write(tmp_path / "checkpoints" / "stray.json", {"not": "read"})
    with deadline(20):
        records, bad = load_records(tmp_path)
    assert len(records) == 1 and records[0]["_set"] == "runs"
    assert bad == [(str(tmp_path / "runs" / "loop"), "a link to a directory; not followed")]


def test_a_tree_of_every_hostile_file_still_gives_a_report(tmp_path, record):
    for name, (make, _) in HOSTILE_FILES.items():
        directory = tmp_path / "results" / name.replace(" ", "-").replace("/", "-").replace("'", "")
        directory.mkdir(parents=True)
        make(directory / "hostile.json")
    write(tmp_path / "results" / "mine" / "valid.json", record)
    with deadline(60):
        out = write_report(tmp_path / "results", tmp_path / "out")
    assert out["records"] == 1 and len(out["bad"]) == len(HOSTILE_FILES)
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.count("\n- `") == len(HOSTILE_FILES)  # each skipped file listed, one line each


# --- every field removed or of the wrong type ----------------------------------------

def _template() -> dict[str, Any]:
    """A PTB record (it has every kind of field: perplexities, words, two layers) cut short,
    with the fields schema 2 added and the status an interruption, so that walking it
    reaches every field a record can have."""
    r = json.loads(PTB_RECORD.read_text())
    r["epochs"] = r["epochs"][:2]
    r["gradient_norms"] = r["gradient_norms"][:2]
    for entry in r["gradient_norms"]:
        entry["curves"] = {k: [curve[:1] for curve in layers] for k, layers in entry["curves"].items()}
    for key in ("inputs", "targets", "predictions"):
        r["sample"][key] = [row[:1] for row in r["sample"][key][:1]]
    for key in ("input_words", "target_words", "predicted_words"):
        r["sample"][key] = r["sample"][key][:1]
    r["command"] = r["command"][:2]
    r.update(schema_version=2, status="interrupted", preset="ptb-small", checkpoint="checkpoints/x.npz", tag="rnn-lr",
             failure={"kind": "interrupted", "phase": "train", "epoch": 3, "step": 7, "message": "interrupted"},
             resumed=[{"at": "2026-11-24T00:00:00+00:00", "from_epoch": 1, "command": ["python"]}])
    return r


TEMPLATE = _template()
REMOVED = object()


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _field_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _at(document: Any, path: tuple) -> Any:
    for part in path:
        document = document[part]
    return document


def _wrong_values(value: Any) -> list[Any]:
    """Values of JSON types that ``value`` is not: null, a scalar and a container of other
    kinds, and the two that slip past Python's own checks (True is an int; 1.5 is a
    number but no count); and for a list or object, an empty one."""
    if isinstance(value, bool):
        return ["x", None]
    if isinstance(value, int):
        return [1.5, True, "x", None]
    if isinstance(value, float):
        return [True, "x", None, []]
    if isinstance(value, str):
        return [7, None, {}]
    if value is None:
        return [7, "x", {}]
    if isinstance(value, list):
        return ["x", None, {}] + ([[]] if value else [])
    return ["x", None, []] + ([{}] if value else [])


WALK = [(path, REMOVED) for path in _paths(TEMPLATE)] + [
    (path, wrong) for path in _paths(TEMPLATE) for wrong in _wrong_values(_at(TEMPLATE, path))]


def _walk_id(case: tuple) -> str:
    path, value = case
    return f"{_field_text(path)} removed" if value is REMOVED else f"{_field_text(path)}={json.dumps(value)}"


def _mutant(path: tuple, value: Any) -> dict[str, Any]:
    mutant = copy.deepcopy(TEMPLATE)
    parent = _at(mutant, path[:-1])
    if value is REMOVED:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(value)
    return mutant


@pytest.fixture(scope="module")
def walk_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("walk")


def test_the_walk_template_is_a_valid_record():
    check(TEMPLATE, "record")


@pytest.mark.parametrize("case", WALK, ids=[_walk_id(c) for c in WALK])
def test_a_field_removed_or_of_the_wrong_type_is_listed_by_its_path_or_accepted(case, walk_dir):
    """Listed, with a reason naming the field (or the object that lacks it, or the field
    inside it that breaks the schema); or accepted."""
    directory = walk_dir / str(WALK.index(case))
    write(directory / "record.json", _mutant(*case))
    records, bad = load_records(directory)
    assert len(records) + len(bad) == 1
    if bad:
        (_, reason), = bad
        field, mutated = reason.split(":", 1)[0], _field_text(case[0])
        related = (field == mutated or field.startswith((mutated + ".", mutated + "["))
                   or mutated.startswith((field + ".", field + "[")))
        assert related or reason.startswith("schema version"), reason
        assert "\n" not in reason and len(reason) <= 300


# --- the command line ----------------------------------------------------------------

def _report_cli(capsys, *argv: str) -> tuple[int, str]:
    from bench.cli import main

    code = main(["report", *argv])
    return code, capsys.readouterr().err


def test_report_of_a_missing_directory_is_exit_2_and_creates_nothing(tmp_path, capsys):
    for argv in ([str(tmp_path / "missing")], [str(tmp_path / "missing"), "--out", str(tmp_path / "out")]):
        code, err = _report_cli(capsys, *argv)
        assert code == 2
        assert err.startswith("error: ") and err.count("\n") == 1 and "missing" in err
    assert list(tmp_path.iterdir()) == []


def test_report_of_a_file_is_exit_2_and_creates_nothing(tmp_path, capsys):
    record = write(tmp_path / "record.json", json.loads(PTB_RECORD.read_text()))
    code, err = _report_cli(capsys, str(record), "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "not a directory" in err
    assert list(tmp_path.iterdir()) == [record]


@pytest.mark.parametrize("out", ["a-file/out", "a-file"])
def test_an_unwritable_out_is_exit_2_before_any_work(tmp_path, capsys, monkeypatch, out):
    import bench.report

    def no_reading(*args: Any) -> None:
        raise AssertionError("read the results before checking --out")

    monkeypatch.setattr(bench.report, "read_results", no_reading)
    write(tmp_path / "results" / "r.json", json.loads(PTB_RECORD.read_text()))
    (tmp_path / "a-file").write_text("")
    code, err = _report_cli(capsys, str(tmp_path / "results"), "--out", str(tmp_path / out))
    assert code == 2 and err.startswith("error: cannot write the report to ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "results"]


# --- the schemas themselves ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["record", "speed", "roofline"])
def test_schemas_ship_with_the_package_and_are_valid_json_schemas(kind):
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(load_schema(kind))


def test_every_committed_reference_file_validates_quickly():
    start = time.perf_counter()
    records, bad = load_records(REFERENCE)
    assert bad == [] and len(records) == 35
    assert time.perf_counter() - start < 10


def test_the_fast_leaf_checks_agree_with_the_stock_validator():
    """The validator checks plain leaves in place; on every walk mutant it must give the
    verdict the library's own validator gives."""
    from jsonschema import Draft202012Validator, validators

    from bench.reading import _TYPES

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many(_TYPES)
    stock = validators.extend(Draft202012Validator, type_checker=checker)(load_schema("record"))
    for path, value in WALK[::5]:
        mutant = _mutant(path, value)
        try:
            check(mutant, "record")
            fast = True
        except Unreadable:
            fast = False
        assert fast == stock.is_valid(mutant), _walk_id((path, value))

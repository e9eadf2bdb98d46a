"""Hostile input to ``bench report``: each file is read safely or listed as unreadable with a
one-line reason, in bounded time and memory; nothing raises; and runs of different sets or
configurations never share a row group, a plot or the test sample unannounced."""
from __future__ import annotations

import copy
import html.parser
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from PIL import Image
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.report import plots
from bench.config import make_config
from bench.documents import MAX_JSON_BYTES, Unreadable, check, load_schema
from bench.report.build import (
    _markdown, comparison_table, epochs_frame, gradients_frame, load_records, published_table, runs_frame,
    sweep_tables, write_report,
)
from bench.run.runner import RunOptions, run

REPO_ROOT = Path(__file__).resolve().parents[2]
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
                         "schema version 0, this cellbench reads 1, 2, 3, 4, 5"),
    "schema version 6": (lambda path: write(path, {**json.loads(PTB_RECORD.read_text()), "schema_version": 6}),
                         "schema version 6"),
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


def _accepted(cases: list[tuple]) -> Iterator[tuple[int, tuple, dict[str, Any]]]:
    for k, (path, value) in enumerate(cases):
        mutant = _mutant(path, value)
        try:
            check(mutant, "record")
        except Unreadable:
            continue
        yield k, path, mutant


@pytest.fixture(scope="module")
def walk_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("walk")


def test_the_walk_template_is_a_valid_record():
    check(TEMPLATE, "record")


@pytest.mark.parametrize("case", WALK, ids=[_walk_id(c) for c in WALK])
def test_a_field_removed_or_of_the_wrong_type_is_listed_by_its_path_or_accepted(case, walk_dir):
    """Listed, with a reason naming the field (or the object that lacks it, or the field
    inside it that breaks the schema); or accepted, and then the two tests below hold the
    whole report to coping with it."""
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


def test_every_accepted_mutant_goes_through_every_table(tmp_path):
    records = []
    for k, path, mutant in _accepted(WALK):
        mutant.update(_path=f"{k}.json", _set=_field_text(path))
        records.append(mutant)
    assert len(records) > 300
    runs = runs_frame(records, {f"{TEMPLATE['environment']['cpu']}|1": 100.0})
    table, sweeps, published = comparison_table(runs), sweep_tables(runs), published_table(records)
    epochs_frame(records), gradients_frame(records)
    text = _markdown(table, sweeps, records, [], [], tmp_path, published, {})
    assert text.count("\n| ") >= len(records)


PLOTTED = ("epochs", "gradient_norms", "sample")


def test_every_accepted_mutant_of_plotted_data_is_drawn(tmp_path):
    """Each as its own backend in one set and configuration, so one group draws them all."""
    accepted = 0
    for k, path, mutant in _accepted([c for c in WALK if c[0][0] in PLOTTED]):
        mutant["backend"]["name"] = f"m{k}"
        write(tmp_path / "results" / "walk" / f"{k}.json", mutant)
        accepted += 1
    assert accepted > 100
    out = write_report(tmp_path / "results", tmp_path / "out")
    assert out["records"] == accepted and not out["bad"]
    assert {Path(f).name for f in out["figures"]} == {"gradients-walk.png", "curves-walk.png", "throughput-walk.png"}


# --- values the schema allows: NaN, infinities, extremes, odd names --------------------

EXTREMES = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e308, -1e308, 5e-324]


def _every_float(node: Any, value: float) -> Any:
    if isinstance(node, dict):
        return {k: _every_float(v, value) for k, v in node.items()}
    if isinstance(node, list):
        return [_every_float(v, value) for v in node]
    return value if isinstance(node, float) else node


def test_nan_infinities_and_extremes_in_every_number_are_reported_and_drawn(tmp_path, record):
    for k, value in enumerate(EXTREMES):
        extreme = {key: (_every_float(v, value) if key not in ("config",) else v) for key, v in record.items()}
        extreme["backend"] = {**extreme["backend"], "name": f"b{k}"}
        write(tmp_path / "results" / f"{k}.json", extreme)
    out = write_report(tmp_path / "results", tmp_path / "out")
    assert out["records"] == len(EXTREMES) and not out["bad"]
    assert len(out["figures"]) == 4  # gradients, curves, throughput, one echo sample (one cell)


ODD_NAMES = ["$\\frac{", "_hidden", "a|b", "x" * 500, "über ☃", "a`b", "tab\tand\nnewline"]


def test_odd_names_in_sets_and_records_are_shown_as_written(tmp_path, record):
    """Names are drawn as text (a ``$`` starts no formula), a pipe or newline in a name
    adds no table column, and a long one is cut in titles, not in the table."""
    for k, name in enumerate(ODD_NAMES):
        odd = copy.deepcopy(record)
        odd["backend"]["name"] = name
        write(tmp_path / "results" / "$x^$ _set | `odd`" / f"{k}.json", odd)
    escape = copy.deepcopy(record)
    escape["config"]["cell"] = "../../escape"
    write(tmp_path / "results" / "$x^$ _set | `odd`" / "escape.json", escape)
    out = write_report(tmp_path / "results", tmp_path / "out")
    assert out["records"] == len(ODD_NAMES) + 1 and len(out["figures"]) == 5  # and one echo sample per cell
    assert all(Path(f).parent == tmp_path / "out" for f in out["figures"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "results"]
    rows = [line for line in (tmp_path / "out" / "report.md").read_text().splitlines() if "| completed |" in line]
    assert len(rows) == len(ODD_NAMES) + 1
    assert all(row.count(" | ") == len(out["table"].columns) - 1 for row in rows)
    assert any("x" * 500 in row for row in rows)


# --- random mutations ----------------------------------------------------------------

_numbers = st.one_of(st.floats(), st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**63, -(2**70), 10**30]))
_strings = st.one_of(st.text(max_size=8), st.sampled_from(["$x^$", "_x", "sweep:echo_step", "sweep:nope", "a|b\nc"]))
_json = st.recursive(st.one_of(st.none(), st.booleans(), _numbers, _strings),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=6)


def _like(value: Any) -> st.SearchStrategy:
    """A value of the same JSON kind (legal more often than not), or any JSON at all."""
    if isinstance(value, bool):
        same = st.booleans()
    elif isinstance(value, (int, float)):
        same = _numbers
    elif isinstance(value, str):
        same = _strings
    elif isinstance(value, list):
        same = st.sampled_from([[], value[:1], value[::-1], value + value[-1:]])
    else:
        same = st.just(value)
    return st.one_of(same, same, same, _json)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_mutations_never_break_loading_or_the_report(record, data):
    templates = [record, TEMPLATE]
    mutants = []
    for copy_number in range(data.draw(st.integers(1, 2), label="records")):
        mutant = copy.deepcopy(data.draw(st.sampled_from(templates), label="template"))
        for _ in range(data.draw(st.integers(1, 4), label="mutations")):
            paths = list(_paths(mutant))
            if not paths:
                break
            path = data.draw(st.sampled_from(paths), label="path")
            parent = _at(mutant, path[:-1])
            if data.draw(st.booleans(), label="remove"):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(_like(parent[path[-1]]), label="value")
        if isinstance(mutant.get("backend"), dict):
            mutant["backend"]["name"] = f"copy{copy_number}"
        mutants.append(mutant)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "results"
        for k, mutant in enumerate(mutants):
            write(root / data.draw(st.sampled_from([".", "a"]), label="set") / f"{k}.json", mutant)
        records, bad = load_records(root)
        event(f"{len(records)} of {len(mutants)} record(s) readable")
        assert len(records) + len(bad) == len(mutants)
        assert all("\n" not in reason for _, reason in bad)
        write_report(root, Path(directory) / "out")


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
    import bench.report.build

    def no_reading(*args: Any) -> None:
        raise AssertionError("read the results before checking --out")

    monkeypatch.setattr(bench.report.build, "read_results", no_reading)
    write(tmp_path / "results" / "r.json", json.loads(PTB_RECORD.read_text()))
    (tmp_path / "a-file").write_text("")
    code, err = _report_cli(capsys, str(tmp_path / "results"), "--out", str(tmp_path / out))
    assert code == 2 and err.startswith("error: cannot write the report to ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "results"]


def test_report_reads_the_users_runs_by_default_not_the_reference():
    from bench.cli import build_parser
    from bench.run.records import DEFAULT_RESULTS_DIR

    assert build_parser().parse_args(["report"]).directory == DEFAULT_RESULTS_DIR
    assert not (REFERENCE.resolve().is_relative_to((REPO_ROOT / DEFAULT_RESULTS_DIR).resolve()))


# --- sets and configurations are never mixed -----------------------------------------

@pytest.fixture
def drawn(monkeypatch) -> list[dict[str, Any]]:
    """What each figure shows (file, titles, legend labels), without rendering it."""
    figures: list[dict[str, Any]] = []

    def capture(fig: Any, path: Path) -> Path:
        labels = [text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
        figures.append({"file": path.name, "title": fig.get_suptitle(),
                        "labels": labels, "lines": sum(len(ax.get_lines()) for ax in fig.axes),
                        "ticks": [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]})
        plots._pyplot().close(fig)
        Image.new("P", (1, 1)).save(path, "PNG")  # report.html embeds every plot the report names
        return path

    monkeypatch.setattr(plots, "_save", capture)
    return figures


def _with_words(record: dict[str, Any], word: str, test_ppl: float) -> dict[str, Any]:
    record = copy.deepcopy(record)
    record["sample"].update(input_words=[word] * 3, target_words=[word] * 3, predicted_words=[word] * 3)
    record["final"]["test"]["perplexity"] = test_ppl
    return record


def test_sets_and_configurations_get_their_own_rows_plots_and_a_stated_sample(tmp_path, record, drawn):
    """The reference and the user's run of the same backend x cell and configuration stay
    apart; a newer quick run (1 epoch) of the same backend x cell replaces neither's
    curve nor supplies the sample."""
    root = tmp_path / "results"
    reference = _with_words(record, "ref", 50.0)
    mine = _with_words({**record, "run_id": "mine", "started_at": "2099-01-01T00:00:00+00:00"}, "mine", 40.0)
    quick = _with_words({**record, "run_id": "quick", "started_at": "2099-12-31T00:00:00+00:00",
                         "config": {**record["config"], "epochs": 1}, "epochs": record["epochs"][:1]}, "quick", 10.0)
    write(root / "reference" / "r.json", reference)
    write(root / "runs" / "m.json", mine)
    write(root / "runs" / "q.json", quick)

    out = write_report(root, tmp_path / "out")
    table = out["table"]
    assert list(zip(table["set"], table["configuration"], table["epochs"])) == [
        ("reference", "echo, epochs=2, total_series_length=1500", "2/2"),
        ("runs", "echo, epochs=1, total_series_length=1500", "1/1"),
        ("runs", "echo, epochs=2, total_series_length=1500", "2/2")]
    assert {"seed", "threads"} <= set(table.columns)

    curves = {f["file"]: f for f in drawn if f["file"].startswith("curves-")}
    assert set(curves) == {"curves-reference.png", "curves-runs-epochs-1.png", "curves-runs-epochs-2.png"}
    assert "set: reference" in curves["curves-reference.png"]["title"]
    assert "configuration: echo, epochs=1, total_series_length=1500" in curves["curves-runs-epochs-1.png"]["title"]
    assert all(f["lines"] == 4 for f in curves.values())  # one run each: train and valid, two panels
    assert all(f["title"].startswith("set: ") and "configuration: " in f["title"] for f in drawn)

    text = (tmp_path / "out" / "report.md").read_text()
    sample = text[text.index("## What each cell predicts"):]
    assert "- lstm: run `mine`, set `runs`, echo, epochs=2, total_series_length=1500, numpy/cell, completed" in sample
    assert "| mine | mine | **mine** |" in sample and "quick" not in sample


def test_throughput_bars_name_the_cpu_when_a_group_ran_on_several(tmp_path, record, drawn):
    other = {**record, "environment": {**record["environment"], "cpu": "Other CPU"}}
    other["config"] = {**record["config"], "cell": "rnn"}
    write(tmp_path / "results" / "a.json", record)
    write(tmp_path / "results" / "b.json", other)
    write_report(tmp_path / "results", tmp_path / "out")
    ticks = next(f for f in drawn if f["file"].startswith("throughput-"))["ticks"]
    cpu = record["environment"]["cpu"]
    cpu = cpu if len(cpu) <= 40 else cpu[:37] + "..."
    assert ticks == [f"lstm numpy/cell\n{cpu}", "rnn numpy/cell\nOther CPU"]


def test_sweeps_are_grouped_by_set_and_the_settings_they_keep(tmp_path, record, drawn):
    root = tmp_path / "results"
    for set_name in ("a", "b"):
        for lag in (1, 2):
            for lr in (0.3, 0.1):
                swept = copy.deepcopy(record)
                swept.update(tag="sweep:echo_step", run_id=f"{set_name}-{lag}-{lr}")
                swept["config"].update(echo_step=lag, learning_rate=lr)
                write(root / set_name / f"{lag}-{lr}.json", swept)
    out = write_report(root, tmp_path / "out")
    assert len(out["table"]) == 0  # sweeps have their own tables
    about = [(a["set"], a["configuration"]) for a, _ in out["sweeps"]]
    assert about == [("a", "echo, learning_rate=0.1, epochs=2, total_series_length=1500"),
                     ("a", "echo, epochs=2, total_series_length=1500"),
                     ("b", "echo, learning_rate=0.1, epochs=2, total_series_length=1500"),
                     ("b", "echo, epochs=2, total_series_length=1500")]
    assert all(list(table["echo_step"]) == [1, 2] for _, table in out["sweeps"])
    assert len([f for f in drawn if f["file"].startswith("sweep-echo_step-")]) == 4


def test_a_failed_run_is_listed_not_drawn_and_an_aborted_one_shows_its_epochs(tmp_path, record, drawn):
    failed = {**record, "status": "failed", "failure": {"kind": "failed", "phase": "train", "epoch": 2, "step": 1,
                                                        "message": "RuntimeError()"}}
    aborted = {**record, "status": "aborted", "run_id": "aborted",
               "failure": {"kind": "aborted", "phase": "checkpoint", "epoch": 2, "step": None, "message": "disk full",
                           "reason": "disk full"}}
    aborted["config"] = {**record["config"], "cell": "rnn"}
    write(tmp_path / "results" / "f.json", failed)
    write(tmp_path / "results" / "a.json", aborted)
    out = write_report(tmp_path / "results", tmp_path / "out")
    assert sorted(out["table"]["status"]) == ["aborted", "failed"]
    curves = next(f for f in drawn if f["file"].startswith("curves-"))
    assert curves["labels"] == ["rnn numpy/cell"]


# --- the schemas themselves ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["record", "speed", "roofline"])
def test_schemas_ship_with_the_package_and_are_valid_json_schemas(kind):
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(load_schema(kind))


def test_every_committed_reference_file_validates_quickly():
    start = time.perf_counter()
    records, bad = load_records(REFERENCE)
    run_files = [p for p in REFERENCE.rglob("*.json") if p.name[:1].isdigit() and "checkpoints" not in p.parts]
    assert bad == [] and len(records) == len(run_files) >= 35  # every committed run record, none skipped
    assert time.perf_counter() - start < 10


def _stock(kind: str) -> Any:
    """The library's validator on the schema as shipped (its own reference resolution)."""
    from jsonschema import Draft202012Validator, validators

    from bench.documents import _TYPES

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many(_TYPES)
    return validators.extend(Draft202012Validator, type_checker=checker)(load_schema(kind))


@pytest.mark.parametrize("kind", ["record", "speed", "roofline"])
def test_every_schema_compiles_so_no_report_falls_back_to_the_slow_path(kind):
    from bench.documents import _compile, _inline_refs

    schema = load_schema(kind)
    assert _compile(_inline_refs(schema, schema.get("$defs", {}))) is not None


def test_the_compiled_schema_agrees_with_the_library_on_every_walk_mutant():
    """``check`` trusts the compiled predicate when it passes a document; on every field of
    the template removed or of each wrong type, it must say what the library says."""
    from bench.documents import is_valid

    stock = _stock("record")
    verdicts = set()
    for path, value in WALK:
        mutant = _mutant(path, value)
        verdicts.add(is_valid(mutant, "record"))
        assert is_valid(mutant, "record") == stock.is_valid(mutant), _walk_id((path, value))
    assert verdicts == {True, False}


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_compiled_schema_agrees_with_the_library_on_random_documents(data):
    from bench.documents import is_valid

    kind = data.draw(st.sampled_from(["record", "speed", "roofline"]), label="kind")
    document = copy.deepcopy({"record": TEMPLATE, "speed": SPEED_TEMPLATE, "roofline": ROOFLINE_TEMPLATE}[kind])
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        paths = list(_paths(document))
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = _at(document, path[:-1])
        if data.draw(st.booleans(), label="remove"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_like(parent[path[-1]]), label="value")
    assert is_valid(document, kind) == _stock(kind).is_valid(document)


MACHINE_LOAD = {"logical_cpus": 2, "threads": 1, "seconds": 1.5, "loadavg_before": [0.5, 0.4, 0.3],
                "loadavg_after": [0.6, 0.4, 0.3], "others_cpu_s": 0.1, "others_cores": 0.05, "busy": False}
SPEED_TEMPLATE = {"preset": "echo", "cpu": "x", "threads": 1, "peak_gflops": 10.0, "rounds": 1, "steps": 2,
                  "machine_load": MACHINE_LOAD,
                  "measured_at": "now", "peaks_per_round": [1.0],
                  "skipped": [{"backend": "a", "impl": "b", "cell": "c", "reason": "d"}],
                  "rows": [{"backend": "numpy", "impl": "cell", "cell": "lstm", "train_tok_s": 1.0, "error": "e",
                            "kernel": None, "extra": True}]}
ROOFLINE_TEMPLATE = {"measurements": [{"cpu": "x", "threads": 1, "gflops": {"512": 10.0}, "machine_load": MACHINE_LOAD}]}


# --- hostile strings: every string the report prints is text, in markdown and in a browser ---

# each tries to run `document.title = "PWNED"` (written so that the page's own text never
# holds the word) or to make markup: a code span closed early, raw HTML, markdown links
# and images, entities, Python-Markdown's own placeholders, control and bidi characters
PWN = "document.title='PW'+'NED'"
PAYLOADS = [
    f's`` <img src=x onerror="{PWN}">',
    f'`` s`` <img src=x onerror="{PWN}"> ``',
    f'x ``` s ``` <svg onload="{PWN}">',
    f'`<img src=x onerror="{PWN}">`',
    f"<script>{PWN}</script>",
    f'<a href="javascript:{PWN}">click</a>',
    f"[link](javascript:{PWN})",
    f'![image](x" onerror="{PWN})',
    f"<iframe srcdoc='<script>{PWN}</script>'>",
    "&lt;script&gt; &amp; AT&T",
    "*em* _u_ __strong__ # heading > quote",
    "- item 1. list",
    "a|b | c",
    "\\`<b>bold</b>\\`",
    "\x02wzxhzdk:0\x03 and \x02klzzwxh:1\x03",
    "ctrl \x00 \x07 \x1b[31m red \x7f \x9b",
    "right-to-left \u202eevil\u202c end",
    "<!-- comment --><style>body{display:none}</style>",
    "javascript:void(0)",
]


def _safe_name(payload: str) -> str:
    """The payload as one file or directory name (no slash, no NUL, not too long)."""
    return payload.replace("/", "∕").replace("\x00", "NUL")[:120]


def _payload_tree(root: Path, record: dict[str, Any]) -> None:
    """Every payload in every string a report prints: a set's directory, a skipped file's
    name, run id, cell, backend, impl, CPU, a configuration setting's name and value, a
    swept string value, the name of a swept setting, PTB sample words, a speed table's
    fields and file name."""
    ptb = json.loads(PTB_RECORD.read_text())
    for k, payload in enumerate(PAYLOADS):
        directory = root / f"{k} {_safe_name(payload)}"
        mine = copy.deepcopy(record)
        mine.update(run_id=payload)
        mine["config"].update(cell=payload, **{payload: payload})
        mine["backend"].update(name=payload, impl=payload)
        mine["environment"]["cpu"] = payload
        write(directory / "run.json", mine)
        other = copy.deepcopy(mine)  # a second cell, so the headlines rank and compare
        other["config"]["cell"] = "rnn"
        write(directory / "rnn.json", other)
        for value in (payload, "sgd"):
            point = copy.deepcopy(record)
            point.update(tag="sweep:optimizer", run_id=f"{payload} {value}")
            point["config"].update(optimizer=value)
            point["backend"]["name"] = payload
            write(directory / "sweep" / f"{_safe_name(value)}.json", point)
        for value in (1, 2):
            point = copy.deepcopy(record)
            point.update(tag=f"sweep:{payload}")
            point["config"][payload] = value
            write(directory / "sweep-named" / f"{value}.json", point)
        words = copy.deepcopy(ptb)
        words.update(run_id=payload, tag=payload)
        words["config"]["cell"] = payload if k % 2 else "lstm"
        words["sample"].update(input_words=[payload] * 3, target_words=[payload, "x", payload],
                               predicted_words=[payload, payload, "y"])
        write(directory / "ptb.json", words)
        write(directory / f"{_safe_name(payload)}.json", {"preset": payload, "rows": [
            {"backend": payload, "impl": payload, "cell": payload, "train_tok_s": 1.0, "error": payload}],
            "peak_gflops": None, "rounds": 1, "steps": 1, "cpu": payload, "threads": 1,
            "skipped": [{"backend": payload, "impl": payload, "cell": payload, "reason": payload}]})
        (directory / f"skipped {_safe_name(payload)}.json").write_text("not JSON")


class _Elements(html.parser.HTMLParser):
    """Every element, attribute and piece of text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def payload_report(record, tmp_path_factory) -> Path:
    """The report of the payload tree, plots drawn but not rendered (their text is the
    plots' own business: tests above), under a root whose name is a payload too."""
    root = tmp_path_factory.mktemp("payloads") / f"results {_safe_name(PAYLOADS[0])}"
    _payload_tree(root, record)
    with pytest.MonkeyPatch.context() as patch:
        def no_render(fig: Any, path: Path) -> Path:
            plots._pyplot().close(fig)
            Image.new("P", (1, 1)).save(path, "PNG")
            return path

        patch.setattr(plots, "_save", no_render)
        out = write_report(root)
    assert out["records"] == 7 * len(PAYLOADS) and len(out["bad"]) == len(PAYLOADS), out["bad"][:3]
    return root


def test_hostile_strings_are_text_in_report_html_and_nothing_else(payload_report):
    from bench.report.mdtext import one_line
    from bench.report.html import ALLOWED_TAGS

    page = _Elements()
    page.feed((payload_report / "report.html").read_text(encoding="utf-8"))
    own = {"html", "head", "meta", "title", "style", "body"}  # the page's frame, not from markdown
    assert set(page.tags) <= ALLOWED_TAGS | own, set(page.tags) - ALLOWED_TAGS - own
    assert page.tags.count("style") == 1 and "script" not in page.tags and "iframe" not in page.tags
    for tag, name, value in page.attributes:
        assert not name.startswith("on"), (tag, name, value)
        assert "javascript:" not in value.lower(), (tag, name, value)
        if name == "href":
            assert value.startswith("#"), value
        if name == "src":
            assert tag == "img" and value.startswith("data:image/png;base64,"), value[:80]
    shown = "".join(page.text)
    for payload in PAYLOADS:  # each shown as written: one line, invisible characters as escapes
        assert one_line(payload) in shown, payload


def test_hostile_strings_keep_every_table_row_to_its_columns(payload_report):
    """No payload ends a table cell or a code span early: each row of report.md has as many
    cells as its table's head, as Python-Markdown reads it."""
    import markdown

    body = markdown.markdown((payload_report / "report.md").read_text(), extensions=["tables"])
    page = _Elements()
    page.feed(body)
    # a table whose rows split differently from its head would have rows of other lengths;
    # the parser gives cells in order, so count them per row
    rows, current = [], None
    for tag in page.tags:
        if tag == "tr":
            current = []
            rows.append(current)
        elif tag in ("td", "th") and current is not None:
            current.append(tag)
    heads = [len(r) for r in rows if r and r[0] == "th"]
    assert heads and all(len(r) in heads for r in rows)
    text = (payload_report / "report.md").read_text()
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            assert not any(c in line for c in "\x00\x07\x1b\x7f\x02\x03\u202e"), line[:120]


def test_hostile_strings_run_nothing_in_a_headless_browser(payload_report, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium); the structure tests above still run")
    page = payload_report / "report.html"
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                             "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert "<h1>cellbench report</h1>" in result.stdout, result.stderr[-2000:]
    assert "PWNED" not in result.stdout  # no payload's script ran (it sets the title)
    assert "<title>cellbench report</title>" in result.stdout

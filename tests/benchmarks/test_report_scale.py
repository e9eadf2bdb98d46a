"""How `bench report` scales with the number of records: N synthetic records (copies of a
committed reference record, each a run of its own), the whole report written, seconds
printed at 100, 1,000 and 10,000 records. Run with

    pytest tests/benchmarks/test_report_scale.py -m benchmark -s

or, for other sizes, ``python tests/benchmarks/test_report_scale.py 100 1000 10000``.
The figures are in docs/performance.md ("bench report at scale").

The records are *small* (two epochs, two gradient probes: a quick check), spread as a results
tree of many users would be: 10 sets, each a matrix of 3 cells x 2 backends over many seeds,
one in ten records a sweep point (a number: ``echo_step``, or a string: ``optimizer``). The
groups, and so the plots, stay few while the records grow: what is measured is the cost per
record, not the cost of drawing more pictures.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "results" / "reference" / "echo-seeds" / "20261130T071547-echo-numpy-cell-gru-9d48ff28.json"
SIZES = (100, 1_000, 10_000)
LIMIT_S = 60.0  # at 10,000 records, on one core
SETS = 10

pytestmark = pytest.mark.benchmark


def small_record() -> dict[str, Any]:
    """The reference record cut to a quick check: two epochs, two gradient probes, a short sample."""
    record = json.loads(SOURCE.read_text())
    record["epochs"] = record["epochs"][:2]
    record["gradient_norms"] = [record["gradient_norms"][0], record["gradient_norms"][-1]]
    record["config"]["epochs"] = 2
    for key in ("inputs", "targets", "predictions"):
        record["sample"][key] = [row[:20] for row in record["sample"][key][:2]]
    return record


def write_records(root: Path, n: int, strings: bool = True) -> None:
    """``n`` records under ``root``: record ``i`` is seed ``i // 6`` of one of 3 cells x 2
    backends in set ``s<i % SETS>``; every tenth a point of a sweep instead (``strings``
    False: of numbers only, which a report before string sweeps could read)."""
    base = small_record()
    cells, backends = ("rnn", "lstm", "gru"), (("numpy", "cell"), ("torch", "fused"))
    for i in range(n):
        record = copy.deepcopy(base)
        cell, (backend, impl) = cells[i % 3], backends[(i // 3) % 2]
        record["run_id"] = f"r{i:06d}-{backend}-{cell}"
        record["started_at"] = f"2026-12-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+00:00"
        record["config"].update(cell=cell, backend=backend, impl=impl, seed=i // 6)
        record["backend"].update(name=backend, impl=impl)
        accuracy = 0.5 + 0.5 * ((i * 7919) % 1000) / 1000  # seeds differ, as real ones do
        record["final"]["test"]["accuracy"] = accuracy
        if i % 10 == 9:
            if i % 20 == 9 or not strings:
                record["tag"] = "sweep:echo_step"
                record["config"]["echo_step"] = (1, 2, 3, 5)[(i // 20) % 4]
            else:
                record["tag"] = "sweep:optimizer"
                record["config"]["optimizer"] = ("sgd", "adagrad")[(i // 20) % 2]
        directory = root / f"s{i % SETS}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{record['run_id']}.json").write_text(json.dumps(record))


def report_seconds(root: Path, out: Path) -> float:
    from bench.report.build import write_report

    start = time.perf_counter()
    write_report(root, out)
    return time.perf_counter() - start


def measure(sizes: tuple[int, ...], work: Path) -> dict[int, float]:
    figures = {}
    for n in sizes:
        root = work / f"n{n}" / "results"
        write_records(root, n)
        figures[n] = report_seconds(root, work / f"n{n}" / "out")
        print(f"{n:>7,} records: {figures[n]:7.1f} s ({1000 * figures[n] / n:.1f} ms per record)", flush=True)
    return figures


def test_report_time_grows_linearly_and_10000_records_take_under_a_minute(tmp_path):
    figures = measure(SIZES, tmp_path)
    assert figures[10_000] < LIMIT_S, figures
    # no worse than linear: the cost of a record (past the start-up and the plots, which
    # do not grow with the records) from 1,000 to 10,000 at most 3 times that from 100 to
    # 1,000 (a quadratic step would make it 10 times); 0.5 s: the smaller difference is
    # little more than the noise of a shared machine
    per_record_small = max(figures[1_000] - figures[100], 0.5) / 900
    per_record_large = (figures[10_000] - figures[1_000]) / 9_000
    assert per_record_large < 3 * per_record_small, figures


if __name__ == "__main__":
    import tempfile

    sizes = tuple(int(arg) for arg in sys.argv[1:]) or SIZES
    with tempfile.TemporaryDirectory() as directory:
        measure(sizes, Path(directory))

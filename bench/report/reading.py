"""Reading a results tree: every JSON file under a directory, each checked as its kind of
document (:mod:`bench.documents`), gathered for the report. What could not be read is
listed with its reason, never silently dropped.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

from bench.documents import ROOFLINE_FILE, Unreadable, os_reason, read_document
from bench.errors import BenchError
from bench.report.declared import Declared

# A results tree's checkpoints (.npz) hold no JSON the report reads.
SKIPPED_DIRECTORIES = ("checkpoints",)


@dataclasses.dataclass
class Results:
    """What a results tree holds: run records (each with ``_path`` and ``_set``, its
    directory relative to the root), speed tables by relative path, roofline files, and
    ``(path, reason)`` for everything that could not be read."""

    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    speeds: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    rooflines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def read_results(root: str | os.PathLike) -> Results:
    """Every ``*.json`` under ``root``, read once. Dot-files, ``checkpoints/`` and linked
    directories are not entered (a link could loop or lead anywhere; it is listed instead)."""
    root = Path(root)
    if not root.is_dir():
        raise BenchError(f"{root} is not a directory of results" if root.exists()
                         else f"no results directory {root}; run `python -m bench run` first or name one")
    results = Results()
    for path, problem in _json_files(root):
        if problem:
            results.bad.append((str(path), problem))
            continue
        try:
            kind, document = read_document(path)
        except Unreadable as exc:
            results.bad.append((str(path), str(exc)))
            continue
        relative = path.relative_to(root)
        if kind == "record":
            document["_path"] = str(path)
            document["_set"] = relative.parent.as_posix()
            results.records.append(document)
        elif kind == "speed":
            results.speeds[relative.as_posix()] = document
        else:
            results.rooflines.append(document)
    return results


def _json_files(root: Path) -> Iterator[tuple[Path, str | None]]:
    """``(path, None)`` for each candidate file, ``(path, reason)`` for what is skipped,
    in sorted order, without recursion (a deep tree cannot exhaust the stack)."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            yield directory, f"directory not readable ({os_reason(exc)})"
            continue
        subdirectories = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = directory / entry.name
            if _is_real_directory(entry):
                if entry.name not in SKIPPED_DIRECTORIES:
                    subdirectories.append(path)
            elif entry.name.endswith(".json"):
                yield path, None
            elif _is_linked_directory(entry):
                yield path, "a link to a directory; not followed"
        stack.extend(reversed(subdirectories))


def _is_real_directory(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_linked_directory(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:
        return False


def find_roofline(records_dir: str | Path, rooflines: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The roofline measurements a report of ``records_dir`` takes its GEMM peaks from
    (``rooflines``, those read under ``records_dir``, or the file from above when none was
    there), and where they came from as one plain-text sentence, or why "% of peak" is absent.

    The roofline files under ``records_dir`` come first; without one there, the
    ``roofline.json`` in the directory above is taken: ``bench roofline`` writes
    ``results/roofline.json`` and ``bench run`` ``results/runs/``, so the two meet by default
    (and so do ``--results-dir results/cluster`` and a roofline of ``results``).
    """
    records_dir = Path(records_dir)
    matched = "; a run is matched by its CPU model and thread count"
    if rooflines:
        return rooflines, (f"% of peak: against the float32 GEMM peaks recorded under {records_dir} (bench roofline), "
                f"{_measured(rooflines)}{matched}.")
    above = Path(os.path.normpath(records_dir / os.pardir)) / ROOFLINE_FILE
    if not os.path.lexists(above):
        return rooflines, (f"No % of peak: no {ROOFLINE_FILE} under {records_dir} or in {above.parent}; "
                f"python -m bench roofline --results-dir {records_dir} on the runs' machine adds one.")
    try:
        data = read_document(above, "roofline")[1]
    except Unreadable as exc:
        return rooflines, f"No % of peak: {above} is not a roofline file ({exc})."
    return [data], f"% of peak: against the float32 GEMM peaks in {above} (bench roofline), {_measured([data])}{matched}."


def _measured(rooflines: list[dict[str, Any]]) -> str:
    """``measured on X at 1 thread, Y at 2 threads`` (each CPU and thread count once)."""
    seen = dict.fromkeys((m["cpu"], m["threads"]) for data in rooflines for m in data["measurements"])
    if not seen:
        return "which hold no measurement yet"
    return "measured on " + ", ".join(f"{cpu} at {threads} thread{'s' if threads != 1 else ''}" for cpu, threads in seen)


def declared(record: dict[str, Any]) -> Declared:
    """What the record declares of its task, cell and preset (schema 5), or for an older
    record what :mod:`bench.report.legacy` computes from what is installed; computed once,
    kept on the record as ``_declared``."""
    found = record.get("_declared")
    if found is None:
        if isinstance(record.get("declared"), dict):
            found = Declared.from_block(record["declared"])
        else:
            from bench.report.legacy import legacy_declared

            found = legacy_declared(record)
        record["_declared"] = found
    return found

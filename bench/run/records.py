"""The run record: one JSON file per run, its schema version, environment capture,
atomic writes and loading.

A record is rewritten (atomically: temporary file + rename) after every epoch, so an
interrupted or killed run still leaves every completed epoch on disk. The schema is
documented in ``results/README.md``; bump ``bench.documents.SCHEMA_VERSION`` when it changes.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.declarations import run_declarations
from bench.documents import SCHEMA_VERSION
from bench.errors import BenchError
from bench.storage import atomic_write_bytes, fault_reason, prepare_writable_dir

STATUSES = ("running", "completed", "interrupted", "diverged", "aborted", "failed")
REPO_ROOT = Path(__file__).resolve().parents[2]  # bench/run/records.py -> the checkout
# Beside, never above, the committed reference runs (results/reference/): a report of the
# default directory shows the user's own runs only.
DEFAULT_RESULTS_DIR = "results/runs"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id(task: str, backend: str, impl: str, cell: str) -> str:
    """Sortable by time and unique across concurrent processes (random suffix)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{task}-{backend}-{impl}-{cell}-{uuid.uuid4().hex[:8]}"


def prepare_results_dir(path: str | os.PathLike) -> Path:
    """Create the directory (with the user's default permissions), prove it is writable and
    clear a killed run's temporary files from it."""
    return prepare_writable_dir(path, "--results-dir")


# A list of numbers as json.dumps(indent=1) writes it: one number per line. Only the
# indented layout puts raw newlines between its items (a JSON string never holds one), so
# nothing inside a string can match.
_NUMBER = r"-?(?:\d[\d.eE+-]*|Infinity|NaN)"
_NUMBER_LIST = re.compile(rf"\[\n\s*{_NUMBER}(?:,\n\s*{_NUMBER})*\n\s*\]")


def record_bytes(record: dict[str, Any]) -> bytes:
    """The record as indented JSON, each list of numbers on one line: a gradient curve is
    hundreds of numbers, and a line each made the copy and adding records 40% larger."""
    text = json.dumps(record, indent=1, default=_jsonable)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(n.strip() for n in m.group(0)[1:-1].split(",")) + "]", text)
    return (text + "\n").encode()


def write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_bytes(path, record_bytes(record))


# How a run's last line says that its record is not where it belongs: `bench matrix` and
# `sweep` read the run's status from it, since such a run exits 4 whatever it ended as.
NOT_WHERE_ASKED = "; its final record could not be written to "
_MISPLACED = re.compile(r"run \S+ (?P<status>completed|interrupted|diverged|aborted)\b.*" + re.escape(NOT_WHERE_ASKED))


def status_of_misplaced(line: str) -> str | None:
    """The status a run's last line says it ended with, when that line says its record is
    not where it belongs (:data:`NOT_WHERE_ASKED`); None for any other line."""
    match = _MISPLACED.match(line)
    return match["status"] if match else None


def rescue_dir() -> Path:
    """Where a record (or a checkpoint) that could not be written where it was asked for is
    written instead: the per-user cache, like the corpus's default (``$XDG_CACHE_HOME``, else
    ``~/.cache``, then ``cellbench/unwritten``), which outlives a reboot where /tmp may not."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cellbench" / "unwritten"


def write_elsewhere(name: str, data: bytes) -> tuple[Path | None, str]:
    """Write ``data`` as ``name`` where it survives a directory that refused it: the rescue
    directory, else a new private temporary directory. Returns where it went and "", or None
    and why neither could hold it (one clause). Nothing that cost a run its time is dropped
    without the user being told where it is, or that it is nowhere."""
    reasons = []
    for where in ("rescue", "temporary"):
        try:
            if where == "rescue":
                directory = rescue_dir()
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            else:
                directory = Path(tempfile.mkdtemp(prefix="cellbench-unwritten-"))
            atomic_write_bytes(directory / name, data)
            return directory / name, ""
        except (OSError, BenchError) as exc:
            shown = rescue_dir() if where == "rescue" else Path(tempfile.gettempdir())
            reasons.append(f"{shown}: {_why(exc)}")
    return None, "; ".join(reasons)


def _why(exc: BaseException) -> str:
    return (exc.strerror or fault_reason(exc)) if isinstance(exc, OSError) else str(exc)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def redact_home(args: list[str]) -> list[str]:
    """The command line with the user's home directory shown as ``~``: records get shared,
    and a home path says who ran them (the data directory is recorded on its own, as given)."""
    home = str(Path.home())
    return [arg.replace(home, "~") if home not in ("/", "") else arg for arg in args]


def git_commit() -> dict[str, Any]:
    """The commit the code ran from and whether the tree had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(library_versions: dict[str, str], threads: int) -> dict[str, Any]:
    """Everything about the machine and software that can move the numbers."""
    import numpy

    from bench.run import memory

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "libraries": {"numpy": numpy.__version__, **library_versions},
        "git": git_commit(),
        "allocator": memory.describe(),
    }


def new_record(
    run_id: str, config: Any, place: Any, argv: list[str], resumed: Any, spec: Any, task: Any, backend: Any,
    model: Any, env: dict[str, Any], plan: Any = None,
) -> dict[str, Any]:
    """A run's record as it starts (status ``running``): everything that can move its numbers.
    A resumed run keeps its first start, command, environment and epochs, and adds a
    ``resumed`` entry with this process's command and environment."""
    meta = resumed.meta if resumed else {}
    command = redact_home(argv)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "started_at": meta.get("started_at") or utc_now(),
        "command": meta.get("command") or command,
        "tag": place.tag,
        "config": config.as_dict(),
        "seed": config.seed,
        "model": spec.describe(),
        "task": task.describe(),
        "backend": {"name": backend.name, "impl": config.impl, **model.describe()},
        "environment": meta.get("environment") or env,
        "data_dir": place.data_dir,
        "epochs": meta.get("history", []),
        "gradient_norms": meta.get("gradient_norms", []),
        "final": None,
        "failure": None,
        "checkpoint": None,
        # what the report needs of the task, cell and preset, so that it reads the record alone
        "declared": run_declarations(config, place.preset, task.reports_perplexity,
                                     **(plan.declarations_args() if plan is not None else {})),
    }
    if place.preset:
        record["preset"] = place.preset
    if resumed:
        record["resumed"] = meta["resumed"] + [
            {"at": utc_now(), "from_epoch": len(record["epochs"]), "command": command, "environment": env}]
    return record

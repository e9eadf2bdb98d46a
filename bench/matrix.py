"""Many runs under identical settings, each in its own process, so frameworks and thread
pools never interfere and one failing combination does not stop the others."""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Sequence

from bench.errors import BenchError
from bench.registry import get_backend, make_cell

STATUS_BY_EXIT = {0: "completed", 2: "bad input", 3: "diverged", 130: "interrupted"}


@dataclass
class Outcome:
    label: str
    status: str
    seconds: float
    detail: str = ""


def combinations(backends: Sequence[str], cells: Sequence[str], impls: Sequence[str] | None) -> list[tuple[str, str, str]]:
    """(backend, impl, cell) for every impl each backend has (or the ones asked for)."""
    combos = []
    for name in backends:
        backend = get_backend(name)
        wanted = [i for i in (impls or backend.impls) if i in backend.impls]
        for impl in wanted:
            for cell in cells:
                combos.append((name, impl, cell))
    if not combos:
        raise BenchError("no combination to run: check --backends, --impls and --cells")
    return combos


def run_one(label: str, argv: list[str], quiet: bool = False) -> Outcome:
    command = [sys.executable, "-m", "bench", "run", *argv]
    print(f"== {label}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if not quiet:
        for line in lines:
            if not line.startswith("run "):
                print(f"   {line}", file=sys.stderr)
    status = STATUS_BY_EXIT.get(done.returncode, f"failed (exit {done.returncode})")
    detail = lines[-1] if lines and done.returncode else ""
    return Outcome(label, status, seconds, detail)


def run_matrix(backends: Sequence[str], cells: Sequence[str], impls: Sequence[str] | None, run_args: list[str]) -> list[Outcome]:
    outcomes = []
    for backend, impl, cell in combinations(backends, cells, impls):
        label = f"{backend}/{impl} {cell}"
        reason = get_backend(backend).unavailable_reason()
        if reason:
            outcomes.append(Outcome(label, "skipped", 0.0, reason))
            continue
        if why := get_backend(backend).unsupported(make_cell(cell, activation=_flag_value(run_args, "--activation") or "tanh"), impl):
            outcomes.append(Outcome(label, "skipped", 0.0, why))
            continue
        outcomes.append(run_one(label, matrix_argv(backend, impl, cell, run_args)))
    return outcomes


def run_sweep(param: str, values: Sequence[str], cells: Sequence[str], backend: str, impl: str | None,
              run_args: list[str]) -> list[Outcome]:
    outcomes = []
    for cell in cells:
        for value in values:
            label = f"{backend} {cell} {param}={value}"
            outcomes.append(run_one(label, sweep_argv(param, value, cell, backend, impl, run_args)))
    return outcomes


def matrix_argv(backend: str, impl: str, cell: str, run_args: list[str]) -> list[str]:
    """The ``bench run`` arguments of one matrix combination (the preflight parses the same)."""
    return ["--backend", backend, "--impl", impl, "--cell", cell, "--tag", "matrix", *run_args]


def sweep_argv(param: str, value: str, cell: str, backend: str, impl: str | None, run_args: list[str]) -> list[str]:
    """The ``bench run`` arguments of one sweep point (the preflight parses the same); the
    value joined to its flag, so argparse reads ``-1e-3`` as a value, not as a flag."""
    argv = ["--backend", backend, "--cell", cell, f"--{param.replace('_', '-')}={value}", "--tag", f"sweep:{param}", *run_args]
    return argv + ["--impl", impl] if impl else argv


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def print_outcomes(outcomes: list[Outcome]) -> int:
    """A summary table on stdout; the exit status is 1 if any combination did not complete."""
    width = max(len(o.label) for o in outcomes)
    print(f"{'combination':{width}}  {'status':12} {'seconds':>8}  detail")
    for o in outcomes:
        print(f"{o.label:{width}}  {o.status:12} {o.seconds:8.1f}  {o.detail}")
    return 0 if all(o.status in ("completed", "skipped") for o in outcomes) else 1

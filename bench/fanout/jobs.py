"""Many runs under identical settings, each in its own process, so frameworks and thread
pools never interfere and one failing combination does not stop the others."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable, Sequence

from bench import interrupts
from bench.errors import BenchError
from bench.exits import EXIT_INTERRUPTED, EXIT_OK, FAN_OUT_PRECEDENCE, exit_of_status, fan_out_exit, run_status
from bench.run.records import status_of_misplaced
from bench.registry import get_backend, make_cell
from backends.base import SCAN_IMPL
from cells.base import CellSpec

STOP_GRACE_SECONDS = 120.0  # for a child to save its record after Ctrl-C; then it is killed
POLL_SECONDS = 0.1  # how often the wait for a child looks for a stop asked of the parent


@dataclass
class Outcome:
    label: str
    status: str
    seconds: float
    detail: str = ""
    result: str = ""  # the run's final test metric, as its "final:" line says it


# A label and the `bench run` arguments, or an outcome decided without running (a skip).
Job = tuple[str, "list[str] | Outcome"]
# Runs the jobs, returning one outcome each, in their order: `run_all` here (local
# subprocesses), `bench.fanout.executors.ray_cluster.RayExecutor` (tasks on a Ray cluster).
Executor = Callable[[Sequence[Job]], "list[Outcome]"]


def final_result(lines: Sequence[str]) -> str:
    """The test split's metric from a run's ``final: valid ..., test ...`` line (empty when
    the run printed none: it stopped early, or ran with --quiet)."""
    final = next((line for line in reversed(lines) if line.startswith("final: ")), "")
    return next((part.strip() for part in final[len("final: "):].split(", ") if part.startswith("test ")), "")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the parent while a child ran; ``outcome`` is that child's."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.label)
        self.outcome = outcome


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


def offered(cell: CellSpec, impl: str) -> bool:
    """Whether ``impl`` is one for this kind of cell at all: a scan is the algorithm of cells
    whose step is linear in the state (``CellSpec.linear_recurrence``), so a matrix or a speed
    table that did not name its impls leaves a scan of any other cell out instead of listing
    it as skipped. Every other impl is offered to every cell (a fused layer a framework
    lacks is a finding, listed with its reason)."""
    return impl != SCAN_IMPL or cell.is_linear


def left_out_line(labels: Sequence[str]) -> str:
    return (f"left out (their impl is not one for their cell): {', '.join(labels)}; "
            "`python -m bench list` shows each cell's impls, --impls asks for one anyway")


def run_one(label: str, argv: list[str], quiet: bool = False) -> Outcome:
    """``bench run`` in its own process, its output relayed as it comes. On Ctrl-C or
    SIGTERM the child is asked to stop (SIGINT: it saves its record as interrupted) and
    waited for; then :class:`Interrupted` carries its outcome."""
    command = [sys.executable, "-m", "bench", "run", *argv]
    print(f"== {label}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    lines: list[str] = []
    relay = threading.Thread(target=_relay, args=(child.stderr, lines, quiet), daemon=True)
    relay.start()
    try:
        _wait(child)
    except KeyboardInterrupt:
        _stop(child)
        relay.join(timeout=5)
        raise Interrupted(_outcome(label, child.returncode, lines, start)) from None
    relay.join()
    return _outcome(label, child.returncode, lines, start)


def _wait(child: subprocess.Popen) -> None:
    """Until the child ends, or a signal reaches this process (the handler only notes it, and
    a plain ``wait()`` would go on waiting: ``KeyboardInterrupt`` comes from the check)."""
    while True:
        interrupts.check()
        try:
            child.wait(timeout=POLL_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass


def _relay(stream: IO[str], lines: list[str], quiet: bool) -> None:
    for line in stream:
        line = line.rstrip("\n")
        if line.strip():
            lines.append(line)
            if not quiet:
                print(f"   {line}", file=sys.stderr, flush=True)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)  # a second one, if the terminal sent it too, is only noted
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _outcome(label: str, returncode: int | None, lines: list[str], start: float) -> Outcome:
    code = -1 if returncode is None else returncode
    detail = lines[-1] if lines and code else ""
    if code < 0:  # its record was left `running`, as a killed run leaves it
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        detail = f"its process was killed by {name}"
    # a run whose record could not be written where asked exits 4 whatever it ended as; its line says what
    status = (status_of_misplaced(lines[-1]) if lines and code > 0 else None) or run_status(code)
    return Outcome(label, status, time.perf_counter() - start, detail, final_result(lines))


def run_all(jobs: Sequence[Job]) -> list[Outcome]:
    """The local executor: each job (a label and the ``bench run`` arguments, or an outcome decided without
    running, such as a skip) in turn. Ctrl-C stops at once: the child in flight records
    itself as interrupted, and the jobs not reached are listed as not run."""
    outcomes: list[Outcome] = []
    try:
        for label, job in jobs:
            interrupts.check()  # between runs: the next one does not start
            outcomes.append(job if isinstance(job, Outcome) else run_one(label, job))
    except Interrupted as stop:
        outcomes.append(stop.outcome)
    except KeyboardInterrupt:
        pass
    if len(outcomes) < len(jobs):
        outcomes += [Outcome(label, "not run", 0.0, "interrupted before it started") for label, _ in jobs[len(outcomes):]]
    return outcomes


def run_matrix(backends: Sequence[str], cells: Sequence[str], impls: Sequence[str] | None, run_args: list[str],
               seeds: Sequence[int] | None = None, executor: Executor | None = None) -> list[Outcome]:
    """Every combination x seed, each in its own ``bench run``. With no ``impls`` asked for, a
    combination whose impl is not one for its kind of cell (:func:`offered`) is left out,
    and said so in one line; any other that cannot run (a fused layer the framework lacks,
    a backend that cannot run here, an impl asked for) is listed as skipped with its reason."""
    jobs: list[Job] = []
    left_out: list[str] = []
    for backend, impl, cell in combinations(backends, cells, impls):
        label = f"{backend}/{impl} {cell}"
        reason = get_backend(backend).unavailable_reason()
        if not reason:
            as_run = _cell_as_run(cell, run_args)
            if impls is None and not offered(as_run, impl):
                left_out.append(label)
                continue
            reason = get_backend(backend).unsupported(as_run, impl)
        for seed_label, seed_args in _seeded(label, seeds):
            if reason:
                jobs.append((seed_label, Outcome(seed_label, "skipped", 0.0, reason)))
            else:
                jobs.append((seed_label, matrix_argv(backend, impl, cell, run_args) + seed_args))
    if not jobs:
        raise BenchError("no combination to run: no impl of these backends is one for these cells; "
                         "`python -m bench list` shows each cell's impls")
    outcomes = (executor or run_all)(jobs)
    if left_out:  # after the summary's rows: a note, never in the way of an error's one line
        print(left_out_line(left_out), file=sys.stderr, flush=True)
    return outcomes


def run_sweep(param: str, values: Sequence[str], cells: Sequence[str], backend: str, impl: str | None,
              run_args: list[str], seeds: Sequence[int] | None = None, executor: Executor | None = None) -> list[Outcome]:
    jobs: list[Job] = []
    for cell in cells:
        for value in values:
            for label, seed_args in _seeded(f"{backend} {cell} {param}={value}", seeds):
                jobs.append((label, sweep_argv(param, value, cell, backend, impl, run_args) + seed_args))
    return (executor or run_all)(jobs)


def _seeded(label: str, seeds: Sequence[int] | None) -> list[tuple[str, list[str]]]:
    """One job per seed (``--seeds``/``--repeats``), the seed in its label and arguments;
    without seeds the one job the flags passed on describe."""
    if seeds is None:
        return [(label, [])]
    return [(f"{label} seed={seed}", ["--seed", str(seed)]) for seed in seeds]


def matrix_argv(backend: str, impl: str, cell: str, run_args: list[str]) -> list[str]:
    """The ``bench run`` arguments of one matrix combination (the preflight parses the same)."""
    return ["--backend", backend, "--impl", impl, "--cell", cell, "--tag", "matrix", *run_args]


def sweep_argv(param: str, value: str, cell: str, backend: str, impl: str | None, run_args: list[str]) -> list[str]:
    """The ``bench run`` arguments of one sweep point (the preflight parses the same); the
    value joined to its flag, so argparse reads ``-1e-3`` as a value, not as a flag."""
    argv = ["--backend", backend, "--cell", cell, f"--{param.replace('_', '-')}={value}", "--tag", f"sweep:{param}", *run_args]
    return argv + ["--impl", impl] if impl else argv


def _cell_as_run(cell: str, run_args: list[str]) -> CellSpec:
    """The cell as its run will build it: its options as the flags passed on and the
    preset give them (an RNN with --activation sigmoid has no torch fused layer)."""
    from bench.config import config_from_args
    from bench.run_flags import run_parser

    args, _ = run_parser().parse_known_args([*run_args, "--cell", cell])
    return make_cell(cell, **dict(config_from_args(args).cell_options))


def print_outcomes(outcomes: list[Outcome], stopped_by: str | None = None) -> int:
    """A summary table on stdout, and a last line naming the runs behind the exit status it
    returns: the gravest of their statuses (``bench.exits.fan_out_exit``); 130 when a stop
    reached the command (``stopped_by``, the signal's name)."""
    width = max([len("combination"), *(len(o.label) for o in outcomes)])
    result = max([len("result"), *(len(o.result) for o in outcomes)])
    print(f"{'combination':{width}}  {'status':12} {'seconds':>8}  {'result':{result}}  detail".rstrip())
    for o in outcomes:
        print(f"{o.label:{width}}  {o.status:12} {o.seconds:8.1f}  {o.result:{result}}  {o.detail}".rstrip())
    code = fan_out_exit((o.status for o in outcomes), stopped=stopped_by is not None)
    print(summary_line(outcomes, code, stopped_by))
    return code


def summary_line(outcomes: Sequence[Outcome], code: int, stopped_by: str | None = None) -> str:
    """``exit 4: lost: A; also diverged: B, C; 1 of 4 completed``: the runs behind the exit
    status first, then the others that did not complete, gravest first."""
    labels: dict[str, list[str]] = {}  # status -> its runs, in the order they ran
    for o in outcomes:
        if exit_of_status(o.status) != EXIT_OK:
            labels.setdefault(o.status, []).append(o.label)

    def said(status: str) -> str:
        runs = labels[status]
        return f"not run: {len(runs)}" if status == "not run" else f"{status}: {', '.join(runs)}"

    causes = {c: [said(s) for s in labels if exit_of_status(s) == c] for c in FAN_OUT_PRECEDENCE if c}
    if stopped_by is not None:
        causes[EXIT_INTERRUPTED].insert(0, f"stopped by {stopped_by}")
    groups = [group for group in causes.values() if group]
    parts = ["; ".join(groups[0])] if groups else []
    if len(groups) > 1:
        parts.append("also " + "; ".join(part for g in groups[1:] for part in g))
    completed = sum(o.status == "completed" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    parts.append(f"{completed} of {len(outcomes)} completed" + (f", {skipped} skipped" if skipped else ""))
    return f"exit {code}: " + "; ".join(parts)

"""The exit status of every command, and what each says of a run (its record's status).

``bench run`` exits with its run's status. ``bench matrix`` and ``bench sweep`` exit with
the gravest of their runs' statuses, by :data:`FAN_OUT_PRECEDENCE` (``fan_out_exit``), the
same for every executor; ``results/README.md`` has the table.
"""
from __future__ import annotations

from typing import Iterable

EXIT_OK = 0  # completed
EXIT_FAILED = 1  # a bug: the traceback is printed
EXIT_USER_ERROR = 2  # bad input, found before anything was written
EXIT_DIVERGED = 3
EXIT_ABORTED = 4  # the machine stopped it: disk full, I/O error, out of memory, a killed process
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP

# How `bench matrix` and `bench sweep` name a child run's exit status.
STATUS_BY_EXIT = {EXIT_OK: "completed", EXIT_USER_ERROR: "bad input", EXIT_DIVERGED: "diverged",
                  EXIT_ABORTED: "aborted", EXIT_INTERRUPTED: "interrupted"}

# A run's status in a matrix or sweep, as the exit status it calls for; any other status
# ("failed (exit N)": a bug in the run, or an exit status no run of ours gives) is a bug.
# `lost`: its process (or Ray worker) was killed, as the machine does when memory runs out;
# `not run`: a stop came before it started; `skipped`: the backend cannot run it, said ahead.
EXIT_BY_STATUS = {"completed": EXIT_OK, "skipped": EXIT_OK, "diverged": EXIT_DIVERGED, "aborted": EXIT_ABORTED,
                  "lost": EXIT_ABORTED, "bad input": EXIT_USER_ERROR, "interrupted": EXIT_INTERRUPTED,
                  "not run": EXIT_INTERRUPTED}

# Gravest first. A stop outranks all: the user chose it, and the runs it cut are resumable.
# Then what needs a fix before a rerun can help: a bug, then bad input; then what a rerun
# may mend (the machine stopped a run); last a divergence, a result about the settings,
# recorded like any other.
FAN_OUT_PRECEDENCE = (EXIT_INTERRUPTED, EXIT_FAILED, EXIT_USER_ERROR, EXIT_ABORTED, EXIT_DIVERGED, EXIT_OK)


def run_status(code: int) -> str:
    """A child ``bench run``'s status from its exit status; a negative one (killed by a
    signal, which a run never sends itself: the OOM killer, a ``kill``) is ``lost``."""
    if code < 0:
        return "lost"
    return STATUS_BY_EXIT.get(code, f"failed (exit {code})")


def exit_of_status(status: str) -> int:
    return EXIT_BY_STATUS.get(status, EXIT_FAILED)


def fan_out_exit(statuses: Iterable[str], stopped: bool = False) -> int:
    """The exit status of ``bench matrix`` or ``bench sweep``: the gravest its runs' statuses
    call for (:data:`FAN_OUT_PRECEDENCE`); 130 whenever a stop reached the command
    (``stopped``), whatever the runs say, as a run killed past its grace says ``lost``."""
    codes = {exit_of_status(s) for s in statuses} | ({EXIT_INTERRUPTED} if stopped else set())
    return next((code for code in FAN_OUT_PRECEDENCE if code in codes), EXIT_OK)

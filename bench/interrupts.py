"""Ctrl-C, SIGTERM and SIGHUP, handled the same way at any moment of a command.

The handler only notes the first signal; it never raises. A ``KeyboardInterrupt`` raised
by a handler lands wherever the main thread happens to be, and Python drops the exception
of some of those places (importlib's module locks, a garbage-collector callback such as
JAX's): the stop was lost while every later signal was taken for one already under way,
and the run trained on to ``completed``. So the stop is taken by :func:`check`, called by
our own code at every phase boundary and every window (the runner, matrix and sweep
between runs and in their waits, ``speed``, ``roofline``, the download): there the
``KeyboardInterrupt`` is raised in a frame of ours and reaches the command's handler,
which saves what was done and exits 130. A framework call under way when the signal
comes (an import, a JAX compile, a TF trace) runs to its end first: that call's length
is the delay before the stop. Nothing raises from the handler as a fallback: every wait of
ours polls (a child process, Ray's tasks, a download in blocks), so no phase lacks a check
but a framework's own call, where a raise is what lost the stop.

Every later signal is only noted: the process is already on its way out, and a second
Ctrl-C must not cut the write of the record that says so (``kill -9`` still ends it).
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Any, Iterator

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
ALREADY_STOPPING = b"already stopping: saving what was done (kill -9 abandons it)\n"

# signal: the first signal's name, once one came; taken: its stop has been raised by
# check() (or the command is finishing), so it is never raised twice; deferring: the depth
# of deferred() blocks, inside which check() waits.
_state: dict[str, Any] = {}


def _reset() -> None:
    _state.update(signal=None, taken=False, noted=False, deferring=0)


_reset()


def _handler(signum: int, frame: Any) -> None:
    """Note the signal; never raise (see the module's docstring)."""
    if _state["signal"] is None and not _state["taken"]:
        _state["signal"] = signal.Signals(signum).name
        return
    if not _state["noted"]:
        _state["noted"] = True
        # os.write, not print: a handler can run in the middle of a print to stderr
        os.write(2, ALREADY_STOPPING)


def install() -> dict[int, Any]:
    """Handle the signals from now on; returns the handlers they replace. Installed again
    over our own (``python -m bench`` installs them before ``cli.main`` does), the state is
    kept: a signal that came in between is still to be taken."""
    previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    if not _ours(previous):
        _reset()
    return previous


def _ours(handlers: dict[int, Any]) -> bool:
    return all(handler is _handler for handler in handlers.values())


@contextmanager
def handled() -> Iterator[None]:
    """Our handlers for the duration (a command run in-process, as tests do, gets the
    previous handlers back afterwards, and a signal it left untaken is forgotten: no later
    check, outside our handlers, raises it)."""
    previous = install()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not _ours(previous):
            _reset()


def check() -> None:
    """Raise ``KeyboardInterrupt`` (with the signal's name) if a signal came and its stop was
    not yet raised; else nothing. Called where our code may stop: between phases, windows,
    runs and polls of a wait."""
    if _state["signal"] is not None and not _state["taken"] and not _state["deferring"]:
        _state["taken"] = True
        raise KeyboardInterrupt(_state["signal"])


@contextmanager
def deferred() -> Iterator[None]:
    """A signal during the block (an epoch's record and checkpoint) takes effect after it, at
    the first :func:`check` that follows, so a completed epoch is always resumable."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1


def finishing() -> None:
    """From here on the process only saves and exits: a signal is noted, never raised."""
    _state["taken"] = True


def stop_asked() -> str | None:
    """The first signal's name, if one came (raised or not yet)."""
    return _state["signal"]


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt that caused ``exc``, if any. Ours come from :func:`check`, in our own
    frames; but where our handlers are not installed (``bench.run.runner.run`` called from a
    script or notebook) Python's own SIGINT handler raises one wherever the process is, and
    some libraries catch it there (TensorFlow's, while it traces a function) and raise an
    error of their own from it. Such an error is the interrupt, not a bug."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None

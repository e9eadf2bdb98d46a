"""Ctrl-C, SIGTERM and SIGHUP, handled the same way at any moment of a command.

The first signal stops the work: it raises ``KeyboardInterrupt`` wherever the process is
(imports, model build, training, evaluation), and the command saves what was done and
exits 130. Every later signal is only noted: the process is already on its way out, and a
second Ctrl-C must not cut the write of the record that says so (``kill -9`` still ends it).
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Any, Iterator

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_state: dict[str, Any] = {"stopping": False, "noted": False, "deferring": False, "pending": None}


def _handler(signum: int, frame: Any) -> None:
    if _state["deferring"] and not _state["stopping"]:
        _state["pending"] = signal.Signals(signum).name
        return
    if _state["stopping"]:
        if not _state["noted"]:
            _state["noted"] = True
            # os.write, not print: a handler can run in the middle of a print to stderr
            os.write(2, b"already stopping: saving what was done (kill -9 abandons it)\n")
        return
    _state["stopping"] = True
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install() -> dict[int, Any]:
    """Handle the signals from now on; returns the handlers they replace."""
    _state.update(stopping=False, noted=False, deferring=False, pending=None)
    return {sig: signal.signal(sig, _handler) for sig in SIGNALS}


@contextmanager
def handled() -> Iterator[None]:
    """Our handlers for the duration (a command run in-process, as tests do, gets the
    previous handlers back afterwards)."""
    previous = install()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """A signal during the block (an epoch's record and checkpoint) takes effect after it, so
    a completed epoch is always resumable."""
    _state["deferring"] = True
    try:
        yield
    finally:
        _state["deferring"] = False
    pending, _state["pending"] = _state["pending"], None
    if pending and not _state["stopping"]:
        _state["stopping"] = True
        raise KeyboardInterrupt(pending)


def finishing() -> None:
    """From here on the process only saves and exits: signals are noted, not raised."""
    _state["stopping"] = True


def stopping() -> bool:
    return _state["stopping"]


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt that caused ``exc``, if any: some libraries catch a KeyboardInterrupt
    raised in their code (TensorFlow's, while it traces a function) and raise an error of
    their own from it. Such an error is the interrupt, not a bug."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None

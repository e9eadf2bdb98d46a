"""Where the runs of `bench matrix` and `bench sweep` go. The job list (labels, each run's
``bench run`` arguments, skips) is built once in :mod:`bench.fanout.jobs`; an executor only runs
it and hands back one :class:`~bench.fanout.jobs.Outcome` per job, in order, and never changes
what a run computes.

Executors are plugins, as backends, cells and tasks are: an entry point of group
``bench.executors`` (the name is the ``--executor`` choice) loads an :class:`ExecutorPlugin`.
The built-in ones:

- ``local``: :func:`bench.fanout.jobs.run_all`, one child process after another on this machine;
- ``ray``: :class:`bench.fanout.executors.ray_cluster.RayExecutor`, each run a Ray task on a
  cluster (or on a Ray instance started for the call); the records come back to this
  process, which writes them.
"""
from __future__ import annotations

import importlib.util
import re
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from bench.errors import BenchError
from bench.fanout.jobs import Executor, run_all
from bench.registry import get_executor


@dataclass(frozen=True)
class ExecutorPlugin:
    """What an entry point of group ``bench.executors`` loads.

    ``check(address)`` refuses, in one BenchError line, settings the executor cannot run
    with (``--address``; a missing dependency), before any work and without importing
    anything heavy. ``open(address)`` is a context manager yielding the
    :data:`~bench.fanout.jobs.Executor` (a callable from jobs to outcomes) and releasing
    what it holds (a cluster connection) when the block ends, however it ends.
    """

    check: Callable[[str | None], None]
    open: Callable[[str | None], AbstractContextManager[Executor]]


RAY_INSTALL = "pip install 'cellbench[ray]'"


def require_ray() -> None:
    """Ray importable, else the one line that says how to install it (Ray is imported only
    by the ray executor, when it is chosen)."""
    if importlib.util.find_spec("ray") is None:
        raise BenchError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}")


def _no_address(address: str | None) -> None:
    if address is not None:
        raise BenchError(f"--address {address} joins a Ray cluster: add --executor ray")


@contextmanager
def _local(address: str | None) -> Iterator[Executor]:
    yield run_all


def _check_ray(address: str | None) -> None:
    """Ray importable, and ``--address`` in a form Ray connects to: ``auto``, ``HOST:PORT``
    (a cluster's head), or ``ray://HOST:PORT`` (Ray Client)."""
    require_ray()
    if address is None:
        return
    match = re.fullmatch(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})", address)
    if address != "auto" and not (match and 1 <= int(match.group(2)) <= 65535):
        raise BenchError(f"--address must be auto, HOST:PORT or ray://HOST:PORT (port 1 to 65535), got {address!r}")


@contextmanager
def _ray(address: str | None) -> Iterator[Executor]:
    require_ray()
    from bench.fanout.executors.ray_cluster import RayExecutor

    executor = RayExecutor(address)
    try:
        yield executor
    finally:
        executor.close()


LOCAL = ExecutorPlugin(check=_no_address, open=_local)
RAY = ExecutorPlugin(check=_check_ray, open=_ray)


def _plugin(name: str) -> ExecutorPlugin:
    plugin = get_executor(name)
    if not isinstance(plugin, ExecutorPlugin):
        raise BenchError(f"executor {name!r} is a {type(plugin).__name__}, not a bench.fanout.executors.ExecutorPlugin")
    return plugin


def check_executor(executor: str, address: str | None) -> None:
    """The settings ``executor`` is chosen with, checked by it before any work (an unknown
    name: the registry's one line, with a suggestion)."""
    _plugin(executor).check(address)


def make_executor(name: str, address: str | None = None) -> AbstractContextManager[Executor]:
    """The executor called ``name``, as a context manager: what it started (a Ray instance,
    a connection) is released when the block ends, however it ends."""
    return _plugin(name).open(address)

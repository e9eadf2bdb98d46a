"""Where the runs of `bench matrix` and `bench sweep` go. The job list (labels, each run's
``bench run`` arguments, skips) is built once in :mod:`bench.fanout.jobs`; an executor only runs
it and hands back one :class:`~bench.fanout.jobs.Outcome` per job, in order, and never changes
what a run computes:

- ``local``: :func:`bench.fanout.jobs.run_all`, one child process after another on this machine;
- ``ray``: :class:`bench.fanout.executors.ray_cluster.RayExecutor`, each run a Ray task on a
  cluster (or on a Ray instance started for the call); the records come back to this
  process, which writes them.
"""
from __future__ import annotations

import importlib.util
import re
from contextlib import contextmanager
from typing import Iterator

from bench.errors import BenchError
from bench.fanout.jobs import Executor, run_all

RAY_INSTALL = "pip install 'cellbench[ray]'"


def require_ray() -> None:
    """Ray importable, else the one line that says how to install it (Ray is imported only
    by the ray executor, when it is chosen)."""
    if importlib.util.find_spec("ray") is None:
        raise BenchError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}")


def check_executor(executor: str, address: str | None) -> None:
    """``--address`` only with ``--executor ray``, and in a form Ray connects to: ``auto``,
    ``HOST:PORT`` (a cluster's head), or ``ray://HOST:PORT`` (Ray Client)."""
    if executor == "ray":
        require_ray()
    if address is None:
        return
    if executor != "ray":
        raise BenchError(f"--address {address} joins a Ray cluster: add --executor ray")
    match = re.fullmatch(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})", address)
    if address != "auto" and not (match and 1 <= int(match.group(2)) <= 65535):
        raise BenchError(f"--address must be auto, HOST:PORT or ray://HOST:PORT (port 1 to 65535), got {address!r}")


@contextmanager
def make_executor(name: str, address: str | None = None) -> Iterator[Executor]:
    """The executor called ``name``; a Ray instance it started (or a connection it made)
    is shut down when the block ends, however it ends."""
    if name == "local":
        yield run_all
        return
    if name != "ray":
        raise BenchError(f"unknown executor {name!r}; choose local or ray")
    require_ray()
    from bench.fanout.executors.ray_cluster import RayExecutor

    executor = RayExecutor(address)
    try:
        yield executor
    finally:
        executor.close()

"""Backends, cells, tasks and executors, discovered through packaging entry points.

Registry keys = CLI names = entry-point names (groups ``bench.backends``, ``bench.cells``,
``bench.tasks`` and ``bench.executors``), so a separately installed package adds one by
declaring an entry point; no file here changes. Each group is one cached :class:`Registry`
(timm's ``_registry.py``: names, ``get`` with "did you mean", ``list`` with a pattern).
Loading an entry point imports only the backend's thin module, never its framework, so
listing is cheap. Cells and tasks declare their own settings (:class:`cells.options.Option`);
:func:`declared_options` gathers them, and each becomes a flag of ``bench run``. (A
framework's fused layers are extended through groups ``bench.fused.<backend>``, read by the
backend's table itself: ``backends/fused.py``.)
"""
from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from bench.errors import BenchError, unknown_name
from cells.options import Option

BACKEND_GROUP = "bench.backends"
CELL_GROUP = "bench.cells"
TASK_GROUP = "bench.tasks"
EXECUTOR_GROUP = "bench.executors"


class Registry:
    """The plugins of one entry-point group, by name.

    Scanning the installed distributions' metadata costs milliseconds, and one command asks
    thousands of times (every config, every record a report reads). The scan is kept per
    import path: a changed ``sys.path`` (a plugin installed into a running process, as the
    registry tests do) scans again, so what is found is always what is installed.
    """

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind  # what the error messages call one: "backend", "cell", ...
        self._key: tuple[str, ...] | None = None
        self._found: dict[str, EntryPoint] = {}

    def refresh(self) -> None:
        """Forget the scan: the next lookup reads the packaging metadata again (for a
        distribution installed into a running process on an unchanged ``sys.path``)."""
        self._key = None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return list(self._entry_points())

    def list(self, pattern: str = "*") -> list[str]:
        """The registered names matching the shell-style ``pattern`` (``"*gru*"``), sorted."""
        return fnmatch.filter(self.names(), pattern)

    def get(self, name: str) -> Any:
        """The object registered as ``name``; an unknown name is a BenchError listing the
        valid ones and suggesting the closest, a broken plugin one naming it."""
        eps = self._entry_points()
        if name not in eps:
            raise unknown_name(self.kind, name, list(eps))
        try:
            return eps[name].load()
        except Exception as exc:  # a broken plugin is reported, not a crash of every command
            raise BenchError(f"{self.kind} {name!r} ({eps[name].value}) failed to load: {exc}") from exc

    def _entry_points(self) -> dict[str, EntryPoint]:
        key = tuple(sys.path)
        if key != self._key:
            self._found = _scan(self.group)
            self._key = key
        return self._found


def _scan(group: str) -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if not found:
        raise BenchError(
            f"no entry points in group {group!r}: cellbench is not installed; run `pip install -e .` "
            "in the repository root"
        )
    return dict(sorted(found.items()))


BACKENDS = Registry(BACKEND_GROUP, "backend")
CELLS = Registry(CELL_GROUP, "cell")
TASKS = Registry(TASK_GROUP, "task")
EXECUTORS = Registry(EXECUTOR_GROUP, "executor")
REGISTRIES = {registry.group: registry for registry in (BACKENDS, CELLS, TASKS, EXECUTORS)}


def refresh() -> None:
    """Forget every group's scan (:meth:`Registry.refresh`)."""
    for registry in REGISTRIES.values():
        registry.refresh()


def backend_names() -> list[str]:
    return BACKENDS.names()


def cell_names() -> list[str]:
    return CELLS.names()


def task_names() -> list[str]:
    return TASKS.names()


def executor_names() -> list[str]:
    return EXECUTORS.names()


def get_backend(name: str):  # -> type[Backend]
    """The backend class registered as ``name``; the error lists the valid names."""
    return BACKENDS.get(name)


def get_cell_class(name: str):  # -> type[CellSpec]
    return CELLS.get(name)


def get_task_class(name: str):  # -> type[TaskSpec]
    return TASKS.get(name)


def get_executor(name: str):  # -> bench.fanout.executors.ExecutorPlugin
    """What executor ``name``'s entry point loads: how to check its settings and open it."""
    return EXECUTORS.get(name)


def make_cell(name: str, **options: Any):  # -> CellSpec
    """Build cell ``name`` with the values of the options it declares (its defaults for the
    rest); values of options it does not declare are not its business and are left out."""
    cls = get_cell_class(name)
    return cls(**{option.name: options.get(option.name, option.default) for option in cls.options})


@dataclass(frozen=True)
class Declared:
    """An option and who declares it: ``("cell", "lstm")``, ``("task", "echo")``, ..."""

    option: Option
    owners: tuple[tuple[str, str], ...]

    def owned_by(self) -> str:
        return ", ".join(f"{kind} {name}" for kind, name in self.owners)


def declared_options() -> dict[str, Declared]:
    """Every option any registered cell or task declares, by name. Two plugins may share an
    option name only with the same type (one flag serves both); a clash is an error naming
    them, as a broken plugin is."""
    found: dict[str, Declared] = {}
    for kind, names, load in (("cell", cell_names(), get_cell_class), ("task", task_names(), get_task_class)):
        for name in names:
            for option in load(name).options:
                known = found.get(option.name)
                if known and known.option.type is not option.type:
                    raise BenchError(f"{kind} {name!r} declares option {option.name!r} as {option.type.__name__}, "
                                     f"but {known.owned_by()} as {known.option.type.__name__}")
                owners = (known.owners if known else ()) + ((kind, name),)
                found[option.name] = Declared(known.option if known else option, owners)
    return found


def require_available(backend_cls: Any, impl: str | None) -> str:
    """Check the backend can run here and resolve its impl; returns the impl name."""
    reason = backend_cls.unavailable_reason()
    if reason:
        raise BenchError(f"backend {backend_cls.name!r} is unavailable: {reason}")
    impl = impl or backend_cls.default_impl
    if impl not in backend_cls.impls:
        raise BenchError(
            f"backend {backend_cls.name!r} has no impl {impl!r}; choose one of: {', '.join(backend_cls.impls)}"
        )
    return impl

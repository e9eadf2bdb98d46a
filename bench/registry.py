"""Backends, cells and tasks, discovered through packaging entry points.

Registry keys = CLI names = entry-point names (groups ``bench.backends``, ``bench.cells`` and
``bench.tasks``), so a separately installed package adds a backend, a cell or a task by
declaring an entry point; no file here changes. Loading an entry point imports only the
backend's thin module, never its framework, so listing is cheap. Cells and tasks declare
their own settings (:class:`cells.options.Option`); :func:`declared_options` gathers them,
and each becomes a flag of ``bench run``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from bench.errors import BenchError, unknown_name
from cells.options import Option

BACKEND_GROUP = "bench.backends"
CELL_GROUP = "bench.cells"
TASK_GROUP = "bench.tasks"


# Scanning the installed distributions' metadata costs milliseconds, and one command asks
# thousands of times (every config, every record a report reads). The scan is kept per
# group and import path: a changed sys.path (a plugin installed into a running process, as
# the registry tests do) is a new key, so what is found is always what is installed.
_scanned: dict[tuple[str, tuple[str, ...]], dict[str, EntryPoint]] = {}


def refresh() -> None:
    """Forget every scan: the next lookup reads the packaging metadata again (for a
    distribution installed into a running process on an unchanged ``sys.path``)."""
    _scanned.clear()


def _entry_points(group: str) -> dict[str, EntryPoint]:
    key = (group, tuple(sys.path))
    if key not in _scanned:
        _scanned[key] = _scan(group)
    return dict(_scanned[key])


def _scan(group: str) -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if not found:
        raise BenchError(
            f"no entry points in group {group!r}: cellbench is not installed; run `pip install -e .` "
            "in the repository root"
        )
    return dict(sorted(found.items()))


def backend_names() -> list[str]:
    return list(_entry_points(BACKEND_GROUP))


def cell_names() -> list[str]:
    return list(_entry_points(CELL_GROUP))


def task_names() -> list[str]:
    return list(_entry_points(TASK_GROUP))


def _load(group: str, kind: str, name: str) -> Any:
    eps = _entry_points(group)
    if name not in eps:
        raise unknown_name(kind, name, list(eps))
    try:
        return eps[name].load()
    except Exception as exc:  # a broken plugin is reported, not a crash of every command
        raise BenchError(f"{kind} {name!r} ({eps[name].value}) failed to load: {exc}") from exc


def get_backend(name: str):  # -> type[Backend]
    """The backend class registered as ``name``; the error lists the valid names."""
    return _load(BACKEND_GROUP, "backend", name)


def get_cell_class(name: str):  # -> type[CellSpec]
    return _load(CELL_GROUP, "cell", name)


def get_task_class(name: str):  # -> type[TaskSpec]
    return _load(TASK_GROUP, "task", name)


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

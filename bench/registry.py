"""Backends and cells, discovered through packaging entry points.

Registry keys = CLI names = entry-point names (groups ``bench.backends`` and ``bench.cells``),
so a separately installed package adds a backend or a cell by declaring an entry point; no
file here changes. Loading an entry point imports only the backend's thin module, never
its framework, so listing is cheap.
"""
from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from bench.errors import BenchError, unknown_name

BACKEND_GROUP = "bench.backends"
CELL_GROUP = "bench.cells"


def _entry_points(group: str) -> dict[str, EntryPoint]:
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


def make_cell(name: str, **options: Any):  # -> CellSpec
    """Build cell ``name`` passing only the options its constructor declares, so the
    shared config (activation, forget_bias, ...) serves cells that use any subset."""
    cls = get_cell_class(name)
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted})


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

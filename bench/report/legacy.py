"""Declarations for records written before schema 5, which declare nothing: computed from
the task and cell installed here, as the report computed them before records carried them.
The one module of the report that consults the registry; a record of a task or cell not
installed gets what can be said without it (the report's default metric, no derived
settings, its preset's settings where the preset is known)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from bench.config import make_config, presets
from bench.errors import BenchError
from bench.registry import cell_names, get_cell_class, get_task_class, task_names
from bench.declarations import published
from bench.report.declared import Declared, Preset, _published


@lru_cache(maxsize=None)
def _cell_options() -> dict[str, tuple]:
    return {name: get_cell_class(name).options for name in cell_names()}


@lru_cache(maxsize=None)
def _every_cell_option() -> frozenset[str]:
    return frozenset(o.name for options in _cell_options().values() for o in options)


@lru_cache(maxsize=None)
def _task_options() -> dict[str, frozenset[str]]:
    return {name: frozenset(o.name for o in get_task_class(name).options) for name in task_names()}


@lru_cache(maxsize=None)
def _preset(name: str, cell: str | None) -> Preset | None:
    """``name``'s settings but every cell's options, and ``cell``'s options as it gives them."""
    known = presets()
    try:
        values = make_config(name).as_dict()
    except BenchError:  # a preset a plugin declares badly: nothing to compare with
        return None
    options = _cell_options().get(cell, ())
    return Preset(name, tuple((k, v) for k, v in values.items() if k not in _every_cell_option()),
                  tuple((o.name, known[name].get(o.name, o.default)) for o in options))


def _candidates(task: Any, cell: Any, named: Any) -> tuple[Preset, ...]:
    known = presets()
    cell = cell if isinstance(cell, str) else None
    if isinstance(named, str) and named in known and known[named].get("task") == task:
        names = [named]
    else:  # schema 1 named no preset: the closest of the task's describes the record
        names = [name for name, values in known.items() if values.get("task") == task] or list(known)
    return tuple(p for p in (_preset(name, cell) for name in names) if p is not None)


def legacy_declared(record: dict[str, Any]) -> Declared:
    """What a record before schema 5 would have declared, from what is installed."""
    config = record["config"]
    task_name, cell_name = config.get("task"), config.get("cell")
    own = _task_options().get(task_name) if isinstance(task_name, str) else None
    # records before schema 3 kept every cell's and task's options: only the task's own configure it
    foreign = _every_cell_option() | (frozenset().union(*_task_options().values()) - own if own is not None
                                      else frozenset())
    try:
        task = get_task_class(task_name)
        main_metric, derived = task.report_metric, tuple(sorted(task.derived(dict(config))))
    except (BenchError, TypeError, ValueError, AttributeError):  # a task not installed here
        main_metric, derived = None, ()
    metrics = [record.get("final") or {}, *(record.get("epochs") or [])]
    perplexity = any("perplexity" in (split or {}) for entry in metrics for split in entry.values()
                     if isinstance(split, dict))
    return Declared(
        main_metric=main_metric,
        reports_perplexity=perplexity,
        derived_settings=derived,
        cell_options=tuple(o.name for o in _cell_options().get(cell_name, ())) if isinstance(cell_name, str) else (),
        not_configuration=foreign,
        presets=_candidates(task_name, cell_name, record.get("preset")),
        published=_published(published(config)),
    )

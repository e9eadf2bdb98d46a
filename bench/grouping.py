"""Which runs a report may put side by side: those of one set (the directory a record lies
in, relative to the report's root) and one configuration (every setting but the compared
backend, impl and cell, the cell's own options included: an RNN with a sigmoid is another
cell to compare, not another experiment). A reference run and a quick check of the same
backend and cell are different experiments; grouping by anything less mixes them. The seed
is not part of a configuration either: runs that differ only in it are repeats of one
experiment, pooled by :mod:`bench.seeds`."""
from __future__ import annotations

import hashlib
import json
import math
import re
from functools import lru_cache
from typing import Any, Hashable, Sequence

from bench.config import make_config, presets, setting_names
from bench.errors import BenchError
from bench.registry import cell_names, get_cell_class, get_task_class, task_names

COMPARED = ("backend", "impl", "cell")
REPEATED = ("seed",)  # repeats of one configuration, pooled
_MISSING = object()


@lru_cache(maxsize=None)
def _field_order() -> dict[str, int]:
    return {name: i for i, name in enumerate(setting_names())}


@lru_cache(maxsize=None)
def _cell_options() -> dict[str, tuple]:
    """Each registered cell's options (they say which variant of the cell ran)."""
    return {name: get_cell_class(name).options for name in cell_names()}


@lru_cache(maxsize=None)
def _task_options() -> dict[str, frozenset[str]]:
    return {name: frozenset(o.name for o in get_task_class(name).options) for name in task_names()}


def _foreign(key: str, config: dict[str, Any]) -> bool:
    """A cell's option, or another task's: records before schema 3 kept every option of
    every cell and task, whatever ran; only the run's task's own options configure it."""
    if any(key == o.name for options in _cell_options().values() for o in options):
        return True
    own = _task_options().get(config.get("task"))
    return own is not None and key not in own and any(key in names for names in _task_options().values())


def _normal(value: Any) -> Any:
    """1 and 1.0 are one setting (JSON does not tell them apart)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def settings(config: dict[str, Any], ignore: Sequence[str] = ()) -> dict[str, Any]:
    """The configuration proper: ``config`` without the compared dimensions, the seed and ``ignore``."""
    return {k: _normal(v) for k, v in config.items()
            if k not in COMPARED and k not in REPEATED and k not in ignore and not _foreign(k, config)}


def swept_settings(config: dict[str, Any], param: str) -> list[str]:
    """The settings left out of a sweep's configuration: ``param`` and those the run's task
    derives from its settings (the copy task's window length follows its lag). A derived
    setting is a function of the others, so leaving it out never pools runs that differ;
    a task that is not installed here derives nothing."""
    try:
        return [param, *get_task_class(config.get("task")).derived(dict(config))]
    except (BenchError, TypeError, ValueError, AttributeError):
        return [param]


def configuration_key(config: dict[str, Any], ignore: Sequence[str] = ()) -> str:
    """Equal for two records exactly when their configurations are equal."""
    return json.dumps(settings(config, ignore), sort_keys=True)


@lru_cache(maxsize=None)
def _preset_settings(name: str) -> tuple[tuple[str, Any], ...]:
    try:
        return tuple(settings(make_config(name).as_dict()).items())
    except BenchError:  # a preset a plugin declares badly: nothing to compare with
        return ()


def _differences(values: dict[str, Any], preset: str, ignore: Sequence[str] = ()) -> list[str]:
    base = {k: v for k, v in _preset_settings(preset) if k not in ignore}
    order = _field_order()
    names = sorted(values.keys() | base.keys(), key=lambda k: (order.get(k, len(order)), k))
    differ = []
    for name in names:
        value, default = values.get(name, _MISSING), base.get(name, _MISSING)
        if value is _MISSING:
            differ.append(f"{name} missing")
        elif default is _MISSING or not _same(value, default):
            differ.append(f"{name}={_text(value)}")
    return differ


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w.:/+-]*", value):
        return value
    return repr(value) if isinstance(value, str) else str(value)


def closest_preset(config: dict[str, Any], ignore: Sequence[str] = ()) -> str:
    """The preset of the record's task from which the fewest settings differ (the first
    such preset on a tie; any preset if none is of the task)."""
    values = settings(config, ignore)
    known = presets()
    candidates = [name for name, preset in known.items() if preset.get("task") == config.get("task")] or list(known)
    return min(candidates, key=lambda name: len(_differences(values, name, ignore)))


def describe(config: dict[str, Any], preset: str | None = None, ignore: Sequence[str] = ()) -> str:
    """The configuration for people: its preset and what differs from it, e.g.
    ``ptb-small, learning_rate=0.1``. ``preset`` is the one the record names (schema 2),
    used when it is known and of the record's task; else the closest is inferred."""
    known = presets()
    if preset not in known or known[preset].get("task") != config.get("task"):
        preset = closest_preset(config, ignore)
    return ", ".join([preset, *_differences(settings(config, ignore), preset, ignore)])


def cell_variant(config: dict[str, Any], preset: str | None = None) -> str:
    """The cell that ran, with the values of its own options where they differ from what
    the configuration's preset gives it: ``rnn``, ``rnn (activation=sigmoid)``."""
    name = config.get("cell")
    options = _cell_options().get(name, ())
    known = presets()
    if preset not in known or known[preset].get("task") != config.get("task"):
        preset = closest_preset(config)
    base = known[preset]
    differ = [f"{o.name}={_text(_normal(config[o.name]))}" for o in options
              if o.name in config and not _same(_normal(config[o.name]), _normal(base.get(o.name, o.default)))]
    return f"{name} ({', '.join(differ)})" if differ else str(name)


def slug(text: str, limit: int = 100) -> str:
    """``text`` as a readable file-name part: runs of other characters become ``-``."""
    out = re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.") or "root"
    if len(out) > limit:
        out = out[:limit].rstrip("-.") + "-" + hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:8]
    return out


def file_stems(groups: Sequence[tuple[str, str, Hashable]]) -> list[str]:
    """A unique, readable file-name stem per ``(set, description, key)`` group: the set's
    path, and where the set holds several configurations, what sets this one apart (the
    whole configuration for the root, which has no name of its own)."""
    described: dict[str, list[str]] = {}
    for set_name, description, _ in groups:
        described.setdefault(set_name, []).append(description)
    stems = []
    for set_name, description, _ in groups:
        parts = description.split(", ")
        others = described[set_name]
        if set_name == ".":
            stems.append(slug(description))
        elif len(set(others)) == 1:
            stems.append(slug(set_name))
        else:
            common = set.intersection(*(set(d.split(", ")) for d in others))
            stems.append(slug(" ".join([set_name, *(p for p in parts if p not in common)])))
    count: dict[str, int] = {}
    for stem in stems:
        count[stem] = count.get(stem, 0) + 1
    return [stem if count[stem] == 1 else f"{stem}-{hashlib.sha1(repr((s, k)).encode()).hexdigest()[:8]}"
            for stem, (s, _, k) in zip(stems, groups)]

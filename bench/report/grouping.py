"""Which runs a report may put side by side: those of one set (the directory a record lies
in, relative to the report's root) and one configuration (every setting but the compared
backend, impl and cell, the cell's own options included: an RNN with a sigmoid is another
cell to compare, not another experiment). A reference run and a quick check of the same
backend and cell are different experiments; grouping by anything less mixes them. The seed
is not part of a configuration either: runs that differ only in it are repeats of one
experiment, pooled by :mod:`bench.report.seeds`."""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from functools import lru_cache
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

from bench.report.declared import Declared, Preset

COMPARED = ("backend", "impl", "cell")
REPEATED = ("seed",)  # repeats of one configuration, pooled
# What a sweep cannot vary (bench sweep refuses them, bench.fanout.preflight): the compared
# dimensions, the seed (repeats) and the task (each has its own settings). A record whose
# tag names one of these is an ordinary run of its configuration, not a sweep point.
NOT_SWEPT = (*COMPARED, *REPEATED, "task")
_MISSING = object()


def _normal(value: Any) -> Any:
    """1 and 1.0 are one setting (JSON does not tell them apart)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def settings(config: dict[str, Any], declared: Declared, ignore: Sequence[str] = ()) -> dict[str, Any]:
    """The configuration proper: ``config`` without the compared dimensions, the seed, the
    settings the record declares are not its configuration (its cell's options) and ``ignore``."""
    return {k: _normal(v) for k, v in config.items()
            if k not in COMPARED and k not in REPEATED and k not in ignore and k not in declared.not_configuration}


def swept_settings(declared: Declared, param: str) -> list[str]:
    """The settings left out of a sweep's configuration: ``param`` and those the run's task
    derives from its settings (the copy task's window length follows its lag). A derived
    setting is a function of the others, so leaving it out never pools runs that differ."""
    return [param, *declared.derived_settings]


def sweep_param(record: dict[str, Any]) -> str | None:
    """The setting a ``sweep:<setting>`` run varied: one the record has and a sweep can vary
    (not one of :data:`NOT_SWEPT`); None for any other tag."""
    tag = record.get("tag")
    param = tag.split(":", 1)[1] if isinstance(tag, str) and tag.startswith("sweep:") else None
    return param if param in record["config"] and param not in NOT_SWEPT else None


def is_number(value: Any) -> bool:
    """A real number that is not a bool (NumPy's scalars too: the values come back from pandas)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def numeric_sweep(values: Iterable[Any]) -> bool:
    """Whether swept values can stand on a numeric axis: every one a finite number. Any
    other sweep (strings, bools, or a NaN among numbers) is categorical: one place per
    value, in :func:`value_order`, none left out."""
    return all(is_number(v) and math.isfinite(v) for v in values)


def value_key(value: Any) -> str:
    """One swept value as a key: equal exactly for equal JSON values (1 and 1.0 are one)."""
    value = value.item() if hasattr(value, "item") else value
    return json.dumps(_normal(value))


def value_order(value: Any) -> tuple[int, Any]:
    """Numbers first, by size; then every other value by its text."""
    if is_number(value) and not math.isnan(value):
        return (0, value)
    return (1, value_text(value))


def value_text(value: Any, thousands: bool = False) -> str:
    """A swept value as written: 50, not 50.0 (pandas may hold a column as floats), 0.1,
    ``sgd``, ``True``; plain text, to be escaped for where it goes."""
    if not is_number(value):
        return str(value)
    separator = "," if thousands else ""
    if isinstance(value, numbers.Integral):
        return f"{int(value):{separator}}"
    number = float(value)
    return f"{int(number):{separator}}" if number.is_integer() else f"{number:g}"


# the measures of a sweep's table, each a column per cell x backend/impl (bench.report.build.sweep_tables)
SWEEP_MEASURES = ("loss_vs_baseline", "solved_at_update", "grad_ratio_init", "grad_ratio_final", "accuracy")


def sweep_columns(table: Any, param: str,
                  who: dict[str, tuple[str, str]] | None = None) -> dict[str, tuple[str, str]]:
    """Each (cell, backend/impl) of a sweep's table by its columns' name, in order of cell:
    ``who`` as :func:`bench.report.build.sweep_tables` gives it, or read from the column names of a table made
    by hand (``<cell> <backend>/<impl> <measure>``)."""
    if who is None:
        names = {c.rsplit(" ", 1)[0] for c in table.columns if c != param and c.rsplit(" ", 1)[-1] in SWEEP_MEASURES}
        who = {name: tuple(name.split(" ", 1)) if " " in name else (name, "") for name in names}
    return dict(sorted(who.items(), key=lambda item: (item[1][0], item[0])))


def value_labels(values: Sequence[Any]) -> list[str]:
    """Each of a sweep's values as :func:`value_text`, except that values which read alike
    (the string "1" and the number 1) are told apart by their JSON."""
    texts = [value_text(v) for v in values]
    return [value_key(v) if texts.count(t) > 1 else t for t, v in zip(texts, values)]


def configuration_key(config: dict[str, Any], declared: Declared, ignore: Sequence[str] = ()) -> str:
    """Equal for two records exactly when their configurations are equal."""
    return json.dumps(settings(config, declared, ignore), sort_keys=True)


def _differences(values: dict[str, Any], preset: Preset, declared: Declared, ignore: Sequence[str] = ()) -> list[str]:
    """What ``values`` (a configuration) sets otherwise than ``preset``: in the preset's order
    of settings, then the others by name."""
    base = settings(dict(preset.settings), declared, ignore)
    order = {name: i for i, (name, _) in enumerate(preset.settings)}
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


# A report asks these of every record, and most records share their configuration with
# many others (seeds, cells, backends): answered once per configuration, from its key.
@lru_cache(maxsize=2**14)
def _closest(key: str, declared: Declared, ignore: tuple[str, ...]) -> Preset | None:
    """The record's preset, or where it named none, the one of its task's from which the
    fewest settings differ (the first such on a tie)."""
    values = json.loads(key)
    return min(declared.presets, key=lambda p: len(_differences(values, p, declared, ignore)), default=None)


def closest_preset(config: dict[str, Any], declared: Declared, ignore: Sequence[str] = ()) -> Preset | None:
    """The preset that describes ``config`` (:func:`_closest`); None where none is known."""
    return _closest(configuration_key(config, declared, ignore), declared, tuple(ignore))


@lru_cache(maxsize=2**14)
def _described(key: str, declared: Declared, ignore: tuple[str, ...]) -> str:
    values = json.loads(key)
    preset = _closest(key, declared, ignore)
    if preset is None:  # no preset known: the settings themselves
        return ", ".join(f"{name}={_text(value)}" for name, value in values.items()) or "defaults"
    return ", ".join([preset.name, *_differences(values, preset, declared, ignore)])


def describe(config: dict[str, Any], declared: Declared, ignore: Sequence[str] = ()) -> str:
    """The configuration for people: its preset and what differs from it, e.g.
    ``ptb-small, learning_rate=0.1``: the preset the record names, or for a record that
    named none the closest of its task's."""
    return _described(configuration_key(config, declared, ignore), declared, tuple(ignore))


def cell_variant(config: dict[str, Any], declared: Declared, ignore: Sequence[str] = ()) -> str:
    """The cell that ran, with the values of its own options where they differ from what
    the configuration's preset gives it: ``rnn``, ``rnn (activation=sigmoid)``; options in
    ``ignore`` (a sweep's setting, shown in its own column) are left out."""
    name = config.get("cell")
    preset = closest_preset(config, declared)
    base = dict(preset.cell_options) if preset else {}
    differ = [f"{option}={_text(_normal(config[option]))}" for option in declared.cell_options
              if option not in ignore and option in config and option in base
              and not _same(_normal(config[option]), _normal(base[option]))]
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

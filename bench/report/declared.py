"""What the report knows of a record's task, cell and preset: what the record declares
(``record["declared"]``, written by the run from ``bench.declarations``, schema 5). A record
written before declares nothing; :mod:`bench.report.legacy` computes the same from the
installed task and cell, and is the report's only door to the registry.
:func:`bench.report.reading.declared` gives either, once per record."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Items = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Preset:
    """A preset a record's configuration is described against: its name, its settings (no
    cell's options) and the record's cell's options as it gives them."""

    name: str
    settings: Items
    cell_options: Items


@dataclass(frozen=True)
class Declared:
    """One record's declarations, hashable (the report caches descriptions by them).

    ``not_configuration``: the settings of the record's config that do not define its
    configuration: its cell's options (a variant of the cell, compared as a cell) and, in
    records before schema 3, every other cell's and task's options that they kept.
    ``presets``: the record's own preset, or for a record that named none (schema 1) every
    preset of its task, the closest of which describes it."""

    main_metric: str | None
    reports_perplexity: bool
    derived_settings: tuple[str, ...]
    cell_options: tuple[str, ...]
    not_configuration: frozenset[str]
    presets: tuple[Preset, ...]
    # the published experiment the run repeats: (preset, valid, test perplexity); None: none
    published: tuple[str, float, float] | None = None

    @classmethod
    def from_block(cls, block: dict[str, Any]) -> "Declared":
        """From a ``declared`` block as a record holds it (``bench.declarations.declarations``)."""
        cell_options = tuple(block["cell_options"])
        own = Preset(block["preset"], tuple(block["preset_settings"].items()),
                     tuple(block["preset_cell_options"].items()))
        return cls(
            main_metric=block["main_metric"],
            reports_perplexity=bool(block["reports_perplexity"]),
            derived_settings=tuple(block["derived_settings"]),
            cell_options=cell_options,
            not_configuration=frozenset(cell_options),
            presets=(own,),
            published=_published(block.get("published")),
        )


def _published(block: dict[str, Any] | None) -> tuple[str, float, float] | None:
    return (block["preset"], float(block["valid"]), float(block["test"])) if block else None

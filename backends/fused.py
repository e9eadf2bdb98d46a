"""A framework's fused recurrent layers as data: which cell each one computes, and how to
feed it.

Each framework backend declares one table, cell type -> :class:`FusedLayer`, in a module
that does not import the framework (``Backend.unsupported`` reads it while listing), so a
cell with a fused layer is one entry and the ``fused`` impl is written once per framework.
A plugin adds an entry without editing ours: an entry point in group
``bench.fused.<backend>`` (``bench.fused.torch``, ``bench.fused.tf``, ``bench.fused.jax``)
that loads a :class:`FusedLayer` (or a :class:`NoFusedLayer`) from a module that does not
import the framework either; the table is the built-in entries plus those, and two entries
for one cell type are an error naming both.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from itertools import chain
from operator import attrgetter
from typing import Any, Callable, Iterable, Iterator, Mapping

from backends.layout import ParamLayout
from cells.base import CellSpec
from cells.errors import BenchError

FUSED_GROUP_PREFIX = "bench.fused."


@dataclass(frozen=True)
class LayerTensor:
    """Where a built layer keeps a canonical parameter: an attribute path on the layer
    object, whether it stores the transpose, and for a tensor that stacks several
    parameters (Keras's GRU keeps its two biases as the rows of one), which row."""

    path: str
    transposed: bool = False
    row: int | None = None


def _every_option(cell: CellSpec) -> str | None:
    return None


@dataclass(frozen=True)
class FusedLayer:
    """A framework layer that runs ``cell``'s recurrence over a whole window.

    ``cell`` is matched exactly (a subclass may change the equations, which the layer
    cannot follow), then ``refuse`` looks at its options: None when the layer computes the
    cell with them, else the reason the refusal gives (``"nn.RNN is tanh only"``).
    """

    cell: type[CellSpec]
    layer: str  # the framework's name for it, as its docs write it
    make: Callable[..., Any]  # builds one layer; imports the framework itself
    gates: tuple[str, ...]  # the framework's order of the cell's gate blocks
    params: Mapping[str, LayerTensor]  # the cell's parameter names -> where the layer keeps them
    state_order: tuple[str, ...]  # the layer's state arguments and results, by the cell's state names
    kernel: Callable[..., str]  # what runs, for the record's describe()
    refuse: Callable[[CellSpec], str | None] = _every_option
    frozen_zero: tuple[str, ...] = ()  # paths of tensors held at zero, never trained

    def layout(self, name: str) -> ParamLayout:
        """How the layer's tensor holding parameter ``name`` relates to the canonical one."""
        where = self.params[name]
        return ParamLayout.between(self.cell.gates, self.gates, where.transposed, where.row)

    def held(self, layer: Any) -> dict[str, tuple[Any, ParamLayout]]:
        """A built layer's tensors holding the cell's parameters, in ``param_names`` order."""
        return {name: (attrgetter(self.params[name].path)(layer), self.layout(name)) for name in self.cell.param_names}

    def frozen(self, layer: Any) -> list[Any]:
        return [attrgetter(path)(layer) for path in self.frozen_zero]

    @property
    def state_in(self) -> tuple[int, ...]:
        """For each of the layer's state arguments, its position in the cell's state tuple."""
        return tuple(self.cell.state_names.index(name) for name in self.state_order)

    @property
    def state_out(self) -> tuple[int, ...]:
        """For each of the cell's states, its position among the layer's final states."""
        return tuple(self.state_order.index(name) for name in self.cell.state_names)


@dataclass(frozen=True)
class NoFusedLayer:
    """A table entry for a cell the framework's layer of that name computes another function
    of (Flax's GRUCell for the GRU): nothing to build, and ``refuse`` gives the reason for
    every option value, so the refusal says why rather than only that there is none."""

    cell: type[CellSpec]
    layer: str
    refuse: Callable[[CellSpec], str]


Entry = FusedLayer | NoFusedLayer


class FusedTable(Mapping[type, FusedLayer]):
    """A framework's fused layers by cell type: the built-in entries, plus, for a table with
    a ``framework``, the entry points of group ``bench.fused.<framework>``.

    As a mapping it holds the layers that can be built; :meth:`entry` also answers with a
    :class:`NoFusedLayer`. The entry points are read on first use, not at import, and again
    when ``sys.path`` changes (a plugin installed into a running process) or after
    :meth:`refresh`.
    """

    def __init__(self, builtin: tuple[Entry, ...], framework: str | None = None) -> None:
        self.framework = framework
        self._builtin = _by_cell(((entry, "built in") for entry in builtin), framework)
        self._key: tuple[str, ...] | None = None
        self._entries: dict[type, tuple[Entry, str]] = self._builtin

    @property
    def group(self) -> str | None:
        """The entry-point group plugins extend this table through (None: closed)."""
        return FUSED_GROUP_PREFIX + self.framework if self.framework else None

    def refresh(self) -> None:
        """Read the entry points again at the next lookup."""
        self._key = None

    def entry(self, cell_type: type) -> Entry | None:
        """The entry for exactly ``cell_type``, a layer or a reasoned absence; None if none."""
        found = self._assembled().get(cell_type)
        return found[0] if found else None

    def __getitem__(self, cell_type: type) -> FusedLayer:
        entry = self.entry(cell_type)
        if not isinstance(entry, FusedLayer):
            raise KeyError(cell_type)
        return entry

    def __iter__(self) -> Iterator[type]:
        return (cell_type for cell_type, (entry, _) in self._assembled().items() if isinstance(entry, FusedLayer))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _assembled(self) -> dict[type, tuple[Entry, str]]:
        if self.group is None:
            return self._builtin
        key = tuple(sys.path)
        if key != self._key:
            plugins = ((_load(ep, self.group), f"entry point {ep.name} = {ep.value}")
                       for ep in entry_points(group=self.group))
            self._entries = _by_cell(chain(self._builtin.values(), plugins), self.framework)
            self._key = key
        return self._entries


def _load(ep: EntryPoint, group: str) -> Entry:
    try:
        entry = ep.load()
    except Exception as exc:  # a broken plugin is reported in one line, not a crash of every command
        raise BenchError(f"fused layer {ep.name!r} ({ep.value}, group {group}) failed to load: {exc}") from exc
    if not isinstance(entry, (FusedLayer, NoFusedLayer)):
        raise BenchError(f"entry point {ep.name} = {ep.value} (group {group}) loads a value of type "
                         f"{type(entry).__name__!r}, not a backends.fused.FusedLayer")
    return entry


def _by_cell(entries: Iterable[tuple[Entry, str]], framework: str | None) -> dict[type, tuple[Entry, str]]:
    """Entries with where each comes from, by cell type; two for one type are a BenchError
    naming both."""
    table: dict[type, tuple[Entry, str]] = {}
    for entry, source in entries:
        if entry.cell in table:
            other, other_source = table[entry.cell]
            raise BenchError(f"two fused layers for cell {entry.cell.name!r} in the {framework or 'one'} table: "
                             f"{other.layer} ({other_source}) and {entry.layer} ({source})")
        table[entry.cell] = (entry, source)
    return table


def fused_table(*entries: Entry, framework: str | None = None) -> FusedTable:
    """The table of a framework's fused layers, one entry per cell type; with ``framework``
    (the backend's name) plugins extend it through group ``bench.fused.<framework>``."""
    return FusedTable(entries, framework)


def why_no_fused_layer(framework: str, table: FusedTable, cell: CellSpec) -> str | None:
    """None when ``table`` has a layer computing ``cell``; else a one-line reason."""
    entry = table.entry(type(cell))
    if entry is None:
        return f"{framework} has no fused layer for cell {cell.name!r}; use --impl cell"
    reason = entry.refuse(cell)
    if reason is not None:
        options = ", ".join(f"{key}={value!r}" for key, value in cell.option_values().items())
        return f"{framework} has no fused layer for cell {cell.name!r} with {options} ({reason}); use --impl cell"
    return None

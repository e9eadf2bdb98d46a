"""A framework's fused recurrent layers as data: which cell each one computes, and how to
feed it.

Each framework backend declares one table, cell type -> :class:`FusedLayer`, in a module
that does not import the framework (``Backend.unsupported`` reads it while listing), so a
cell with a fused layer is one entry and the ``fused`` impl is written once per framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Mapping

from backends.layout import ParamLayout
from cells.base import CellSpec


@dataclass(frozen=True)
class LayerTensor:
    """Where a built layer keeps a canonical parameter: an attribute path on the layer
    object, whether it stores the transpose, and for a tensor that stacks several
    parameters (Keras's GRU keeps its two biases as the rows of one), which row."""

    path: str
    transposed: bool = False
    row: int | None = None


def _every_option(cell: CellSpec) -> bool:
    return True


@dataclass(frozen=True)
class FusedLayer:
    """A framework layer that runs ``cell``'s recurrence over a whole window.

    ``cell`` is matched exactly (a subclass may change the equations, which the layer
    cannot follow), then ``accepts`` looks at its options; ``limits`` says in the refusal
    why it can fail.
    """

    cell: type[CellSpec]
    layer: str  # the framework's name for it, as its docs write it
    make: Callable[..., Any]  # builds one layer; imports the framework itself
    gates: tuple[str, ...]  # the framework's order of the cell's gate blocks
    params: Mapping[str, LayerTensor]  # the cell's parameter names -> where the layer keeps them
    state_order: tuple[str, ...]  # the layer's state arguments and results, by the cell's state names
    kernel: Callable[..., str]  # what runs, for the record's describe()
    accepts: Callable[[CellSpec], bool] = _every_option
    limits: str = ""
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


FusedTable = Mapping[type, FusedLayer]


def fused_table(*layers: FusedLayer) -> FusedTable:
    """The table of a framework's fused layers, one per cell type."""
    table = {layer.cell: layer for layer in layers}
    if len(table) != len(layers):
        raise ValueError("one fused layer per cell type")
    return table


def why_no_fused_layer(framework: str, table: FusedTable, cell: CellSpec) -> str | None:
    """None when ``table`` has a layer computing ``cell``; else a one-line reason."""
    entry = table.get(type(cell))
    if entry is None:
        return f"{framework} has no fused layer for cell {cell.name!r}; use --impl cell"
    if not entry.accepts(cell):
        options = ", ".join(f"{key}={value!r}" for key, value in cell.option_values().items())
        return f"{framework} has no fused layer for cell {cell.name!r} with {options} ({entry.limits}); use --impl cell"
    return None

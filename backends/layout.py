"""How a framework tensor holds one canonical parameter, said once for every framework.

A fused layer keeps a cell's ``U``, ``V`` and ``b`` in its own tensors: the gate blocks in
the framework's order, and sometimes transposed (torch's ``weight_ih_l0`` is ``Uᵀ``). A
:class:`ParamLayout` says that as data and each framework applies it with its own array
ops (:class:`ArrayOps`). The maps only move entries, so one layout serves values,
gradients, optimizer slots and checkpoints alike, and a round trip is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class ArrayOps:
    """The two moves a layout needs, in one framework's arrays."""

    take_columns: Callable[[Any, np.ndarray], Any]  # a[..., columns], a fresh array
    transpose: Callable[[Any], Any]  # of a matrix, a fresh array


NUMPY_ARRAYS = ArrayOps(take_columns=lambda a, columns: a[..., columns], transpose=lambda a: np.ascontiguousarray(a.T))


def _block_columns(order: Sequence[int], width: int) -> np.ndarray:
    """The columns that put block ``order[k]`` of a ``width``-wide last axis at place ``k``."""
    n = width // len(order)
    return np.concatenate([np.arange(n) + k * n for k in order])


@dataclass(frozen=True)
class ParamLayout:
    """A framework tensor = the canonical parameter with its gate blocks (along the last
    axis) reordered, then transposed if ``transposed``; with ``row``, that is one row of the
    framework tensor, which holds other parameters in its other rows."""

    blocks: tuple[int, ...] = ()  # framework block k = canonical block blocks[k]; () keeps the order
    transposed: bool = False
    row: int | None = None  # the parameter is this row of a stacked framework tensor

    @classmethod
    def between(cls, cell_gates: Sequence[str], framework_gates: Sequence[str], transposed: bool = False,
                row: int | None = None) -> "ParamLayout":
        """The layout of a tensor whose blocks are ``framework_gates``, for a cell whose are ``cell_gates``."""
        if sorted(cell_gates) != sorted(framework_gates) or len(set(cell_gates)) != len(cell_gates):
            raise ValueError(f"gate orders {tuple(framework_gates)} and {tuple(cell_gates)} are not permutations of each other")
        blocks = tuple(list(cell_gates).index(g) for g in framework_gates)
        return cls(() if blocks == tuple(range(len(blocks))) else blocks, transposed, row)

    def to_framework(self, value: T, ops: ArrayOps) -> T:
        """The framework's form of ``value`` (for a stacked tensor: of its row)."""
        if self.blocks:
            value = ops.take_columns(value, _block_columns(self.blocks, value.shape[-1]))
        return ops.transpose(value) if self.transposed else value

    def to_canonical(self, value: T, ops: ArrayOps) -> T:
        if self.row is not None:
            value = value[self.row]
        if self.transposed:
            value = ops.transpose(value)
        if self.blocks:
            value = ops.take_columns(value, _block_columns(np.argsort(self.blocks), value.shape[-1]))
        return value


@dataclass(frozen=True)
class Slot(Generic[T]):
    """One canonical parameter (``name``), the framework tensor that holds it, and how."""

    name: str
    tensor: T
    layout: ParamLayout = ParamLayout()

    def to_canonical(self, value: Any, ops: ArrayOps) -> Any:
        """Anything shaped like ``tensor`` (its value, gradient, optimizer slot) in the canonical layout."""
        return self.layout.to_canonical(value, ops)

    def to_framework(self, value: Any, ops: ArrayOps) -> Any:
        return self.layout.to_framework(value, ops)

"""Canonical layout <-> torch.nn.LSTM / torch.nn.RNN layout (see docs/parameter-layout-torch.md).

Canonical ``U`` is ``(in, blocks*hidden)`` with gate blocks in the cell's order (g, i, f, o
for the LSTM); torch's ``weight_ih_l0`` is ``(blocks*hidden, in)`` with blocks in torch's
order (i, f, g, o). ``V`` <-> ``weight_hh_l0`` likewise, ``b`` <-> ``bias_ih_l0`` (blocks
reordered); ``bias_hh_l0`` is held at zero and frozen. The same maps apply to anything
shaped like a parameter (gradients, Adagrad accumulators), since they only move entries.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# torch's gate order per cell name, as documented for nn.LSTM (W_ii|W_if|W_ig|W_io) and nn.RNN
TORCH_GATES = {"lstm": ("i", "f", "g", "o"), "rnn": ("h",)}


@dataclass(frozen=True)
class GateLayout:
    """Row-block permutations between a cell's gate order and torch's."""

    to_torch: tuple[int, ...]  # torch block k = canonical block to_torch[k]
    to_canonical: tuple[int, ...]  # canonical block k = torch block to_canonical[k]

    @classmethod
    def between(cls, canonical: tuple[str, ...], torch_order: tuple[str, ...]) -> "GateLayout":
        assert sorted(canonical) == sorted(torch_order), (canonical, torch_order)
        return cls(
            tuple(canonical.index(g) for g in torch_order),
            tuple(torch_order.index(g) for g in canonical),
        )

    @staticmethod
    def _blocks(t: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
        """Reorder the leading-dimension blocks of ``t`` ((blocks*hidden, ...))."""
        if order == tuple(range(len(order))):
            return t
        n = len(order)
        rest = t.shape[1:]
        blocks = t.reshape(n, t.shape[0] // n, *rest)
        return blocks[list(order)].reshape(t.shape)

    def weight_to_torch(self, w: torch.Tensor) -> torch.Tensor:
        """Canonical ``(in, blocks*hidden)`` -> torch ``(blocks*hidden, in)``."""
        return self._blocks(w.t(), self.to_torch).contiguous()

    def weight_to_canonical(self, w: torch.Tensor) -> torch.Tensor:
        """Torch ``(blocks*hidden, in)`` -> canonical ``(in, blocks*hidden)``."""
        return self._blocks(w, self.to_canonical).t().contiguous()

    def bias_to_torch(self, b: torch.Tensor) -> torch.Tensor:
        return self._blocks(b, self.to_torch).contiguous()

    def bias_to_canonical(self, b: torch.Tensor) -> torch.Tensor:
        return self._blocks(b, self.to_canonical).contiguous()

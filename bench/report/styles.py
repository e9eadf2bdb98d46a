"""How one report draws its cells and backends: one colour per cell and one line style and
marker per backend/impl, the same in every figure of the report.

Both are assigned from the names present in the report's runs, in sorted order, so a cell,
a backend or a fused impl nobody has drawn before gets its own without an edit here, and a
cell keeps its colour from the curves to the throughput bars to the sweeps.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

# 7 line styles and 8 markers, paired by position: 7 and 8 share no factor, so the first
# 56 backend/impls each get a pair of their own, and the first 7 a line style (a curve of
# over 20 epochs is drawn without markers)
LINE_STYLES: list[Any] = ["-", "--", ":", "-.", (0, (1, 3)), (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (6, 4))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
TINT = 0.5  # how far a pale line (a train curve, an evaluation bar) is mixed towards white


def _palette(n: int) -> list[tuple[float, float, float]]:
    """tab10 for up to ten cells; tab20 beyond (ten more hues, paler), repeating after twenty."""
    import matplotlib

    return list(matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors)


class Styles:
    """The colour of each cell and the (line style, marker) of each backend/impl of one
    report's runs, built once and handed to every figure."""

    def __init__(self, runs: pd.DataFrame) -> None:
        cells = _distinct(runs["cell"]) if "cell" in runs else []
        pairs = _distinct(f"{backend}/{impl}" for backend, impl in zip(runs["backend"], runs["impl"])) \
            if {"backend", "impl"} <= set(runs.columns) else []
        palette = _palette(len(cells))
        self.colours = {cell: palette[k % len(palette)] for k, cell in enumerate(cells)}
        self.lines = {pair: (LINE_STYLES[k % len(LINE_STYLES)], MARKERS[k % len(MARKERS)])
                      for k, pair in enumerate(pairs)}

    def colour(self, cell: Any) -> tuple[float, float, float]:
        """The cell's colour; grey for a cell not among the report's runs (none is drawn)."""
        return self.colours.get(str(cell), (0.5, 0.5, 0.5))

    def pale(self, cell: Any) -> tuple[float, float, float]:
        """The cell's colour mixed towards white: opaque, so that several pale lines drawn
        on top of each other stay pale (translucent ones darkened into a bold-looking line)."""
        return tuple(TINT * c + (1 - TINT) for c in self.colour(cell))  # type: ignore[return-value]

    def line(self, backend: Any, impl: Any) -> tuple[Any, str]:
        """The backend/impl's line style and marker."""
        return self.lines.get(f"{backend}/{impl}", ("-", "o"))


def _distinct(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values})

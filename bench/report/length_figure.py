"""``bench speed --num-steps``' figure: cost per training token against window length T, log-log,
one line per cell x backend/impl (colour per cell, line style and marker per backend/impl,
as in the report: :mod:`bench.report.styles`), and beside it the memory training added.

On log-log axes a cost flat in T (a loop, step by step) is a horizontal line and a cost
growing like T^k a line of slope k, so where a scan's line crosses a loop's is the length
from which the scan trains faster."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.plots import _label, _pyplot, _save
from bench.report.styles import Styles


def plot_lengths(rows: list[dict[str, Any]], path: Path, title: str, note: str = "") -> Path | None:
    """Write the figure to ``path``, ``note`` (the headline) under the title; None (nothing
    written) when no row was measured."""
    frame = pd.DataFrame([r for r in rows if r.get("train_tok_s")])
    if frame.empty:
        return None
    import textwrap

    from matplotlib.ticker import FuncFormatter, NullLocator

    styles = Styles(frame)
    plt = _pyplot()
    memory = "train_added_rss_mb" in frame and frame["train_added_rss_mb"].notna().any()
    fig, axes = plt.subplots(1, 2 if memory else 1, figsize=(13 if memory else 8, 5.5), squeeze=False)
    panels = [("train_us_per_token", "microseconds per training token (log; lower is faster)",
               "Cost per training token (forward, backward, update)")]
    if memory:
        panels.append(("train_added_rss_mb", "MB added to resident memory by training (log)",
                       "Memory training added: peak RSS less RSS before the first step"))
    # 2,000 reads faster than 2x10^3
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1000 else f"{v:.3g}")
    for ax, (field, ylabel, heading) in zip(axes[0], panels):
        for _, group in frame.groupby(["cell", "backend", "impl"], sort=True):
            group = group.sort_values("num_steps")
            first = group.iloc[0]
            style, marker = styles.line(first["backend"], first["impl"])
            values = group[field].where(group[field] > 0)  # a log axis has no place for 0
            ax.plot(group["num_steps"], values, linestyle=style, marker=marker, color=styles.colour(first["cell"]),
                    label=_label(first), linewidth=1.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        shown = frame[field][frame[field] > 0]
        # within a decade there may be no major tick: every minor one is labelled; across
        # decades only 2 and 5 between them, or the labels collide
        narrow = len(shown) and shown.max() < 10 * shown.min()
        ax.yaxis.set_minor_formatter(plain if narrow else FuncFormatter(
            lambda v, _: plain(v) if f"{v:.0e}"[0] in "25" else ""))
        lengths = sorted(frame["num_steps"].unique())
        ax.set_xticks(lengths, [f"{t:,}" for t in lengths])
        ax.xaxis.set_minor_locator(NullLocator())  # only the measured lengths are labelled
        ax.set_xlabel("window length T (steps per training window, log)")
        ax.set_ylabel(ylabel)
        ax.set_title(heading, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(title="cell backend/impl", fontsize=8, title_fontsize=8)
    fig.suptitle(title + ("\n" + textwrap.fill(note, 170) if note else ""), fontsize=9)
    return _save(fig, path)

"""The report's pictures, drawn from the report's DataFrames (never from a live model).

One set of pictures per set and configuration (:mod:`bench.report.grouping`): each title names
both, each file name is unique to its group, and the latest run per backend x impl x cell
is chosen within the group only.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.grouping import file_stems, numeric_sweep, slug, value_key, value_labels, value_order
from bench.report.styles import Styles
from bench.storage import atomic_write_bytes

# Beyond this a value is no measurement (a diverged loss) and breaks matplotlib's scales;
# such values, and non-finite ones, are left out and counted in a note on the plot.
PLOT_LIMIT = 1e100
PERPLEXITY_AXIS_TOP = 2000.0  # a diverging run (1e21) would flatten every other curve
SAMPLE_STEPS = 100  # bars drawn per row of an echo sample
MAX_FIGURE_WIDTH = 30.0  # inches: a wider canvas exhausts memory, not the reader
MAX_LEGEND = 20  # entries; a group holds at most a dozen backend x impl x cell runs
GRADIENT_DECADES = 15  # a gradient plot shows this many decades below its highest value
MAX_SEED_LINES = 5  # seeds of one cell x backend/impl drawn one line each; beyond, their median and range
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # 1.2e-38: float32's smallest normal number
GRADIENT_YLABEL = "||dL_T/dh_t|| / ||dL_T/dh_T-1||"  # at t = 0: the tables' grad ratio
SUBNORMAL_LABEL = "grey: float32 subnormal (< 1.2e-38)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain(text: Any, limit: int = 300) -> str:
    """A name from a record (a directory, tag, backend) shown as written: a ``$`` in it does
    not start a formula matplotlib would fail to parse, nor a leading ``_`` hide a label;
    control characters become spaces and a long name is cut."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _label(row: Any) -> str:
    return _plain(f"{row['cell']} {row['backend']}/{row['impl']}", 60)


def _where(set_name: str, configuration: str) -> str:
    text = f"set: {set_name}   configuration: {configuration}"
    text = text if len(text) <= 300 else text[:297] + "..."
    return "\n".join(_plain(line) for line in textwrap.wrap(text, 110))


def _plottable(values: Any, log: bool = False) -> tuple[np.ndarray, int]:
    """``values`` as floats with what cannot be drawn made NaN (a gap), and how many."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    array = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, copy=True)
    bad = ~np.isfinite(array) | (np.abs(array) > PLOT_LIMIT)
    if log:
        bad |= array <= 0
    bad &= ~np.isnan(array)
    array[bad] = np.nan
    return array, int(bad.sum())


def _note_dropped(ax: Any, dropped: int, log: bool = False) -> None:
    if dropped:
        what = "≤ 0, not finite or beyond ±1e100: not drawn on the log scale" if log else \
            "not finite or beyond ±1e100: not drawn"
        ax.text(0.99, 0.99, f"{dropped} value(s) {what}", transform=ax.transAxes, fontsize=7,
                ha="right", va="top", color="firebrick")


def _say_if_empty(ax: Any, what: str) -> None:
    """A panel none of whose lines has a point to draw says so, rather than stand empty."""
    if not any(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any() for line in ax.get_lines()):
        ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="dimgrey")


def _legend(ax: Any, **kwargs: Any) -> None:
    """The axes' legend, one entry per label (several seeds or backends draw one label's line
    several times), the first MAX_LEGEND of them."""
    unique = dict(zip(*reversed(ax.get_legend_handles_labels())))
    if SUBNORMAL_LABEL in unique:  # a mark on some curves, after the curves themselves
        unique[SUBNORMAL_LABEL] = unique.pop(SUBNORMAL_LABEL)
    labels, handles = list(unique), list(unique.values())
    if not handles:
        return
    if len(handles) > MAX_LEGEND:
        ax.text(0.01, 0.99, f"{len(handles) - MAX_LEGEND} more line(s) not in the legend", transform=ax.transAxes,
                fontsize=7, va="top")
    ax.legend(handles[:MAX_LEGEND], labels[:MAX_LEGEND], **kwargs)


def draw_all(records: list[dict], runs: pd.DataFrame, epochs: pd.DataFrame, grads: pd.DataFrame, out: Path) -> list[str]:
    """Every plot, per (set, configuration) group; sweeps per (set, sweep, fixed configuration).
    Failed runs are not drawn; interrupted, aborted, diverged and running ones show the
    epochs they completed."""
    if runs.empty:
        return []
    names, styles = _Names(out), Styles(runs)  # one colour per cell in every figure of the report
    return [str(f) for f in _draw_groups(records, runs, epochs, grads, names, styles)
            + _draw_sweeps(runs, epochs, grads, names, styles)]


class _Rows:
    """The rows of a frame that belong to some runs, in the frame's order: found through an
    index of each run's rows built once, not by a scan of every row per group (which made
    the plots quadratic in the records where each group is small)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.positions = frame.groupby("path", sort=False).indices if len(frame) else {}

    def __call__(self, paths: set[str]) -> pd.DataFrame:
        found = [self.positions[p] for p in paths if p in self.positions]
        if not found:
            return self.frame.iloc[0:0]
        return self.frame.iloc[np.sort(np.concatenate(found))]


class _Names:
    """File names in ``out``, each used once: a name taken already (two groups whose
    readable names coincide) gets a number."""

    def __init__(self, out: Path) -> None:
        self.out, self.taken = out, set()

    def __call__(self, *parts: str) -> Path:
        stem = "-".join(slug(part) for part in parts)
        name, k = stem, 1
        while name in self.taken:
            k += 1
            name = f"{stem}-{k}"
        self.taken.add(name)
        return self.out / f"{name}.png"


def _draw_groups(records: list[dict], runs: pd.DataFrame, epochs: pd.DataFrame, grads: pd.DataFrame,
                 names: _Names, styles: Styles) -> list[Path]:
    shown = runs[(runs["status"] != "failed") & (runs["epochs"] > 0) & runs["sweep"].isna()]
    groups = list(shown.groupby(["set", "config_key"], sort=True))
    stems = file_stems([(s, g["configuration"].iloc[0], k) for (s, k), g in groups])
    by_path = {r.get("_path", r["run_id"]): r for r in records}
    epochs_of, grads_of = _Rows(epochs), _Rows(grads)
    files: list[Path] = []
    for ((set_name, _), group), stem in zip(groups, stems):
        # the latest run of each seed of each combination: seeds are repeats, drawn together
        latest = group.sort_values("started_at", kind="stable").groupby(["backend", "impl", "cell", "seed"]).tail(1)
        latest = latest.sort_values(["cell", "backend", "impl", "seed"])
        where = _where(set_name, group["configuration"].iloc[0])
        task = _plain(group["task"].iloc[0])
        paths = set(latest["path"])
        group_grads = grads_of(paths)
        if not group_grads.empty:
            files.append(gradient_plot(group_grads, latest, task, where, names("gradients", stem), styles))
        group_epochs = epochs_of(paths)
        if not group_epochs.empty:
            files.append(curves_plot(group_epochs, latest, task, where, names("curves", stem), styles))
        files.append(throughput_plot(latest, task, where, names("throughput", stem), styles))
        for cell, cell_runs in latest.groupby("cell", sort=True):  # one per cell: every backend predicts alike
            cell_runs = cell_runs[cell_runs["seed"] == cell_runs["seed"].min()]
            row = next((row for _, row in cell_runs.iterrows() if is_bit_sample(by_path[row["path"]].get("sample"))),
                       None)
            if row is not None:
                files.append(echo_sample_plot(by_path[row["path"]]["sample"], _label(row), where,
                                              names(f"{slug(str(row['task']))}-sample", stem, cell)))
    return files


def _draw_sweeps(runs: pd.DataFrame, epochs: pd.DataFrame, grads: pd.DataFrame, names: _Names,
                 styles: Styles) -> list[Path]:
    """For a numeric sweep of a task whose main metric is accuracy (echo's lag, selective
    copying's length), the accuracy against the swept value; for other sweeps of a task with
    a memoryless baseline (copy, adding), the loss over the baseline against the swept value.
    For every sweep of a task with a baseline, the validation curves per value and the
    gradient norms over the whole sequence per value too."""
    files: list[Path] = []
    epochs_of, grads_of = _Rows(epochs), _Rows(grads)
    by_accuracy = runs[runs["sweep"].notna() & (runs["main_metric"] == "accuracy") & runs["accuracy"].notna()
                       & (runs["status"] == "completed")]
    groups = [(k, g) for k, g in by_accuracy.groupby(["set", "sweep", "sweep_key"], sort=True)
              if numeric_sweep(g["sweep_value"])]
    stems = file_stems([(s, g["sweep_configuration"].iloc[0], k) for (s, _, k), g in groups])
    files += [lag_plot(group, _where(set_name, f"{group['sweep_configuration'].iloc[0]}; {param} swept"),
                       names(f"sweep-{slug(str(param))}", stem), styles, str(param), str(group["task"].iloc[0]))
              for ((set_name, param, _), group), stem in zip(groups, stems)]
    drawn = {(set_name, param, key) for (set_name, param, key), _ in groups}
    swept = runs[runs["sweep"].notna() & runs["baseline"].notna()
                 & (runs["status"] != "failed") & (runs["epochs"] > 0)]
    groups = list(swept.groupby(["set", "sweep", "sweep_key"], sort=True))
    stems = file_stems([(s, g["sweep_configuration"].iloc[0], k) for (s, _, k), g in groups])
    for ((set_name, param, key), group), stem in zip(groups, stems):
        # every seed: repeats, drawn together; by the value's key, so that no value (a NaN) is lost
        latest = group.assign(_value=group["sweep_value"].map(value_key)).sort_values("started_at", kind="stable")
        latest = latest.groupby(["backend", "impl", "cell", "_value", "seed"]).tail(1).drop(columns="_value")
        task = _plain(group["task"].iloc[0])
        where = _where(set_name, f"{group['sweep_configuration'].iloc[0]}; {param} swept")
        completed = latest[latest["status"] == "completed"]
        if len(completed) and (set_name, param, key) not in drawn:  # the accuracy plot says it for accuracy tasks
            files.append(baseline_sweep_plot(completed, task, param, where, names("sweep", param, stem), styles))
        files.append(sweep_curves_plot(epochs_of(set(latest["path"])), latest, task, param, where,
                                       names("sweep-curves", param, stem), styles))
        sweep_grads = grads_of(set(latest["path"]))
        if not sweep_grads.empty:
            files.append(sweep_gradient_plot(sweep_grads, latest, task, param, where,
                                             names("sweep-gradients", param, stem), styles))
    return files


def baseline_sweep_plot(runs: pd.DataFrame, task: str, param: str, where: str, path: Path, styles: Styles) -> Path:
    """Test loss over the memoryless baseline against the swept value (log scale), one line
    per cell and backend/impl: below 1 the model remembers; at 1 it learned what needs no
    memory and nothing more."""
    from bench.report.criteria import SOLVED_FRACTION

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.4))
    dropped = 0
    ordered, positions, numeric = _sweep_axis(runs["sweep_value"])
    for (cell, backend, impl), group in runs.groupby(["cell", "backend", "impl"], sort=True):
        keys = group["sweep_value"].map(value_key)
        means = pd.to_numeric(group["loss_vs_baseline"], errors="coerce").groupby(keys.to_numpy()).mean()  # over seeds
        values = np.array([positions[key] for key in means.index], dtype=float)
        ratios, n_ratios = _plottable(means, log=True)
        order = np.argsort(values, kind="stable")
        dropped += n_ratios
        style, marker = styles.line(backend, impl)
        ax.semilogy(values[order], ratios[order], linestyle=style, marker=marker, color=styles.colour(cell),
                    label=_plain(f"{cell} {backend}/{impl}", 60))
    ax.axhline(1.0, color="grey", linestyle="--", label="memoryless baseline")
    ax.axhline(SOLVED_FRACTION, color="grey", linestyle=":", label=f"solved ({SOLVED_FRACTION:g} x baseline)")
    if numeric:
        ax.set_xticks([float(v) for v in ordered])
    else:  # strings or bools: one place per value, in order, each named
        ax.set_xticks(range(len(ordered)), [_plain(label, 30) for label in value_labels(ordered)])
        ax.set_xlim(-0.5, len(ordered) - 0.5)
    ax.set(xlabel=_plain(param) + (" (T)" if numeric else ""), ylabel="test loss / memoryless baseline")
    ax.set_title(f"{task}: loss against the baseline as the memory needed grows", fontsize=10)
    _note_dropped(ax, dropped, log=True)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(where, fontsize=9)
    return _save(fig, path)


def _sweep_axis(values: pd.Series) -> tuple[list[Any], dict[str, float], bool]:
    """The distinct swept values in order, each one's place on the x axis by its
    :func:`~bench.report.grouping.value_key`, and whether the axis is numeric (the values
    themselves) or categorical (0, 1, 2, ... for strings, bools, or a NaN among numbers)."""
    distinct = {value_key(v): v for v in values}
    ordered = sorted(distinct.values(), key=value_order)
    numeric = numeric_sweep(ordered)
    positions = {value_key(v): float(v) if numeric else float(i) for i, v in enumerate(ordered)}
    return ordered, positions, numeric


def _value_titles(param: str, values: list[Any]) -> list[str]:
    """``param = value`` as each panel's title: 50, not 50.0; a string as written."""
    return [_plain(f"{param} = {label}", 60) for label in value_labels(values)]


def _shared_legend(axes: list[Any]) -> None:
    """One legend beside the last panel for the lines of every panel (a run may be in some
    panels only)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        labels = sorted(seen, key=lambda label: (label == SUBNORMAL_LABEL, label))[:MAX_LEGEND]  # the mark last
        axes[-1].legend([seen[k] for k in labels], labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _finish_panel(ax: Any, title: str, xlabel: str, dropped: int) -> None:
    """Title, axis label and grid of one log-scale panel, and what it left out in words
    that fit a narrow panel."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.grid(True, which="both", alpha=0.3)
    if dropped:
        ax.text(0.98, 0.02, f"{dropped} value(s) ≤ 0 or\nnot finite: not drawn", transform=ax.transAxes, fontsize=6,
                ha="right", va="bottom", color="firebrick")


def _finish_panels(fig: Any, axes: list[Any], ylabel: str, title: str, path: Path) -> Path:
    axes[0].set_ylabel(ylabel)
    _shared_legend(axes)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _panels(values: list[Any], plt: Any, height: float = 3.2) -> tuple[Any, list[Any]]:
    """One panel per swept value, side by side (two rows beyond four)."""
    n = max(len(values), 1)
    cols = n if n <= 4 else (n + 1) // 2
    rows = 1 if n <= 4 else 2
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 1.6, height * rows + 0.9), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def sweep_curves_plot(epochs: pd.DataFrame, runs: pd.DataFrame, task: str, param: str, where: str, path: Path,
                      styles: Styles) -> Path:
    """Validation loss over the baseline against training updates, one panel per swept
    value: when (and whether) each cell leaves the baseline."""
    from bench.report.criteria import SOLVED_FRACTION

    plt = _pyplot()
    values, _, _ = _sweep_axis(runs["sweep_value"])
    keys = runs["sweep_value"].map(value_key)
    fig, axes = _panels(values, plt)
    valid = epochs[epochs["split"] == "valid"]
    for ax, value, title in zip(axes, values, _value_titles(param, values)):
        dropped = 0
        for _, run in runs[keys == value_key(value)].sort_values(["cell", "backend", "impl"]).iterrows():
            curve = valid[valid["path"] == run["path"]].sort_values("epoch")
            if curve.empty:
                continue
            ratios, n = _plottable(curve["loss"] / run["baseline"], log=True)
            dropped += n
            style, _ = styles.line(run["backend"], run["impl"])
            ax.semilogy(curve["epoch"].to_numpy(dtype=float) * run["updates_per_epoch"], ratios, linestyle=style,
                        color=styles.colour(run["cell"]), label=_plain(f"{run['cell']} {run['backend']}/{run['impl']}", 60))
        _say_if_empty(ax, "no validation loss recorded")
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.axhline(SOLVED_FRACTION, color="grey", linestyle=":", linewidth=0.8)
        _finish_panel(ax, title, "training updates", dropped)
    title = f"{task}: validation loss against the memoryless baseline (grey dashed; grey dotted: solved)"
    return _finish_panels(fig, axes, "valid loss / memoryless baseline", f"{title}\n{where}", path)




def _relative(norms: Any, subnormal_floor: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One curve ||dL_T/dh_t|| (t = 0..T-1, in order) over its value at the last step: the
    quantity the tables quote as the grad ratio at t = 0. Returns the ratios to draw (NaN
    where there is none), where the norm underflowed to 0, where it lies below
    ``subnormal_floor`` (float32's normal range, for a float32 run), and how many other
    values could not be drawn (not finite, negative, or no last value to divide by)."""
    values, dropped = _plottable(norms)
    zeros, subnormal = values == 0, (values > 0) & (values < subnormal_floor)
    last = values[-1] if len(values) else np.nan
    if not (np.isfinite(last) and last > 0):  # no ratio at any step: every measured value is lost
        return np.full(len(values), np.nan), np.zeros(len(values), bool), subnormal & False, \
            dropped + int((~np.isnan(values)).sum())
    with np.errstate(over="ignore"):
        ratios = values / last
    bad = ~np.isnan(values) & ~zeros & ~(np.isfinite(ratios) & (ratios > 0))
    ratios[bad | zeros] = np.nan
    return ratios, zeros, subnormal, dropped + int(bad.sum())


def _draw_relative(ax: Any, t: np.ndarray, norms: Any, subnormal_floor: float, **line: Any) -> tuple[int, int]:
    """Draw one curve as :func:`_relative` makes it, a triangle at the axis floor at each
    step where it underflowed to 0 and a grey halo where it is subnormal; returns how
    many values underflowed and how many could not be drawn."""
    from matplotlib.transforms import blended_transform_factory

    ratios, zeros, subnormal, dropped = _relative(norms, subnormal_floor)
    ax.semilogy(t, ratios, **line)
    if zeros.any():  # at the bottom of the axis, whatever its range: x in data, y in axes units
        ax.plot(t[zeros], np.zeros(int(zeros.sum())), "v", color=line.get("color"), markersize=4, clip_on=False,
                transform=blended_transform_factory(ax.transData, ax.transAxes))
    if subnormal.any():  # a grey halo over that stretch of the curve
        ax.semilogy(t, np.where(subnormal, ratios, np.nan), color="grey", linewidth=4, alpha=0.35, zorder=1,
                    solid_capstyle="butt", label=SUBNORMAL_LABEL)
    return int(zeros.sum()), dropped


def _underflow_note(underflowed: int, short: bool = False) -> str:
    if not underflowed:
        return ""
    if short:
        return f"▼ {underflowed} value(s) underflowed to 0"
    return (f"▼ at the axis floor: {underflowed} value(s) of ||dL_T/dh_t|| underflowed to 0 (below the float "
            "type's range), so the ratio is 0: no point on a log scale")


def sweep_gradient_plot(grads: pd.DataFrame, runs: pd.DataFrame, task: str, param: str, where: str,
                        path: Path, styles: Styles) -> Path:
    """||dL_T/dh_t|| over its value at the last step (top layer, log scale; at t = 0 the
    tables' gradient ratio), one panel per swept value, each cell at initialisation (solid)
    and after training (dashed), from the first backend/impl of each cell (the others agree
    to float rounding: docs/gradient-norms.md)."""
    plt = _pyplot()
    values, _, _ = _sweep_axis(runs["sweep_value"])
    keys = runs["sweep_value"].map(value_key)
    fig, axes = _panels(values, plt, height=3.4)
    top = grads[(grads["quantity"] == "dLT_dh") & (grads["layer"] == grads.groupby("path")["layer"].transform("max"))]
    for ax, value, title in zip(axes, values, _value_titles(param, values)):
        dropped = underflowed = 0
        chosen = runs[keys == value_key(value)].sort_values(["cell", "backend", "impl"]).groupby("cell").head(1)
        for _, run in chosen.iterrows():
            curves = top[top["path"] == run["path"]]
            if curves.empty:
                continue
            # a float32 run's norms end in subnormals and flush at 1.4e-45: a floor of the
            # arithmetic, not of the cell
            floor = FLOAT32_TINY if run["dtype"] == "float32" else 0.0
            for epoch, style, when in ((curves["epoch"].min(), "-", "at init"), (curves["epoch"].max(), "--", "trained")):
                curve = curves[curves["epoch"] == epoch].sort_values("t")
                zeros, n = _draw_relative(ax, curve["t"].to_numpy(dtype=float), curve["norm"], floor, linestyle=style,
                                          color=styles.colour(run["cell"]),
                                          label=_plain(f"{run['cell']} {when} ({run['backend']}/{run['impl']})", 60))
                underflowed, dropped = underflowed + zeros, dropped + n
        _say_if_empty(ax, "no gradient norms recorded")
        _finish_panel(ax, title, "time step t (loss at the last step)", dropped)
        if underflowed:
            # under the axis label: the triangles and the lowest curves are at the bottom of the panel
            ax.annotate(_underflow_note(underflowed, short=True), xy=(0, 0), xycoords="axes fraction", xytext=(0, -30),
                        textcoords="offset points", fontsize=7, va="top", color="firebrick")
    title = (f"{task}: how much of the last step's error reaches step t (at t = 0: the tables' gradient ratio; "
             "▼ at the floor: underflowed to 0)")
    return _finish_panels(fig, axes, GRADIENT_YLABEL, f"{title}\n{where}", path)


def gradient_plot(grads: pd.DataFrame, runs: pd.DataFrame, task: str, where: str, path: Path, styles: Styles) -> Path:
    """||dL_T/dh_t|| over its value at the last step against t (top layer, log scale; at
    t = 0 the tables' gradient ratio): at initialisation and after training, one line per
    run; a cell x backend/impl with more than MAX_SEED_LINES seeds as the median over its
    seeds with their range as a band (a thousand seeds would be a thousand lines, no more
    readable and slower to draw than the report's every other part)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 5.6))
    top = grads[(grads["quantity"] == "dLT_dh") & (grads["layer"] == grads.groupby("path")["layer"].transform("max"))]
    dropped = underflowed = 0
    by_path = runs.set_index("path")
    combination = dict(zip(by_path.index, zip(by_path["cell"].astype(str), by_path["backend"], by_path["impl"])))
    float32 = {p for p, dtype in by_path["dtype"].items() if dtype == "float32"}
    members: dict[tuple, list[str]] = {}
    for run_path in top["path"].unique():
        members.setdefault(combination[run_path], []).append(run_path)
    banded = {key: paths for key, paths in members.items() if len(paths) > MAX_SEED_LINES}
    order = {p: k for k, p in enumerate(runs["path"])}  # the runs' order: by cell, then backend/impl
    for run_path, run in sorted(top.groupby("path", sort=False), key=lambda item: order.get(item[0], len(order))):
        key = combination[run_path]
        if key in banded:
            if banded[key][0] == run_path:  # drawn once, where its first run would be
                zeros, n = _seed_band(ax, top[top["path"].isin(set(banded[key]))], key[0], styles)
                underflowed, dropped = underflowed + zeros, dropped + n
            continue
        floor = FLOAT32_TINY if run_path in float32 else 0.0
        for epoch, style, when in ((run["epoch"].min(), "-", "at init"), (run["epoch"].max(), "--", "trained")):
            curve = run[run["epoch"] == epoch].sort_values("t")
            # every line labelled (the legend shows each label once), so a cut curve is named
            zeros, n = _draw_relative(ax, curve["t"].to_numpy(dtype=float), curve["norm"], floor, linestyle=style,
                                      color=styles.colour(key[0]), alpha=0.7, label=f"{_plain(key[0])} {when}")
            underflowed, dropped = underflowed + zeros, dropped + n
    cut_note = _clip_decades(ax)
    in_plot = set(top["path"])
    drawn = sorted({f"{r['backend']}/{r['impl']}" for _, r in runs.iterrows() if r["path"] in in_plot})
    seeds = runs[runs["path"].isin(in_plot)]["seed"].nunique() if "seed" in runs else 1
    if banded:
        overlap = (f"one line per backend/impl ({{}}) and seed ({seeds} seeds: different initial weights); over "
                   f"{MAX_SEED_LINES} seeds of one, the median over them, the band their range")
    elif seeds > 1:
        overlap = f"one line per backend/impl ({{}}) and seed ({seeds} seeds: different initial weights)"
    else:
        overlap = "one line per backend/impl ({}); they overlap" if len(drawn) > 1 else "backend/impl: {}"
    _note_dropped(ax, dropped, log=True)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step t (the loss is at the last step, T-1)")
    # the notes go under the axis, where no curve runs
    notes = [(_plain(overlap.format(", ".join(drawn))), "black"), (cut_note, "firebrick"),
             (_underflow_note(underflowed), "firebrick")]
    for k, (note, colour) in enumerate((n, c) for n, c in notes if n):
        ax.annotate(note, xy=(0, 0), xycoords="axes fraction", xytext=(0, -38 - 11 * k), textcoords="offset points",
                    fontsize=7, va="top", color=colour)
    ax.set_ylabel(f"{GRADIENT_YLABEL}\n(mean over the batch; at t = 0: the tables' grad ratio)", fontsize=9)
    ax.set_title(f"{task}: how much of the last step's error reaches step t", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(where, fontsize=9)
    return _save(fig, path)


def _seed_band(ax: Any, curves: pd.DataFrame, cell: str, styles: Styles) -> tuple[int, int]:
    """The median over the runs in ``curves`` (one cell x backend/impl's seeds) of each
    run's ratio to its last step, at initialisation and after training, each with a band
    from the lowest to the highest run; returns how many values underflowed to 0 and how
    many others could not be drawn."""
    from matplotlib.transforms import blended_transform_factory

    underflowed = dropped = 0
    color, name = styles.colour(cell), _plain(cell)
    for pick, style, when in (("min", "-", "at init"), ("max", "--", "trained")):
        chosen = curves[curves["epoch"] == curves.groupby("path")["epoch"].transform(pick)].sort_values("t")
        parts = []
        for _, run in chosen.groupby("path", sort=False):
            ratios, zeros, _, n = _relative(run["norm"])
            underflowed, dropped = underflowed + int(zeros.sum()), dropped + n
            parts.append(pd.DataFrame({"t": run["t"].to_numpy(dtype=float), "ratio": np.where(zeros, 0.0, ratios)}))
        stats = pd.concat(parts).groupby("t")["ratio"].agg(["median", "min", "max"])
        t, median = stats.index.to_numpy(dtype=float), stats["median"].to_numpy()
        ax.semilogy(t, np.where(median > 0, median, np.nan), style, color=color, alpha=0.9, label=f"{name} {when}")
        if (median == 0).any():  # half the seeds or more underflowed there
            ax.plot(t[median == 0], np.zeros(int((median == 0).sum())), "v", color=color, markersize=4, clip_on=False,
                    transform=blended_transform_factory(ax.transData, ax.transAxes))
        low = stats["min"].to_numpy()
        ax.fill_between(t, np.where(low > 0, low, np.nan), stats["max"].to_numpy(), color=color, alpha=0.12,
                        linewidth=0)
    return underflowed, dropped


def _clip_decades(ax: Any, decades: float = GRADIENT_DECADES) -> str:
    """Show at most ``decades`` below the highest value on a log axis: one curve that falls
    to 1e-45 would otherwise squeeze every other into a sliver. Returns a note naming the
    curves cut off (each label once, with the lowest value it reaches), or "" if none is."""
    lines = [line for line in ax.get_lines() if len(line.get_ydata())]
    values = [np.asarray(line.get_ydata(), dtype=float) for line in lines]
    finite = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values]) if values else np.array([])
    if not finite.size or finite.min() >= finite.max() / 10**decades:
        return ""
    floor = finite.max() / 10**decades
    ax.set_ylim(bottom=floor)
    lowest: dict[str, float] = {}
    for line, v in zip(lines, values):
        low = float(np.nanmin(np.where(v > 0, v, np.inf)))
        if low < floor and line.get_label() != SUBNORMAL_LABEL:  # the marks of a curve named already
            label = line.get_label() if not line.get_label().startswith("_") else "an unnamed curve"
            lowest[label] = min(low, lowest.get(label, np.inf))
    cut = ", ".join(f"{label} (to {low:.0e})" for label, low in sorted(lowest.items()))
    return _plain(f"axis cut at {floor:.0e}; below it: {cut}", 200)


def curves_plot(epochs: pd.DataFrame, runs: pd.DataFrame, task: str, where: str, path: Path, styles: Styles) -> Path:
    """Validation (bold, the cell's colour) and train (thin, pale) per epoch: one colour per
    cell, one line style per backend/impl (as in every figure); the loss on a log scale where
    it spans decades, and an accuracy panel beside it where some run has an accuracy. A
    combination run with several seeds is drawn as the mean over them with a band from the
    lowest to the highest."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    # a loss per token that is a log-likelihood (PTB's) is read as perplexity
    metric = "perplexity" if "reports_perplexity" in runs and runs["reports_perplexity"].fillna(False).astype(bool).any() else "loss"
    shown = pd.to_numeric(epochs[metric], errors="coerce")
    shown = shown[np.isfinite(shown) & (shown > 0) & (shown < PLOT_LIMIT)]
    log = metric == "perplexity" or (len(shown) > 0 and shown.max() > 100 * shown.min())
    accuracy = bool(pd.to_numeric(epochs["accuracy"], errors="coerce").notna().any())  # a regression task has none
    fig, panels = plt.subplots(1, 2 if accuracy else 1, figsize=(12.5, 5) if accuracy else (8.5, 5), squeeze=False)
    panels = list(panels[0])
    left = panels[0]
    cut, dropped = False, [0] * len(panels)
    markers = epochs["epoch"].nunique() <= 20  # beyond, markers only blot the lines
    lowest, banded = np.inf, False
    columns = [(left, metric, log), (panels[-1], "accuracy", False)][:len(panels)]
    for (cell, backend, impl), seeds in runs.groupby(["cell", "backend", "impl"], sort=True):
        style, marker = styles.line(backend, impl)
        mine = epochs[epochs["path"].isin(set(seeds["path"]))]
        named = "valid" if (mine["split"] == "valid").any() else "train"  # the legend shows the bold line
        label = _plain(f"{cell} {backend}/{impl}", 60) + (f" (mean of {len(seeds)} seeds)" if len(seeds) > 1 else "")
        for split in ("train", "valid"):
            passes = mine[mine["split"] == split]
            if passes.empty:
                continue
            faint = split == "train"
            kwargs = dict(color=styles.pale(cell) if faint else styles.colour(cell), linestyle=style,
                          marker=marker if markers else None, markersize=3, linewidth=1.0 if faint else 1.8,
                          markerfacecolor="white" if faint else None, zorder=1 if faint else 2,
                          label=label if split == named else None)
            for side, (ax, column, is_log) in enumerate(columns):
                x, mean, low, high, n = _mean_over_seeds(passes, column, is_log)
                dropped[side] += n
                if side == 0:
                    lowest = min(lowest, np.nanmin(low, initial=np.inf))
                    cut = cut or bool(metric == "perplexity" and np.nanmax(mean, initial=0) > PERPLEXITY_AXIS_TOP)
                ax.plot(x, mean, **kwargs)
                if len(seeds) > 1:
                    ax.fill_between(x, low, high, color=kwargs["color"], alpha=0.12 if faint else 0.2, linewidth=0)
                    banded = True
    title = f"{task}: {metric}" + (", log scale" if log and metric == "loss" else "")
    if log:
        left.set_yscale("log")
        if np.isfinite(lowest) and lowest > 0:
            left.set_ylim(bottom=lowest / 1.5)  # not the decade below, where nothing is drawn
    if cut:
        left.set_ylim(top=PERPLEXITY_AXIS_TOP)
        title += f"; axis cut at {PERPLEXITY_AXIS_TOP:,.0f}"
    bands = "; bands: the range over seeds" if banded else ""
    left.set(xlabel="epoch", ylabel=metric)
    left.set_title(title + ("" if accuracy else bands), fontsize=10)
    if accuracy:
        panels[-1].set(xlabel="epoch", ylabel="accuracy")
        panels[-1].set_title(f"{task}: accuracy{bands}", fontsize=10)
    first, last = np.nanmin(epochs["epoch"].to_numpy(dtype=float)), np.nanmax(epochs["epoch"].to_numpy(dtype=float))
    for ax, n in zip(panels, dropped):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if last - first < 2:  # one or two epochs: whole numbers either side, not 0.96 to 1.04
            ax.set_xlim(first - 1, last + 1)
        ax.grid(True, which="both" if ax is left and log else "major", alpha=0.3)
        _note_dropped(ax, n, log=ax is left and log)
    _split_key(panels[-1], "o" if markers else None)
    _legend(panels[-1], fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(where, fontsize=9)
    return _save(fig, path)


def _split_key(ax: Any, marker: str | None) -> None:
    """Which line is which split, drawn as the lines are (in grey: every cell draws both;
    with markers where the curves have them), beside the axes under the legend of runs."""
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D

    grey, pale = (0.3, 0.3, 0.3), tuple(0.5 * 0.3 + 0.5 for _ in range(3))
    handles = [Line2D([], [], color=grey, linewidth=1.8, marker=marker, markersize=3),
               Line2D([], [], color=pale, linewidth=1.0, marker=marker, markersize=3, markerfacecolor="white")]
    key = Legend(ax, handles, ["validation split (bold)", "train split (thin, pale)"], fontsize=7,
                 loc="lower left", bbox_to_anchor=(1.01, 0.0), title="line weight", title_fontsize=7)
    ax.add_artist(key)  # a second legend: the runs' own comes from ax.legend


def _mean_over_seeds(passes: pd.DataFrame, column: str, log: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Per epoch, the mean of ``column`` over the runs in ``passes``, its lowest and highest
    value (the band: a range never claims an accuracy above 1 or a loss below 0, as mean ± std
    does where seeds learn at different epochs), and how many values could not be drawn. An
    epoch some seeds did not reach averages the seeds that did."""
    values, dropped = _plottable(passes[column], log=log)
    frame = pd.DataFrame({"epoch": passes["epoch"].to_numpy(dtype=float), "value": values})
    stats = frame.groupby("epoch", sort=True)["value"].agg(["mean", "min", "max"])
    return (stats.index.to_numpy(), stats["mean"].to_numpy(), stats["min"].to_numpy(), stats["max"].to_numpy(),
            dropped)


def throughput_plot(runs: pd.DataFrame, task: str, where: str, path: Path, styles: Styles) -> Path:
    """Train (solid) and evaluation (pale, hatched) tokens/s per backend x impl x cell, in
    the cell's colour (the mean over its seeds, with their range as an error bar); each bar
    names its CPU where the group's runs ran on more than one (the configuration does not
    fix the machine)."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    several = runs["cpu"].nunique() > 1
    keys = ["cell", "backend", "impl", "cpu"]
    combos = runs.groupby(keys, sort=False)
    labels = [_plain(f"{cell} {backend}/{impl}", 60) + (f" (n={len(g)})" if len(g) > 1 else "")
              + ("\n" + _plain(cpu, 40) if several else "") for (cell, backend, impl, cpu), g in combos]
    fig, ax = plt.subplots(figsize=(min(MAX_FIGURE_WIDTH, max(6, 1.1 * len(labels))), 5))
    x = np.arange(len(labels))
    dropped = 0
    cells = [cell for (cell, _, _, _), _ in combos]
    bars = {"train": dict(color=[styles.colour(c) for c in cells]),
            "evaluate": dict(color=[styles.pale(c) for c in cells], hatch="///", edgecolor="white", linewidth=0)}
    for offset, column, name in ((-0.2, "train_tok_s", "train"), (0.2, "eval_tok_s", "evaluate")):
        means, lows, highs = [], [], []
        for _, group in combos:
            values, n = _plottable(group[column])
            dropped += n
            finite = values[np.isfinite(values)]
            mean = finite.mean() if finite.size else np.nan
            means.append(mean)
            lows.append(max(mean - finite.min(), 0.0) if finite.size else 0.0)  # rounding: never below 0
            highs.append(max(finite.max() - mean, 0.0) if finite.size else 0.0)
        errors = np.array([lows, highs]) if runs.groupby(keys).size().max() > 1 else None
        ax.bar(x + offset, means, 0.4, yerr=errors, capsize=3 if errors is not None else 0, **bars[name])
    if len(labels) <= 2 * MAX_LEGEND:
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xlabel(f"{len(labels)} runs: too many to name here; the table lists them")
    ax.set_ylabel("tokens / s (median of timed stretches)")
    seeds = " (mean over seeds; bars: their range)" if runs.groupby(keys).size().max() > 1 else " (latest run of each)"
    shown = pd.to_numeric(pd.concat([runs["train_tok_s"], runs["eval_tok_s"]]), errors="coerce")
    shown = shown[np.isfinite(shown) & (shown > 0)]
    if len(shown) and shown.max() > 20 * shown.min():  # a 1.4M bar would flatten every 20k one
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        seeds += ", log scale"
    ax.set_title(f"{task}: throughput{seeds}", fontsize=10)
    _note_dropped(ax, dropped)
    # the bars' colours are their cells' (named under each pair): the key says which bar is which pass
    ax.legend(handles=[Patch(facecolor="dimgrey"), Patch(facecolor="lightgrey", hatch="///", edgecolor="white")],
              labels=["train (solid)", "evaluate (pale, hatched)"], loc="upper left", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(where, fontsize=9)
    return _save(fig, path)


def lag_plot(sweep: pd.DataFrame, where: str, path: Path, styles: Styles, param: str, task: str) -> Path:
    """Test accuracy against the swept length (the echo lag): where each cell's memory ends.
    The chance line is a uniform guess over the task's classes, where the records state them."""
    from bench.report.criteria import REMEMBERED_ACCURACY

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    dropped = 0
    for (cell, backend, impl), group in sweep.groupby(["cell", "backend", "impl"], sort=True, dropna=False):
        group = group.sort_values("started_at", kind="stable").groupby(["sweep_value", "seed"], dropna=False).tail(1)
        group = group.groupby("sweep_value", as_index=False, dropna=False)["accuracy"].mean()  # over seeds
        lags, n_lags = _plottable(group["sweep_value"])
        accuracy, n_accuracy = _plottable(group["accuracy"])
        order = np.argsort(lags, kind="stable")
        dropped += n_lags + n_accuracy
        style, marker = styles.line(backend, impl)
        ax.plot(lags[order], accuracy[order], linestyle=style, marker=marker, color=styles.colour(cell),
                label=_plain(f"{cell} {backend}/{impl}", 60))
    ax.axhline(REMEMBERED_ACCURACY, color="grey", linestyle=":", label=f"{REMEMBERED_ACCURACY:.0%}")
    classes = pd.to_numeric(sweep["n_classes"], errors="coerce").dropna() if "n_classes" in sweep else pd.Series([])
    if len(classes) and classes.nunique() == 1 and classes.iloc[0] >= 2:
        ax.axhline(1 / classes.iloc[0], color="grey", linestyle="--", label="chance")
    ax.set(xlabel=_plain(param, 60), ylabel="test accuracy")
    ax.set_title(_plain(f"{task}: accuracy against {param}", 80), fontsize=10)
    _note_dropped(ax, dropped)
    ax.grid(True, alpha=0.3)
    _legend(ax, fontsize=8)
    fig.suptitle(where, fontsize=9)
    return _save(fig, path)


def is_bit_sample(sample: Any) -> bool:
    """Whether a record's sample is a stream of bits, one input value a step, targets and
    predictions in {0, 1} aligned with it (the echo task's), which :func:`echo_sample_plot` draws."""
    if not isinstance(sample, dict) or sample.get("target_words"):
        return False
    try:
        arrays = [np.asarray(sample[k], dtype=float) for k in ("inputs", "targets", "predictions")]
    except (KeyError, TypeError, ValueError):
        return False
    return (all(a.ndim == 2 and a.size for a in arrays) and len({a.shape for a in arrays}) == 1
            and all(np.isin(a, (0.0, 1.0)).all() for a in arrays))


def echo_sample_plot(sample: dict[str, Any], label: str, where: str, path: Path) -> Path:
    """The tutorial's sample, made readable: for each batch row, input, target and
    prediction as three aligned rows of cells (black 1, white 0), and a red mark under
    every step where the prediction misses the target."""
    plt = _pyplot()
    rows = min(len(sample["inputs"]), len(sample["targets"]), len(sample["predictions"]), 5)
    fig, axes = plt.subplots(max(rows, 1), 1, figsize=(10, 1.25 * max(rows, 1) + 0.9), sharex=True, squeeze=False)
    dropped = total_misses = 0
    for row, ax in enumerate(axes[:rows, 0]):
        series = [_plottable(sample[k][row][:SAMPLE_STEPS]) for k in ("inputs", "targets", "predictions")]
        dropped += sum(n for _, n in series)
        steps = min(len(values) for values, _ in series)  # a damaged record's rows may differ in length
        if not steps:
            ax.text(0.5, 0.5, "no steps in this row", transform=ax.transAxes, ha="center", fontsize=8)
            ax.set_yticks([])
            continue
        grid = np.vstack([np.nan_to_num(values[:steps], nan=0.0) for values, _ in series])
        ax.imshow(grid, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        misses = np.flatnonzero(grid[1] != grid[2])
        total_misses += len(misses)
        if len(misses):  # an empty line drawn unclipped leaves tight_layout nothing to measure
            ax.plot(misses, np.full(len(misses), 2.5), "^", color="firebrick", markersize=4, clip_on=False,
                    label="prediction misses the target")
        ax.set_yticks([0, 1, 2], ["input", "target", "predicted"], fontsize=7)
        ax.set_ylim(2.75, -0.5)
        ax.set_ylabel(f"row {row + 1}", fontsize=8)
        ax.set_xticks(np.arange(0, grid.shape[1], 5))
        ax.set_xticks(np.arange(grid.shape[1] + 1) - 0.5, minor=True)  # cell borders: a run of 1s shows its length
        ax.set_yticks([0.5, 1.5], minor=True)
        ax.grid(which="minor", color="silver", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    marked = next((ax for ax in axes[:, 0] if ax.get_legend_handles_labels()[0]), None)
    if marked is not None:
        handles, labels = marked.get_legend_handles_labels()
        axes[0, 0].legend(handles[:1], labels[:1], fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                          frameon=False)
    _note_dropped(axes[0, 0], dropped)
    verdict = f"{total_misses} miss(es), marked" if total_misses else "every prediction right"
    axes[0, 0].set_title(f"echo test sample, {label}: black = 1, white = 0; {verdict}", fontsize=10, loc="left")
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(where, fontsize=9)
    return _save(fig, path)


PNG_COLOURS = 48  # a plot's few colours and their anti-aliasing fit a palette: a third of the bytes


def _save(fig: Any, path: Path) -> Path:
    """The figure as a palette PNG (the report, and report.html which embeds every plot,
    stay small enough to commit and to mail)."""
    import io

    from PIL import Image

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    _pyplot().close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        # the octree keeps the cells' colours as drawn (median cut turned tab10's orange brown)
        palette = image.convert("RGB").quantize(colors=PNG_COLOURS, method=Image.Quantize.FASTOCTREE)
    png = io.BytesIO()
    palette.save(png, "PNG", optimize=True)
    atomic_write_bytes(path, png.getvalue())  # never through a link at the plot's name
    return path

"""The report's first section: the few answers the records support, one sentence each,
generated from the pooled runs (:mod:`bench.report.seeds`), the sweeps, the speed tables and the
published figures, each ending with a link to its evidence. A sentence is written only
where records back it; where the runs are too few to rank (one seed) or their
configurations differ, the sentence says so instead of concluding.

Every function here returns markdown lines; none reads a file.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd

from bench.report.grouping import numeric_sweep, sweep_columns, value_key, value_order, value_text
from bench.report.mdtext import code, text
from bench.report.criteria import REMEMBERED_ACCURACY, SOLVED_FRACTION



METRIC_WORDS = {"test_ppl": ("test perplexity", True), "test_bpc": ("test bits per character", True),
                "accuracy": ("test accuracy", False),
                "loss_vs_baseline": ("test loss / memoryless baseline", True), "test_loss": ("test loss", True)}


def main_metric(declared: Any, has_baseline: bool) -> tuple[str, str, bool]:
    """(column, words, lower is better) of a task's headline metric: what its records declare
    (``declared["main_metric"]``, the task's ``report_metric``), else the loss over its
    memoryless baseline, else the loss."""
    column = declared if isinstance(declared, str) and declared in METRIC_WORDS else None
    if column is None:
        column = "loss_vs_baseline" if has_baseline else "test_loss"
    words, lower = METRIC_WORDS[column]
    return column, words, lower


def _ratio(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "0 (underflow)" if value == 0 else f"{value:.1e}" if value < 0.01 else f"{value:.2f}"


def _who(row: Any) -> str:
    return text(f"{row['backend']}/{row['impl']}")


def _link(anchors: dict[tuple[str, str], str], row: Any, text: str = "table") -> str:
    anchor = anchors.get((row["set"], row["config_key"]))
    return f" ([{text}](#{anchor}))" if anchor else ""


def _best_per_cell(group: pd.DataFrame, column: str, lower: bool) -> pd.DataFrame:
    """For each cell, its pooled row with the best value of ``column``."""
    done = group[group[column].notna()]
    if done.empty:
        return done
    order = done.sort_values(column, ascending=lower, kind="stable")
    return order.groupby("cell", sort=False).head(1)


def gradient_sentences(pooled: pd.DataFrame, anchors: dict[tuple[str, str], str], steps: Callable[[Any], int | None]
                       ) -> list[str]:
    """Per task, from its configuration with the most cells: how much of the last step's
    gradient reaches the first step at initialisation, per cell, and the gap between the
    best and worst cell."""
    lines = []
    measured = pooled[pooled["grad_ratio_init"].notna()]
    for task, runs in measured.groupby("task", sort=True):
        groups = sorted(runs.groupby(["set", "config_key"], sort=True), key=lambda item: (-item[1]["cell"].nunique(),
                                                                                         -len(item[1]), item[0]))
        (set_name, _), group = groups[0]
        if group["cell"].nunique() < 2:
            continue
        per_cell = group.groupby("cell")["grad_ratio_init"].median().sort_values(ascending=False)
        best, worst = per_cell.index[0], per_cell.index[-1]
        parts = ", ".join(f"{text(cell)} {_ratio(value)}" for cell, value in per_cell.items())
        row = group.iloc[0]
        t = steps(row)
        across = f"across {t} steps" if t else "across the window"
        over = "median over backends" + (f", each the mean of up to {group['n'].max()} seeds" if group["n"].max() > 1 else "")
        gap = (f": the {text(best)} keeps {per_cell.iloc[0] / per_cell.iloc[-1]:.1e} times more than the {text(worst)}"
               if per_cell.iloc[-1] > 0 else f": the {text(worst)}'s vanishes entirely (float32 underflow)")
        trained = group.groupby("cell")["grad_ratio_final"].median().dropna()
        if len(trained):
            gap += "; after training, " + ", ".join(f"{text(cell)} {_ratio(trained[cell])}" for cell in per_cell.index
                                                    if cell in trained)
        lines.append(f"- **Gradient over time ({text(task)}).** At initialisation, the share of the last step's gradient that "
                     f"reaches the first step {across} is {parts}{gap} ({over}; the ratio "
                     f"||dL_T/dh_0|| / ||dL_T/dh_T-1||). Set {code(set_name)}, {text(row['configuration'])}."
                     f"{_link(anchors, row)}")
    return lines


def solved_sentences(sweeps: list[tuple[dict[str, Any], pd.DataFrame]], runs: pd.DataFrame) -> list[str]:
    """Per sweep of a task with a memoryless baseline: the largest swept value each cell
    solved (loss below SOLVED_FRACTION x baseline) and when, or for a sweep of strings or
    bools, which values it solved; per numeric sweep of a task whose main metric is
    accuracy (echo, selective copying), the largest value each cell remembered (accuracy >=
    REMEMBERED_ACCURACY), the criterion of the answer table."""
    lines = []
    for about, table in sweeps:
        param, values = about["param"], list(table[about["param"]])
        numeric = numeric_sweep(values)
        combinations = sweep_columns(table, param, about.get("who"))
        solved_columns = [w for w in combinations if f"{w} loss_vs_baseline" in table]
        accuracy_columns = [w for w in combinations if f"{w} accuracy" in table]
        by_accuracy = main_metric(about.get("main_metric"), bool(solved_columns))[0] == "accuracy"
        if by_accuracy and accuracy_columns and numeric:
            verdicts = []
            for w in accuracy_columns:
                remembered = [v for v, a in zip(values, table[f"{w} accuracy"]) if a is not None and not pd.isna(a)
                              and a >= REMEMBERED_ACCURACY]
                name = text(w)
                verdicts.append(f"{name} up to {text(param)} = {_plain_value(max(remembered, key=float))}"
                                if remembered else f"{name} at no {text(param)}")
            task = about.get("task", "")
            lines.append(f"- **Memory ({text(task)}, {text(param)}).** Test accuracy >= {REMEMBERED_ACCURACY:g}: "
                         f"{'; '.join(verdicts)} ({text(param)} tried: {', '.join(_plain_value(v) for v in values)})."
                         f"{_anchor_link(about)}")
        elif solved_columns:
            verdicts = []
            for cell in sorted({combinations[w][0] for w in solved_columns}):
                mine = [w for w in solved_columns if combinations[w][0] == cell]
                points = [(value, combinations[w][1], ratio) for w in mine
                          for value, ratio in zip(values, table[f"{w} loss_vs_baseline"])
                          if ratio is not None and not pd.isna(ratio)]
                solved = [point for point in points if point[2] < SOLVED_FRACTION]
                if not solved:
                    lowest = min(points, key=lambda point: point[2], default=None)
                    closest = (f" (closest: {lowest[2]:.2f} x the baseline at {text(param)} = {_plain_value(lowest[0])})"
                               if lowest else "")
                    verdicts.append(f"the {text(cell)} solved none{closest}")
                elif numeric:  # the largest value solved (the first backend to solve it)
                    best = max(solved, key=lambda point: float(point[0]))
                    verdicts.append(f"the {text(cell)} solved up to {text(param)} = {_plain_value(best[0])} "
                                    f"({text(best[1])}, {best[2]:.3f} x the baseline)")
                else:  # no value is larger than another: each one solved, with its best backend
                    by_value: dict[str, tuple[Any, str, float]] = {}
                    for point in solved:
                        key = value_key(point[0])
                        if key not in by_value or point[2] < by_value[key][2]:
                            by_value[key] = point
                    listed = ", ".join(f"{_plain_value(v)} ({text(who)}, {ratio:.3f} x the baseline)"
                                       for v, who, ratio in sorted(by_value.values(), key=lambda p: value_order(p[0])))
                    verdicts.append(f"the {text(cell)} solved it with {text(param)} = {listed}")
            task = about.get("task", "")
            lines.append(f"- **Memory ({text(task or param)}).** Within the run's budget ({text(about['configuration'])}), "
                         f"{'; '.join(verdicts)}. Solved: test loss below {SOLVED_FRACTION:g} x the memoryless "
                         f"baseline.{_anchor_link(about)}")
    return lines


def _anchor_link(about: dict[str, Any]) -> str:
    return f" ([table](#{about['anchor']}))" if about.get("anchor") else ""


def _plain_value(value: Any) -> str:
    """A swept value in a sentence: 1,000, 0.1, ``sgd`` (escaped: a string is a record's)."""
    return text(value_text(value, thousands=True))


def agreement_sentences(pooled: pd.DataFrame, anchors: dict[tuple[str, str], str]) -> list[str]:
    """Per configuration where one cell ran on several backends/impls: how far their main
    metric and their gradient ratio at initialisation lie apart."""
    lines = []
    for (set_name, key), group in pooled.groupby(["set", "config_key"], sort=True):
        task = group["task"].iloc[0]
        column, words, _ = main_metric(group["main_metric"].iloc[0], group["baseline"].notna().any())
        parts, init_spreads = [], []
        for cell, runs in group.groupby("cell", sort=True):
            values = runs[column].dropna()
            if len(values) < 2:
                continue
            low, high = values.min(), values.max()
            spread = 100 * (high / low - 1) if low > 0 else math.inf
            if f"{low:.4g}" == f"{high:.4g}":
                parts.append(f"{text(cell)} {words} {low:.4g} on all {len(values)} backend/impls")
            else:
                parts.append(f"{text(cell)} {words} {low:.4g} to {high:.4g} over {len(values)} backend/impls "
                             f"({_percent(spread)})")
            # the same seed gives every backend the same initial weights: compare seed by seed
            for seed in {s for by_seed in runs["grad_ratio_init_by_seed"] for s in by_seed}:
                ratios = [by_seed[seed] for by_seed in runs["grad_ratio_init_by_seed"] if seed in by_seed]
                if len(ratios) > 1 and min(ratios) > 0:
                    init_spreads.append(max(ratios) / min(ratios) - 1)
        if not parts:
            continue
        gradients = (f"; their gradient ratios at initialisation agree to {max(init_spreads):.0e} (relative)"
                     if init_spreads else "")
        seeds = ("one seed each, so the spread is float rounding and kernel order, not seed noise"
                 if group["n"].max() <= 1 else f"means over up to {group['n'].max()} seeds")
        lines.append(f"- **Backends agree ({text(task)}, set {code(set_name)}).** {'; '.join(parts)}{gradients}; {seeds}."
                     f"{_link(anchors, group.iloc[0])}")
    return lines


def _percent(value: float) -> str:
    return f"{value:.2f}%" if value >= 0.01 or value == 0 else f"{value:.1e}%"


def elsewhere_note(pooled: pd.DataFrame, group: pd.DataFrame, column: str, lower: bool) -> str:
    """A cell of ``group`` that did better in another configuration of the same task and
    epochs (another learning rate, say): named, since its rank here depends on settings
    tuned for another cell, and the configurations differ, so no ranking is claimed."""
    first = group.iloc[0]
    # the same configuration in another set is a repeat, not other settings
    others = pooled[(pooled["task"] == first["task"]) & (pooled["epochs_planned"] == first["epochs_planned"])
                    & (pooled["config_key"] != first["config_key"])]
    notes = []
    for cell, here in _best_per_cell(group, column, lower).set_index("cell")[column].items():
        there = _best_per_cell(others[others["cell"] == cell], column, lower)
        if there.empty:
            continue
        best = there.iloc[0]
        if (best[column] < here) if lower else (best[column] > here):
            notes.append(f"{text(cell)} {best[column]:.4g} in set {code(best['set'])} ({text(best['configuration'])})")
    return (f"in other configurations (settings differ, so not ranked here): {'; '.join(notes)}." if notes else "")


def speed_sentences(speeds: dict[str, tuple[dict[str, Any], pd.DataFrame]]) -> list[str]:
    """Per preset's widest speed table and per cell: the fastest and slowest backend/impl in
    training, with the share of the machine's GEMM peak each reached (and compile time)."""
    lines = []
    chosen: dict[str, tuple[str, dict[str, Any], pd.DataFrame]] = {}
    for name, (data, frame) in sorted(speeds.items()):  # per preset, the widest table (the newest of equals)
        best = chosen.get(data["preset"])
        rank = (len(frame), str(data.get("measured_at") or ""))
        if best is None or rank > (len(best[2]), str(best[1].get("measured_at") or "")):
            chosen[data["preset"]] = (name, data, frame)
    for name, data, frame in sorted(chosen.values(), key=lambda item: item[0]):
        rows = frame[frame["train_tok_s"].notna()] if "train_tok_s" in frame else frame.iloc[0:0]
        if rows.empty:
            continue
        parts = []
        for cell, runs in rows.groupby("cell", sort=True):
            runs = runs.sort_values("train_tok_s", ascending=False)
            top, bottom = runs.iloc[0], runs.iloc[-1]
            parts.append(f"{text(cell)}: {_who(top)} fastest at {top['train_tok_s']:,.0f} tokens/s{_peak(top)}"
                         + (f", {_who(bottom)} slowest at {bottom['train_tok_s']:,.0f}{_peak(bottom)} "
                            f"(the fastest trains {top['train_tok_s'] / bottom['train_tok_s']:.2f}x the slowest's "
                            "tokens/s)" if len(runs) > 1 else ""))
        machine = text(data["cpu"]) if data.get("cpu") else "the machine that measured it (the table does not name its CPU)"
        threads = f", {data['threads']} thread(s)" if data.get("threads") else ""
        lines.append(f"- **Speed ({text(data['preset'])}, training).** {'; '.join(parts)}. Medians of {data['rounds']} "
                     f"interleaved rounds on {machine}{threads}. ([table](#speed-{_slug(name)}))")
    return lines


def _peak(row: Any) -> str:
    value = row.get("train_pct_peak") if hasattr(row, "get") else None
    compile_s = row.get("compile_s") if hasattr(row, "get") else None
    parts = [f"{value:.0f}% of the GEMM peak"] if isinstance(value, (int, float)) and not math.isnan(value) else []
    if isinstance(compile_s, (int, float)) and not math.isnan(compile_s):
        parts.append(f"after {compile_s:.1f} s compiling")
    return f" ({', '.join(parts)})" if parts else ""


def _slug(text: str) -> str:
    from bench.report.grouping import slug

    return slug(text).lower()


def published_sentences(published: pd.DataFrame) -> list[str]:
    """Per published configuration: our test perplexities against the published one."""
    lines = []
    if published is None or published.empty:
        return lines
    done = published[(published["status"] == "completed") & published["test_ppl"].notna()]
    for (set_name, preset), group in done.groupby(["set", "preset"], sort=True):
        group = group.sort_values("test_ppl")
        figures = ", ".join(f"{r['test_ppl']:.1f} ({_who(r)})" for _, r in group.iterrows())
        low, high = group["test_vs_published_pct"].min(), group["test_vs_published_pct"].max()
        span = f"{low:+.1f}%" if len(group) == 1 else f"{low:+.1f}% to {high:+.1f}%"
        lines.append(f"- **Against the literature ({text(preset)}, LSTM).** Test perplexity {figures} against the "
                     f"published {group['published_test'].iloc[0]:g} (Zaremba et al. 2014): {span}. Set "
                     f"{code(set_name)}. ([table](#published))")
    return lines


def seed_caveat(pooled: pd.DataFrame) -> list[str]:
    if pooled.empty:
        return []
    several = pooled[pooled["n"] > 1]
    if several.empty:
        return ["- **How sure.** Every run above is one seed: a gap between two cells smaller than the backends' "
                "spread is no finding, and none is tested against seed noise (`bench matrix --seeds 0,1,2`)."]
    sets = ", ".join(code(s) for s in sorted(several["set"].unique()))
    return [f"- **How sure.** Sets {sets} repeat each run over up to {several['n'].max()} seeds (mean ± standard "
            "deviation); every other comparison rests on one seed."]

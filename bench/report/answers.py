"""The report's opening table: for each set and configuration that compares cells, which
cell won on the task's main metric, by how much, and how sure the records let us be.

"How sure" is said three ways: the seeds behind the winner and the runner-up, a 95%
interval of the winner's mean over its seeds (Student's t: a handful of seeds is far too
few for a normal interval), and a verdict in words: whether the seed spreads separate the
first two, or why nothing can be said (one seed, a tie at the shown precision).

Every function here returns plain values or markdown lines; none reads a file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.report.mdtext import text
from bench.report.seeds import with_spread, within_spread


@dataclass(frozen=True)
class Answer:
    """One row of the table: a configuration's winner and runner-up on its main metric."""

    task: str
    set: str
    configuration: str
    config_key: str
    metric: str  # in words, e.g. "test perplexity"
    lower_is_better: bool
    best: dict[str, Any]  # the pooled row of the winning cell's best backend/impl
    runner_up: dict[str, Any]
    column: str  # the pooled column ranked
    within_backends: bool = False  # the first two closer than one cell's spread over backends
    elsewhere: str = ""  # where a cell did better in another configuration of the task

    @property
    def margin(self) -> str:
        """How far ahead the winner is, in the metric's own terms: a ratio for a metric
        where lower is better (perplexity, loss over a baseline), saying of what to what, a
        difference otherwise (accuracy)."""
        first, second = self.best[self.column], self.runner_up[self.column]
        if self.lower_is_better:
            if first > 0:
                return f"runner-up's is {second / first:.3g}x the winner's"
            return "lower" if second > first else "equal"
        return f"{first - second:.3g} higher" if first != second else "equal"

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% interval of the winner's mean over its seeds; None with fewer than two."""
        n, std = int(self.best["n"]), self.best.get(f"{self.column}_std")
        if n < 2 or std is None or math.isnan(std):
            return None
        from scipy import stats

        half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
        mean = self.best[self.column]
        return mean - half, mean + half

    def cells(self) -> list[str]:
        """The row's table cells after the task and the configuration, as markdown."""
        interval = self.interval
        first, second, column = self.best, self.runner_up, self.column
        return [
            text(self.metric + (" (lower is better)" if self.lower_is_better else "")),
            text(f"{first['cell']} {with_spread(first[column], first.get(column + '_std'), int(first['n']))}"
                 f" ({first['backend']}/{first['impl']})"),
            text(f"{second['cell']} {with_spread(second[column], second.get(column + '_std'), int(second['n']))}"),
            text(self.margin),
            f"{int(first['n'])}, {int(second['n'])}",
            f"{interval[0]:.5g} to {interval[1]:.5g}" if interval else "n/a (one seed)",
            text(self.verdict),
        ]

    @property
    def verdict(self) -> str:
        first, second, column = self.best, self.runner_up, self.column
        apart = within_spread(first[column], first.get(f"{column}_std"), second[column], second.get(f"{column}_std"))
        if apart is None:
            if f"{first[column]:.4g}" == f"{second[column]:.4g}":
                return "tie at 4 digits"
            return ("one seed: not tested against seed noise"
                    + ("; the gap is within the backends' own spread" if self.within_backends else ""))
        if apart:
            return "within the seed spread: not ranked"
        return "apart by more than the seed spreads"


def answers(pooled: pd.DataFrame, metric_of: Any, elsewhere: Any = None) -> list[Answer]:
    """The table's rows, one per set and configuration with at least two cells that have a
    value of the main metric. ``metric_of(declared metric, has_baseline)`` gives ``(column, words,
    lower is better)``, the task's main metric (:func:`bench.report.headlines.main_metric`);
    ``elsewhere(pooled, group, column, lower)``, a sentence naming cells that did better in
    other configurations of the task (:func:`bench.report.headlines.elsewhere_note`)."""
    rows = []
    if pooled.empty:
        return rows
    for (set_name, key), group in pooled.groupby(["set", "config_key"], sort=True):
        task = str(group["task"].iloc[0])
        column, words, lower = metric_of(group["main_metric"].iloc[0], group["baseline"].notna().any())
        done = group[group[column].notna()]
        if done["cell"].nunique() < 2:
            continue
        best_per_cell = done.sort_values(column, ascending=lower, kind="stable").groupby("cell", sort=False).head(1)
        first, second = best_per_cell.iloc[0].to_dict(), best_per_cell.iloc[1].to_dict()
        note = elsewhere(pooled, group, column, lower) if elsewhere else ""
        rows.append(Answer(task, str(set_name), str(group["configuration"].iloc[0]), str(key), words, lower,
                           first, second, column, _within_backends(done, column, first, second), note))
    return sorted(rows, key=lambda a: (a.task, a.set, a.configuration))


@dataclass(frozen=True)
class SweepAnswer:
    """One row for a sweep over a length a task must remember (a lag, a sequence length):
    the cell that reached the largest value, as the sweep's table and headline count it."""

    task: str
    set: str
    configuration: str
    config_key: str
    param: str
    criterion: str  # what counts as reached, in words
    reached: dict[str, tuple[Any, str] | None]  # cell -> (largest value reached, backend/impl), None: none
    seeds: int
    anchor: str = ""
    elsewhere: str = ""
    closest: tuple[tuple[str, float, Any], ...] = ()  # (cell, lowest loss ratio, at value), lowest first

    def _ranked(self) -> list[tuple[str, tuple[Any, str] | None]]:
        return sorted(self.reached.items(), key=lambda item: (item[1] is None, -float(item[1][0]) if item[1] else 0,
                                                               item[0]))

    def cells(self) -> list[str]:
        ranked = self._ranked()
        (cell, best), (other, second) = ranked[0], ranked[1]
        if best is None and len(self.closest) >= 2:
            (c1, r1, v1), (c2, r2, v2) = self.closest[:2]
            return [text(f"largest {self.param} {self.criterion}"),
                    text(f"none; closest {c1}: {r1:.2f} x the baseline at {_value(v1)}"),
                    text(f"{c2}: {r2:.2f} x at {_value(v2)}"), "n/a", f"{self.seeds}, {self.seeds}", "n/a (a sweep)",
                    text("no cell solved any value tried")]
        if best is None:
            winner, margin, verdict = "none", "", "no cell reached any value tried"
        else:
            winner = f"{cell} {_value(best[0])} ({best[1]})"
            if second is None:
                margin = "the runner-up reached none"
            elif float(second[0]) > 0:
                margin = (f"{float(best[0]) / float(second[0]):.3g}x the runner-up's {self.param}"
                          if best[0] != second[0] else "equal")
            else:
                margin = "longer" if best[0] != second[0] else "equal"
            verdict = ("one seed per value: not tested against seed noise" if self.seeds < 2 else
                       f"means over up to {self.seeds} seeds per value")
        runner = f"{other} {_value(second[0])}" if second else f"{other} none"
        return [text(f"largest {self.param} {self.criterion}"), text(winner), text(runner), text(margin),
                f"{self.seeds}, {self.seeds}", "n/a (a sweep)", text(verdict)]


def _value(value: Any) -> str:
    number = float(value)
    return f"{int(number):,}" if number.is_integer() else f"{number:g}"


def sweep_answers(sweeps: list[tuple[dict[str, Any], pd.DataFrame]], metric_of: Any, solved_fraction: float,
                  remembers: float) -> list[SweepAnswer]:
    """Rows for numeric sweeps: for a task whose main metric is accuracy (``metric_of`` as
    in :func:`answers`), the largest value each cell remembered (test accuracy at least
    ``remembers``); for one with a memoryless baseline, the largest value each cell solved
    (loss below ``solved_fraction`` x the baseline). Sweeps of fewer than two cells, or of
    values that are not numbers, have no row."""
    from bench.report.grouping import numeric_sweep, sweep_columns

    rows = []
    for about, table in sweeps:
        param, values = about["param"], list(table[about["param"]])
        if not numeric_sweep(values):
            continue
        combinations = sweep_columns(table, param, about.get("who"))
        has_baseline = any(f"{w} loss_vs_baseline" in table for w in combinations)
        main = metric_of(about.get("main_metric"), has_baseline)[0]
        if main == "accuracy" and any(f"{w} accuracy" in table for w in combinations):
            measure, reached_at, criterion = "accuracy", (lambda v: v >= remembers), "remembered"
        elif has_baseline:
            measure, reached_at, criterion = "loss_vs_baseline", (lambda v: v < solved_fraction), "solved"
        else:
            continue
        reached: dict[str, tuple[Any, str] | None] = {}
        lowest: dict[str, tuple[float, Any]] = {}
        for w, (cell, who) in combinations.items():
            column = f"{w} {measure}"
            if column not in table:
                continue
            points = [(v, m) for v, m in zip(values, table[column]) if m is not None and not pd.isna(m)]
            for v, m in points:
                if cell not in lowest or m < lowest[cell][0]:
                    lowest[cell] = (float(m), v)
            hits = [v for v, m in points if reached_at(m)]
            best = max(hits, key=float) if hits else None
            known = reached.get(cell)
            if best is not None and (known is None or float(best) > float(known[0])):
                reached[cell] = (best, who)
            else:
                reached.setdefault(cell, None)
        if len(reached) >= 2:
            rows.append(SweepAnswer(str(about.get("task", "")), str(about["set"]), str(about["configuration"]),
                                    "", param, criterion, reached, int(about.get("seeds", 1)),
                                    str(about.get("anchor", "")),
                                    closest=tuple(sorted(((c, r, v) for c, (r, v) in lowest.items()),
                                                         key=lambda item: (item[1], item[0])))
                                    if measure == "loss_vs_baseline" else ()))
    return rows


def _within_backends(group: pd.DataFrame, column: str, first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two cells' best values differ by less than one cell's spread over backends."""
    spreads = [values.max() - values.min() for _, values in group.groupby("cell")[column] if values.notna().sum() > 1]
    return bool(spreads) and abs(first[column] - second[column]) <= max(spreads)


HEADER = ("task", "set: configuration", "main metric", "winner (backend/impl)", "runner-up", "margin",
          "seeds (winner, runner-up)", "winner's 95% interval", "how sure")


def answer_lines(rows: list[Any], anchors: dict[tuple[str, str], str], solved_fraction: float,
                 remembers: float) -> list[str]:
    """The section as markdown: a sentence saying how to read it, then the table (rows of
    :func:`answers` and :func:`sweep_answers`, in task order)."""
    rows = sorted(rows, key=lambda row: (row.task, row.set, row.configuration))
    if not rows:
        return []
    lines = ["## The answer", "",
             "Per task and compared configuration: the cell with the best main metric (its best backend/impl; "
             "means over seeds where there are several), the next cell, and how far the records let us trust "
             "the order. For a sweep over a length the task must remember, the largest value each cell "
             f"solved (test loss below {solved_fraction:g} x the memoryless baseline) or, where the task's "
             f"main metric is accuracy, remembered (test accuracy at least {remembers:g}). The evidence follows in the headlines and the tables they link to.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        anchor = getattr(row, "anchor", "") or anchors.get((row.set, row.config_key))
        where = text(f"{row.set}: {row.configuration}")
        where = f"[{where}](#{anchor})" if anchor else where
        lines.append("| " + " | ".join([text(row.task), where, *row.cells()]) + " |")
    notes = [f"- {text(row.task)}, set {text(row.set)}: {row.elsewhere}" for row in rows if row.elsewhere]
    return lines + [""] + (notes + [""] if notes else [])

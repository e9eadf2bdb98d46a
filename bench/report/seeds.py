"""Runs that differ only in their seed are repeats of one experiment: pooled, they give a
mean, a spread and a count for every final metric. Runs that differ in anything else (set,
any setting, backend, impl or cell) are never pooled: the pooling key is the run's
configuration without its seed (:func:`bench.report.grouping.configuration_key`) plus what is
compared.

A difference between two pooled results is *within the seed spread* when their means lie
closer than the sum of their standard deviations: the seeds alone move each result that
far, so the data do not rank them. With one seed there is no spread to judge by, and the
report says so instead of ranking.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

POOL_KEYS = ["set", "config_key", "cell", "backend", "impl"]
# the final metrics pooled over seeds (each becomes <name>, <name>_std, and n counts the seeds)
POOLED_METRICS = ("accuracy", "valid_ppl", "test_ppl", "test_bpc", "test_loss", "loss_vs_baseline", "solved_at_update",
                  "train_tok_s", "eval_tok_s", "efficiency_pct", "grad_ratio_init", "grad_ratio_final", "hours")


def latest_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """The latest run of each seed of each pooled group (a rerun replaces its seed's earlier run)."""
    if runs.empty:
        return runs
    return runs.sort_values("started_at", kind="stable").groupby([*POOL_KEYS, "seed"], sort=False).tail(1)


def pool(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per set x configuration x cell x backend x impl: the metrics of its completed
    seeds as mean, ``<metric>_std`` (sample standard deviation; NaN with one seed) and ``n``
    (completed seeds), with ``seeds`` (every seed run) and ``statuses`` (how each ended)."""
    rows = []
    for key, group in latest_per_seed(runs).groupby(POOL_KEYS, sort=True):
        done = group[group["status"] == "completed"]
        first = group.iloc[0]
        row: dict[str, Any] = dict(zip(POOL_KEYS, key))
        row.update({name: first[name] for name in ("configuration", "task", "main_metric", "reports_perplexity", "epochs_planned", "threads",
                                                   "cpu", "baseline", "updates_per_epoch") if name in group})
        row["cpu"] = ", ".join(sorted({str(c) for c in group["cpu"]}))
        row["threads"] = ", ".join(str(t) for t in sorted({t for t in group["threads"] if t is not None}, key=str))
        row["seeds"] = ", ".join(str(s) for s in sorted(group["seed"]))
        row["statuses"] = _statuses(group["status"])
        row["n"] = len(done)
        row["paths"] = list(done["path"]) or list(group["path"])
        # per seed, for comparisons that only hold seed by seed (backends on identical weights)
        row["grad_ratio_init_by_seed"] = {seed: value for seed, value in zip(group["seed"], group["grad_ratio_init"])
                                          if isinstance(value, (int, float)) and not math.isnan(value)}
        for metric in POOLED_METRICS:
            values = pd.to_numeric(done[metric], errors="coerce") if metric in done else pd.Series(dtype=float)
            values = values[np.isfinite(values)]
            row[metric] = float(values.mean()) if len(values) else None
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    return pd.DataFrame(rows)


def _statuses(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def with_spread(mean: float | None, std: float | None, n: int, digits: int = 4) -> str:
    """``114.6``, or ``114.6 ± 0.42`` when several seeds give a spread; empty when no value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    text = _number(mean, digits)
    if n > 1 and std is not None and not math.isnan(std):
        text += f" ± {_number(std, 2)}"
    return text


def _number(value: float, digits: int) -> str:
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e6):
        return f"{value:.{max(digits - 2, 1)}e}"
    return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def within_spread(a_mean: float, a_std: float | None, b_mean: float, b_std: float | None) -> bool | None:
    """Whether two pooled results are closer than their seed spreads (True: the data do not
    tell them apart); None when either has no spread (one seed)."""
    if a_std is None or b_std is None or any(isinstance(v, float) and math.isnan(v) for v in (a_std, b_std)):
        return None
    return abs(a_mean - b_mean) <= a_std + b_std

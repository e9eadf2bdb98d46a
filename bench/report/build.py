"""Records -> tidy pandas DataFrames -> a comparison table, report.md, report.csv and plots.

Reports read records only, never a live model, and only through :mod:`bench.report.reading`: a
file that is not a readable record is listed with the reason and skipped, never fatal.
Every row names its set and configuration, and runs are only compared within one of each
(:mod:`bench.report.grouping`).
"""
from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report import mdtext
from bench.errors import BenchError
from bench.report.grouping import (
    SWEEP_MEASURES, cell_variant, configuration_key, describe, slug, sweep_columns, sweep_param, swept_settings,
    value_key, value_labels, value_order,
)
from bench.report.criteria import REMEMBERED_ACCURACY, SOLVED_FRACTION
from bench.report.reading import declared, find_roofline, read_results
from bench.report.seeds import pool, with_spread
from bench.storage import atomic_write_bytes, refuse_link

# key columns first (what the row is, then what it scored), long text last: a wide table
# scrolls, and what scrolls out of view first is what a reader needs least
RUN_COLUMNS = [
    "set", "cell", "backend", "impl", "seed",
    "accuracy", "valid_ppl", "test_ppl", "test_bpc", "test_loss", "loss_vs_baseline", "solved_at_update", "train_tok_s", "eval_tok_s",
    "train_gflops", "efficiency_pct", "grad_ratio_init", "grad_ratio_final",
    "status", "epochs", "duration", "threads", "learning_rate", "device", "configuration",
    "cpu",  # throughput compares only within one machine
]
PUBLISHED_COLUMNS = ["cell", "backend", "impl", "test_vs_published_pct", "test_ppl", "published_test", "valid_ppl",
                     "published_valid", "status", "epochs", "seed", "threads", "duration", "set", "preset",
                     "configuration", "cpu"]
# A column's unit in its header, in the markdown and HTML tables (report.csv keeps the bare
# name): a per cent says so, a ratio says of what to what.
UNITS = {
    "epochs": "done/planned", "accuracy": "fraction right", "test_loss": "per scored step",
    "loss_vs_baseline": "test loss / memoryless baseline", "solved_at_update": "training updates",
    "train_tok_s": "tokens/s", "eval_tok_s": "tokens/s", "train_gflops": "GFLOP/s",
    "efficiency_pct": "% of GEMM peak", "grad_ratio_init": "first/last step, at init",
    "grad_ratio_final": "first/last step, trained",
    "test_vs_published_pct": "%, test / published - 1",
    "eval_over_train": "eval/train tokens/s", "train_pct_peak": "% of GEMM peak", "train_pct_ceiling": "%",
    "eval_pct_ceiling": "%", "train_vs_torch_fused_lstm": "train tokens/s / torch fused LSTM's", "compile_s": "s",
}
GRADIENT_COLUMNS = ("grad_ratio_init", "grad_ratio_final")
_INTERNAL_COLUMNS = ["config_key", "sweep_key", "main_metric", "reports_perplexity", "n_classes"]


def load_records(directory: str | Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Every record under ``directory`` (recursively), and ``(path, reason)`` for the files
    that could not be read. Checkpoints, roofline files, speed tables and dot-files are not
    records."""
    results = read_results(directory)
    return results.records, results.bad


SPEED_COLUMNS = ["backend", "impl", "cell", "train_tok_s", "eval_tok_s", "eval_over_train", "train_pct_peak",
                 "train_pct_ceiling", "eval_pct_ceiling", "train_vs_torch_fused_lstm", "compile_s", "error"]


def speed_tables(speeds: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], pd.DataFrame]]:
    """Each speed table (by path) with its rows in the report's columns."""
    tables = {}
    for name, data in speeds.items():
        frame = pd.DataFrame(data["rows"])
        tables[name] = (data, frame[[c for c in SPEED_COLUMNS if c in frame]])
    return tables


def _top_ratio(entry: dict[str, Any] | None) -> float | None:
    if not entry:
        return None
    return entry["summary"]["dLT_dh"][-1]["ratio"]


def _baseline(record: dict[str, Any]) -> float | None:
    """The task's memoryless baseline as the record states it (records before schema 4: none)."""
    value = (record.get("task") or {}).get("memoryless_baseline")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def solved_at_update(record: dict[str, Any]) -> int | None:
    """The training updates done when the validation loss first fell below ``SOLVED_FRACTION``
    of the task's memoryless baseline (checked after each epoch); None if it never did or the
    task states no baseline."""
    baseline = _baseline(record)
    per_epoch = (record.get("task") or {}).get("train_windows_per_epoch")
    if baseline is None or not isinstance(per_epoch, int):
        return None
    for entry in record["epochs"]:
        loss = (entry.get("valid") or {}).get("loss")
        if isinstance(loss, (int, float)) and loss < SOLVED_FRACTION * baseline:
            return entry["epoch"] * per_epoch
    return None


def runs_frame(records: list[dict[str, Any]], peaks: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per run: where it lies and what it ran, how well, how fast, and how the
    gradient decays. ``path`` identifies a run (a run id can lie in two sets)."""
    rows = []
    for r in records:
        config, final, epochs = r["config"], r.get("final") or {}, r["epochs"]
        last = epochs[-1] if epochs else {}
        train = last.get("train") or {}
        test = final.get("test") or {}
        valid = final.get("valid") or last.get("valid") or {}
        grads = r.get("gradient_norms") or []
        rate = train.get("tokens_per_s_median") or train.get("tokens_per_s")
        eval_split = test or valid
        sweep = sweep_param(r)
        d = declared(r)
        fixed = swept_settings(d, sweep) if sweep else ()
        baseline = _baseline(r)
        test_loss = eval_split.get("loss")
        row = {
            "path": r.get("_path", r["run_id"]),
            "run_id": r["run_id"],
            "set": r.get("_set", "."),
            "configuration": describe(config, d),
            "config_key": configuration_key(config, d),
            "task": config["task"],
            "main_metric": d.main_metric,
            "n_classes": (r.get("task") or {}).get("n_classes"),
            "reports_perplexity": d.reports_perplexity,
            "backend": r["backend"]["name"],
            "impl": r["backend"]["impl"],
            "cell": cell_variant(config, d, ignore=fixed),
            "learning_rate": config["learning_rate"],
            "device": r["backend"].get("device", config.get("device")),
            "dtype": config.get("dtype", "float32"),
            "status": r["status"],
            "epochs": len(epochs),
            "epochs_planned": config["epochs"],
            "seed": config["seed"],
            "threads": r["environment"]["threads"],
            "accuracy": test.get("accuracy", valid.get("accuracy")),
            "valid_ppl": valid.get("perplexity"),
            "test_ppl": test.get("perplexity"),
            "test_loss": test_loss,
            # bits per symbol where the task's main metric is (character-level language models)
            "test_bpc": test_loss / math.log(2) if d.main_metric == "test_bpc" and isinstance(test_loss, (int, float))
            else None,
            "baseline": baseline,
            "loss_vs_baseline": test_loss / baseline if baseline and isinstance(test_loss, (int, float)) else None,
            "solved_at_update": solved_at_update(r),
            "updates_per_epoch": (r.get("task") or {}).get("train_windows_per_epoch"),
            "train_tok_s": rate,
            "eval_tok_s": eval_split.get("tokens_per_s_median") or eval_split.get("tokens_per_s"),
            "train_gflops": train.get("gflops_per_s"),
            "grad_ratio_init": _top_ratio(grads[0] if grads else None),
            "grad_ratio_final": _top_ratio(grads[-1] if len(grads) > 1 else None),
            "cpu": r["environment"]["cpu"],
            "hours": _hours(r),
            "duration": human_duration(_hours(r)),
            "started_at": r["started_at"],
            "tag": r.get("tag"),
            "sweep": sweep,
            "sweep_value": config[sweep] if sweep else None,
            "sweep_key": configuration_key(config, d, ignore=fixed) if sweep else None,
            "sweep_configuration": describe(config, d, ignore=fixed) if sweep else None,
        }
        peak = (peaks or {}).get(f"{row['cpu']}|{row['threads']}")
        row["efficiency_pct"] = 100 * row["train_gflops"] / peak if peak and row["train_gflops"] else None
        rows.append(row)
    return pd.DataFrame(rows)


def human_duration(hours: float | None) -> str | None:
    """``45 s``, ``12 min``, ``1.4 h``: a run's training and validation time as people say it."""
    if hours is None or not math.isfinite(hours):
        return None
    seconds = hours * 3600
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{hours:.1f} h"


def _hours(record: dict[str, Any]) -> float | None:
    seconds = sum((e.get("train") or {}).get("seconds", 0) + (e.get("valid") or {}).get("seconds", 0)
                  for e in record["epochs"])
    return seconds / 3600 if seconds else None


def epochs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run x epoch x split (train, valid)."""
    rows = []
    for r in records:
        for e in r["epochs"]:
            for split in ("train", "valid"):
                if split in e:
                    rows.append({"path": r.get("_path", r["run_id"]), "epoch": e["epoch"], "split": split,
                                 **{k: e[split].get(k) for k in ("loss", "accuracy", "perplexity")}})
    return pd.DataFrame(rows, columns=["path", "epoch", "split", "loss", "accuracy", "perplexity"])


def gradients_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run x measurement epoch x quantity x layer x time step."""
    columns: dict[str, list[Any]] = {k: [] for k in ("path", "epoch", "quantity", "layer", "t", "norm")}
    for r in records:
        path = r.get("_path", r["run_id"])
        for m in r.get("gradient_norms") or []:
            for key, layers in m["curves"].items():
                for layer, curve in enumerate(layers):
                    n = len(curve)
                    columns["path"] += [path] * n
                    columns["epoch"] += [m["epoch"]] * n
                    columns["quantity"] += [key] * n
                    columns["layer"] += [layer] * n
                    columns["t"] += range(n)
                    columns["norm"] += curve
    return pd.DataFrame(columns)


def load_peaks(rooflines: list[dict[str, Any]]) -> dict[str, float]:
    """Measured GEMM peaks, keyed by "cpu|threads" (see ``bench roofline``), from the
    roofline files' contents."""
    peaks: dict[str, float] = {}
    for data in rooflines:
        for entry in data["measurements"]:
            key = f"{entry['cpu']}|{entry['threads']}"
            peaks[key] = max(peaks.get(key, 0.0), max(entry["gflops"].values()))
    return peaks


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run but the sweeps' (they have their own tables), one row each, in order of
    set and configuration; ``epochs`` is completed / planned."""
    runs = runs[runs["sweep"].isna()]
    runs = runs.assign(epochs=[f"{done}/{planned}" for done, planned in zip(runs["epochs"], runs["epochs_planned"])])
    columns = [c for c in RUN_COLUMNS if c in runs and runs[c].notna().any()]
    order = ["set", "configuration", "cell", "backend", "impl", "started_at"]
    return runs.sort_values(order)[columns].reset_index(drop=True)


def anchor(*parts: str) -> str:
    """A link target for a section: readable and unique to its parts."""
    import hashlib

    text = "-".join(parts)
    return f"{slug(parts[0]).lower()}-{hashlib.sha1(text.encode('utf-8', 'replace')).hexdigest()[:8]}"


def compact_tables(pooled: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Per set and configuration (sweeps aside): one row per cell x backend/impl with the
    task's main metric (mean ± std over seeds where there are several), the seeds, speed,
    % of peak, gradient ratios and run time; ``about`` names the configuration in full."""
    from bench.report.headlines import main_metric

    tables = []
    for (set_name, key), group in pooled.groupby(["set", "config_key"], sort=True):
        task = group["task"].iloc[0]
        has_baseline = group["baseline"].notna().any()
        column, words, lower = main_metric(group["main_metric"].iloc[0], has_baseline)
        # cells in order of their best result; each cell's backends together, alphabetically
        best = group.groupby("cell")[column].transform("min" if lower else "max")
        group = group.assign(_best=best).sort_values(["_best", "cell", "backend", "impl"],
                                                     ascending=[lower, True, True, True], na_position="last",
                                                     kind="stable")
        frame = pd.DataFrame({
            "cell": group["cell"],
            "backend/impl": group["backend"] + "/" + group["impl"],
            header(column, words): [with_spread(m, sd, n) for m, sd, n in
                                    zip(group[column], group[f"{column}_std"], group["n"])],
            "seeds (completed of run)": group["n"].astype(str) + " of " + group["seeds"].str.count(",").add(1).astype(str),
        })
        if column == "loss_vs_baseline":
            frame[header("solved_at_update", "solved at update")] = [_fmt(v) for v in group["solved_at_update"]]
        if group["reports_perplexity"].iloc[0]:  # perplexity first, the share of next words right beside it
            frame[header("accuracy", "test accuracy")] = [with_spread(m, sd, n) for m, sd, n in
                                      zip(group["accuracy"], group["accuracy_std"], group["n"])]
        frame[header("train_tok_s", "train tokens/s")] = [with_spread(m, sd, n, 3) for m, sd, n in
                                   zip(group["train_tok_s"], group["train_tok_s_std"], group["n"])]
        frame[header("efficiency_pct", "train GFLOP/s")] = [_percent(v) for v in group["efficiency_pct"]]
        frame[header("grad_ratio_init", "grad ratio")] = [gradient_ratio(v) for v in group["grad_ratio_init"]]
        frame[header("grad_ratio_final", "grad ratio")] = [gradient_ratio(v) for v in group["grad_ratio_final"]]
        frame["duration"] = [human_duration(v) or "" for v in group["hours"]]
        frame["status"] = group["statuses"]
        if group["cpu"].nunique() > 1:  # throughput compares only within one machine
            frame["cpu"] = group["cpu"]
        frame = frame[[c for c in frame.columns if (frame[c].astype(str) != "").any()]]
        first = group.iloc[0]
        seeds = sorted({s.strip() for text in group["seeds"] for s in text.split(",")}, key=int)
        about = {"set": set_name, "config_key": key, "configuration": first["configuration"], "task": task,
                 "epochs": int(first["epochs_planned"]), "threads": ", ".join(sorted(set(group["threads"]))),
                 "seeds": ", ".join(seeds), "cpu": ", ".join(sorted(set(group["cpu"]))),
                 "anchor": anchor(set_name, key)}
        tables.append((about, frame.reset_index(drop=True)))
    return tables


def sweep_tables(runs: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Per sweep (set, swept setting and the configuration it leaves fixed): one row per
    value, a column per (cell, backend) with the accuracy and the gradient ratio after
    training (the latest completed run of each); for a task with a memoryless baseline, the
    test loss over the baseline, the update at which it was solved and the gradient ratio
    at initialisation and after training instead of the accuracy. The values may be of any
    type (numbers in order, then strings and bools); ``about["who"]`` names each column's
    cell and backend/impl."""
    tables = []
    swept = runs[runs["sweep"].notna() & (runs["status"] == "completed")]
    for (set_name, param, sweep_key), group in swept.groupby(["set", "sweep", "sweep_key"], sort=True):
        latest: dict[tuple[str, str], dict[Any, dict]] = {}  # (who, value) -> seed -> its latest run
        values: dict[str, Any] = {}
        labels: dict[tuple[str, str, str], str] = {}  # (cell, backend, impl) -> its columns' name
        for row in group.sort_values("started_at", kind="stable").to_dict("records"):
            key = value_key(row["sweep_value"])
            combination = (str(row["cell"]), str(row["backend"]), str(row["impl"]))
            if combination not in labels:
                name = label = f"{combination[0]} {combination[1]}/{combination[2]}"
                k = 1
                while label in labels.values():  # names with spaces can coincide: each keeps its own columns
                    k += 1
                    label = f"{name} ({k})"
                labels[combination] = label
            latest.setdefault((labels[combination], key), {})[row["seed"]] = row
            values[key] = row["sweep_value"]
        keys = sorted(values, key=lambda k: value_order(values[k]))
        columns = {param: [values[k] for k in keys]}
        if group["baseline"].notna().any():  # and accuracy too where it is the task's main metric (echo)
            from bench.report.headlines import main_metric

            accuracy = main_metric(group["main_metric"].iloc[0], True)[0] == "accuracy"
            measures = SWEEP_MEASURES[:4] + (("accuracy",) if accuracy else ())
        else:
            measures = ("accuracy", "grad_ratio_final")
        for what in measures:
            for who in sorted({who for who, _ in latest}):
                columns[f"{who} {what}"] = [_seed_mean(latest.get((who, k)), what) for k in keys]
        seeds = max(len(by_seed) for by_seed in latest.values())
        about = {"set": set_name, "param": param, "configuration": group["sweep_configuration"].iloc[0],
                 "task": group["task"].iloc[0], "main_metric": group["main_metric"].iloc[0], "seeds": seeds,
                 "anchor": anchor(set_name, param, sweep_key),
                 "who": {label: (cell, f"{backend}/{impl}") for (cell, backend, impl), label in labels.items()}}
        tables.append((about, pd.DataFrame(columns)))
    return tables


def sweep_heads(param: str, values: list[Any]) -> list[str]:
    """A column head per swept value, ``param = value``."""
    return [f"{param} = {label}" for label in value_labels(values)]


def sweep_pivots(param: str, table: pd.DataFrame,
                 who: dict[str, tuple[str, str]] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """A sweep's wide table as people read it: one row per cell x backend/impl, one column
    per swept value; the result (with the update at which it was solved, in brackets), then
    the gradient ratio at initialisation -> after training."""
    combinations = sweep_columns(table, param, who)
    heads = sweep_heads(param, list(table[param]))

    def pivot(text: Any) -> pd.DataFrame:
        rows = []
        for w, (cell, impl) in combinations.items():
            rows.append({"cell": cell, "backend/impl": impl, **{h: text(w, i) for i, h in enumerate(heads)}})
        return pd.DataFrame(rows)

    def value(w: str, what: str, i: int) -> Any:
        column = f"{w} {what}"
        v = table[column].iloc[i] if column in table else None
        return None if v is None or pd.isna(v) else v

    tables = []
    if any(c.endswith(" loss_vs_baseline") for c in table.columns):
        def result(w: str, i: int) -> str:
            ratio, solved = value(w, "loss_vs_baseline", i), value(w, "solved_at_update", i)
            return "" if ratio is None else _fmt(float(ratio)) + (f" ({int(solved):,})" if solved is not None else "")
        tables.append(("test loss / memoryless baseline (in brackets: the update at which it was solved)", pivot(result)))
    else:
        tables.append(("test accuracy", pivot(lambda w, i: _fmt(value(w, "accuracy", i)))))

    def gradient(w: str, i: int) -> str:
        init, final = value(w, "grad_ratio_init", i), value(w, "grad_ratio_final", i)
        return " → ".join(gradient_ratio(float(v)) for v in (init, final) if v is not None)
    if any(c.endswith(" grad_ratio_final") for c in table.columns):
        tables.append(("gradient ratio ||dL_T/dh_0|| / ||dL_T/dh_T-1||" +
                       (" at initialisation → after training" if any(c.endswith(" grad_ratio_init") for c in table.columns)
                        else " after training"), pivot(gradient)))
    return tables


def _seed_mean(by_seed: dict[Any, dict] | None, what: str) -> float | None:
    """The mean of ``what`` over the seeds of one sweep point (None where none has it)."""
    runs = list((by_seed or {}).values())
    values = [float(run[what]) for run in runs if isinstance(run[what], (int, float)) and not pd.isna(run[what])]
    if what == "solved_at_update" and len(values) < len(runs):
        return None  # solved by some seeds only: no update at which "it" was solved
    return sum(values) / len(values) if values else None


def published_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """PTB runs of a published configuration beside the published perplexities
    (Zaremba et al. 2014), and the test perplexity's distance from it."""
    rows = []
    for r in records:
        d = declared(r)
        if d.published is None:
            continue
        preset, published_valid, published_test = d.published
        final = r.get("final") or {}
        test = (final.get("test") or {}).get("perplexity")
        valid = (final.get("valid") or {}).get("perplexity")
        rows.append({
            "set": r.get("_set", "."), "configuration": describe(r["config"], d), "preset": preset,
            "backend": r["backend"]["name"], "impl": r["backend"]["impl"], "cell": r["config"]["cell"],
            "status": r["status"], "epochs": f"{len(r['epochs'])}/{r['config']['epochs']}",
            "seed": r["config"]["seed"], "threads": r["environment"]["threads"],
            "valid_ppl": valid, "test_ppl": test, "published_valid": published_valid, "published_test": published_test,
            "test_vs_published_pct": 100 * (test / published_test - 1) if test is not None else None,
            "duration": human_duration(_hours(r)), "cpu": r["environment"]["cpu"], "run_id": r["run_id"],
            "config_key": configuration_key(r["config"], d),
        })
    return pd.DataFrame(rows)


def sample_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs whose test samples (words) the report shows side by side: the best run of
    each cell among those that sampled the same text; of several texts, the one most cells sampled.
    Best: completed before not, then the most epochs (a quick check never speaks for a
    cell), then the lowest test perplexity."""
    def rank(r: dict[str, Any]) -> tuple:
        test = ((r.get("final") or {}).get("test") or {}).get("perplexity")
        test = test if isinstance(test, (int, float)) and not math.isnan(test) else math.inf
        return (r["status"] != "completed", -len(r["epochs"]), test, r.get("_path", r["run_id"]))

    by_text: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in records:
        sample = r.get("sample") or {}
        if not sample.get("target_words"):
            continue
        cells = by_text.setdefault(tuple(sample.get("input_words") or ()), {})
        cell = str(r["config"]["cell"])
        if cell not in cells or rank(r) < rank(cells[cell]):
            cells[cell] = r
    if not by_text:
        return []
    cells = min(by_text.values(), key=lambda c: (-len(c), min(rank(r) for r in c.values())))
    return sorted(cells.values(), key=rank)


def write_report(directory: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write report.md, report.html, report.csv and PNG plots for every record under
    ``directory``. A missing directory or an output directory that cannot be written is a
    BenchError, found before anything is read or created."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BenchError(f"{directory} is not a directory" if directory.exists()
                         else f"no results directory {directory}; run `python -m bench run` first or name one")
    out = Path(out_dir) if out_dir else directory
    _prepare_out(out)
    results = read_results(directory)
    records = results.records
    rooflines, peak_note = find_roofline(directory, results.rooflines)  # or the roofline.json above
    runs = runs_frame(records, load_peaks(rooflines))
    table = comparison_table(runs) if len(runs) else runs
    csv = runs.drop(columns=[c for c in _INTERNAL_COLUMNS if c in runs]).to_csv(index=False)
    atomic_write_bytes(out / "report.csv", csv.encode("utf-8"))  # never through a link at its name
    from bench.report import plots

    figures = plots.draw_all(records, runs, epochs_frame(records), gradients_frame(records), out)
    sweeps = sweep_tables(runs) if len(runs) else []
    pooled = pool(runs[runs["sweep"].isna()]) if len(runs) else pd.DataFrame()
    published = published_table(records)
    speeds = speed_tables(results.speeds)
    text = _markdown(table, sweeps, records, results.bad, figures, directory, published, speeds, pooled, peak_note)
    atomic_write_bytes(out / "report.md", text.encode("utf-8"))
    from bench.report.html import write_html

    write_html(text, out, out / "report.html")
    return {"records": len(records), "bad": results.bad, "table": table, "sweeps": sweeps, "figures": figures,
            "out": out, "published": published, "pooled": pooled, "summary": summary_of(text)}


def summary_of(text: str) -> str:
    """The report's answers for a terminal: the answer table, its headlines and per-task
    tables, the sections before the evidence."""
    sections = text.split("\n## ")
    kept = [s for s in sections[1:] if s.startswith(("The answer", "Headlines", "Results by task"))]
    lines = "\n".join("## " + s.rstrip() + "\n" for s in kept).splitlines()
    kept_lines = [line for line in lines if not line.startswith('<a id="')]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip()


def _prepare_out(out: Path) -> None:
    """Create ``out`` if needed and prove it writable, before any work; a link there is
    refused (the report would be written wherever it points)."""
    refuse_link(out, "; pass --out DIR")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as exc:
        raise BenchError(f"cannot write the report to {out} ({exc.strerror or exc}); pass --out DIR") from exc


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return _cell(str(value))


_cell = mdtext.text  # a record's string as markdown text: one line, markup escaped
_code = mdtext.code


def gradient_ratio(value: Any) -> str:
    """A gradient ratio as a table shows it: one that is exactly 0 lost the gradient to
    float underflow on its way back, and says so."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return "0 (underflow)"
    return _fmt(float(value) if isinstance(value, int) and not isinstance(value, bool) else value)


def header(column: Any, words: str | None = None) -> str:
    """A column's header: its name (or ``words`` for it), and its unit where :data:`UNITS`
    knows one; ``words`` that already name the unit ("train tokens/s") are left as they are."""
    name = words or str(column)
    unit = UNITS.get(str(column))
    return name if not unit or (words and unit in words) else f"{name} ({unit})"


def _percent(value: Any) -> str:
    shown = _fmt(value)
    return f"{shown}%" if shown else ""


def markdown_table(frame: pd.DataFrame) -> str:
    if not len(frame.columns):
        return "(no columns)"
    head = "| " + " | ".join(_cell(header(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    formats = [gradient_ratio if str(c) in GRADIENT_COLUMNS else _fmt for c in frame.columns]
    body = ["| " + " | ".join(f(v) for f, v in zip(formats, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _markdown(table: pd.DataFrame, sweeps: list[tuple[dict[str, Any], pd.DataFrame]], records: list[dict],
              bad: list[tuple[str, str]], figures: list[str], directory: Path, published: pd.DataFrame | None = None,
              speeds: dict[str, tuple[dict, pd.DataFrame]] | None = None, pooled: pd.DataFrame | None = None,
              peak_note: str = "") -> str:
    sets = sorted({r.get("_set", ".") for r in records})
    pooled = pooled if pooled is not None else pd.DataFrame()
    compact = compact_tables(pooled) if len(pooled) else []
    lines = [
        "# cellbench report", "",
        f"Generated by {_code(f'python -m bench report {directory}')} from {len(records)} record(s) in {len(sets)} set(s); "
        "every number below comes from those records. Each run belongs to a **set** (its directory under the "
        "report's root; `.` is the root) and a **configuration** (every setting but backend, impl, cell and seed: "
        "the preset it starts from and what differs from it). Runs are compared only within one set and "
        "configuration; runs that differ only in their seed are pooled (mean ± standard deviation).", "",
    ]
    lines += _answer_section(pooled, compact, sweeps)
    if peak_note:  # before the first sentence that quotes a % of the GEMM peak
        lines += [_cell(peak_note), ""]
    lines += _headline_section(pooled, compact, sweeps, published, speeds or {})
    if compact:
        lines += ["## Results by task", "",
                  "One table per set and configuration, best first by the task's main metric; `train GFLOP/s (% "
                  "of GEMM peak)`: the training FLOP rate in per cent of this machine's measured float32 GEMM peak "
                  "(`python -m bench roofline`; 0.05% is one two-thousandth of it); `grad ratio (first/last step)` = "
                  "||dL_T/dh_0|| / ||dL_T/dh_T-1|| of the top layer at initialisation and after training, "
                  "`0 (underflow)` where the gradient reaching the first step underflowed to zero.", ""]
        for about, frame in compact:
            machines = (f"CPU {_cell(about['cpu'])}" if "," not in about["cpu"] else
                        f"CPUs {_cell(about['cpu'])} (throughput compares only within one)")
            lines += [f'<a id="{about["anchor"]}"></a>', "",
                      f"### {_cell(about['task'])}: set {_code(about['set'])}, {_cell(about['configuration'])}", "",
                      f"{about['epochs']} epoch(s); threads {_cell(about['threads'])}; seeds "
                      f"{_cell(about['seeds'])}; {machines}.", "", markdown_table(frame), ""]
    if published is not None and len(published):
        lines += ['<a id="published"></a>', "", "## Against the published perplexities", "",
                  "PTB runs of a configuration Zaremba et al. (2014) published, beside their figures; "
                  "`test_vs_published_pct` = test perplexity over the published one, minus 1.", "",
                  markdown_table(published[[c for c in PUBLISHED_COLUMNS if c in published]]), ""]
        done = published[(published["status"] == "completed") & published["test_ppl"].notna()]
        for (set_name, _), group in done.groupby(["set", "config_key"], sort=True):
            if len(group) > 1:
                spread = 100 * (group["test_ppl"].max() / group["test_ppl"].min() - 1)
                lines += [f"Set {_code(set_name)}, {_cell(group['configuration'].iloc[0])}: {len(group)} completed "
                          f"runs, test perplexities within {spread:.2f}% of each other.", ""]
    for about, sweep in sweeps:
        if any(c.endswith("loss_vs_baseline") for c in sweep.columns):
            what = (f"Below 1 the model remembers; solved: the validation loss below {SOLVED_FRACTION:g} x the "
                    "baseline (no bracket: not within the run).")
        else:
            what = "The latest completed run of each cell, backend/impl and value."
        if about["seeds"] > 1:
            what += f" Means over up to {about['seeds']} seeds."
        lines += [f'<a id="{about["anchor"]}"></a>', "",
                  f"## Sweep over {_cell(about['param'])}: set {_code(about['set'])}, {_cell(about['configuration'])}",
                  "", what, ""]
        for title, frame in sweep_pivots(about["param"], sweep, about.get("who")):
            lines += [f"{title[0].upper()}{title[1:]}:", "", markdown_table(frame), ""]
    for name, (data, frame) in (speeds or {}).items():
        peak = data.get("peak_gflops")
        peak = f"median GEMM peak {_fmt(float(peak))} GFLOP/s" if peak else "no CPU peak (GPU)"
        machine = f" on {_cell(data['cpu'])}" if data.get("cpu") else ""
        threads = f", {data['threads']} thread(s)" if data.get("threads") else ""
        lines += [f'<a id="speed-{slug(name).lower()}"></a>', "",
                  f"## Speed: {_cell(data['preset'])} ({_code(name)})", "",
                  f"`bench speed`, medians of {data['rounds']} interleaved rounds of {data['steps']} steps{machine}"
                  f"{threads}; {peak}; `*_pct_ceiling` against the model's own GEMMs at their shapes "
                  "(docs/performance.md).", "",
                  markdown_table(frame) if len(frame) else "(no rows)", ""]
        lines += [f"- not measured: {_cell(s['backend'])}/{_cell(s['impl'])} {_cell(s['cell'])}: {_cell(s['reason'])}"
                  for s in data.get("skipped", [])] + ([""] if data.get("skipped") else [])
    lines += _sample_section(sample_runs(records))
    if figures:
        lines += ["## Plots", "", "One set of plots per set and configuration; each names its own in its title.", ""]
        lines += [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    lines += [
        "## Every run", "",
        "Columns: `epochs` completed / planned; `threads` as run; accuracy and perplexities on the final "
        "evaluation; `*_tok_s` are medians of timed stretches (tokens = batch x steps); `train_gflops` from the "
        "analytic FLOP count; `efficiency_pct` against this machine's measured float32 GEMM peak; `grad_ratio_*` "
        "as above; for tasks with a memoryless baseline (copy, adding), `test_loss` per scored step, "
        "`loss_vs_baseline` its ratio to the baseline and `solved_at_update` the training update after which the "
        f"validation loss was first below {SOLVED_FRACTION:g} x it.", "",
        markdown_table(table) if len(table) else "(no records)", ""]
    if bad:
        lines += ["## Skipped files", ""] + [f"- {_code(path)}: {_cell(reason)}" for path, reason in bad] + [""]
    return "\n".join(lines)


def _answer_section(pooled: pd.DataFrame, compact: list[tuple[dict[str, Any], pd.DataFrame]],
                    sweeps: list[tuple[dict[str, Any], pd.DataFrame]]) -> list[str]:
    from bench.report import answers, headlines

    anchors = {(about["set"], about["config_key"]): about["anchor"] for about, _ in compact}
    rows = answers.answers(pooled, headlines.main_metric, headlines.elsewhere_note) if len(pooled) else []
    rows += answers.sweep_answers(sweeps, headlines.main_metric, SOLVED_FRACTION, REMEMBERED_ACCURACY)
    return answers.answer_lines(rows, anchors, SOLVED_FRACTION, REMEMBERED_ACCURACY)


def _headline_section(pooled: pd.DataFrame, compact: list[tuple[dict[str, Any], pd.DataFrame]],
                      sweeps: list[tuple[dict[str, Any], pd.DataFrame]], published: pd.DataFrame | None,
                      speeds: dict[str, tuple[dict, pd.DataFrame]]) -> list[str]:
    from bench.report import headlines

    anchors = {(about["set"], about["config_key"]): about["anchor"] for about, _ in compact}
    sentences: list[str] = []
    if len(pooled):
        sentences += headlines.gradient_sentences(pooled, anchors, _window_steps)
    sentences += headlines.solved_sentences(sweeps, pooled)
    if len(pooled):
        sentences += headlines.agreement_sentences(pooled, anchors)
    sentences += headlines.speed_sentences(speeds)
    sentences += headlines.published_sentences(published if published is not None else pd.DataFrame())
    sentences += headlines.seed_caveat(pooled)
    if not sentences:
        return []
    return ["## Headlines", "", "What these records support, each with its evidence; generated, not written.", "",
            *sentences, ""]


def _window_steps(row: Any) -> int | None:
    """How many steps the gradient ratio spans: the task's window (num_steps)."""
    try:
        return int(json.loads(row["config_key"]).get("num_steps"))
    except (TypeError, ValueError, KeyError):
        return None


def _sample_section(runs: list[dict[str, Any]]) -> list[str]:
    """The same stretch of test text as each cell's best run predicts it, a column per
    cell; a prediction that is right is in bold."""
    if not runs:
        return []
    lines = ["## What each cell predicts", "",
             "The start of the test split, and the next word each cell's best run predicts (**bold**: right). "
             "Best run: completed, the most epochs, then the lowest test perplexity.", ""]
    for r in runs:
        test = ((r.get("final") or {}).get("test") or {}).get("perplexity")
        lines.append(f"- {_cell(str(r['config']['cell']))}: run {_code(r['run_id'])}, set {_code(r.get('_set', '.'))}, "
                     f"{_cell(describe(r['config'], declared(r)))}, {_cell(r['backend']['name'])}/"
                     f"{_cell(r['backend']['impl'])}, {r['status']}, {len(r['epochs'])} epoch(s)"
                     + (f", test perplexity {_fmt(float(test))}" if test is not None else ""))
    header = ["input", "true next", *(_cell(str(r["config"]["cell"])) for r in runs)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    first = runs[0]["sample"]
    rows = min(len(first["input_words"]), len(first["target_words"]), 20)
    for i in range(rows):
        truth = first["target_words"][i]
        cells = [_cell(first["input_words"][i]), _cell(truth)]
        for r in runs:
            words = r["sample"].get("predicted_words") or []
            word = words[i] if i < len(words) else ""
            cells.append(f"**{_cell(word)}**" if word == truth and word else _cell(word))
        lines.append("| " + " | ".join(cells) + " |")
    right = ", ".join(f"{_cell(str(r['config']['cell']))} {_right(r['sample'], rows)}/{rows}" for r in runs)
    return lines + ["", f"Right in these {rows} words: {right}.", ""]


def _right(sample: dict[str, Any], rows: int) -> int:
    predicted, truth = sample.get("predicted_words") or [], sample["target_words"]
    return sum(1 for i in range(min(rows, len(predicted), len(truth))) if predicted[i] == truth[i])

"""Records -> tidy pandas DataFrames -> a comparison table, report.md, report.csv and plots.

Reports read records only, never a live model, and only through :mod:`bench.reading`: a
file that is not a readable record is listed with the reason and skipped, never fatal.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.reading import read_results

RUN_COLUMNS = [
    "task", "backend", "impl", "cell", "learning_rate", "device", "status", "epochs", "accuracy", "valid_ppl", "test_ppl",
    "train_tok_s", "eval_tok_s", "train_gflops", "efficiency_pct", "grad_ratio_init", "grad_ratio_final", "hours",
    "cpu",  # throughput compares only within one machine
]


def load_records(directory: str | Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Every record under ``directory`` (recursively), and ``(path, reason)`` for the files
    that could not be read. Checkpoints, roofline files, speed tables and dot-files are not
    records."""
    results = read_results(directory)
    return results.records, results.bad


SPEED_COLUMNS = ["backend", "impl", "cell", "train_tok_s", "eval_tok_s", "eval_over_train", "train_pct_peak",
                 "train_pct_ceiling", "eval_pct_ceiling", "train_vs_torch_fused_lstm"]


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


def runs_frame(records: list[dict[str, Any]], peaks: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per run: what ran, how well, how fast, and how the gradient decays."""
    rows = []
    for r in records:
        config, final, epochs = r["config"], r.get("final") or {}, r.get("epochs") or []
        last = epochs[-1] if epochs else {}
        train = last.get("train") or {}
        test = final.get("test") or {}
        valid = final.get("valid") or last.get("valid") or {}
        grads = r.get("gradient_norms") or []
        rate = train.get("tokens_per_s_median") or train.get("tokens_per_s")
        eval_split = test or valid
        row = {
            "run_id": r["run_id"],
            "task": config["task"],
            "backend": r["backend"]["name"],
            "impl": r["backend"]["impl"],
            "cell": config["cell"],
            "learning_rate": config["learning_rate"],
            "device": r["backend"].get("device", config.get("device")),
            "status": r["status"],
            "epochs": len(epochs),
            "accuracy": test.get("accuracy", valid.get("accuracy")),
            "valid_ppl": valid.get("perplexity"),
            "test_ppl": test.get("perplexity"),
            "train_tok_s": rate,
            "eval_tok_s": eval_split.get("tokens_per_s_median") or eval_split.get("tokens_per_s"),
            "train_gflops": train.get("gflops_per_s"),
            "grad_ratio_init": _top_ratio(grads[0] if grads else None),
            "grad_ratio_final": _top_ratio(grads[-1] if len(grads) > 1 else None),
            "hidden_size": config["hidden_size"],
            "num_layers": config["num_layers"],
            "echo_step": config["echo_step"] if config["task"] == "echo" else None,
            "seed": config["seed"],
            "threads": r["environment"]["threads"],
            "cpu": r["environment"]["cpu"],
            "hours": _hours(r),
            "started_at": r["started_at"],
            "tag": r.get("tag"),
        }
        peak = (peaks or {}).get(f"{row['cpu']}|{row['threads']}")
        row["efficiency_pct"] = 100 * row["train_gflops"] / peak if peak and row["train_gflops"] else None
        rows.append(row)
    return pd.DataFrame(rows)


def _hours(record: dict[str, Any]) -> float | None:
    seconds = sum((e.get("train") or {}).get("seconds", 0) + (e.get("valid") or {}).get("seconds", 0)
                  for e in record.get("epochs") or [])
    return seconds / 3600 if seconds else None


def epochs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run x epoch x split (train, valid)."""
    rows = []
    for r in records:
        for e in r.get("epochs") or []:
            for split in ("train", "valid"):
                if split in e:
                    rows.append({"run_id": r["run_id"], "backend": r["backend"]["name"], "impl": r["backend"]["impl"],
                                 "cell": r["config"]["cell"], "task": r["config"]["task"], "epoch": e["epoch"],
                                 "learning_rate": r["config"]["learning_rate"],
                                 "split": split, **{k: e[split].get(k) for k in ("loss", "accuracy", "perplexity")}})
    return pd.DataFrame(rows)


def gradients_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run x measurement epoch x quantity x layer x time step."""
    rows = []
    for r in records:
        for m in r.get("gradient_norms") or []:
            for key, layers in m["curves"].items():
                for layer, curve in enumerate(layers):
                    for t, value in enumerate(curve):
                        rows.append({"run_id": r["run_id"], "backend": r["backend"]["name"], "impl": r["backend"]["impl"],
                                     "cell": r["config"]["cell"], "task": r["config"]["task"], "epoch": m["epoch"],
                                     "quantity": key, "layer": layer, "t": t, "norm": value})
    return pd.DataFrame(rows)


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
    """Every run but the sweeps' (they have their own table), one row each."""
    runs = runs[~runs["tag"].fillna("").str.startswith("sweep")]
    columns = [c for c in RUN_COLUMNS if c in runs and runs[c].notna().any()]
    return runs.sort_values(["task", "cell", "backend", "impl", "started_at"])[columns].reset_index(drop=True)


def sweep_tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per swept setting: one row per value, a column per (cell, backend) with the accuracy
    and the gradient ratio after training (the latest completed run of each)."""
    tables = {}
    swept = runs[runs["tag"].fillna("").str.startswith("sweep:") & (runs["status"] == "completed")]
    for tag, group in swept.groupby("tag"):
        param = tag.split(":", 1)[1]
        if param not in group:
            continue
        group = group.sort_values("started_at").groupby(["cell", "backend", "impl", param], as_index=False).tail(1)
        group = group.assign(who=group["cell"] + " " + group["backend"] + "/" + group["impl"])
        table = group.pivot_table(index=param, columns="who", values=["accuracy", "grad_ratio_final"], aggfunc="first")
        table.columns = [f"{who} {what}" for what, who in table.columns]
        tables[param] = table.reset_index()
    return tables


def published_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """PTB runs of a published configuration beside the published perplexities
    (Zaremba et al. 2014), and the test perplexity's distance from it."""
    from bench.config import PUBLISHED_PERPLEXITY, published_preset

    rows = []
    for r in records:
        preset = published_preset(r["config"])
        if preset is None:
            continue
        final, epochs = r.get("final") or {}, r.get("epochs") or []
        test = (final.get("test") or {}).get("perplexity")
        valid = (final.get("valid") or {}).get("perplexity")
        published_valid, published_test = PUBLISHED_PERPLEXITY[preset]
        rows.append({
            "preset": preset, "backend": r["backend"]["name"], "impl": r["backend"]["impl"], "cell": r["config"]["cell"],
            "status": r["status"], "epochs": len(epochs), "valid_ppl": valid, "test_ppl": test,
            "published_valid": published_valid, "published_test": published_test,
            "test_vs_published_pct": 100 * (test / published_test - 1) if test else None,
            "hours": _hours(r), "cpu": r["environment"]["cpu"], "run_id": r["run_id"],
        })
    return pd.DataFrame(rows)


def write_report(directory: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write report.md, report.csv and PNG plots for every record under ``directory``.
    A missing directory or an output directory that cannot be written is a BenchError,
    found before anything is read or created."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BenchError(f"{directory} is not a directory" if directory.exists()
                         else f"no results directory {directory}; run `python -m bench run` first or name one")
    out = Path(out_dir) if out_dir else directory
    _prepare_out(out)
    results = read_results(directory)
    records, bad = results.records, results.bad
    runs = runs_frame(records, load_peaks(results.rooflines))
    table = comparison_table(runs) if len(runs) else runs
    runs.to_csv(out / "report.csv", index=False)
    from bench import plots

    figures = plots.draw_all(records, runs, epochs_frame(records), gradients_frame(records), out)
    sweeps = sweep_tables(runs) if len(runs) else {}
    published = published_table(records)
    (out / "report.md").write_text(
        _markdown(table, sweeps, records, bad, figures, directory, published, speed_tables(results.speeds)))
    return {"records": len(records), "bad": bad, "table": table, "sweeps": sweeps, "figures": figures, "out": out,
            "published": published}


def _prepare_out(out: Path) -> None:
    """Create ``out`` if needed and prove it writable, before any work."""
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
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _markdown(table: pd.DataFrame, sweeps: dict[str, pd.DataFrame], records: list[dict], bad: list[tuple[str, str]],
              figures: list[str], directory: Path, published: pd.DataFrame | None = None,
              speeds: dict[str, tuple[dict, pd.DataFrame]] | None = None) -> str:
    lines = [
        "# cellbench report", "",
        f"Generated by `python -m bench report {directory}` from {len(records)} record(s); every number below "
        "comes from those records.", "",
        "Columns: accuracy and perplexities on the final evaluation; `*_tok_s` are medians of timed stretches "
        "(tokens = batch x steps); `train_gflops` from the analytic FLOP count; `efficiency_pct` against this "
        "machine's measured float32 GEMM peak (`python -m bench roofline`); `grad_ratio_*` = "
        "||dL_T/dh_0|| / ||dL_T/dh_{T-1}|| of the top layer at initialisation and after the last epoch.", "",
    ]
    lines += [markdown_table(table) if len(table) else "(no records)", ""]
    if published is not None and len(published):
        lines += ["## Against the published perplexities", "",
                  "PTB runs of a configuration Zaremba et al. (2014) published, beside their figures; "
                  "`test_vs_published_pct` = test perplexity over the published one, minus 1.", "",
                  markdown_table(published.drop(columns=["run_id"])), ""]
        done = published[(published["status"] == "completed") & published["test_ppl"].notna()]
        for preset, group in done.groupby("preset"):
            if len(group) > 1:
                spread = 100 * (group["test_ppl"].max() / group["test_ppl"].min() - 1)
                lines += [f"{preset}: {len(group)} completed runs, test perplexities within {spread:.2f}% of each "
                          "other.", ""]
    for name, (data, frame) in (speeds or {}).items():
        peak = f"median GEMM peak {data['peak_gflops']:.1f} GFLOP/s" if data.get("peak_gflops") else "no CPU peak (GPU)"
        lines += [f"## Speed: {data['preset']} (`{name}`)", "",
                  f"`bench speed`, medians of {data['rounds']} interleaved rounds of {data['steps']} steps; {peak}; "
                  "`*_pct_ceiling` against the model's own GEMMs at their shapes (docs/performance.md).", "",
                  markdown_table(frame), ""]
    for param, sweep in sweeps.items():
        lines += [f"## Sweep over {param}", "", "Test accuracy and gradient ratio after training, per value.", "",
                  markdown_table(sweep), ""]
    for r in records:
        sample = r.get("sample") or {}
        if sample.get("target_words"):
            lines += [f"## Test sample: {r['backend']['name']}/{r['backend']['impl']} {r['config']['cell']}", "",
                      "| input | true next | predicted |", "|---|---|---|"]
            lines += [f"| {a} | {b} | {c} |" for a, b, c in
                      zip(sample["input_words"], sample["target_words"], sample["predicted_words"])][:20]
            lines.append("")
            break
    if figures:
        lines += ["## Plots", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    if bad:
        lines += ["## Skipped files", ""] + [f"- `{path}`: {reason}" for path, reason in bad] + [""]
    return "\n".join(lines)

"""The report's pictures, drawn from the report's DataFrames (never from a live model)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row: Any) -> str:
    return f"{row['cell']} {row['backend']}/{row['impl']}"


def _latest(runs: pd.DataFrame) -> pd.DataFrame:
    """The most recent run per (task, backend, impl, cell) that has a completed epoch and
    did not fail, sweeps left out (an interrupted or still running run shows its epochs)."""
    main = runs[(runs["status"] != "failed") & (runs["epochs"] > 0) & ~runs["tag"].fillna("").str.startswith("sweep")]
    return main.sort_values("started_at").groupby(["task", "backend", "impl", "cell"], as_index=False).tail(1)


def draw_all(records: list[dict], runs: pd.DataFrame, epochs: pd.DataFrame, grads: pd.DataFrame, out: Path) -> list[str]:
    if runs.empty:
        return []
    latest = _latest(runs)
    files: list[str] = []
    for task, task_runs in latest.groupby("task"):
        ids = set(task_runs["run_id"])
        if not grads.empty and grads["run_id"].isin(ids).any():
            files.append(gradient_plot(grads[grads["run_id"].isin(ids)], task, out))
        if not epochs.empty and epochs["run_id"].isin(ids).any():
            files.append(curves_plot(epochs[epochs["run_id"].isin(ids)], task, out))
        files.append(throughput_plot(task_runs, task, out))
    sweep = runs[runs["tag"].fillna("").str.startswith("sweep:echo_step") & (runs["status"] == "completed")]
    if not sweep.empty:
        files.append(lag_plot(sweep, out))
    by_id = {r["run_id"]: r for r in records}
    echo = latest[latest["task"] == "echo"].sort_values(["cell", "backend", "impl"])
    for cell, group in echo.groupby("cell"):  # one picture per cell: every backend predicts alike
        with_sample = [row for _, row in group.iterrows() if by_id[row["run_id"]].get("sample")]
        if with_sample:
            row = with_sample[0]
            files.append(echo_sample_plot(by_id[row["run_id"]]["sample"], _label(row), out / f"echo-sample-{cell}.png"))
    return [str(f) for f in files]


def gradient_plot(grads: pd.DataFrame, task: str, out: Path) -> Path:
    """||dL_T/dh_t|| against t (top layer, log scale): at initialisation and after training."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    top = grads[(grads["quantity"] == "dLT_dh") & (grads["layer"] == grads.groupby("run_id")["layer"].transform("max"))]
    colors = {"rnn": "C0", "lstm": "C1"}
    labelled: set[str] = set()
    for _, run in top.groupby("run_id"):
        cell = run.iloc[0]["cell"]
        color = colors.setdefault(cell, f"C{len(colors) % 10}")
        for epoch, style, when in ((run["epoch"].min(), "-", "at init"), (run["epoch"].max(), "--", "trained")):
            curve = run[run["epoch"] == epoch].sort_values("t")
            label = f"{cell} {when}"
            ax.semilogy(curve["t"], curve["norm"], style, color=color, alpha=0.7,
                        label=None if label in labelled else label)
            labelled.add(label)
    backends = ", ".join(sorted({_label(r).split(" ", 1)[1] for _, r in top.drop_duplicates("run_id").iterrows()}))
    ax.text(0.01, 0.01, f"one line per backend/impl ({backends}); they overlap", transform=ax.transAxes, fontsize=7)
    ax.set_xlabel("time step t (the loss is at the last step, T-1)")
    ax.set_ylabel("||dL_T / dh_t||, mean over the batch")
    ax.set_title(f"{task}: how much of the last step's error reaches step t")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / f"gradients-{task}.png")


PERPLEXITY_AXIS_TOP = 2000.0  # a diverging run (1e21) would flatten every other curve


def curves_plot(epochs: pd.DataFrame, task: str, out: Path) -> Path:
    """Train (solid) and valid (dashed) per epoch, one colour per run; where the runs'
    learning rates differ, each label names its own."""
    plt = _pyplot()
    metric = "perplexity" if task == "ptb" else "loss"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    firsts = epochs.drop_duplicates("run_id")
    name_lr = firsts["learning_rate"].nunique() > 1
    colours = plt.get_cmap("tab20" if len(firsts) > 10 else "tab10")
    cut = False
    for k, (_, first) in enumerate(firsts.iterrows()):
        label = _label(first) + (f" lr {first['learning_rate']:g}" if name_lr else "")
        for split, style in (("train", "-"), ("valid", "--")):
            run = epochs[(epochs["run_id"] == first["run_id"]) & (epochs["split"] == split)]
            kwargs = dict(color=colours(k % colours.N), marker=".", label=label if split == "train" else None)
            left.plot(run["epoch"], run[metric], style, **kwargs)
            right.plot(run["epoch"], run["accuracy"], style, **kwargs)
            cut = cut or bool((run[metric] > PERPLEXITY_AXIS_TOP).any())
    title = f"{task}: {metric} (solid train, dashed valid)"
    if metric == "perplexity":
        left.set_yscale("log")
        if cut:
            left.set_ylim(top=PERPLEXITY_AXIS_TOP)
            title += f"; axis cut at {PERPLEXITY_AXIS_TOP:,.0f}"
    left.set(xlabel="epoch", ylabel=metric, title=title)
    right.set(xlabel="epoch", ylabel="accuracy", title=f"{task}: accuracy")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    return _save(fig, out / f"curves-{task}.png")


def throughput_plot(runs: pd.DataFrame, task: str, out: Path) -> Path:
    plt = _pyplot()
    runs = runs.sort_values(["cell", "backend", "impl"])
    labels = [_label(r) for _, r in runs.iterrows()]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4.5))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, runs["train_tok_s"].fillna(0), 0.4, label="train")
    ax.bar(x + 0.2, runs["eval_tok_s"].fillna(0), 0.4, label="evaluate")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("tokens / s (median of timed stretches)")
    ax.set_title(f"{task}: throughput")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out / f"throughput-{task}.png")


def lag_plot(sweep: pd.DataFrame, out: Path) -> Path:
    """Echo accuracy against the lag: where each cell's memory ends."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, group in sweep.groupby(sweep.apply(_label, axis=1)):
        group = group.sort_values("started_at").groupby("echo_step", as_index=False).tail(1).sort_values("echo_step")
        ax.plot(group["echo_step"], group["accuracy"], marker="o", label=label)
    ax.axhline(0.99, color="grey", linestyle=":", label="99%")
    ax.axhline(0.5, color="grey", linestyle="--", label="chance")
    ax.set(xlabel="echo lag (steps)", ylabel="test accuracy", title="echo: accuracy against lag")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "echo-lag.png")


def echo_sample_plot(sample: dict[str, Any], label: str, path: Path) -> Path:
    """The tutorial's picture: for each batch row, input, target and prediction as bars."""
    plt = _pyplot()
    inputs, targets, predictions = (np.asarray(sample[k]) for k in ("inputs", "targets", "predictions"))
    rows = min(len(inputs), 5)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.5 * rows), sharex=True, squeeze=False)
    t = np.arange(inputs.shape[1])
    for row, ax in enumerate(axes[:, 0]):
        ax.bar(t, inputs[row], width=1, color="lightgrey", label="input")
        ax.bar(t, targets[row] * 0.5, width=1, color="blue", alpha=0.6, label="target (x0.5)")
        ax.bar(t, predictions[row] * 0.25, width=1, color="red", alpha=0.8, label="prediction (x0.25)")
        ax.set_yticks([])
        ax.set_ylabel(f"row {row + 1}", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=3)
    axes[0, 0].set_title(f"echo test sample, {label}")
    axes[-1, 0].set_xlabel("time step")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path

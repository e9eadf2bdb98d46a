"""``bench speed``: training and evaluation tokens/s of every backend x impl x cell at a
preset's sizes, side by side, as ratios to torch fused LSTM and as % of the GEMM peak.

Each measurement runs in its own process (frameworks and thread pools never share one),
on synthetic windows of the preset's shape (timing does not depend on the words), and the
contenders are interleaved round by round so drift of a shared machine hits all alike;
the table shows the median over rounds. On the CPU each round also measures the GEMM peak
first (a shared machine's peak moves with its load, by 2x on these machines:
``docs/performance.md``), and "% of peak" uses the median of those peaks, taken under the
same conditions.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable

import numpy as np

from backends.spec import ModelSpec, random_window
from bench import interrupts
from bench.config import make_config
from bench.registry import get_task_class
from bench.run.factory import build_model, model_spec
from bench.run.metrics import flops_per_token, peak_rss_mb


def preset_spec(preset: str, cell_name: str, overrides: dict[str, Any] | None = None) -> tuple[Any, ModelSpec]:
    """(config, model spec) of a preset with a given cell, in its task's model shape."""
    config = make_config(preset, **{**(overrides or {}), "cell": cell_name})
    return config, model_spec(config, get_task_class(config.task).model_shape(config))


def resident_mb() -> float | None:
    """This process's resident memory now (``/proc/self/statm``; None where there is none):
    subtracted from the high-water mark, what the steps themselves added beyond the
    interpreter, the framework, the model and its windows."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``steps`` train steps and ``steps`` eval steps after ``warmup`` of each (one
    process); a backend that compiles its steps does so in the warm-up, and says how long."""
    overrides = {**job.get("overrides", {}), "backend": job["backend"], "impl": job["impl"],
                 "device": job.get("device", "cpu"), "threads": job.get("threads"), "seed": 0}
    config, spec = preset_spec(job["preset"], job["cell"], overrides)
    if job.get("keep_freed_memory", True):
        from bench.run.memory import keep_freed_memory

        keep_freed_memory()  # as bench run does
    if job.get("threads"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(job["threads"])
    model = build_model(config, spec)  # as bench run builds it: the same settings, dtype and optimizer slots
    rng = np.random.default_rng(1)
    # a length sweep's window length is the measurement's, not the task's: a sequence task
    # fixes num_steps to its sequence length, and timing does not depend on the data
    batch, steps = config.batch_size, job.get("num_steps") or config.num_steps
    windows = [random_window(spec, batch, steps, rng) for _ in range(8)]
    result: dict[str, Any] = {"backend": job["backend"], "impl": job["impl"], "cell": job["cell"],
                              "describe": model.describe()}
    for phase in ("train", "eval"):
        state = model.zero_state(batch)
        step = (lambda x, y, s: model.train_step(x, y, s, 0.1)) if phase == "train" else model.eval_step
        resident = resident_mb()
        for i in range(job["warmup"]):
            _, state = step(*windows[i % 8], state)
        start = time.perf_counter()
        for i in range(job["steps"]):
            _, state = step(*windows[i % 8], state)
        seconds = time.perf_counter() - start
        if phase == "train":  # the high-water mark only rises: evaluation's, after training, would be training's
            result["train_peak_rss_mb"] = peak_rss_mb()
            if resident is not None:
                result["train_added_rss_mb"] = result["train_peak_rss_mb"] - resident
        rate = batch * steps * job["steps"] / seconds
        result[f"{phase}_tok_s"] = rate
        result[f"{phase}_gflops"] = rate * flops_per_token(spec, training=phase == "train") / 1e9
    # compiled during the warm-up steps, never inside the timed ones
    result["compile_seconds"] = model.compile_seconds()
    if (device_mb := model.peak_device_memory_mb()) is not None:
        result["peak_device_memory_mb"] = device_mb
    return result


def run_speed(preset: str, combos: list[tuple[str, str, str]], rounds: int, steps: int, warmup: int,
              threads: int | None, device: str, peak_seconds: float | None,
              overrides: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[float]]:
    """(one row per combination, the GEMM peak of each round); ``peak_seconds`` None or 0
    measures no peak and no ceiling (GPU runs: the CPU's GEMMs are no yardstick there);
    ``overrides``: settings over the preset's (hidden_size, batch_size).

    Each round on the CPU also measures, per cell, the model's GEMM ceiling
    (:func:`bench.measure.roofline.gemm_ceiling`); rows get ``*_pct_ceiling`` against its median.
    """
    from bench.measure.roofline import gemm_ceiling, measure_peak

    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = {c: [] for c in combos}
    failures: dict[tuple[str, str, str], str] = {}
    peaks: list[float] = []
    ceilings: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        if peak_seconds:
            peaks.append(max(measure_peak(threads, seconds=peak_seconds)["gflops"].values()))
            for cell_name in dict.fromkeys(c[2] for c in combos):
                config, spec = preset_spec(preset, cell_name, overrides)
                for phase, ceiling in gemm_ceiling(spec, config.batch_size, config.num_steps, threads).items():
                    ceilings.setdefault((cell_name, phase), []).append(ceiling["tok_s"])
            print(f"round {r + 1}/{rounds} GEMM peak: {peaks[-1]:.1f} GFLOP/s", file=sys.stderr, flush=True)
        for combo in combos:
            interrupts.check()
            if combo in failures:
                continue
            job = {"preset": preset, "backend": combo[0], "impl": combo[1], "cell": combo[2], "steps": steps,
                   "warmup": warmup, "threads": threads, "device": device, "overrides": overrides or {}}
            done = _measure_apart(job)
            if done.returncode:
                failures[combo] = (done.stderr.strip().splitlines() or ["failed"])[-1]
                continue
            samples[combo].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{rounds} {combo[0]}/{combo[1]} {combo[2]}: "
                  f"train {samples[combo][-1]['train_tok_s']:,.0f} tok/s", file=sys.stderr, flush=True)
    peak_gflops = statistics.median(peaks) if peaks else None
    rows = []
    for combo in combos:
        row: dict[str, Any] = {"backend": combo[0], "impl": combo[1], "cell": combo[2]}
        if combo in failures:
            row["error"] = failures[combo]
        else:
            for key in ("train_tok_s", "eval_tok_s", "train_gflops", "eval_gflops"):
                values = [s[key] for s in samples[combo]]
                row[key] = statistics.median(values)
                if key.endswith("tok_s"):
                    row[key.replace("tok_s", "min")], row[key.replace("tok_s", "max")] = min(values), max(values)
            row["kernel"] = samples[combo][-1]["describe"].get("kernel")
            compiles = [s["compile_seconds"] for s in samples[combo] if s.get("compile_seconds") is not None]
            if compiles:
                row["compile_s"] = statistics.median(compiles)
            row["eval_over_train"] = row["eval_tok_s"] / row["train_tok_s"]
            if peak_gflops:
                row["train_pct_peak"] = 100 * row["train_gflops"] / peak_gflops
            for phase in ("train", "eval"):
                if (combo[2], phase) in ceilings:
                    row[f"{phase}_ceiling_tok_s"] = statistics.median(ceilings[(combo[2], phase)])
                    row[f"{phase}_pct_ceiling"] = 100 * row[f"{phase}_tok_s"] / row[f"{phase}_ceiling_tok_s"]
        rows.append(row)
    base = next((r for r in rows if (r["backend"], r["impl"], r["cell"]) == ("torch", "fused", "lstm") and "error" not in r), None)
    for row in rows:
        if base and "error" not in row:
            row["train_vs_torch_fused_lstm"] = row["train_tok_s"] / base["train_tok_s"]
            row["eval_vs_torch_fused_lstm"] = row["eval_tok_s"] / base["eval_tok_s"]
    return rows, peaks


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _percent(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"  # a tiny preset's 0.04% is not 0.0


def heading(preset: str, rounds: int, steps: int, threads: int, peaks: list[float], width: int) -> str:
    """What the table's figures are (preset, rounds, threads, the GEMM peak), wrapped to ``width``."""
    text = (f"bench speed, preset {preset}: medians of {rounds} interleaved round{'s' if rounds != 1 else ''} "
            f"of {steps} step{'s' if steps != 1 else ''}, {threads} thread{'s' if threads != 1 else ''}")
    if peaks:
        text += (f"; float32 GEMM peak median {statistics.median(peaks):.1f} GFLOP/s "
                 f"(min {min(peaks):.1f}, max {max(peaks):.1f})")
    return textwrap.fill(text, width)


# (header, what it says for the legend, the value of a row or None, its text, kept first when space is short: lower)
_Column = tuple[str, str, Callable[[dict[str, Any], float], float | str | None], Callable[[Any], str], int]
_COLUMNS: list[_Column] = [
    ("backend/impl", "", lambda r, _: f"{r['backend']}/{r['impl']}", str, 0),
    ("cell", "", lambda r, _: r["cell"], str, 0),
    ("train tok/s", "", lambda r, _: r.get("train_tok_s"), _count, 0),
    ("eval tok/s", "", lambda r, _: r.get("eval_tok_s"), _count, 4),
    ("x slowest", "x slowest: training tokens/s over the slowest row's",
     lambda r, slowest: r["train_tok_s"] / slowest if r.get("train_tok_s") and slowest else None, lambda v: f"{v:.2f}x", 2),
    ("% peak", "% peak: training GFLOP/s as % of the GEMM peak", lambda r, _: r.get("train_pct_peak"),
     _percent, 1),
    ("% ceiling", "% ceiling: training tokens/s as % of the model's own GEMMs at their shapes",
     lambda r, _: r.get("train_pct_ceiling"), _percent, 5),
    ("compile s", "compile s: seconds compiling, kept out of tokens/s", lambda r, _: r.get("compile_s"),
     lambda v: f"{v:.1f}", 3),
]


def terminal_table(rows: list[dict[str, Any]], width: int, out: str | None = None,
                   columns_of: list[_Column] | None = None) -> str:
    """The rows as a plain-text table no wider than ``width`` (a terminal's): backend/impl,
    cell and training tokens/s always, then as many of the other columns as fit, the least
    telling dropped first; a column no row has a value for is left out. Failures follow the
    table, wrapped to the width; the last line says where the full table (every field of
    every row) went: ``out``, or that ``--out`` keeps it. ``columns_of``: another table's
    columns (default: this one's), e.g. the length sweep's."""
    slowest = min((r["train_tok_s"] for r in rows if r.get("train_tok_s")), default=None)
    columns = []
    for header, legend, value, text, rank in columns_of or _COLUMNS:
        cells = [value(r, slowest) for r in rows]
        if rank == 0 or any(c is not None for c in cells):
            columns.append((header, legend, ["-" if c is None else text(c) for c in cells], rank))

    def widths() -> list[int]:
        return [max([len(h), *map(len, cells)]) for h, _, cells, _ in columns]

    while sum(widths()) + 2 * (len(columns) - 1) > width and any(rank for *_, rank in columns):
        columns.pop(max(range(len(columns)), key=lambda i: columns[i][3]))
    left = {"backend/impl", "cell"}

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if h in left else c.rjust(w)
                         for c, w, (h, *_) in zip(cells, widths(), columns)).rstrip()

    lines = [line([h for h, *_ in columns])]
    lines += [line([cells[i] for _, _, cells, _ in columns]) for i in range(len(rows))]
    for row in rows:
        if "error" in row:
            at = f" at T={row['num_steps']:,}" if "num_steps" in row else ""
            lines += textwrap.wrap(f"{row['backend']}/{row['impl']} {row['cell']}{at} failed: {row['error']}", width)
    legend = "".join(f"{legend}; " for _, legend, _, _ in columns if legend)
    fields = len({key for row in rows for key in row})
    where = f"all {fields} fields of every row are in {out}" if out else f"--out FILE keeps all {fields} fields of every row"
    # a path whole, to copy, even past the width
    lines += textwrap.wrap(f"({legend}{where})", width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


def _measure_apart(job: dict[str, Any], poll_seconds: float = 0.1) -> subprocess.CompletedProcess:
    """:func:`measure` in a process of its own. The wait looks for a stop between polls (our
    handler only notes a signal, so a plain wait would sit out the whole measurement); on
    one the child is killed: a measurement cut short is worth nothing."""
    command = [sys.executable, "-m", "bench.measure.speed", json.dumps(job)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            interrupts.check()
            try:
                out, err = child.communicate(timeout=poll_seconds)  # retried, it loses no output
                return subprocess.CompletedProcess(command, child.returncode, out, err)
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        child.kill()
        child.communicate()
        raise


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))

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
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from backends.spec import ModelSpec
from bench import interrupts
from bench.config import make_config
from bench.factory import build_model, model_spec
from bench.metrics import flops_per_token
from bench.registry import get_task_class
from bench.testing import random_window


def preset_spec(preset: str, cell_name: str, overrides: dict[str, Any] | None = None) -> tuple[Any, ModelSpec]:
    """(config, model spec) of a preset with a given cell, in its task's model shape."""
    config = make_config(preset, **{**(overrides or {}), "cell": cell_name})
    return config, model_spec(config, get_task_class(config.task).model_shape(config))


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``steps`` train steps and ``steps`` eval steps after ``warmup`` of each (one
    process); a backend that compiles its steps does so in the warm-up, and says how long."""
    overrides = {**job.get("overrides", {}), "backend": job["backend"], "impl": job["impl"],
                 "device": job.get("device", "cpu"), "threads": job.get("threads"), "seed": 0}
    config, spec = preset_spec(job["preset"], job["cell"], overrides)
    if job.get("keep_freed_memory", True):
        from bench.memory import keep_freed_memory

        keep_freed_memory()  # as bench run does
    if job.get("threads"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(job["threads"])
    model = build_model(config, spec)  # as bench run builds it: the same settings, dtype and optimizer slots
    rng = np.random.default_rng(1)
    batch, steps = config.batch_size, config.num_steps
    windows = [random_window(spec, batch, steps, rng) for _ in range(8)]
    result: dict[str, Any] = {"backend": job["backend"], "impl": job["impl"], "cell": job["cell"],
                              "describe": model.describe()}
    for phase in ("train", "eval"):
        state = model.zero_state(batch)
        step = (lambda x, y, s: model.train_step(x, y, s, 0.1)) if phase == "train" else model.eval_step
        for i in range(job["warmup"]):
            _, state = step(*windows[i % 8], state)
        start = time.perf_counter()
        for i in range(job["steps"]):
            _, state = step(*windows[i % 8], state)
        seconds = time.perf_counter() - start
        rate = batch * steps * job["steps"] / seconds
        result[f"{phase}_tok_s"] = rate
        result[f"{phase}_gflops"] = rate * flops_per_token(spec, training=phase == "train") / 1e9
    # compiled during the warm-up steps, never inside the timed ones
    result["compile_seconds"] = model.compile_seconds()
    return result


def run_speed(preset: str, combos: list[tuple[str, str, str]], rounds: int, steps: int, warmup: int,
              threads: int | None, device: str, peak_seconds: float | None) -> tuple[list[dict[str, Any]], list[float]]:
    """(one row per combination, the GEMM peak of each round); ``peak_seconds`` None or 0
    measures no peak and no ceiling (GPU runs: the CPU's GEMMs are no yardstick there).

    Each round on the CPU also measures, per cell, the model's GEMM ceiling
    (:func:`bench.roofline.gemm_ceiling`); rows get ``*_pct_ceiling`` against its median.
    """
    from bench.roofline import gemm_ceiling, measure_peak

    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = {c: [] for c in combos}
    failures: dict[tuple[str, str, str], str] = {}
    peaks: list[float] = []
    ceilings: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        if peak_seconds:
            peaks.append(max(measure_peak(threads, seconds=peak_seconds)["gflops"].values()))
            for cell_name in dict.fromkeys(c[2] for c in combos):
                config, spec = preset_spec(preset, cell_name)
                for phase, ceiling in gemm_ceiling(spec, config.batch_size, config.num_steps, threads).items():
                    ceilings.setdefault((cell_name, phase), []).append(ceiling["tok_s"])
            print(f"round {r + 1}/{rounds} GEMM peak: {peaks[-1]:.1f} GFLOP/s", file=sys.stderr, flush=True)
        for combo in combos:
            interrupts.check()
            if combo in failures:
                continue
            job = {"preset": preset, "backend": combo[0], "impl": combo[1], "cell": combo[2], "steps": steps,
                   "warmup": warmup, "threads": threads, "device": device}
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


def _measure_apart(job: dict[str, Any], poll_seconds: float = 0.1) -> subprocess.CompletedProcess:
    """:func:`measure` in a process of its own. The wait looks for a stop between polls (our
    handler only notes a signal, so a plain wait would sit out the whole measurement); on
    one the child is killed: a measurement cut short is worth nothing."""
    command = [sys.executable, "-m", "bench.speed", json.dumps(job)]
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

"""``bench speed --num-steps 64,256,1024``: cost against window length.

A recurrence's cost per token is flat in the window length T when it runs step by step; a
parallel or log-space scan trades more work per token for fewer sequential steps, so where
it overtakes a fused loop depends on T and can only be seen by measuring several. Each
combination x T is measured in its own process by :func:`bench.measure.speed.measure`, and
the rounds interleave every length and every combination (round 1: every combination at
every T, then round 2, ...) so that drift of a shared machine hits all alike; a row is the
median over rounds. Compile time stays apart (``compile_s``), as in every speed table.

Memory is the measuring process's resident set (``ru_maxrss``): ``train_peak_rss_mb`` is its
high-water mark after the training steps (interpreter, framework, model, and whatever the
steps needed at their peak: activations kept for the backward pass, temporaries, and for
JAX the compiler's working memory during the warm-up), ``train_added_rss_mb`` that mark less
the resident memory just before the first training step: what training at this T added.
"""
from __future__ import annotations

import json
import statistics
import sys
from typing import Any

from bench import interrupts
from bench.errors import BenchError
from bench.measure.speed import _Column, _count, _measure_apart

Combo = tuple[str, str, str]  # (backend, impl, cell)

MEDIANS = ("train_tok_s", "eval_tok_s", "train_peak_rss_mb", "train_added_rss_mb")


def parse_lengths(text: str, high: int) -> list[int]:
    """``--num-steps``' comma-separated window lengths, ascending: each a positive integer
    no larger than ``high``, each once."""
    # read as every list flag is (bench.fanout.preflight.items), which this room may not import
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise BenchError(f"--num-steps must list at least one window length, got {text!r}")
    if not all(parts):
        raise BenchError(f"--num-steps must not have an empty window length (two commas, or one at an end), got {text!r}")
    lengths = []
    for part in parts:
        # int() would take "+64" and "6_4"; a length is written in digits alone
        if not part.isdigit() or not 1 <= int(part) <= high:
            raise BenchError(f"--num-steps must list window lengths, each an integer in [1, {high:,}], "
                             f"got {part!r} in {text!r}")
        lengths.append(int(part))
    twice = sorted({t for t in lengths if lengths.count(t) > 1})
    if twice:  # 64 and 064 are one length
        raise BenchError(f"--num-steps must give each window length once, got {', '.join(map(str, twice))} twice in {text!r}")
    return sorted(lengths)


def run_lengths(preset: str, combos: list[Combo], lengths: list[int], rounds: int, steps: int, warmup: int,
                threads: int | None, device: str, overrides: dict[str, Any],
                peak_seconds: float | None) -> tuple[list[dict[str, Any]], list[float]]:
    """(one row per combination x T, in combination order and ascending T; the GEMM peak of
    each round). A combination that fails at a length keeps its error in that row and is not
    measured there again; its other lengths go on."""
    from bench.measure.roofline import measure_peak

    samples: dict[tuple[Combo, int], list[dict[str, Any]]] = {(c, t): [] for c in combos for t in lengths}
    failures: dict[tuple[Combo, int], str] = {}
    peaks: list[float] = []
    for r in range(rounds):
        if peak_seconds:  # recorded beside the figures: the machine's state in each round
            peaks.append(max(measure_peak(threads, seconds=peak_seconds)["gflops"].values()))
        for length in lengths:
            for combo in combos:
                interrupts.check()
                if (combo, length) in failures:
                    continue
                job = {"preset": preset, "backend": combo[0], "impl": combo[1], "cell": combo[2], "steps": steps,
                       "warmup": warmup, "threads": threads, "device": device, "num_steps": length,
                       "overrides": overrides}
                done = _measure_apart(job)
                if done.returncode:
                    failures[(combo, length)] = (done.stderr.strip().splitlines() or ["failed"])[-1]
                    continue
                sample = json.loads(done.stdout.strip().splitlines()[-1])
                samples[(combo, length)].append(sample)
                print(f"round {r + 1}/{rounds} T={length} {combo[0]}/{combo[1]} {combo[2]}: "
                      f"train {sample['train_tok_s']:,.0f} tok/s", file=sys.stderr, flush=True)
    rows = [_row(combo, length, samples[(combo, length)], failures.get((combo, length)))
            for combo in combos for length in lengths]
    return rows, peaks


def _row(combo: Combo, length: int, samples: list[dict[str, Any]], error: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"backend": combo[0], "impl": combo[1], "cell": combo[2], "num_steps": length}
    if error is not None:
        row["error"] = error
    if not samples:  # failed in the first round: nothing measured
        row.setdefault("error", "not measured")
        return row
    for key in MEDIANS:
        values = [s[key] for s in samples if s.get(key) is not None]
        if values:
            row[key] = statistics.median(values)
    for phase in ("train", "eval"):
        values = [s[f"{phase}_tok_s"] for s in samples]
        row[f"{phase}_min"], row[f"{phase}_max"] = min(values), max(values)
        # the plot's figure: microseconds per token, the median's reciprocal
        row[f"{phase}_us_per_token"] = 1e6 / row[f"{phase}_tok_s"]
    row["rounds_measured"] = len(samples)
    row["kernel"] = samples[-1]["describe"].get("kernel")
    compiles = [s["compile_seconds"] for s in samples if s.get("compile_seconds") is not None]
    if compiles:
        row["compile_s"] = statistics.median(compiles)
    devices = [s["peak_device_memory_mb"] for s in samples if s.get("peak_device_memory_mb") is not None]
    if devices:
        row["peak_device_memory_mb"] = statistics.median(devices)
    return row


def _megabytes(value: float) -> str:
    return f"{value:,.0f}"


# the columns of the terminal table (see bench.measure.speed._COLUMNS for the fields)
COLUMNS: list[_Column] = [
    ("backend/impl", "", lambda r, _: f"{r['backend']}/{r['impl']}", str, 0),
    ("cell", "", lambda r, _: r["cell"], str, 0),
    ("T", "T: window length (steps)", lambda r, _: r["num_steps"], lambda v: f"{v:,}", 0),
    ("train tok/s", "", lambda r, _: r.get("train_tok_s"), _count, 0),
    ("eval tok/s", "", lambda r, _: r.get("eval_tok_s"), _count, 3),
    ("us/token", "us/token: microseconds per training token", lambda r, _: r.get("train_us_per_token"),
     lambda v: f"{v:.3g}", 1),
    ("peak MB", "peak MB: the measuring process's peak resident memory after training (ru_maxrss)",
     lambda r, _: r.get("train_peak_rss_mb"), _megabytes, 2),
    ("added MB", "added MB: that peak less the resident memory before the first training step",
     lambda r, _: r.get("train_added_rss_mb"), _megabytes, 4),
    ("device MB", "device MB: peak accelerator memory allocated", lambda r, _: r.get("peak_device_memory_mb"),
     _megabytes, 5),
    ("compile s", "compile s: seconds compiling, kept out of tokens/s", lambda r, _: r.get("compile_s"),
     lambda v: f"{v:.1f}", 6),
]

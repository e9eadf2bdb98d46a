"""Measurements beside the loss: throughput, FLOP counts, gradient-norm summaries, the machine's load."""
from __future__ import annotations

import math
import os
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np

from backends.base import StepStats
from backends.spec import ModelSpec


class StretchTimer:
    """Tokens per second as the median of several timed stretches, after warm-up steps.

    The first ``warmup`` steps (tracing, caches, allocator growth) are not timed; the rest
    is cut into stretches of ``stretch`` steps, each timed by wall clock. Backends return
    their step statistics as host numbers, so each step ends synchronised with the device.
    The median resists the noise of a shared machine; min and max show its spread.
    """

    def __init__(self, warmup: int = 5, stretch: int = 20) -> None:
        self.warmup, self.stretch = warmup, stretch
        self.steps = 0
        self.rates: list[float] = []
        self.step_ms: list[float] = []
        self._tokens = 0
        self._start = time.perf_counter()

    def tick(self, tokens: int) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self._start, self._tokens = time.perf_counter(), 0
            return
        if self.steps < self.warmup:
            return
        self._tokens += tokens
        if (self.steps - self.warmup) % self.stretch == 0:
            seconds = time.perf_counter() - self._start
            self.rates.append(self._tokens / seconds)
            self.step_ms.append(1000 * seconds / self.stretch)
            self._start, self._tokens = time.perf_counter(), 0

    def summary(self) -> dict[str, Any]:
        if not self.rates:
            return {"timed_stretches": 0}
        return {
            "timed_stretches": len(self.rates),
            "tokens_per_s_median": statistics.median(self.rates),
            "tokens_per_s_min": min(self.rates),
            "tokens_per_s_max": max(self.rates),
            "ms_per_step_median": statistics.median(self.step_ms),
        }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


BUSY_MARGIN = 0.25  # cores of others' work tolerated beyond the free ones: daemons, our own parent's polls


def _system_busy_seconds() -> float | None:
    """CPU seconds every process on this machine has used since boot, from the first line of
    ``/proc/stat`` (user, nice, system, irq, softirq, steal: all but idle and iowait); steal is
    counted because a hypervisor's other guests take our cores as surely as a neighbour
    process does. None where there is no ``/proc/stat`` (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in (fields[1:9] + ["0"] * 8)[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for (each of
    ``bench speed``'s measurements is such a child by the time it reports)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # no load average on this platform
        return None


class LoadMeter:
    """The machine's load around a measurement, so a figure taken on a busy machine says so.

    Two views: the load average (runnable processes, ours included; the 1-minute figure lags)
    before and after, and, where ``/proc/stat`` exists, the CPU time everything else used
    during the measurement: the machine's busy time minus our process tree's. ``others_cores``
    (that time over the wall time) is what competed for the cores; the measurement counts as
    busy when it exceeds the cores our ``threads`` leave free (a training on the other core of
    a 2-core machine while measuring with 1 thread is not busy; two are).
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._start = time.perf_counter()
        self._loadavg = _loadavg()
        self._busy, self._own = _system_busy_seconds(), _own_seconds()

    def finish(self) -> dict[str, Any]:
        """The load as recorded beside the figures (``machine_load`` in a speed table and a roofline measurement)."""
        seconds = time.perf_counter() - self._start
        busy, own = _system_busy_seconds(), _own_seconds()
        after = _loadavg()
        cpus = os.cpu_count() or 1
        others = None
        if busy is not None and self._busy is not None:
            others = max(0.0, (busy - self._busy) - (own - self._own))  # jiffies vs os.times rounding: never below 0
        if others is not None and seconds > 0:
            others_cores = others / seconds
        elif after is not None:
            others_cores = max(0.0, after[0] - self.threads)  # no /proc/stat: the load average less our own threads
        else:
            others_cores = None
        return {"logical_cpus": cpus, "threads": self.threads, "seconds": round(seconds, 3),
                "loadavg_before": self._loadavg, "loadavg_after": after,
                "others_cpu_s": None if others is None else round(others, 3),
                "others_cores": None if others_cores is None else round(others_cores, 3),
                "busy": others_cores is not None and others_cores > cpus - self.threads + BUSY_MARGIN}


def busy_warning(load: dict[str, Any]) -> str | None:
    """One line for stderr when :meth:`LoadMeter.finish` found the machine busy, else None."""
    if not load.get("busy"):
        return None
    averages = [v[0] for v in (load["loadavg_before"], load["loadavg_after"]) if v]
    said = f"load {max(averages):.1f}" if averages else "load unknown"
    threads = f"{load['threads']} thread{'s' if load['threads'] != 1 else ''}"
    return (f"warning: the machine was busy: {said} on {load['logical_cpus']} cores while measuring with {threads} "
            f"(other processes kept {load['others_cores']:.1f} cores busy); figures may be low")


def flops_per_token(spec: ModelSpec, training: bool) -> float:
    """Analytic floating-point operations per token (a multiply-add counts 2).

    Counts the matrix products, which dominate: per layer ``2 in blocks·hidden`` for the
    input projection and ``2 k n`` for each of the recurrence's products (``2 hidden
    blocks·hidden`` for ``h V``; none for a cell without recurrent weights), and ``2 hidden
    classes`` for the softmax layer; element-wise work (activations, state updates,
    softmax) adds ``~10 blocks·hidden + 5 classes``.
    Training costs three times the forward pass: the backward pass computes one product for
    the input gradient and one for the weight gradient per forward product.
    """
    width = spec.cell.n_blocks * spec.hidden_size
    recurrent = sum(2.0 * k * n for k, n in spec.cell.recurrent_products(spec.hidden_size))
    forward = 0.0
    for layer in range(spec.num_layers):
        forward += 2.0 * spec.layer_input_size(layer) * width + recurrent + 10.0 * width
    forward += 2.0 * spec.hidden_size * spec.n_classes + 5.0 * spec.n_classes
    return 3.0 * forward if training else forward


def gradient_summary(norms: np.ndarray) -> dict[str, float]:
    """Summaries of one ``||dL_T/dh_t||`` curve (t = 0..T-1) of one layer.

    ``ratio`` = norm at t=0 over norm at t=T-1: how much of the last step's error signal
    reaches the window's first step. ``decay_per_step`` = exp(-slope) of a least-squares line
    through log(norm) against t: the factor by which the signal shrinks per step back in time
    (1: no decay; 0.5: halves every step). Non-finite norms (overflow) are left out, as zeros
    are from the fit; NaN where too few remain.
    """
    norms = np.asarray(norms, dtype=np.float64)
    positive = np.isfinite(norms) & (norms > 0)  # an overflowed norm says nothing about decay
    with np.errstate(over="ignore"):  # a ratio or decay beyond float64 is inf
        ratio = float(norms[0] / norms[-1]) if np.isfinite(norms[0]) and positive[-1] else math.nan
        if positive.sum() >= 2:
            t = np.arange(len(norms))[positive]
            decay = float(np.exp(-np.polyfit(t, np.log(norms[positive]), 1)[0]))
        else:
            decay = math.nan
    return {"ratio": ratio, "decay_per_step": decay}


class PassTotals:
    """Running sums of one pass over a split, its timer, and the summary that goes into the
    record (with a perplexity and an accuracy where the task reports them).

    Two counts: ``tokens``, the scored steps the loss is averaged over, and ``processed``,
    every step of every window (batch x steps), which throughput counts: the adding problem
    scores one step of hundreds, all of which the model computes."""

    def __init__(self, flops_per_token: float, perplexity: bool = False, accuracy: bool = True) -> None:
        self.perplexity = perplexity
        self.accuracy = accuracy
        self.ce = 0.0
        self.correct = 0
        self.tokens = 0
        self.processed = 0
        self.flops_per_token = flops_per_token
        self.timer = StretchTimer()
        self.start = time.perf_counter()

    def add(self, stats: StepStats, processed: int | None = None) -> None:
        """One window's statistics; ``processed``: its batch x steps (default: the scored tokens)."""
        processed = stats.n_tokens if processed is None else processed
        self.ce += stats.loss_sum
        self.correct += stats.n_correct
        self.tokens += stats.n_tokens
        self.processed += processed
        self.timer.tick(processed)

    def summary(self, compile_seconds: float | None = None) -> dict[str, float]:
        """``compile_seconds``: of the pass's time, what the backend spent compiling
        (:meth:`backends.base.Model.compile_seconds`); recorded, and left out of tokens/s."""
        seconds = time.perf_counter() - self.start
        loss = self.ce / max(self.tokens, 1)
        out: dict[str, Any] = {"loss": loss}
        if self.accuracy:
            out["accuracy"] = self.correct / max(self.tokens, 1)
        running = seconds - (compile_seconds or 0.0)
        out.update({"tokens": self.tokens, "seconds": seconds,
                    "tokens_per_s": self.processed / running if running > 0 else None})
        if compile_seconds is not None:
            out["compile_seconds"] = compile_seconds
        if self.perplexity:
            out["perplexity"] = math.exp(loss)  # every window's loss is below the runner's divergence limit
        out.update(self.timer.summary())
        rate = out.get("tokens_per_s_median") or out["tokens_per_s"]
        out["flops_per_token"] = self.flops_per_token
        out["gflops_per_s"] = self.flops_per_token * rate / 1e9 if rate else None
        return out

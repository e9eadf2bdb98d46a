"""What a run shows while it runs: one line per epoch on stderr (unless quiet) and live
progress bars with loss and tokens/s (on a terminal, or when asked)."""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

from tqdm import tqdm

from bench.run.metrics import PassTotals


def metric_text(metrics: dict[str, float], task: Any = None) -> str:
    """``ppl .. acc ..``, ``loss .. acc ..``, or ``loss .. (x baseline)`` as the task reports them."""
    parts = [f"ppl {metrics['perplexity']:.2f}" if "perplexity" in metrics else f"loss {metrics['loss']:.4f}"]
    baseline = getattr(task, "baseline", None)
    if baseline and "perplexity" not in metrics:
        parts.append(f"({metrics['loss'] / baseline:.3g} x baseline)")
    if "accuracy" in metrics:
        parts.append(f"acc {metrics['accuracy']:.4f}")
    return " ".join(parts)


def epoch_line(entry: dict[str, Any], epochs: int, splits: tuple[str, ...], task: Any = None) -> str:
    train = entry["train"]
    parts = [f"epoch {entry['epoch']}/{epochs}", f"lr {entry['learning_rate']:.4g}", f"train {metric_text(train, task)}"]
    parts += [f"{split} {metric_text(entry[split], task)}" for split in splits]
    parts.append(f"{train['tokens_per_s']:,.0f} tok/s")
    return " | ".join(parts)


class Reporter:
    """Epoch lines (unless quiet) and progress bars (``progress`` None: only on a terminal)."""

    def __init__(self, quiet: bool = False, progress: bool | None = None) -> None:
        self.quiet = quiet
        self.show_bars = progress if progress is not None else (sys.stderr.isatty() and not quiet)

    def __call__(self, line: str, always: bool = False) -> None:
        if always or not self.quiet:
            tqdm.write(line, file=sys.stderr)

    def bar(self, label: str) -> Callable[[int], "Bar"]:
        return lambda total: Bar(label, total, self.show_bars)


class Bar:
    """A tqdm bar with live loss and tokens/s, refreshed at most a few times a second."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        # windows, not "it/s": the postfix shows the loss and tokens/s, the rate that means something
        self.bar = tqdm(total=total, desc=label, leave=False, disable=not enabled, file=sys.stderr, mininterval=0.5,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} windows "
                                   "[{elapsed}<{remaining}{postfix}]")
        self.last = 0.0

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def tick(self, totals: PassTotals) -> None:
        self.bar.update()
        now = time.perf_counter()
        if self.bar.disable or now - self.last < 0.5:
            return
        self.last = now
        loss = totals.ce / max(totals.tokens, 1)
        shown = f"ppl={math.exp(min(loss, 700)):.1f}" if totals.perplexity else f"loss={loss:.4f}"
        rate = totals.processed / max(now - totals.start, 1e-9)
        accuracy = f" acc={totals.correct / max(totals.tokens, 1):.3f}" if totals.accuracy else ""
        self.bar.set_postfix_str(f"{shown}{accuracy} {rate:,.0f} tok/s")

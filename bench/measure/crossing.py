"""The length sweep's headline: from what window length a scan-trained linear-recurrence
cell trains faster than the fused gated cell it simplifies (minGRU against torch's fused
GRU, minLSTM against its fused LSTM), and by how much at the lengths quoted.

Everything is computed from the measured rows (training tokens/s, same width: one sweep
builds every cell from the same settings); nothing is written in advance.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

# (the scan-trained cell, the gated cell it is compared with) and where that one runs fused
PAIRS = [("mingru", "gru"), ("minlstm", "lstm")]
BASELINE = ("torch", "fused")
CHALLENGER_IMPL = "scan"
QUOTED = (1024, 4096)  # the lengths the headline gives ratios at, where measured


def ratios(rows: list[dict[str, Any]], challenger: tuple[str, str, str], baseline: tuple[str, str, str]) -> dict[int, float]:
    """T -> challenger's training tokens/s over the baseline's, at every T both were measured."""
    def rates(combo: tuple[str, str, str]) -> dict[int, float]:
        return {r["num_steps"]: r["train_tok_s"] for r in rows
                if (r["backend"], r["impl"], r["cell"]) == combo and r.get("train_tok_s")}

    mine, theirs = rates(challenger), rates(baseline)
    return {t: mine[t] / theirs[t] for t in sorted(mine.keys() & theirs.keys())}


class Crossing(NamedTuple):
    """``kind``: "from" (faster at every measured T, from ``after``), "between" (slower at
    ``before``, faster at ``after`` and every T beyond; ``at`` the log-log interpolation of
    the ratio between the two, an estimate and said as one) or "never" (slower at the
    longest T, ``before``)."""

    kind: str
    at: float | None
    before: int | None
    after: int | None


def crossing(by_length: dict[int, float]) -> Crossing | None:
    """Where the ratio rises above 1 for good; None without any T."""
    lengths = sorted(by_length)
    if not lengths:
        return None
    if by_length[lengths[-1]] <= 1:
        return Crossing("never", None, lengths[-1], None)
    first = len(lengths) - 1  # the first index of the last run of ratios above 1
    while first > 0 and by_length[lengths[first - 1]] > 1:
        first -= 1
    if first == 0:
        return Crossing("from", float(lengths[0]), None, lengths[0])
    t0, t1 = lengths[first - 1], lengths[first]
    r0, r1 = by_length[t0], by_length[t1]  # r0 <= 1 < r1: the logs differ
    fraction = -math.log(r0) / (math.log(r1) - math.log(r0))
    return Crossing("between", math.exp(math.log(t0) + fraction * (math.log(t1) - math.log(t0))), t0, t1)


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def sentence(name: str, baseline_name: str, by_length: dict[int, float]) -> str | None:
    """One sentence: where ``name`` overtakes ``baseline_name`` and the ratios quoted; None
    without a common length."""
    found = crossing(by_length)
    if found is None:
        return None
    quoted = [t for t in QUOTED if t in by_length] or [max(by_length)]
    at = ", ".join(f"{_ratio(by_length[t])} at T={t:,}" for t in quoted)
    if found.kind == "never":
        return f"{name} does not overtake {baseline_name} up to T={found.before:,} ({at})"
    if found.kind == "from":
        return f"{name} is faster than {baseline_name} at every T measured, from T={found.after:,} ({at})"
    return (f"{name} overtakes {baseline_name} between T={found.before:,} and T={found.after:,} "
            f"(about T={found.at:,.0f} by log-log interpolation; {at})")


def headline(rows: list[dict[str, Any]], width: int | None = None) -> list[str]:
    """One sentence per scan-trained backend of each pair present, training tokens/s as the
    measure; the first names what is compared."""
    lines = []
    for cell, gated in PAIRS:
        baseline = (*BASELINE, gated)
        backends = dict.fromkeys(r["backend"] for r in rows if (r["impl"], r["cell"]) == (CHALLENGER_IMPL, cell))
        for backend in backends:
            by_length = ratios(rows, (backend, CHALLENGER_IMPL, cell), baseline)
            text = sentence(f"{cell} {backend}/{CHALLENGER_IMPL}", f"{gated} {'/'.join(BASELINE)}", by_length)
            if text:
                lines.append(text)
    if not lines:
        return []
    what = f"training tokens/s, same width{f' {width}' if width else ''}"
    return [f"headline ({what}): " + "; ".join(lines) + "."]

"""``bench speed --num-steps T,T,...``: its checks before measuring, and what it prints and
writes after (the table, the headline, the JSON file at --out and the figure beside it,
drawn by a function the command line hands in: this room does not import the report's)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

from bench.config import make_config
from bench.errors import BenchError
from bench.measure.lengths import Combo, parse_lengths


def plot_path(out: str) -> Path:
    """Where the figure of a sweep written to ``out`` goes: beside it, ``NAME-per-token.png``."""
    path = Path(out)
    return path.with_name(f"{path.stem}-per-token.png")


def check_lengths(args: argparse.Namespace, combos: list[Combo], overrides: dict[str, Any]) -> list[int]:
    """The lengths, ascending, each refused (one line) unless every combination's memory at
    that length fits, and the figure's path writable beside ``--out``."""
    from bench.registry import get_task_class
    from bench.run.budget import check_memory
    from bench.storage import check_writable_file
    from cells.options import INT32_MAX

    lengths = parse_lengths(args.num_steps, INT32_MAX)
    for backend, impl, cell in combos:
        config = make_config(args.preset, **overrides, backend=backend, impl=impl, cell=cell)
        # sized as measured: windows of the longest length (whatever the task fixes), and
        # evaluation at the training batch, as bench.measure.speed.measure runs it
        measured = dataclasses.replace(config, num_steps=lengths[-1], eval_num_steps=lengths[-1],
                                       eval_batch_size=config.batch_size)
        try:
            check_memory(measured)
        except BenchError as exc:
            # the remedy names what sets the task's length; here --num-steps does
            said = str(exc).replace(get_task_class(config.task).length_flags, "--num-steps")
            raise BenchError(f"--num-steps {lengths[-1]:,}, {backend}/{impl} {cell}: {said}") from None
    if args.out:
        check_writable_file(plot_path(args.out), "--out's figure")
    return lengths


def where(cpu: str, threads: int, device: str) -> str:
    """What the figures were measured on, for the heading and the figure's title."""
    on = cpu if device == "cpu" else f"{device} (host {cpu})"
    return f"{on}, {threads} thread{'s' if threads != 1 else ''}"


# (rows, path, title, headline) -> the path written, or None when no row was measured
Draw = Callable[[list[dict[str, Any]], Path, str, str], "Path | None"]


def speed_over_lengths(args: argparse.Namespace, lengths: list[int], combos: list[Combo],
                       skipped: list[dict[str, str]], overrides: dict[str, Any], draw: Draw) -> int:
    """Measure, print the table and the headline, write --out and the figure (``draw``:
    :func:`bench.report.length_figure.plot_lengths`); exit status 0."""
    from bench.measure.crossing import headline
    from bench.measure.lengths import COLUMNS, run_lengths
    from bench.measure.speed import terminal_table
    from bench.run.metrics import LoadMeter, busy_warning
    from bench.run.records import cpu_model, utc_now

    threads = args.threads or os.cpu_count() or 1
    config = make_config(args.preset, **overrides)
    load = LoadMeter(threads)
    rows, peaks = run_lengths(args.preset, combos, lengths, args.rounds, args.steps, args.warmup, args.threads,
                              args.device, overrides, peak_seconds=1.5 if args.device == "cpu" else None)
    machine_load = load.finish()
    width = shutil.get_terminal_size().columns
    sizes = f"{config.num_layers} x {config.hidden_size} units, batch {config.batch_size}"
    text = (f"bench speed, preset {args.preset} ({sizes}) at T = {', '.join(f'{t:,}' for t in lengths)}: medians of "
            f"{args.rounds} interleaved round{'s' if args.rounds != 1 else ''} of {args.steps} "
            f"step{'s' if args.steps != 1 else ''}; {where(cpu_model(), threads, args.device)}")
    if peaks:
        text += f"; float32 GEMM peak median {statistics.median(peaks):.1f} GFLOP/s"
    print(textwrap.fill(text, width))
    print(terminal_table(rows, width, args.out, COLUMNS))
    lines = headline(rows, config.hidden_size)
    for line in lines:
        print(textwrap.fill(line, width))
    if warning := busy_warning(machine_load):
        print(warning, file=sys.stderr)
    if args.out:
        from bench.storage import atomic_write_bytes

        title = (f"bench speed --num-steps, preset {args.preset} ({sizes}), median of {args.rounds} "
                 f"round{'s' if args.rounds != 1 else ''}\n{where(cpu_model(), threads, args.device)}")
        plot = draw(rows, plot_path(args.out), title, lines[0] if lines else "")
        data = {"preset": args.preset, "cpu": cpu_model(), "threads": threads, "device": args.device,
                "measured_at": utc_now(), "peak_gflops": statistics.median(peaks) if peaks else None,
                "peaks_per_round": peaks, "rounds": args.rounds, "steps": args.steps, "num_steps": lengths,
                "overrides": overrides, "hidden_size": config.hidden_size, "batch_size": config.batch_size,
                "num_layers": config.num_layers, "headline": lines[0] if lines else None,
                "plot": plot.name if plot else None, "rows": rows, "skipped": skipped, "machine_load": machine_load}
        atomic_write_bytes(args.out, json.dumps(data, indent=1).encode())
        if plot:
            print(f"figure: {plot}")
    return 0

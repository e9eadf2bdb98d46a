"""The front door: ``python -m bench {run,list,data,...}``. The one place that turns what
ends a command early into one line on stderr and its exit status: a :class:`BenchError`
(bad input: 2), a fault of the machine such as a full disk (4), a signal (130)."""
from __future__ import annotations

import argparse
import errno
import sys
from typing import Sequence

from bench import interrupts
from bench.config import (
    THREADS, Config, config_from_args, config_from_values, default_preset, make_config, overrides_from_args, presets,
    preset_source, with_derived,
)
from bench.errors import BenchError
from bench.fanout.preflight import SPEED_BOUNDS
from bench.run.records import DEFAULT_RESULTS_DIR
from bench.run_flags import CHECKPOINT_POLICY, add_run_arguments
from bench.exits import EXIT_ABORTED, EXIT_INTERRUPTED, EXIT_USER_ERROR
from bench.run.runner import RunOptions, run
from bench.storage import EnvironmentFault, fault_reason

EVERY_BACKEND = "every installed backend (`bench list`)"
EVERY_CELL = "every installed cell (`bench list`)"
# errors of the machine, not of the code: one line, exit 4
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Compare recurrent cells across frameworks.")
    commands = parser.add_subparsers(dest="command", required=True)

    add_run_arguments(commands.add_parser("run", help="train and evaluate one backend x cell; writes a record",
                                          epilog=f"Checkpoints: {CHECKPOINT_POLICY}."))

    commands.add_parser("list", help="backends (and whether they can run here), cells, tasks, presets")

    matrix_parser = commands.add_parser(
        "matrix", help="run every backend x impl x cell under identical settings, each in its own process",
        description="Any other flag is passed to every `bench run` (e.g. --preset, --epochs, --results-dir). "
        "Every name, list and combination's settings are checked before the first run starts.",
    )
    matrix_parser.add_argument("--backends", help=f"comma-separated (default: {EVERY_BACKEND})")
    matrix_parser.add_argument("--cells", help=f"comma-separated (default: {EVERY_CELL})")
    matrix_parser.add_argument("--impls", help="comma-separated (default: every impl of each backend)")
    add_fan_out_arguments(matrix_parser)

    sweep_parser = commands.add_parser(
        "sweep", help="vary one setting across cells, e.g. --param echo_step --values 1,3,6,10,14",
        description="Any other flag is passed to every `bench run`. Every value and point's settings are checked "
        "before the first run starts.",
    )
    sweep_parser.add_argument("--param", required=True,
                              help="a setting of `bench run`, e.g. echo_step or hidden_size (not backend, impl, cell, task)")
    sweep_parser.add_argument("--values", required=True, help="comma-separated values, each different (write --values=-1,2 for negatives)")
    sweep_parser.add_argument("--cells", help=f"comma-separated (default: {EVERY_CELL})")
    sweep_parser.add_argument("--backend", default="numpy", help="backend (default: numpy)")
    sweep_parser.add_argument("--impl", help="impl (default: the backend's)")
    add_fan_out_arguments(sweep_parser)

    report_parser = commands.add_parser("report", help="tables and plots from the records in a directory")
    report_parser.add_argument("directory", nargs="?", default=DEFAULT_RESULTS_DIR,
                               help=f"records to read, each subdirectory a set of its own (default: {DEFAULT_RESULTS_DIR}; "
                                    "the committed runs are in results/reference)")
    report_parser.add_argument("--out", help="where report.md, report.csv and the plots go (default: DIRECTORY)")

    speed_parser = commands.add_parser(
        "speed", help="training and evaluation tokens/s of every backend x impl x cell at a preset's sizes")
    speed_parser.add_argument("--preset", default="ptb-small", help="sizes to measure (default: ptb-small)")
    speed_parser.add_argument("--backends", help=f"comma-separated (default: {EVERY_BACKEND})")
    speed_parser.add_argument("--cells", help=f"comma-separated (default: {EVERY_CELL})")
    speed_parser.add_argument("--impls", help="comma-separated (default: every impl of each backend)")
    speed_parser.add_argument("--rounds", type=int, default=3,
                              help=f"interleaved rounds; the table shows medians (range {SPEED_BOUNDS['--rounds'].interval()})")
    speed_parser.add_argument("--steps", type=int, default=20,
                              help=f"timed steps per phase and round (range {SPEED_BOUNDS['--steps'].interval()})")
    speed_parser.add_argument("--warmup", type=int, default=5,
                              help=f"untimed steps first (range {SPEED_BOUNDS['--warmup'].interval()})")
    speed_parser.add_argument("--threads", type=int,
                              help=f"threads of every pool (default: all cores; range {THREADS.interval()})")
    speed_parser.add_argument("--num-steps", metavar="T,T,...",
                              help="comma-separated window lengths, e.g. 64,256,1024: a row per length, the cost per "
                                   "token plotted against it beside --out, and where a scan overtakes a fused loop "
                                   "(default: the preset's one length)")
    speed_parser.add_argument("--hidden-size", type=int, help="units per layer (default: the preset's)")
    speed_parser.add_argument("--batch-size", type=int, help="sequences per window (default: the preset's)")
    speed_parser.add_argument("--out", help="also write the table as JSON to this file (checked writable first)")
    speed_parser.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"])

    roofline_parser = commands.add_parser("roofline", help="measure this machine's float32 GEMM peak and record it")
    roofline_parser.add_argument("--threads", type=int, help=f"threads (default: all cores; range {THREADS.interval()})")
    roofline_parser.add_argument("--results-dir", default="results", help="where roofline.json goes (default: results)")

    data_parser = commands.add_parser("data", help="verify a corpus, downloading it first if it is not there")
    data_parser.add_argument("corpus", choices=["ptb"])
    data_parser.add_argument("--data-dir", help="the directory of ptb.{train,valid,test}.txt: checked first, downloaded "
                             "into if they are not there (default: $BENCH_DATA_DIR, else ~/.cache/cellbench/ptb)")
    return parser


def add_fan_out_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the runs of matrix and sweep go, and how many seeds each combination gets."""
    from bench.registry import executor_names

    parser.add_argument("--executor", choices=executor_names(), default="local",
                        help="local: one process after another on this machine; ray: each run a Ray task reserving "
                        "--threads CPUs (and a GPU with --device gpu), records written here (default: local)")
    parser.add_argument("--address", help="with --executor ray: the cluster to join, auto (the one `ray start` made "
                        "on this node), HOST:PORT or ray://HOST:PORT (default: a local Ray instance for this call)")
    parser.add_argument("--seeds", metavar="SEEDS", help="comma-separated seeds: every combination runs once per seed (e.g. 0,1,2)")
    parser.add_argument("--repeats", type=int, metavar="N", help="every combination runs N times, with seeds --seed (default 0) "
                        "to --seed + N - 1")
    parser.add_argument("--seed", help=argparse.SUPPRESS)  # passed on to every run (not an abbreviation of --seeds)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with interrupts.handled():
        try:
            interrupts.check()
            code = _dispatch(argv)
            interrupts.check()  # a command with no stop of its own (list, report) still ends 130 if a signal came
            return code
        except BenchError as exc:
            return _fail(f"error: {exc}", EXIT_USER_ERROR)
        except KeyboardInterrupt as exc:
            by = f" by {exc.args[0]}" if exc.args else ""
            return _fail(f"interrupted{by}", EXIT_INTERRUPTED)
        except EnvironmentFault as exc:
            return _fail(f"error: {exc}", EXIT_ABORTED)
        except MemoryError:
            return _fail("error: out of memory", EXIT_ABORTED)
        except BrokenPipeError:  # `bench report | head`: the reader left, nothing to say
            sys.stdout = None  # type: ignore[assignment]  (no flush of the closed pipe at exit)
            return 0
        except OSError as exc:
            if exc.errno not in _ENVIRONMENT_ERRNOS:
                return _interrupted_or_raise(exc)
            where = f" {exc.filename}" if exc.filename else ""
            return _fail(f"error: {fault_reason(exc)}:{where} ({exc.strerror})", EXIT_ABORTED)
        except Exception as exc:
            return _interrupted_or_raise(exc)


def _interrupted_or_raise(exc: Exception) -> int:
    """A library's own error raised from our interrupt is the interrupt; anything else is a bug."""
    interrupt = interrupts.interrupt_behind(exc)
    if interrupt is None:
        raise exc
    by = f" by {interrupt.args[0]}" if interrupt.args else ""
    return _fail(f"interrupted{by}", EXIT_INTERRUPTED)


def _fail(message: str, code: int) -> int:
    print(" ".join(message.splitlines()), file=sys.stderr)  # always one line
    return code


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if passthrough and args.command not in ("matrix", "sweep"):
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    handler = {"run": lambda: _run(args, argv), "list": _list, "data": lambda: _data(args),
               "matrix": lambda: _matrix(args, passthrough), "sweep": lambda: _sweep(args, passthrough),
               "report": lambda: _report(args), "roofline": lambda: _roofline(args),
               "speed": lambda: _speed(args)}[args.command]
    return handler()


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.resume:
        config, preset = _resumed_config(args), None  # the checkpoint knows its preset
    else:
        config = config_from_args(args)
        preset = args.preset or default_preset(config.task)
    _note_options_not_taken(args, config)
    options = RunOptions(
        data_dir=args.data_dir, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir,
        resume=args.resume, keep_checkpoint=args.keep_checkpoint, progress=args.progress, quiet=args.quiet,
        tag=args.tag, preset=preset, argv=["python", "-m", "bench", *argv],
    )
    try:
        return run(config, options).exit_code
    except BaseException as exc:  # a run that has begun catches its own interrupts: this is before its record
        interrupt = interrupts.interrupt_behind(exc)
        if interrupt is None:
            raise
        by = f" by {interrupt.args[0]}" if interrupt.args else ""
        return _fail(f"interrupted{by} while setting up: nothing was written", EXIT_INTERRUPTED)


def _resumed_config(args: argparse.Namespace) -> Config:
    """The checkpointed run's settings, with any flags given now applied on top (the runner
    then refuses every change but ``--epochs``)."""
    from bench.run.checkpoints import read_checkpoint

    if args.preset:
        raise BenchError("--resume takes the settings from the checkpoint; drop --preset")
    given = overrides_from_args(args)
    return config_from_values(with_derived({**read_checkpoint(args.resume).config, **given}, given))


def _note_options_not_taken(args: argparse.Namespace, config: Config) -> None:
    """A cell's or task's option given for a run of another cell or task changes nothing:
    say so (matrix and sweep pass one set of flags to every cell)."""
    from bench.registry import declared_options

    taken = config.as_dict()
    for name, declared in declared_options().items():
        if getattr(args, name, None) is not None and name not in taken and not args.quiet:
            print(f"note: {declared.option.flag} is an option of {declared.owned_by()}, not of cell {config.cell} "
                  f"or task {config.task}; ignored", file=sys.stderr)


def _list() -> int:
    from bench.registry import backend_names, cell_names, get_backend, get_cell_class, get_task_class, task_names

    print("backends:")
    for name in backend_names():
        try:
            backend = get_backend(name)
        except BenchError as exc:
            print(f"  {name:8} broken: {exc}")
            continue
        reason = backend.unavailable_reason()
        impls = ", ".join(f"{i}{' (default)' if i == backend.default_impl else ''}" for i in backend.impls)
        print(f"  {name:8} impls: {impls}" + (f"  -- unavailable: {reason}" if reason else ""))
    print("cells:")
    for name in cell_names():
        cls = get_cell_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0].rstrip(":")
        print(f"  {name:8} {doc}{_options_text(cls.options)}")
        print(f"  {'':8} {_fused_text(name)}")
        print(f"  {'':8} {_impls_text(name)}")
    print("tasks:")
    for name in task_names():
        cls = get_task_class(name)
        print(f"  {name:8} {cls.summary}{_options_text(cls.options)}")
    print("presets:")
    for name in presets():
        c = make_config(name)
        source = preset_source(name)
        updates = getattr(c, "batches_per_epoch", None)  # tasks of independent sequences
        print(
            f"  {name:13} task {c.task}, {c.num_layers} x {c.hidden_size} units, {c.num_steps} steps, batch {c.batch_size}, "
            f"{c.optimizer} lr {c.learning_rate:g}, keep {c.keep_prob:g}, {c.epochs} epochs"
            + (f" of {updates} updates" if updates else "") + (f"; {source}" if source else "")
        )
    print("checkpoints:")
    print(f"  {CHECKPOINT_POLICY}")
    print(f"  in {DEFAULT_RESULTS_DIR}/checkpoints now: {_checkpoint_usage(DEFAULT_RESULTS_DIR + '/checkpoints')}")
    return 0


def _fused_text(cell: str) -> str:
    """Where the cell runs beyond the ``cell`` impls: which backends' fused layers compute it
    (for each choice of its options where that differs), and whether numpy has its BPTT."""
    from bench.registry import backend_names, get_backend, get_cell_class, make_cell

    def fused(variant: object) -> list[str]:
        return [name for name in backend_names()
                if "fused" in get_backend(name).impls and not get_backend(name).unsupported(variant, "fused")]

    default = make_cell(cell)
    runs = fused(default)
    parts = [f"fused layers: {', '.join(runs) or 'none'}"]
    for option in get_cell_class(cell).options:
        for choice in option.choices or ():
            other = fused(make_cell(cell, **{option.name: choice}))
            if choice != option.default and other != runs:
                parts.append(f"with {option.flag} {choice}: {', '.join(other) or 'none'}")
    no_kernel = get_backend("numpy").unsupported(default, "cell") if "numpy" in backend_names() else None
    if no_kernel:
        parts.append(f"numpy: none ({no_kernel.split('; ')[0]})")
    return "; ".join(parts)


def _impls_text(cell: str) -> str:
    """``impls: jax cell, scan; numpy cell; ...``: the impls of each backend that run the cell
    with its default options, from ``Backend.unsupported`` (which imports no framework)."""
    from bench.registry import backend_names, get_backend, make_cell

    variant, parts = make_cell(cell), []
    for name in backend_names():
        try:
            backend = get_backend(name)
        except BenchError:
            continue  # listed as broken under backends:
        runs = [impl for impl in backend.impls if not backend.unsupported(variant, impl)]
        parts.append(f"{name} {', '.join(runs) or 'none'}")
    return f"impls: {'; '.join(parts)}"


def _options_text(options: tuple) -> str:
    """`` (options: --forget-bias, default 1.0)`` for `bench list`."""
    if not options:
        return ""
    return " (options: " + "; ".join(f"{o.flag}, default {o.default}" for o in options) + ")"


def _checkpoint_usage(directory: str) -> str:
    from pathlib import Path

    files = [p for p in Path(directory).glob("*.npz") if p.is_file()]
    if not files:
        return "none"
    return f"{len(files)} file(s), {sum(p.stat().st_size for p in files) / 2**20:,.1f} MiB"


def _data(args: argparse.Namespace) -> int:
    from bench.data.ptb import download_ptb

    directory, fetched_because = download_ptb(args.data_dir)
    how = (f"downloaded ({fetched_because}) and verified" if fetched_because
           else "already there and verified; nothing downloaded")
    print(f"PTB corpus in {directory}: {how}")
    return 0


def _matrix(args: argparse.Namespace, passthrough: list[str]) -> int:
    from bench.fanout.executors import check_executor, make_executor
    from bench.fanout.jobs import print_outcomes, run_matrix
    from bench.fanout.preflight import check_matrix, grid, seed_list

    given, passthrough = passthrough, _with_seed(args, passthrough)
    check_executor(args.executor, args.address)
    backends, cells, impls = grid(args)
    check_matrix(backends, cells, impls, passthrough)
    seeds = seed_list(args.seeds, args.repeats, passthrough)
    with make_executor(args.executor, args.address) as executor:
        outcomes = run_matrix(backends, cells, impls, passthrough if seeds is None else given, seeds, executor)
        return print_outcomes(outcomes, stopped_by=interrupts.stop_asked())  # the status: bench/exits.py


def _sweep(args: argparse.Namespace, passthrough: list[str]) -> int:
    from bench.fanout.executors import check_executor, make_executor
    from bench.fanout.jobs import print_outcomes, run_sweep
    from bench.fanout.preflight import check_sweep, items, seed_list
    from bench.registry import cell_names

    given, passthrough = passthrough, _with_seed(args, passthrough)
    check_executor(args.executor, args.address)
    values = items(args.values, "--values", "value")
    cells = items(args.cells, "--cells", "cell") if args.cells is not None else cell_names()
    check_sweep(args.param, values, cells, args.backend, args.impl, passthrough)
    seeds = seed_list(args.seeds, args.repeats, passthrough, swept=args.param)
    with make_executor(args.executor, args.address) as executor:
        outcomes = run_sweep(args.param, values, cells, args.backend, args.impl,
                             passthrough if seeds is None else given, seeds, executor)
        return print_outcomes(outcomes, stopped_by=interrupts.stop_asked())


def _with_seed(args: argparse.Namespace, passthrough: list[str]) -> list[str]:
    """The flags passed on, with the --seed that matrix and sweep read only to keep it apart
    from --seeds (with --repeats it is only where the seeds start: each run gets its own)."""
    return passthrough if args.seed is None else [*passthrough, f"--seed={args.seed}"]


def _report(args: argparse.Namespace) -> int:
    from bench.report.build import markdown_table, write_report

    interrupts.check()  # after the imports (pandas, matplotlib): the longest part of a small report
    result = write_report(args.directory, args.out)
    print(result["summary"] or (markdown_table(result["table"]) if len(result["table"]) else "(no records)"))
    for path, reason in result["bad"]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"\nwrote {result['out'] / 'report.md'} (the whole report; report.html: the same as one self-contained "
          f"page), report.csv and {len(result['figures'])} plot(s)", file=sys.stderr)
    return 0


def _roofline(args: argparse.Namespace) -> int:
    import os

    from bench.run.metrics import LoadMeter
    from bench.fanout.preflight import check_roofline
    from bench.measure.roofline import measure_peak, record_peak

    check_roofline(args)
    load = LoadMeter(args.threads or os.cpu_count() or 1)
    measurement = measure_peak(args.threads)
    measurement["machine_load"] = load.finish()
    _warn_if_busy(measurement["machine_load"])
    path = record_peak(args.results_dir, measurement)
    peaks = ", ".join(f"{lib} {gflops:.1f}" for lib, gflops in measurement["gflops"].items())
    print(f"float32 GEMM peak, {measurement['threads']} thread(s), {measurement['cpu']}: {peaks} GFLOP/s -> {path}")
    return 0


def _speed(args: argparse.Namespace) -> int:
    import json
    import os
    import shutil
    import statistics

    from bench.fanout.jobs import combinations
    from bench.run.metrics import LoadMeter
    from bench.fanout.preflight import check_speed, grid
    from bench.run.records import cpu_model, utc_now
    from bench.measure.speed import heading, run_speed, terminal_table

    backends, cells, impls = grid(args)
    overrides = {name: getattr(args, name) for name in ("hidden_size", "batch_size") if getattr(args, name) is not None}
    check_speed(args, backends, cells, impls, overrides)
    if args.num_steps is not None:  # every length read and sized before any backend is asked anything
        from bench.measure.lengths_cli import check_lengths

        lengths = check_lengths(args, combinations(backends, cells, impls), overrides)
    available = [b for b in backends if not _backend_reason(b)]
    combos, skipped = _runnable(combinations(available, cells, impls), asked=impls is not None)
    if not combos:
        raise BenchError("nothing to measure: " + ("; ".join(s["reason"] for s in skipped) or
                                                   "no impl asked of these backends is one for these cells"))
    if args.num_steps is not None:
        from bench.measure.lengths_cli import speed_over_lengths
        from bench.report.length_figure import plot_lengths

        return speed_over_lengths(args, lengths, combos, skipped, overrides, draw=plot_lengths)
    load = LoadMeter(args.threads or os.cpu_count() or 1)
    rows, peaks = run_speed(args.preset, combos, args.rounds, args.steps, args.warmup, args.threads, args.device,
                            peak_seconds=1.5 if args.device == "cpu" else None, overrides=overrides)
    machine_load = load.finish()
    peak = statistics.median(peaks) if peaks else None
    width = shutil.get_terminal_size().columns
    print(heading(args.preset, args.rounds, args.steps, args.threads or os.cpu_count() or 1, peaks, width))
    print(terminal_table(rows, width, args.out))
    _warn_if_busy(machine_load)
    if args.out:
        from bench.storage import atomic_write_bytes

        data = {"preset": args.preset, "cpu": cpu_model(), "threads": args.threads or os.cpu_count(),
                "device": args.device, "measured_at": utc_now(), "peak_gflops": peak, "peaks_per_round": peaks,
                "rounds": args.rounds, "steps": args.steps, "overrides": overrides, "rows": rows, "skipped": skipped,
                "machine_load": machine_load}
        atomic_write_bytes(args.out, json.dumps(data, indent=1).encode())
    return 0


def _warn_if_busy(load: dict) -> None:
    from bench.run.metrics import busy_warning

    if warning := busy_warning(load):
        print(warning, file=sys.stderr)


def _runnable(combos: list[tuple[str, str, str]], asked: bool = True) -> tuple[list[tuple[str, str, str]], list[dict[str, str]]]:
    """(the combinations a backend can run, the others with the backend's reason, said once
    each on stderr): a fused impl without a layer for the cell is no row of the table. With
    the impls not ``asked`` for, one not for the cell's kind (a scan of a non-linear cell,
    ``jobs.offered``) is left out, said in one line."""
    from bench.fanout.jobs import left_out_line, offered
    from bench.registry import get_backend, make_cell

    runnable, skipped, left_out = [], [], []
    for backend, impl, cell in combos:
        built = make_cell(cell)
        if not asked and not offered(built, impl):
            left_out.append(f"{backend}/{impl} {cell}")
        elif why := get_backend(backend).unsupported(built, impl):
            print(f"skipping {backend}/{impl} {cell}: {why}", file=sys.stderr)
            skipped.append({"backend": backend, "impl": impl, "cell": cell, "reason": why})
        else:
            runnable.append((backend, impl, cell))
    if left_out:
        print(left_out_line(left_out), file=sys.stderr)
    return runnable, skipped


def _backend_reason(name: str) -> str | None:
    from bench.registry import get_backend

    reason = get_backend(name).unavailable_reason()
    if reason:
        print(f"skipping backend {name}: {reason}", file=sys.stderr)
    return reason

"""The front door: ``python -m bench {run,list,data}``. The one place that turns a
:class:`BenchError` into one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from bench.config import PRESETS, TASKS, Config, add_config_arguments, config_from_args, make_config
from bench.errors import BenchError
from bench.runner import EXIT_USER_ERROR, RunOptions, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Compare recurrent cells across frameworks.")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="train and evaluate one backend x cell; writes a record")
    add_config_arguments(run_parser)
    run_parser.add_argument("--data-dir", help="PTB corpus directory (default: $BENCH_DATA_DIR, else ~/.cache/cellbench/ptb)")
    run_parser.add_argument("--results-dir", default="results", help="where the run record goes (default: results)")
    run_parser.add_argument("--checkpoint-dir", help="where checkpoints go (default: RESULTS_DIR/checkpoints)")
    run_parser.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint (.npz)")
    run_parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="progress bar (default: only when stderr is a terminal)")
    run_parser.add_argument("--quiet", action="store_true", help="print nothing but errors")

    commands.add_parser("list", help="backends (and whether they can run here), cells, tasks, presets")

    data_parser = commands.add_parser("data", help="download a corpus")
    data_parser.add_argument("corpus", choices=["ptb"])
    data_parser.add_argument("--data-dir", help="where to put it (default: $BENCH_DATA_DIR, else ~/.cache/cellbench/ptb)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args, argv)
        if args.command == "list":
            return _list()
        return _data(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.resume:
        config = _resumed_config(args)
    else:
        config = config_from_args(args)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    result = run(
        config,
        RunOptions(
            data_dir=args.data_dir, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir,
            resume=args.resume, progress=args.progress, quiet=args.quiet, argv=["python", "-m", "bench", *argv],
        ),
    )
    return result.exit_code


def _resumed_config(args: argparse.Namespace) -> Config:
    """The checkpointed run's settings, with any flags given now applied on top (the runner
    then refuses every change but ``--epochs``)."""
    import dataclasses

    from bench.checkpoints import load_checkpoint

    _, meta = load_checkpoint(args.resume)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    return Config(**{**meta["config"], **overrides})


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _list() -> int:
    from bench.registry import backend_names, cell_names, get_backend, get_cell_class

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
        doc = (get_cell_class(name).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:8} {doc}")
    print("tasks:")
    for task in TASKS:
        print(f"  {task}")
    print("presets:")
    for name, values in PRESETS.items():
        c = make_config(name)
        print(
            f"  {name:13} task {c.task}, {c.num_layers} x {c.hidden_size} units, {c.num_steps} steps, batch {c.batch_size}, "
            f"{c.optimizer} lr {c.learning_rate:g}, keep {c.keep_prob:g}, {c.epochs} epochs"
        )
    return 0


def _data(args: argparse.Namespace) -> int:
    from bench.data.ptb import download_ptb

    directory = download_ptb(args.data_dir)
    print(f"PTB corpus verified in {directory}")
    return 0

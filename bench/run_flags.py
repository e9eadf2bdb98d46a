"""The flags of ``bench run``: every setting (from the Config's fields) plus where a run reads
and writes. Shared by the CLI and by the matrix and sweep preflight, which parse the flags
they pass on exactly as the run they start will."""
from __future__ import annotations

import argparse

from bench.config import add_config_arguments
from bench.run.records import DEFAULT_RESULTS_DIR

CHECKPOINT_POLICY = (
    "a run's checkpoint (RESULTS_DIR/checkpoints/RUN_ID.npz, replaced after every epoch) is deleted when the run "
    "completes, unless --keep-checkpoint is given (needed to extend a finished run with --resume and more --epochs); "
    "interrupted, aborted and diverged runs keep theirs for --resume"
)


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_config_arguments(parser)
    parser.add_argument("--data-dir", help="PTB corpus directory (default: $BENCH_DATA_DIR, else ~/.cache/cellbench/ptb; "
                        "a resumed run: the interrupted run's)")
    parser.add_argument("--results-dir", help=f"where the run record goes (default: {DEFAULT_RESULTS_DIR}; "
                        "a resumed run: the interrupted run's)")
    parser.add_argument("--checkpoint-dir", help="where checkpoints go (default: RESULTS_DIR/checkpoints; "
                        "a resumed run: the directory of its checkpoint)")
    parser.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint (.npz)")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="keep the checkpoint when the run completes (default: delete it)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: only when stderr is a terminal)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--tag", help="a label stored in the record to group runs in reports")
    return parser


def run_parser() -> argparse.ArgumentParser:
    """A parser of ``bench run``'s flags alone."""
    return add_run_arguments(argparse.ArgumentParser(prog="python -m bench run"))

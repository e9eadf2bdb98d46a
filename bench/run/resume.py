"""Where a run reads and writes, and how a resumed run finds its own record, corpus and
checkpoint directory again: the paths and tag given (:class:`RunOptions`) are resolved into
a :class:`RunPlace`, a resumed run's defaults coming from its checkpoint, and a checkpoint
to resume from is checked against the settings asked for (:func:`read_resume`)."""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run.checkpoints import Checkpoint, read_checkpoint
from bench.data import resolve_data_dir
from bench.errors import BenchError
from bench.run.records import DEFAULT_RESULTS_DIR


@dataclass
class RunOptions:
    """Where things are read and written, and how the run talks; not part of the numbers.
    A resumed run defaults every path and its tag to the interrupted run's own, so that it
    updates the same record and finds the same corpus."""

    data_dir: str | None = None
    results_dir: str | None = None  # default: DEFAULT_RESULTS_DIR
    checkpoint_dir: str | None = None  # default: <results_dir>/checkpoints
    resume: str | None = None  # a checkpoint file to continue from
    keep_checkpoint: bool = False  # else a completed run's checkpoint is deleted
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal
    quiet: bool = False
    tag: str | None = None  # groups runs for reports, e.g. "matrix" or "sweep:echo_step"
    preset: str | None = None  # the preset the settings started from, for the record
    argv: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class RunPlace:
    """Where a run's files go; a resumed run's defaults come from its checkpoint."""

    results_dir: Path
    checkpoint_dir: Path
    data_dir: str | None
    tag: str | None
    preset: str | None

    @classmethod
    def resolve(cls, options: RunOptions, config: Any, resumed: Checkpoint | None) -> "RunPlace":
        meta = resumed.meta if resumed else {}
        results_dir = options.results_dir or meta.get("results_dir") or DEFAULT_RESULTS_DIR
        # A resume into its own record keeps its checkpoint where it is; one into another results
        # directory starts a new record there, and its checkpoints go beside it: replacing the
        # file it resumed from would leave the original record pointing at another run's state.
        given, saved = options.results_dir, meta.get("results_dir")
        own = resumed is not None and (given is None or (
            saved is not None and Path(given).resolve() == Path(saved).resolve()))
        checkpoint_dir = options.checkpoint_dir or (resumed.path.parent if own else Path(results_dir) / "checkpoints")
        data_dir = options.data_dir or meta.get("data_dir")
        if config.task == "ptb" and data_dir is None:
            data_dir = str(resolve_data_dir(None))  # as resolved now: a resume finds it whatever the environment
        tag = options.tag if options.tag is not None else meta.get("tag")
        return cls(Path(results_dir), Path(checkpoint_dir), data_dir, tag, options.preset or meta.get("preset"))

    def resume_command(self, checkpoint: Path) -> str:
        """Every flag the resumed run needs to update the same record and find the corpus."""
        argv = ["python", "-m", "bench", "run", "--resume", str(checkpoint), "--results-dir", str(self.results_dir)]
        if self.data_dir:
            argv += ["--data-dir", self.data_dir]
        return shlex.join(argv)


def read_resume(path: str, config: Any) -> Checkpoint:
    """The checkpoint to continue from, after checking it and that the settings match the
    interrupted run's (only ``epochs`` may differ, to extend a run)."""
    checkpoint = read_checkpoint(path)
    saved = checkpoint.config
    differs = sorted(k for k, v in config.as_dict().items() if k != "epochs" and saved.get(k) != v)
    if differs:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {getattr(config, k)!r}" for k in differs)
        raise BenchError(f"--resume {path}: settings differ from the checkpointed run ({details}); pass the same flags")
    epochs_done = len(checkpoint.meta["history"])
    if epochs_done > config.epochs:
        raise BenchError(f"--resume {path}: the checkpoint already has {epochs_done} epochs > --epochs {config.epochs}")
    return checkpoint

"""THE training loop, shared by every backend: epochs, windows, state carry, learning-rate
schedule, evaluation, checkpoints, records.

Reading order: :func:`run` sets up (everything that can fail on user input fails here,
before a record exists), :func:`_supervise` turns every way a run can end into a status,
:func:`_train` loops over epochs, :func:`train_epoch` and :func:`evaluate` loop over
windows. A backend only ever sees single steps.
"""
from __future__ import annotations

import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from backends.base import Model, StepStats, checkpoint_layout
from bench import interrupts, memory
from bench.budget import check_memory
from bench.checkpoints import Checkpoint, read_checkpoint, save_checkpoint
from bench.config import Config, learning_rate_at, validate
from bench.data import resolve_data_dir
from bench.errors import BenchError
from bench.factory import build_model, model_spec, train_settings
from bench.metrics import StretchTimer, flops_per_token, gradient_summary, peak_rss_mb
from backends.spec import ModelSpec
from bench.records import DEFAULT_RESULTS_DIR, SCHEMA_VERSION, environment, new_run_id, record_bytes, redact_home, utc_now
from bench.registry import get_backend, make_cell, require_available
from bench.storage import (
    EnvironmentFault, RunLock, SpaceReserve, atomic_write_bytes, fault_reason, prepare_writable_dir, require_free_space,
    writing,
)
from bench.tasks import SEED_DROPOUT, Task, make_task, rng_for

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


# exp() of a larger mean loss overflows float64: past it the perplexity is not a number,
# and the frameworks' float32 arithmetic no longer agrees on anything, so every backend
# stops here alike rather than wherever its own order of operations first overflows.
MAX_LOSS_PER_TOKEN = math.log(sys.float_info.max)  # 709.78 nats


def has_diverged(stats: StepStats) -> bool:
    """A non-finite loss or gradient norm, or a mean loss per token beyond any perplexity."""
    loss = stats.ce_sum / max(stats.n_tokens, 1)
    return not (math.isfinite(loss) and loss <= MAX_LOSS_PER_TOKEN and math.isfinite(stats.grad_norm or 0.0))


class Diverged(Exception):
    """See :func:`has_diverged`: the run stops at that window, in training or evaluation."""

    def __init__(self, where: "_Progress", stats: StepStats) -> None:
        self.where = where.snapshot()
        norm = f", gradient norm {stats.grad_norm:.4g}" if stats.grad_norm is not None else ""
        super().__init__(f"diverged {self.where.describe()}: loss {stats.ce_sum / max(stats.n_tokens, 1):.4g} per token{norm}")


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
class RunResult:
    record: dict[str, Any]
    record_path: Path
    exit_code: int


@dataclass
class _Progress:
    """Where a run is, so an interrupt can say it and the record can keep it: the phase
    (``train``, ``evaluate:valid``, ``final-evaluate:test``, ...), the 1-based epoch in
    progress (None after the last) and the 1-based window within the phase (None outside
    the window loops)."""

    phase: str = "start"
    epoch: int | None = None
    step: int | None = None

    def enter(self, phase: str, epoch: int | None = None) -> None:
        self.phase, self.epoch, self.step = phase, epoch, None

    def snapshot(self) -> "_Progress":
        return _Progress(self.phase, self.epoch, self.step)

    def describe(self) -> str:
        parts = [f"in {self.phase}"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return " ".join(parts)

    def as_failure(self, kind: str, message: str, **more: Any) -> dict[str, Any]:
        return {"kind": kind, "phase": self.phase, "epoch": self.epoch, "step": self.step, "message": message, **more}


@dataclass
class _Place:
    """Where a run's files go; a resumed run's defaults come from its checkpoint."""

    results_dir: Path
    checkpoint_dir: Path
    data_dir: str | None
    tag: str | None
    preset: str | None

    @classmethod
    def resolve(cls, options: RunOptions, config: Config, resumed: Checkpoint | None) -> "_Place":
        meta = resumed.meta if resumed else {}
        results_dir = options.results_dir or meta.get("results_dir") or DEFAULT_RESULTS_DIR
        checkpoint_dir = options.checkpoint_dir or (resumed.path.parent if resumed else Path(results_dir) / "checkpoints")
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


def run(config: Config, options: RunOptions | None = None) -> RunResult:
    """Train and evaluate one (backend, impl, cell) on one task; write its record.

    Everything that can fail on the user's input (settings, names, corpus, checkpoint,
    directories, disk space) fails here, before a record exists: a BenchError, nothing written.
    """
    options = options or RunOptions()
    validate(config)
    check_memory(config)
    backend = get_backend(config.backend)
    config = config.replace(impl=require_available(backend, config.impl))
    if why := backend.unsupported(make_cell(config.cell, **dict(config.cell_options)), config.impl):
        raise BenchError(why)
    resumed = _read_resume(options.resume, config) if options.resume else None
    place = _Place.resolve(options, config, resumed)
    task = make_task(config, place.data_dir)
    spec = model_spec(config, task.input_kind, task.vocab_size, task.n_classes)
    layout = checkpoint_layout(spec, train_settings(config))
    arrays = resumed.arrays(layout) if resumed else None
    results_dir = prepare_writable_dir(place.results_dir, "--results-dir")
    checkpoint_dir = prepare_writable_dir(place.checkpoint_dir, "--checkpoint-dir")
    checkpoint_bytes = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in layout.values())
    # the new checkpoint is written beside the old one before it replaces it
    require_free_space(checkpoint_dir, 2 * checkpoint_bytes + SpaceReserve.MINIMUM, "a checkpoint and the record")
    threads = _set_thread_pools(config.threads)
    memory.keep_freed_memory()  # before the model allocates: steps reuse, not re-fault, their buffers
    model = build_model(config, spec)
    if arrays is not None:
        model.restore(arrays)

    run_id = resumed.meta["run_id"] if resumed else new_run_id(config.task, config.backend, config.impl, config.cell)
    env = environment(backend.versions(), threads)
    record = _new_record(run_id, config, place, options, resumed, spec, task, backend, model, env)
    files = _RunFiles(results_dir / f"{run_id}.json", checkpoint_dir / f"{run_id}.npz", record, place)
    files.lock = RunLock(results_dir, run_id)  # released by files.finish(), which _supervise always reaches
    return _supervise(model, task, config, record, files, _Reporter(options), options.keep_checkpoint)


def _new_record(
    run_id: str, config: Config, place: _Place, options: RunOptions, resumed: Checkpoint | None, spec: ModelSpec,
    task: Task, backend: Any, model: Model, env: dict[str, Any],
) -> dict[str, Any]:
    meta = resumed.meta if resumed else {}
    command = redact_home(options.argv)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "started_at": meta.get("started_at") or utc_now(),
        "command": meta.get("command") or command,
        "tag": place.tag,
        "config": config.as_dict(),
        "seed": config.seed,
        "model": spec.describe(),
        "task": task.describe(),
        "backend": {"name": backend.name, "impl": config.impl, **model.describe()},
        "environment": meta.get("environment") or env,
        "data_dir": place.data_dir,
        "epochs": meta.get("history", []),
        "gradient_norms": meta.get("gradient_norms", []),
        "final": None,
        "failure": None,
        "checkpoint": None,
    }
    if place.preset:
        record["preset"] = place.preset
    if resumed:
        record["resumed"] = meta["resumed"] + [
            {"at": utc_now(), "from_epoch": len(record["epochs"]), "command": command, "environment": env}]
    return record


class _RunFiles:
    """The record and the checkpoint of one run, written so that a full disk costs nothing
    already done: the record first (every completed epoch), then the checkpoint; a hidden
    reserve beside the record is given back when the disk is full, to write its final state."""

    def __init__(self, record_path: Path, checkpoint_path: Path, record: dict[str, Any], place: _Place) -> None:
        self.record_path, self.checkpoint_path, self.record, self.place = record_path, checkpoint_path, record, place
        self.reserve: SpaceReserve | None = None
        self.lock: RunLock | None = None

    def start(self) -> None:
        writing("the space reserve", self.record_path.parent, lambda: setattr(self, "reserve", SpaceReserve(
            self.record_path.parent, self.record["run_id"])))
        self.write_record()

    def write_record(self) -> None:
        data = record_bytes(self.record)
        writing("the record", self.record_path, lambda: atomic_write_bytes(self.record_path, data))
        if self.reserve is not None:  # failing to grow it is the early warning of a full disk
            writing("the space reserve", self.reserve.path, lambda: self.reserve.ensure(2 * len(data)))

    def write_checkpoint(self, arrays: dict[str, np.ndarray]) -> None:
        r = self.record
        meta = {"run_id": r["run_id"], "config": r["config"], "started_at": r["started_at"], "history": r["epochs"],
                "gradient_norms": r["gradient_norms"], "resumed": r.get("resumed", []), "tag": r["tag"],
                "preset": r.get("preset"), "command": r["command"], "environment": r["environment"],
                "results_dir": str(self.record_path.parent.resolve()), "data_dir": self.place.data_dir}
        writing("the checkpoint", self.checkpoint_path, lambda: save_checkpoint(self.checkpoint_path, arrays, meta))

    def finish(self, keep_checkpoint: bool) -> str | None:
        """The record's last write (its final status); returns a one-line problem, if any.
        A completed run's checkpoint is deleted once the record says so, unless it is to be
        kept (--keep-checkpoint, to extend the run later with more --epochs)."""
        drop = self.record["status"] == "completed" and not keep_checkpoint and self.checkpoint_path.exists()
        self.record["checkpoint"] = str(self.checkpoint_path) if self.checkpoint_path.exists() and not drop else None
        data = record_bytes(self.record)
        try:
            try:
                atomic_write_bytes(self.record_path, data)
            except OSError:
                if self.reserve is None:
                    raise
                self.reserve.release()  # room for the record, which is what matters now
                atomic_write_bytes(self.record_path, data)
        except OSError as exc:
            return (f"{fault_reason(exc)}: the final record could not be written to {self.record_path} "
                    f"({exc.strerror or exc}); it holds the state after the last completed epoch")
        finally:
            if self.reserve is not None:
                self.reserve.release()
            if self.lock is not None:
                self.lock.release()
        if drop:
            try:
                self.checkpoint_path.unlink()
            except OSError:
                pass
        return None


def _supervise(
    model: Model, task: Task, config: Config, record: dict[str, Any], files: _RunFiles, say: "_Reporter",
    keep_checkpoint: bool,
) -> RunResult:
    """Run the training and turn every way it can end into a record status and exit code."""
    where = _Progress()
    exit_code = EXIT_OK
    run_id = record["run_id"]
    try:
        files.start()
        say(f"run {run_id}: {record['backend']['name']}/{config.impl} {config.cell} on {config.task}, "
            f"record {files.record_path}")
        _train(model, task, config, record, files, where, say)
        record["status"] = "completed"
    except BaseException as exc:
        exit_code = _how_it_ended(exc, record, where, files, say)  # re-raises a bug
    finally:
        interrupts.finishing()  # a signal now must not cut the record's last write
        record["finished_at"] = utc_now()
        record["peak_rss_mb"] = peak_rss_mb()
        record["peak_device_memory_mb"] = model.peak_device_memory_mb()
        problem = files.finish(keep_checkpoint)
        if problem:
            say(problem, always=True)
            if exit_code == EXIT_OK:
                exit_code = EXIT_ABORTED
    return RunResult(record, files.record_path, exit_code)


def _how_it_ended(exc: BaseException, record: dict[str, Any], where: _Progress, files: _RunFiles,
                  say: "_Reporter") -> int:
    """The status, failure and exit code of a run that ``exc`` stopped, said in one line;
    anything but divergence, an interrupt or a fault of the machine is a bug: re-raised."""
    run_id = record["run_id"]
    interrupt = interrupts.interrupt_behind(exc)  # also when a library re-raised it as its own error
    if isinstance(exc, Diverged):
        record["status"], record["failure"] = "diverged", exc.where.as_failure("diverged", str(exc))
        say(f"run {run_id} {exc}", always=True)
        return EXIT_DIVERGED
    if interrupt is not None:
        interrupts.finishing()
        by = f" by {interrupt.args[0]}" if interrupt.args else ""
        record["status"] = "interrupted"
        record["failure"] = where.as_failure("interrupted", f"interrupted{by} {where.describe()}")
        resume = (f"resume: {files.place.resume_command(files.checkpoint_path)}" if files.checkpoint_path.exists()
                  else "no checkpoint yet, nothing to resume")
        say(f"run {run_id} interrupted{by} {where.describe()}; {resume}", always=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, (EnvironmentFault, MemoryError)):
        reason = exc.reason if isinstance(exc, EnvironmentFault) else fault_reason(exc)
        message = f"{exc if isinstance(exc, EnvironmentFault) else 'out of memory'} {where.describe()}"
        record["status"], record["failure"] = "aborted", where.as_failure("aborted", message, reason=reason)
        say(f"run {run_id} aborted: {message}; the record keeps the {len(record['epochs'])} completed epoch(s)",
            always=True)
        return EXIT_ABORTED
    record["status"], record["failure"] = "failed", where.as_failure("failed", repr(exc))
    raise exc


def _train(model: Model, task: Task, config: Config, record: dict, files: _RunFiles, where: _Progress,
           say: "_Reporter") -> None:
    history: list[dict[str, Any]] = record["epochs"]
    if not history and config.grad_probe_windows:
        where.enter("gradient-probe", 1)
        record["gradient_norms"].append({"epoch": 0, **measure_gradient_norms(model, task, config)})
    for epoch in range(len(history), config.epochs):
        where.enter("train", epoch + 1)
        lr = learning_rate_at(config, epoch)
        model.set_dropout_seed(int(rng_for(config.seed, SEED_DROPOUT, epoch).integers(2**31)))
        entry: dict[str, Any] = {"epoch": epoch + 1, "learning_rate": lr}
        entry["train"] = train_epoch(model, task, config, epoch, lr, where, say.bar(f"epoch {epoch + 1}/{config.epochs}"))
        for split in task.per_epoch_splits:
            where.enter(f"evaluate:{split}", epoch + 1)
            entry[split] = evaluate(model, task, split, config.eval_batch_size, say.bar(split), where)
        if config.grad_probe_windows:
            where.enter("gradient-probe", epoch + 1)
            norms = {"epoch": epoch + 1, **measure_gradient_norms(model, task, config)}
        with interrupts.deferred():  # a Ctrl-C here waits: a completed epoch is always resumable
            where.enter("record", epoch + 1)
            history.append(entry)
            if config.grad_probe_windows:
                record["gradient_norms"].append(norms)
            files.write_record()  # first: the completed epoch is safe even if the checkpoint does not fit
            where.enter("checkpoint", epoch + 1)
            files.write_checkpoint(model.checkpoint())
        say(_epoch_line(entry, config.epochs, task))
    final = {split: history[-1][split] for split in task.per_epoch_splits} if history else {}
    for split in task.eval_windows:
        if split not in final:
            where.enter(f"final-evaluate:{split}")
            final[split] = evaluate(model, task, split, config.eval_batch_size, say.bar(split), where)
    record["final"] = {"epochs_completed": len(history), "train": history[-1]["train"] if history else None, **final}
    where.enter("sample")
    record["sample"] = sample_predictions(model, task, config)
    say("final: " + ", ".join(f"{split} {_metric_text(m, task)}" for split, m in final.items()))
    if task.words:
        sample = record["sample"]
        say("test sample (true | predicted next word):")
        say("  " + " ".join(sample["target_words"][:12]))
        say("  " + " ".join(sample["predicted_words"][:12]))


def train_epoch(
    model: Model, task: Task, config: Config, epoch: int, lr: float, where: _Progress, bar: Callable
) -> dict[str, float]:
    """One pass over the training windows, the state carried from window to window."""
    state = model.zero_state(config.batch_size)
    totals = _Totals(flops_per_token(model.spec, training=True))
    with bar(task.n_train_windows) as progress:
        for step, (x, y) in enumerate(task.train_windows(epoch)):
            where.step = step + 1
            stats, state = model.train_step(x, y, state, lr)
            if has_diverged(stats):
                raise Diverged(where, stats)
            totals.add(stats)
            progress.tick(totals, task)
    return totals.summary(task)


def evaluate(
    model: Model, task: Task, split: str, batch_size: int, bar: Callable, where: _Progress | None = None
) -> dict[str, float]:
    """Score a whole split with the state carried across it, starting from zeros. A window
    whose loss has diverged (:func:`has_diverged`) stops the run: its perplexity is no number."""
    where = where or _Progress(f"evaluate:{split}")
    state = model.zero_state(batch_size)
    totals = _Totals(flops_per_token(model.spec, training=False))
    with bar(task.n_eval_windows[split]) as progress:
        for step, (x, y) in enumerate(task.eval_windows[split]()):
            where.step = step + 1
            stats, state = model.eval_step(x, y, state)
            if has_diverged(stats):
                raise Diverged(where, stats)
            totals.add(stats)
            progress.tick(totals, task)
    return totals.summary(task)


def measure_gradient_norms(model: Model, task: Task, config: Config) -> dict[str, Any]:
    """Gradient norms over time steps on the task's fixed held-out windows, averaged over
    ``grad_probe_windows`` consecutive windows (the state carried into each, as in training)."""
    state = model.zero_state(config.batch_size)
    curves: list[dict[str, Any]] = []
    for _, (x, y) in zip(range(config.grad_probe_windows), task.probe_windows()):
        curves.append(model.gradient_norms_over_time(x, y, state))
        _, state = model.eval_step(x, y, state)
    mean = {key: np.mean([c[key] for c in curves], axis=0) for key in curves[0]}
    summary = {key: [gradient_summary(layer) for layer in value] for key, value in mean.items() if key.startswith("dLT")}
    return {"windows": len(curves), "curves": {k: v.tolist() for k, v in mean.items()}, "summary": summary}


def sample_predictions(model: Model, task: Task, config: Config, steps: int = 45, warmup: int = 5) -> dict[str, Any]:
    """Inputs, targets and predictions of the start of the test split, for people to look at
    (the echo task's bars, PTB's true words beside predicted ones). Like the tutorial, the
    first ``warmup`` windows only let the state settle (fewer when the split is that short)."""
    warmup = min(warmup, task.n_eval_windows["test"] - 1)
    state = model.zero_state(config.eval_batch_size)
    xs, ys, ps = [], [], []
    seen = 0
    for index, (x, y) in enumerate(task.eval_windows["test"]()):
        stats, state = model.eval_step(x, y, state, predictions=True)
        if index < warmup:
            continue
        xs.append(x), ys.append(y), ps.append(stats.predictions)
        seen += x.shape[1]
        if seen >= steps:
            break
    inputs, targets, predicted = (np.concatenate(a, axis=1)[:, :steps] for a in (xs, ys, ps))
    sample: dict[str, Any] = {"split": "test", "warmup_windows": warmup, "inputs": inputs.tolist(),
                              "targets": targets.tolist(), "predictions": predicted.tolist()}
    if task.words:
        to_words = lambda ids: [task.words[i] for i in np.asarray(ids)[0]]
        sample.update(input_words=to_words(inputs), target_words=to_words(targets), predicted_words=to_words(predicted))
    return sample


class _Totals:
    """Running sums of one pass, its timer, and the summary that goes into the record."""

    def __init__(self, flops_per_token: float) -> None:
        self.ce = 0.0
        self.correct = 0
        self.tokens = 0
        self.flops_per_token = flops_per_token
        self.timer = StretchTimer()
        self.start = time.perf_counter()

    def add(self, stats: StepStats) -> None:
        self.ce += stats.ce_sum
        self.correct += stats.n_correct
        self.tokens += stats.n_tokens
        self.timer.tick(stats.n_tokens)

    def summary(self, task: Task) -> dict[str, float]:
        seconds = time.perf_counter() - self.start
        loss = self.ce / max(self.tokens, 1)
        out: dict[str, Any] = {
            "loss": loss, "accuracy": self.correct / max(self.tokens, 1), "tokens": self.tokens,
            "seconds": seconds, "tokens_per_s": self.tokens / seconds if seconds > 0 else None,
        }
        if task.reports_perplexity:
            out["perplexity"] = math.exp(loss)  # every window's loss is below MAX_LOSS_PER_TOKEN
        out.update(self.timer.summary())
        rate = out.get("tokens_per_s_median") or out["tokens_per_s"]
        out["flops_per_token"] = self.flops_per_token
        out["gflops_per_s"] = self.flops_per_token * rate / 1e9 if rate else None
        return out


def _metric_text(metrics: dict[str, float], task: Task) -> str:
    if task.reports_perplexity:
        return f"ppl {metrics['perplexity']:.2f} acc {metrics['accuracy']:.4f}"
    return f"loss {metrics['loss']:.4f} acc {metrics['accuracy']:.4f}"


def _epoch_line(entry: dict[str, Any], epochs: int, task: Task) -> str:
    train = entry["train"]
    parts = [f"epoch {entry['epoch']}/{epochs}", f"lr {entry['learning_rate']:.4g}", f"train {_metric_text(train, task)}"]
    parts += [f"{split} {_metric_text(entry[split], task)}" for split in task.per_epoch_splits]
    parts.append(f"{train['tokens_per_s']:,.0f} tok/s")
    return " | ".join(parts)


class _Reporter:
    """Epoch lines (unless quiet) and progress bars (only on a terminal unless asked)."""

    def __init__(self, options: RunOptions) -> None:
        self.quiet = options.quiet
        self.show_bars = options.progress if options.progress is not None else (sys.stderr.isatty() and not options.quiet)

    def __call__(self, line: str, always: bool = False) -> None:
        if always or not self.quiet:
            tqdm.write(line, file=sys.stderr)

    def bar(self, label: str) -> Callable[[int], "_Bar"]:
        return lambda total: _Bar(label, total, self.show_bars)


class _Bar:
    """A tqdm bar with live loss and tokens/s, refreshed at most a few times a second."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=label, leave=False, disable=not enabled, file=sys.stderr, mininterval=0.5)
        self.last = 0.0

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def tick(self, totals: _Totals, task: Task) -> None:
        self.bar.update()
        now = time.perf_counter()
        if self.bar.disable or now - self.last < 0.5:
            return
        self.last = now
        loss = totals.ce / max(totals.tokens, 1)
        shown = f"ppl={math.exp(min(loss, 700)):.1f}" if task.reports_perplexity else f"loss={loss:.4f}"
        rate = totals.tokens / max(now - totals.start, 1e-9)
        self.bar.set_postfix_str(f"{shown} acc={totals.correct / max(totals.tokens, 1):.3f} {rate:,.0f} tok/s")


def _set_thread_pools(threads: int | None) -> int:
    """Limit NumPy's BLAS pool (backends set their own framework's pools); returns the count."""
    from threadpoolctl import threadpool_limits

    count = threads or os.cpu_count() or 1
    threadpool_limits(limits=count)
    return count


def _read_resume(path: str, config: Config) -> Checkpoint:
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

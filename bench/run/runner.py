"""THE training loop, shared by every backend: epochs, windows, state carry (streams) or a
zero state per window (independent sequences), learning-rate schedule, evaluation,
checkpoints, records.

Reading order: :func:`run` sets up (everything that can fail on user input fails here,
before a record exists), :func:`_supervise` turns every way a run can end into a status,
:func:`_train` loops over epochs, :func:`train_epoch` and :func:`evaluate` loop over
windows. A backend only ever sees single steps.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from backends.base import Model, StepStats, checkpoint_layout
from bench import interrupts
from bench.run import memory
from bench.run.budget import check_memory
from bench.config import Config, learning_rate_at
from bench.exits import EXIT_ABORTED, EXIT_DIVERGED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR
from bench.run.factory import limit_thread_pools
from bench.run.metrics import PassTotals, flops_per_token, gradient_summary, peak_rss_mb
from bench.run.progress import Reporter, epoch_line, metric_text
from bench.run.records import environment, new_record, new_run_id, utc_now
from bench.run.plan import RunPlan
from bench.run.resume import RunOptions, RunPlace, read_resume
from bench.run.runfiles import RunFiles
from bench.storage import EnvironmentFault, SpaceReserve, fault_reason, prepare_writable_dir, require_free_space
from bench.tasks import SEED_DROPOUT, Task, rng_for

__all__ = ["EXIT_ABORTED", "EXIT_DIVERGED", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USER_ERROR",
           "RunOptions", "RunResult", "run"]


# exp() of a larger mean loss overflows float64: past it the perplexity is not a number,
# and the frameworks' float32 arithmetic no longer agrees on anything, so every backend
# stops here alike rather than wherever its own order of operations first overflows.
MAX_LOSS_PER_TOKEN = math.log(sys.float_info.max)  # 709.78 nats


def has_diverged(stats: StepStats) -> bool:
    """A non-finite loss or gradient norm, or a mean loss per token beyond any perplexity."""
    loss = stats.loss_sum / max(stats.n_tokens, 1)
    return not (math.isfinite(loss) and loss <= MAX_LOSS_PER_TOKEN and math.isfinite(stats.grad_norm or 0.0))


class Diverged(Exception):
    """See :func:`has_diverged`: the run stops at that window, in training or evaluation."""

    def __init__(self, where: "_Progress", stats: StepStats) -> None:
        self.where = where.snapshot()
        norm = f", gradient norm {stats.grad_norm:.4g}" if stats.grad_norm is not None else ""
        super().__init__(f"diverged {self.where.describe()}: loss {stats.loss_sum / max(stats.n_tokens, 1):.4g} per token{norm}")


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
        """A phase boundary: a stop asked for lands here, said as in the phase it would have
        begun (inside ``interrupts.deferred()`` it waits for the next boundary after the block)."""
        self.phase, self.epoch, self.step = phase, epoch, None
        interrupts.check()

    def window(self, step: int) -> None:
        """The 1-based window about to run; a stop asked for lands here, between two steps."""
        self.step = step
        interrupts.check()

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


def run(config: Config, options: RunOptions | None = None) -> RunResult:
    """Train and evaluate one (backend, impl, cell) on one task; write its record.

    Everything that can fail on the user's input (settings, names, corpus, checkpoint,
    directories, disk space) fails here, before a record exists: a BenchError, nothing written.
    """
    options = options or RunOptions()
    plan = RunPlan.resolve(config)  # the settings checked and every name looked up, once
    config, backend = plan.config, plan.backend
    check_memory(config, plan=plan)
    resumed = read_resume(options.resume, config) if options.resume else None
    place = RunPlace.resolve(options, config, resumed)
    task = plan.build_task(place.data_dir)
    interrupts.check()  # each stage of the set-up runs to its end; a signal during it stops here
    spec = plan.spec(task.shape)
    layout = checkpoint_layout(spec, plan.settings)
    arrays = resumed.arrays(layout) if resumed else None
    results_dir = prepare_writable_dir(place.results_dir, "--results-dir")
    checkpoint_dir = prepare_writable_dir(place.checkpoint_dir, "--checkpoint-dir")
    checkpoint_bytes = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in layout.values())
    # the new checkpoint is written beside the old one before it replaces it
    require_free_space(checkpoint_dir, 2 * checkpoint_bytes + SpaceReserve.MINIMUM, "a checkpoint and the record")
    threads = limit_thread_pools(config.threads)
    memory.keep_freed_memory()  # before the model allocates: steps reuse, not re-fault, their buffers
    model = plan.build_model(spec)  # imports the framework: the longest part of a small run's set-up
    if arrays is not None:
        model.restore(arrays)
    interrupts.check()

    run_id = resumed.meta["run_id"] if resumed else new_run_id(config.task, config.backend, config.impl, config.cell)
    env = environment(backend.versions(), threads)
    record = new_record(run_id, config, place, options.argv, resumed, spec, task, backend, model, env, plan)
    files = RunFiles(results_dir / f"{run_id}.json", checkpoint_dir / f"{run_id}.npz", record, place)
    # the lock, released by files.finish(), which _supervise always reaches; a link at a name the run reuses,
    # or a record there that got further than this checkpoint, is refused here
    files.claim(resumed.path if resumed else None)
    return _supervise(model, task, config, record, files, Reporter(options.quiet, options.progress), options.keep_checkpoint)


def _supervise(
    model: Model, task: Task, config: Config, record: dict[str, Any], files: RunFiles, say: Reporter,
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


def _how_it_ended(exc: BaseException, record: dict[str, Any], where: _Progress, files: RunFiles,
                  say: Reporter) -> int:
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
        files.ending = f"run {run_id} aborted: {message}"  # said by files.finish(), with what the record keeps
        return EXIT_ABORTED
    record["status"], record["failure"] = "failed", where.as_failure("failed", repr(exc))
    raise exc


def _train(model: Model, task: Task, config: Config, record: dict, files: RunFiles, where: _Progress,
           say: Reporter) -> None:
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
        say(epoch_line(entry, config.epochs, task.per_epoch_splits, task))
    final = {split: history[-1][split] for split in task.per_epoch_splits} if history else {}
    for split in task.eval_windows:
        if split not in final:
            where.enter(f"final-evaluate:{split}")
            final[split] = evaluate(model, task, split, config.eval_batch_size, say.bar(split), where)
    record["final"] = {"epochs_completed": len(history), "train": history[-1]["train"] if history else None, **final}
    where.enter("sample")
    record["sample"] = sample_predictions(model, task, config)
    say("final: " + ", ".join(f"{split} {metric_text(m, task)}" for split, m in final.items()))
    if task.words:
        sample = record["sample"]
        say("test sample (true | predicted next word):")
        say("  " + " ".join(sample["target_words"][:12]))
        say("  " + " ".join(sample["predicted_words"][:12]))


def train_epoch(
    model: Model, task: Task, config: Config, epoch: int, lr: float, where: _Progress, bar: Callable
) -> dict[str, float]:
    """One pass over the training windows, the state carried from window to window (zeros
    for each window of independent sequences)."""
    return _one_pass(model, task, task.train_windows(epoch), task.n_train_windows, config.batch_size,
                     lambda x, y, state: model.train_step(x, y, state, lr), True, where, bar)


def _one_pass(model: Model, task: Task, windows: Iterable, n_windows: int, batch_size: int,
              step: Callable, training: bool, where: _Progress, bar: Callable) -> dict[str, float]:
    """Run ``step(x, y, state) -> (stats, state)`` over ``windows``, the state carried from
    window to window from zeros (zeros for each window of independent sequences); a window
    whose loss has diverged (:func:`has_diverged`) stops the run. The pass's totals."""
    state = model.zero_state(batch_size)
    totals = PassTotals(flops_per_token(model.spec, training=training), task.reports_perplexity, task.reports_accuracy)
    compiled = model.compile_seconds()
    with bar(n_windows) as progress:
        for index, (x, y) in enumerate(windows):
            where.window(index + 1)
            if task.independent:
                state = model.zero_state(batch_size)
            stats, state = step(x, y, state)
            if has_diverged(stats):
                raise Diverged(where, stats)
            totals.add(stats, x.shape[0] * x.shape[1])
            progress.tick(totals)
    return totals.summary(_compiling(model, compiled))


def _compiling(model: Model, before: float | None) -> float | None:
    """The seconds ``model`` spent compiling since it reported ``before`` (None: it compiles nothing apart)."""
    after = model.compile_seconds()
    return None if after is None else after - (before or 0.0)


def evaluate(
    model: Model, task: Task, split: str, batch_size: int, bar: Callable, where: _Progress | None = None
) -> dict[str, float]:
    """Score a whole split with the state carried across it, starting from zeros (or from
    zeros for each window of independent sequences). A window whose loss has diverged
    (:func:`has_diverged`) stops the run: its perplexity is no number."""
    return _one_pass(model, task, task.eval_windows[split](), task.n_eval_windows[split], batch_size,
                     model.eval_step, False, where or _Progress(f"evaluate:{split}"), bar)


def measure_gradient_norms(model: Model, task: Task, config: Config) -> dict[str, Any]:
    """Gradient norms over time steps on the task's fixed held-out windows, averaged over
    ``grad_probe_windows`` consecutive windows (the state carried into each, as in training;
    zeros for independent sequences, where a window is a whole sequence)."""
    state = model.zero_state(config.batch_size)
    curves: list[dict[str, Any]] = []
    for _, (x, y) in zip(range(config.grad_probe_windows), task.probe_windows()):
        interrupts.check()
        if task.independent:
            state = model.zero_state(config.batch_size)
        curves.append(model.gradient_norms_over_time(x, y, state))
        _, state = model.eval_step(x, y, state)
    mean = {key: np.mean([c[key] for c in curves], axis=0) for key in curves[0]}
    summary = {key: [gradient_summary(layer) for layer in value] for key, value in mean.items() if key.startswith("dLT")}
    return {"windows": len(curves), "curves": {k: v.tolist() for k, v in mean.items()}, "summary": summary}


def sample_predictions(model: Model, task: Task, config: Config, steps: int = 45, warmup: int = 5) -> dict[str, Any]:
    """Inputs, targets and predictions of the start of the test split, for people to look at
    (the echo task's bars, PTB's true words beside predicted ones). Like the tutorial, the
    first ``warmup`` windows only let the state settle (fewer when the split is that short).
    Of independent sequences: the test set's first ``rows`` sequences, whole, the targets
    and predictions at the scored steps."""
    if task.independent:
        return _sequence_sample(model, task, config)
    warmup = min(warmup, task.n_eval_windows["test"] - 1)
    state = model.zero_state(config.eval_batch_size)
    xs, ys, ps = [], [], []
    seen = 0
    for index, (x, y) in enumerate(task.eval_windows["test"]()):
        interrupts.check()
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




def _sequence_sample(model: Model, task: Task, config: Config, rows: int = 3) -> dict[str, Any]:
    x, y = next(iter(task.eval_windows["test"]()))
    stats, _ = model.eval_step(x, y, model.zero_state(config.eval_batch_size), predictions=True)
    scored = model.spec.scored(x.shape[1])
    # one-hot inputs as their ids: a row of ids reads, a (steps, categories) block does not
    inputs = x.argmax(axis=-1) if task.shape.head == "classify" and x.ndim == 3 else x
    return {"split": "test", "warmup_windows": 0, "scored_steps": scored.tolist(), "inputs": inputs[:rows].tolist(),
            "targets": y[:rows][:, scored].tolist(), "predictions": stats.predictions[:rows].tolist()}

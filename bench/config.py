"""A run's settings: one frozen dataclass of plain values, the presets, validation, and the
CLI flags derived from the declarations.

:class:`Config` holds the settings every run has (task, backend, cell, sizes, optimizer,
schedule, seed, ...), each declared as a :class:`~cells.options.Option` in its field's
metadata, plus the options the run's cell and task declare for themselves (the LSTM's
forget bias, the echo lag: see :func:`bench.registry.declared_options`), read as attributes
all the same (``config.echo_step``). Presets come from the tasks. Every setting is a flag
of ``bench run``; every value is checked against its declaration before anything runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from backends.base import DEVICES, OPTIMIZERS
from backends.spec import LOSS_REDUCTIONS
from bench.errors import BenchError, unknown_name
from bench.registry import declared_options, get_backend, get_cell_class, get_task_class, task_names
from cells.options import (
    DTYPES, IN_DTYPE, LARGEST, SMALLEST_NORMAL, Bound, DtypeLimit, Option, shown, size,
)

THREADS = Bound(1, 1024, "each pool starts one OS thread per count: beyond 1024 is a typo, not a machine")
POSITIVE_IN_DTYPE = Bound(SMALLEST_NORMAL, LARGEST, IN_DTYPE)


def _setting(name: str, default: Any, help: str, type: type = float, **more: Any) -> Any:
    return field(default=default, metadata={"option": Option(name, default, help, type, **more)})


@dataclass(frozen=True)
class Config:
    """Everything that decides a run's numbers. Defaults are the echo task's."""

    task: str = _setting("task", "echo", "what the model learns (see `bench list`)", str)
    backend: str = _setting("backend", "numpy", "framework that runs the model (see `bench list`)", str)
    impl: str | None = _setting("impl", None, "implementation within the backend: cell or fused (default: the backend's)",
                                str, optional=True)
    cell: str = _setting("cell", "lstm", "recurrent cell (see `bench list`)", str)
    hidden_size: int = _setting("hidden_size", 4, "units per layer (also the embedding size for PTB)", int, bound=size())
    num_layers: int = _setting("num_layers", 1, "stacked recurrent layers", int, bound=size())
    num_steps: int = _setting("num_steps", 15, "time steps per window (truncated BPTT length)", int, bound=size())
    batch_size: int = _setting("batch_size", 5, "rows processed in parallel, each a contiguous stream", int,
                               bound=size())
    init_scale: float = _setting(
        "init_scale", 0.1, "weights start uniform in ±init_scale",
        bound=Bound(SMALLEST_NORMAL, DtypeLimit("max", divisor=2), "the draw's range, 2 x init_scale, finite in {dtype}"))
    keep_prob: float = _setting(
        "keep_prob", 1.0, "dropout keep probability on the embedding and each layer's output",
        bound=Bound(SMALLEST_NORMAL, 1.0, "kept units are scaled by 1/keep_prob, finite in {dtype}"))
    optimizer: str = _setting("optimizer", "adagrad", "update rule", str, choices=OPTIMIZERS)
    learning_rate: float = _setting("learning_rate", 0.3, "initial learning rate", bound=POSITIVE_IN_DTYPE)
    lr_decay: float = _setting(
        "lr_decay", 1.0, "lr at epoch e (0-based) = learning_rate * lr_decay ** max(e + 1 - max_lr_epoch, 0)",
        bound=POSITIVE_IN_DTYPE)
    max_lr_epoch: int = _setting("max_lr_epoch", 1, "epochs trained at the initial learning rate", int, bound=size(0))
    max_grad_norm: float = _setting("max_grad_norm", 0.0, "clip gradients by this global norm (0: no clipping)",
                                    bound=Bound(0.0, LARGEST, IN_DTYPE))
    adagrad_initial_accumulator: float = _setting(
        "adagrad_initial_accumulator", 0.1, "Adagrad's starting accumulator (TensorFlow 1's 0.1)",
        bound=Bound(SMALLEST_NORMAL, LARGEST, "Adagrad divides by its square root: a normal number of {dtype}"))
    epochs: int = _setting("epochs", 100, "passes over the training data", int, bound=size())
    loss_reduction: str = _setting(
        "loss_reduction", "mean",
        "loss to differentiate: CE summed over steps and averaged over the batch, or averaged", str,
        choices=LOSS_REDUCTIONS)
    eval_batch_size: int = _setting("eval_batch_size", 5, "batch size for evaluation (the published PTB runs use 1)",
                                    int, bound=size())
    eval_num_steps: int = _setting(
        "eval_num_steps", 15, "window length for evaluation; ptb scores every token whatever the length (a shorter "
        "last window), so it sets the steps per call, not the result", int, bound=size())
    grad_probe_windows: int = _setting(
        "grad_probe_windows", 4,
        "held-out windows on which gradient norms over time are measured at init and after each epoch (0: off)", int,
        bound=size(0))
    seed: int = _setting("seed", 0, "seeds weights, data order, dropout: the same seed gives the same numbers", int,
                         bound=Bound(0, 2**63 - 1, "numpy takes no negative seed; torch and TF seeds are 64-bit"))
    dtype: str = _setting("dtype", "float32", "floating-point type of the weights and activations", str, choices=DTYPES)
    device: str = _setting("device", "cpu", "cpu, gpu (error if absent) or auto", str, choices=DEVICES)
    threads: int | None = _setting("threads", None, "CPU threads of every thread pool (default: all cores)", int,
                                   bound=THREADS, optional=True)
    # The run's cell's and task's own options as (name, value) pairs, in declaration order.
    cell_options: tuple[tuple[str, Any], ...] = ()
    task_options: tuple[tuple[str, Any], ...] = ()

    def __getattr__(self, name: str) -> Any:  # config.echo_step: an option of the run's task or cell
        for key, value in (*self.__dict__.get("cell_options", ()), *self.__dict__.get("task_options", ())):
            if key == name:
                return value
        raise AttributeError(f"{type(self).__name__} has no setting {name!r} (the run's cell and task do not declare it)")

    def replace(self, **changes: Any) -> "Config":
        """The same settings with ``changes``, options included; not validated."""
        return config_from_values({**self.as_dict(), **changes}, check=False)

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, options flat beside the rest (as a record keeps them)."""
        core = {f.name: getattr(self, f.name) for f in core_fields()}
        return {**core, **dict(self.cell_options), **dict(self.task_options)}


@lru_cache(maxsize=None)
def core_fields() -> tuple[dataclasses.Field, ...]:
    """The dataclass fields of the settings every run has."""
    return tuple(f for f in dataclasses.fields(Config) if "option" in f.metadata)


def core_options() -> dict[str, Option]:
    return {f.name: f.metadata["option"] for f in core_fields()}


def all_options() -> dict[str, Option]:
    """Every setting a run may be given: the core ones, then each cell's and task's."""
    return {**core_options(), **{name: d.option for name, d in declared_options().items()}}


def setting_names() -> list[str]:
    return list(all_options())


# -- presets -----------------------------------------------------------------------------

def presets() -> dict[str, dict[str, Any]]:
    """Every registered task's presets by name, each with its ``task``."""
    out: dict[str, dict[str, Any]] = {}
    for name in task_names():
        for preset, values in get_task_class(name).presets.items():
            out[preset] = {**values, "task": name}
    return out


def preset_source(preset: str) -> str | None:
    """Where a preset's settings come from, as its task states it (None: not stated)."""
    task = presets().get(preset, {}).get("task")
    return get_task_class(task).preset_sources.get(preset) if task else None


def default_preset(task: str) -> str:
    return get_task_class(task).default_preset


def published_perplexity(preset: str) -> tuple[float, float] | None:
    """The published (valid, test) perplexity of a preset's experiment, if one was published."""
    task = presets().get(preset, {}).get("task")
    return get_task_class(task).published.get(preset) if task else None


def published_preset(config: dict[str, Any]) -> str | None:
    """The preset with published perplexities whose experiment a record's config ran, if any:
    every setting the preset fixes matches (the window length of evaluation aside: it
    changes the speed, not the scores), the cell is the LSTM they published, and the whole
    corpus was used."""
    if config.get("cell") != "lstm" or config.get("max_tokens", 0) != 0:
        return None
    for name, values in presets().items():
        if published_perplexity(name) is None:
            continue
        fixed = {k: v for k, v in values.items() if k != "eval_num_steps"}
        if all(config.get(k) == v for k, v in fixed.items()):
            return name
    return None


# -- building and checking ---------------------------------------------------------------

def make_config(preset: str | None = None, **overrides: Any) -> Config:
    """The preset (default: the task's, else echo's) with ``overrides`` applied, validated."""
    task = overrides.get("task")
    if task is not None:
        if not isinstance(task, str):
            raise unknown_name("task", str(task), task_names())
        get_task_class(task)  # an unknown task lists the known ones
    if preset is None:
        preset = default_preset(task or "echo")
    known = presets()
    if not isinstance(preset, str) or preset not in known:
        raise unknown_name("preset", str(preset), list(known))
    values = dict(known[preset])
    if task and task != values["task"]:
        raise BenchError(f"preset {preset!r} is for task {values['task']}, but --task {task} was given; drop one")
    values.update(overrides)
    return config_from_values(with_derived(values, overrides))


def with_derived(values: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the settings their task derives from the others (a sequence task's
    window length); one the user ``given`` that disagrees is an error naming it."""
    task = values.get("task")
    derived = get_task_class(task).derived(values) if isinstance(task, str) else {}
    for name, value in derived.items():
        if name in given and given[name] != value:
            raise BenchError(f"{flag(name)} is fixed by the {task} task's settings to {value}, "
                             f"got {given[name]}; leave it out")
    return {**values, **derived}


def config_from_values(values: dict[str, Any], check: bool = True, exact: bool = False) -> Config:
    """A Config from settings by name (the flat form a record keeps). Options that neither
    the cell nor the task declares are dropped (a preset's forget bias does not concern an
    RNN), after their values are checked against their declarations; with ``exact`` they
    are an error instead, and so is a missing option (a checkpoint's config must be whole)."""
    options = all_options()
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise BenchError(f"unknown setting(s): {', '.join(unknown)}")
    core = {name: values[name] for name in core_options() if name in values}
    if check:
        _check_names(core)
        dtype = core.get("dtype", "float32")
        options["dtype"].check(dtype)
        for name, value in values.items():
            options[name].check(value, dtype)
    own = {kind: _declared(load, core.get(kind, getattr(Config, kind)), check)
           for kind, load in (("cell", get_cell_class), ("task", get_task_class))}
    if exact:
        expected = set(core_options()) | {o.name for group in own.values() for o in group}
        if set(values) != expected:
            missing, extra = sorted(expected - set(values)), sorted(set(values) - expected)
            raise BenchError(f"settings do not match this cellbench's for cell {core.get('cell')!r} and task "
                             f"{core.get('task')!r} (missing: {', '.join(missing) or 'none'}; "
                             f"unknown: {', '.join(extra) or 'none'})")
    chosen = {kind: tuple((o.name, values.get(o.name, o.default)) for o in group) for kind, group in own.items()}
    config = Config(**core, cell_options=chosen["cell"], task_options=chosen["task"])
    if check:
        validate(config)
    return config


def _declared(load: Any, name: Any, check: bool) -> tuple[Option, ...]:
    """The options a cell or task declares; unchecked settings may name none (then: none)."""
    try:
        return load(name).options
    except (BenchError, TypeError):
        if check:
            raise
        return ()


def _check_names(core: dict[str, Any]) -> None:
    """Task, cell and backend are registered names, the impl one of the backend's."""
    for name, load in (("task", get_task_class), ("cell", get_cell_class), ("backend", get_backend)):
        value = core.get(name, getattr(Config, name))
        if not isinstance(value, str):
            raise BenchError(f"--{name} must be a name, got {shown(value)}")
        load(value)
    impl = core.get("impl")
    if impl is not None:
        backend = get_backend(core.get("backend", Config.backend))
        if impl not in backend.impls:
            raise BenchError(f"backend {backend.name!r} has no impl {impl!r}; choose one of: {', '.join(backend.impls)}")


def validate(config: Config) -> None:
    """Reject every invalid value before anything is trained or written: each setting's type,
    choices and bound (the options' as their cell and task declare them), the names, then
    the rules that join settings (the task's, the learning-rate schedule). Depends on the
    config alone, never on the machine (``bench.run.budget`` checks memory)."""
    dtype = config.dtype if isinstance(config.dtype, str) else "float32"
    core_options()["dtype"].check(config.dtype)
    for name, option in core_options().items():
        option.check(getattr(config, name), dtype)
    _check_names({name: getattr(config, name) for name in core_options()})
    for kind, load, given in (("cell", get_cell_class, config.cell_options), ("task", get_task_class,
                                                                              config.task_options)):
        declared = load(getattr(config, kind)).options
        if [name for name, _ in given] != [o.name for o in declared]:
            raise BenchError(f"the options of {kind} {getattr(config, kind)!r} are "
                             f"{', '.join(o.name for o in declared) or 'none'}, got {', '.join(n for n, _ in given) or 'none'}")
        for option, (_, value) in zip(declared, given):
            option.check(value, dtype)
    get_task_class(config.task).check(config)
    _check_schedule(config)


def _check_schedule(config: Config) -> None:
    """A growing schedule (``lr_decay`` > 1) peaks at the last epoch: that rate too must be
    representable in the run's dtype."""
    if config.lr_decay <= 1:
        return
    high = float(np.finfo(config.dtype).max)
    try:
        last = learning_rate_at(config, config.epochs - 1)
    except OverflowError:
        last = math.inf
    if last > high:
        growth = config.epochs - config.max_lr_epoch  # >= 1: else the last rate is the first
        limit = math.exp((math.log(high) - math.log(config.learning_rate)) / growth)
        raise BenchError(
            f"--lr-decay must be below {limit:.6g} with --learning-rate {config.learning_rate:g} over --epochs "
            f"{config.epochs} from --max-lr-epoch {config.max_lr_epoch} (the last epoch's learning rate must be "
            f"representable in {config.dtype}), got {config.lr_decay:g}"
        )


def learning_rate_at(config: Config, epoch: int) -> float:
    """The schedule of the published PTB runs: ``lr * lr_decay ** max(epoch + 1 - max_lr_epoch, 0)``,
    epoch 0-based."""
    return config.learning_rate * config.lr_decay ** max(epoch + 1 - config.max_lr_epoch, 0)


# -- the command line --------------------------------------------------------------------

def flag(name: str) -> str:
    """The command-line flag of a setting: ``echo_step`` -> ``--echo-step``."""
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting, the cells' and tasks' options included; defaults are None
    so only given flags override the preset."""
    parser.add_argument("--preset", help=f"named settings: {', '.join(presets())} (default: the task's)")
    owners = {name: d.owned_by() for name, d in declared_options().items()}
    for name, option in all_options().items():
        whose = f"option of {owners[name]}" if name in owners else ""
        span = option.describe_range()
        default = "" if option.optional and option.default is None else f"default {option.default}"
        details = "; ".join(part for part in (whose, default, span) if part)
        parser.add_argument(option.flag, dest=name, type=option.type, default=None, metavar=name.upper(),
                            help=f"{option.help} ({details})" if details else option.help)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags left out are None)."""
    return {name: getattr(args, name) for name in all_options() if getattr(args, name, None) is not None}


def config_from_args(args: argparse.Namespace) -> Config:
    return make_config(args.preset, **overrides_from_args(args))

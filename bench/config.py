"""One dataclass of plain values, the named presets, validation, and the CLI flags derived
from them. Every field of :class:`Config` is a ``--flag`` of ``bench run``."""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.data.echo import EVAL_FLAGS, echo_fit
from bench.errors import BenchError, unknown_name

TASKS = ("echo", "ptb")
OPTIMIZERS = ("sgd", "adagrad")
LOSS_REDUCTIONS = ("sum_steps_mean_batch", "mean")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "gpu", "auto")
ACTIVATIONS = ("tanh", "sigmoid")


INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class DtypeLimit:
    """A limit that moves with ``--dtype``: the dtype's largest finite number (``max``,
    times ``sign``, over ``divisor``) or its smallest normal one (``tiny``)."""

    which: str
    sign: int = 1
    divisor: int = 1

    def __call__(self, dtype: str) -> float:
        info = np.finfo(dtype)
        return self.sign * float(info.max if self.which == "max" else info.tiny) / self.divisor


LARGEST, SMALLEST_NORMAL = DtypeLimit("max"), DtypeLimit("tiny")


@dataclass(frozen=True)
class Bound:
    """A numeric field's valid values, ``low <= value <= high``; NaN fails both comparisons,
    so it is refused with the rest. ``why`` says where the limits come from."""

    low: float | DtypeLimit
    high: float | DtypeLimit
    why: str = ""

    def limits(self, dtype: str) -> tuple[float, float]:
        low, high = (x(dtype) if isinstance(x, DtypeLimit) else x for x in (self.low, self.high))
        return low, high

    def holds(self, value: float, dtype: str) -> bool:
        low, high = self.limits(dtype)
        return low <= value <= high

    def interval(self, dtype: str = "float32", exact: bool = True) -> str:
        """``[1, 2**31 - 1]``; with ``exact`` False, floats to 2 digits."""
        low, high = (_number(x, exact) for x in self.limits(dtype))
        return f"[{low}, {high}]"

    def text(self, dtype: str, integer: bool) -> str:
        """``an integer in [1, 2**31 - 1] (why)``."""
        why = f" ({self.why.format(dtype=dtype)})" if self.why else ""
        return f"{'an integer' if integer else 'a number'} in {self.interval(dtype)}{why}"


def _number(x: float, exact: bool = True) -> str:
    if isinstance(x, int):
        return f"2**{(x + 1).bit_length() - 1} - 1" if x > 2**16 and (x + 1) & x == 0 else str(x)
    return repr(x) if exact else f"{x:.2g}"


def _f(default: Any, help: str, choices: tuple | None = None, bound: Bound | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "bound": bound})


def _size(low: int = 1) -> Bound:
    """A size or count: TF's shapes are int32, and counts keep to the same range."""
    return Bound(low, INT32_MAX)


THREADS = Bound(1, 1024, "each pool starts one OS thread per count: beyond 1024 is a typo, not a machine")
IN_DTYPE = "representable in {dtype}"
POSITIVE_IN_DTYPE = Bound(SMALLEST_NORMAL, LARGEST, IN_DTYPE)


@dataclass(frozen=True)
class Config:
    """Everything that decides a run's numbers. Defaults are the echo preset."""

    task: str = _f("echo", "echo (synthetic memory task) or ptb (Penn Treebank language model)", TASKS)
    backend: str = _f("numpy", "framework that runs the model (see `bench list`)")
    impl: str | None = _f(None, "implementation within the backend: cell or fused (default: the backend's)")
    cell: str = _f("lstm", "recurrent cell (see `bench list`)")
    activation: str = _f("tanh", "vanilla RNN activation (tanh, or the seed tutorial's sigmoid)", ACTIVATIONS)
    forget_bias: float = _f(
        1.0, "LSTM forget-gate bias at initialisation (0.0 in the published PTB runs)",
        bound=Bound(DtypeLimit("max", sign=-1), LARGEST, IN_DTYPE),
    )
    hidden_size: int = _f(4, "units per layer (also the embedding size for PTB)", bound=_size())
    num_layers: int = _f(1, "stacked recurrent layers", bound=_size())
    num_steps: int = _f(15, "time steps per window (truncated BPTT length)", bound=_size())
    batch_size: int = _f(5, "rows processed in parallel, each a contiguous stream", bound=_size())
    init_scale: float = _f(
        0.1, "weights start uniform in ±init_scale",
        bound=Bound(SMALLEST_NORMAL, DtypeLimit("max", divisor=2), "the draw's range, 2 x init_scale, finite in {dtype}"),
    )
    keep_prob: float = _f(
        1.0, "dropout keep probability on the embedding and each layer's output",
        bound=Bound(SMALLEST_NORMAL, 1.0, "kept units are scaled by 1/keep_prob, finite in {dtype}"),
    )
    optimizer: str = _f("adagrad", "update rule", OPTIMIZERS)
    learning_rate: float = _f(0.3, "initial learning rate", bound=POSITIVE_IN_DTYPE)
    lr_decay: float = _f(
        1.0, "lr at epoch e (0-based) = learning_rate * lr_decay ** max(e + 1 - max_lr_epoch, 0)", bound=POSITIVE_IN_DTYPE
    )
    max_lr_epoch: int = _f(1, "epochs trained at the initial learning rate", bound=_size(0))
    max_grad_norm: float = _f(
        0.0, "clip gradients by this global norm (0: no clipping)", bound=Bound(0.0, LARGEST, IN_DTYPE)
    )
    adagrad_initial_accumulator: float = _f(
        0.1, "Adagrad's starting accumulator (TensorFlow 1's 0.1)",
        bound=Bound(SMALLEST_NORMAL, LARGEST, "Adagrad divides by its square root: a normal number of {dtype}"),
    )
    epochs: int = _f(100, "passes over the training data", bound=_size())
    loss_reduction: str = _f(
        "mean", "loss to differentiate: CE summed over steps and averaged over the batch, or averaged", LOSS_REDUCTIONS
    )
    eval_batch_size: int = _f(5, "batch size for evaluation (the published PTB runs use 1)", bound=_size())
    eval_num_steps: int = _f(
        15, "window length for evaluation; ptb scores every token whatever the length (a shorter last window), "
        "so it sets the steps per call, not the result", bound=_size(),
    )
    total_series_length: int = _f(50_000, "echo: length of each random series", bound=_size())
    echo_step: int = _f(
        3, "echo: the target is the input this many steps earlier (below the steps each batch row's windows cover)",
        bound=_size(),
    )
    max_tokens: int = _f(0, "ptb: use only the first N tokens of each split (0: all); for quick checks", bound=_size(0))
    grad_probe_windows: int = _f(
        4, "held-out windows on which gradient norms over time are measured at init and after each epoch (0: off)",
        bound=_size(0),
    )
    seed: int = _f(
        0, "seeds weights, data order, dropout: the same seed gives the same numbers",
        bound=Bound(0, 2**63 - 1, "numpy takes no negative seed; torch and TF seeds are 64-bit"),
    )
    dtype: str = _f("float32", "floating-point type of the weights and activations", DTYPES)
    device: str = _f("cpu", "cpu, gpu (error if absent) or auto", DEVICES)
    threads: int | None = _f(None, "CPU threads of every thread pool (default: all cores)", bound=THREADS)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PTB_PUBLISHED = dict(
    task="ptb",
    num_layers=2,
    batch_size=20,
    optimizer="sgd",
    learning_rate=1.0,
    loss_reduction="sum_steps_mean_batch",
    forget_bias=0.0,
    eval_batch_size=1,
    # The published runs scored one step per call. The state is carried and every token is
    # scored whatever the window length (bench/data/batching.py), so 35 steps per call score
    # the same tokens from the same states, to float rounding, 6-12x faster at batch 1.
    eval_num_steps=35,
)

# Zaremba, Sutskever & Vinyals 2014 (SEEDS.md table); "published" holds their valid/test ppl.
PRESETS: dict[str, dict[str, Any]] = {
    "echo": dict(task="echo"),
    "ptb-small": dict(
        _PTB_PUBLISHED, hidden_size=200, num_steps=20, init_scale=0.1, max_grad_norm=5.0,
        max_lr_epoch=4, epochs=13, keep_prob=1.0, lr_decay=0.5,
    ),
    "ptb-medium": dict(
        _PTB_PUBLISHED, hidden_size=650, num_steps=35, init_scale=0.05, max_grad_norm=5.0,
        max_lr_epoch=6, epochs=39, keep_prob=0.5, lr_decay=0.8,
    ),
    "ptb-large": dict(
        _PTB_PUBLISHED, hidden_size=1500, num_steps=35, init_scale=0.04, max_grad_norm=10.0,
        max_lr_epoch=14, epochs=55, keep_prob=0.35, lr_decay=1 / 1.15,
    ),
    # The seed tutorial's own run (SEEDS.md section 1): medium-sized, forget bias 1.0.
    "ptb-tutorial": dict(
        _PTB_PUBLISHED, hidden_size=650, num_steps=35, init_scale=0.05, max_grad_norm=5.0,
        max_lr_epoch=10, epochs=38, keep_prob=0.5, lr_decay=0.93, forget_bias=1.0,
    ),
    # Seconds, not hours: a few thousand tokens, for tests and smoke runs.
    "ptb-tiny": dict(
        _PTB_PUBLISHED, hidden_size=16, num_steps=5, batch_size=4, init_scale=0.1, max_grad_norm=5.0,
        max_lr_epoch=1, epochs=2, keep_prob=1.0, lr_decay=0.5, max_tokens=2000,
    ),
}
PUBLISHED_PERPLEXITY = {"ptb-small": (120.7, 114.5), "ptb-medium": (86.2, 82.7), "ptb-large": (82.2, 78.4)}


def published_preset(config: dict[str, Any]) -> str | None:
    """The preset with published perplexities whose experiment a record's config ran, if any:
    every setting the preset fixes matches (the window length of evaluation aside: it
    changes the speed, not the scores), and the cell is the LSTM they published."""
    if config.get("cell") != "lstm":
        return None
    for name in PUBLISHED_PERPLEXITY:
        fixed = {k: v for k, v in PRESETS[name].items() if k != "eval_num_steps"}
        if all(config.get(k) == v for k, v in fixed.items()) and config.get("max_tokens", 0) == 0:
            return name
    return None


DEFAULT_PRESET = {"echo": "echo", "ptb": "ptb-small"}


def make_config(preset: str | None = None, **overrides: Any) -> Config:
    """The preset (default: the task's, else echo) with ``overrides`` applied, validated."""
    task = overrides.get("task")
    if task is not None and task not in TASKS:
        raise unknown_name("task", str(task), list(TASKS))
    if preset is None:
        preset = DEFAULT_PRESET.get(task, "echo") if task else "echo"
    if preset not in PRESETS:
        raise unknown_name("preset", preset, list(PRESETS))
    values = dict(PRESETS[preset])
    if task and task != values["task"]:
        raise BenchError(f"preset {preset!r} is for task {values['task']}, but --task {task} was given; drop one")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise BenchError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values.update(overrides)
    config = Config(**values)
    validate(config)
    return config


def flag(name: str) -> str:
    """The command-line flag of a setting: ``echo_step`` -> ``--echo-step``."""
    return "--" + name.replace("_", "-")


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "int | None": (int, type(None)), "str | None": (str, type(None))}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def check_bound(name: str, value: float, bound: Bound, dtype: str = "float32", integer: bool = True) -> None:
    """The one message of an out-of-range value: ``--flag must be <range>, got <value>``."""
    if not bound.holds(value, dtype):
        raise BenchError(f"{name} must be {bound.text(dtype, integer)}, got {_shown(value)}")


def validate(config: Config) -> None:
    """Reject every invalid value before anything is trained or written: each field's type,
    choices and declared :class:`Bound`, then the rules that join fields (the echo series
    cut into windows, the learning-rate schedule). Depends on the config alone, never on
    the machine (``bench.budget`` checks memory)."""
    fields = dataclasses.fields(Config)
    for f in fields:
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, _TYPES[str(f.type)]):
            raise BenchError(f"{flag(f.name)} must be of type {f.type}, got {_shown(value)}")
    for f in fields:
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise unknown_name(f.name.replace("_", " "), str(value), list(choices))
    for f in fields:
        bound, value = f.metadata.get("bound"), getattr(config, f.name)
        if bound and value is not None:
            check_bound(flag(f.name), value, bound, config.dtype, integer="int" in str(f.type))
    if config.task == "echo":
        echo_fit(config.total_series_length, config.echo_step, config.batch_size, config.num_steps)
        echo_fit(config.total_series_length, config.echo_step, config.eval_batch_size, config.eval_num_steps, *EVAL_FLAGS)
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
    """The seed's schedule: ``lr * lr_decay ** max(epoch + 1 - max_lr_epoch, 0)``, epoch 0-based."""
    return config.learning_rate * config.lr_decay ** max(epoch + 1 - config.max_lr_epoch, 0)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per Config field; defaults are None so only given flags override the preset."""
    parser.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)} (default: the task's)")
    for f in dataclasses.fields(Config):
        kind = {"int": int, "float": float, "int | None": int, "str | None": str}.get(str(f.type), str)
        parser.add_argument(flag(f.name), dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                            help=f.metadata["help"] + f" (echo default: {f.default}{_help_range(f)})")


def _help_range(f: dataclasses.Field) -> str:
    """``; one of: a, b`` or ``; range [1, 2**31 - 1]``, per dtype where the range depends on it."""
    if f.metadata.get("choices"):
        return "; one of: " + ", ".join(f.metadata["choices"])
    bound = f.metadata.get("bound")
    if not bound:
        return ""
    ranges = {dtype: bound.interval(dtype, exact=False) for dtype in DTYPES}
    if len(set(ranges.values())) == 1:
        return "; range " + ranges[DTYPES[0]]
    return "; range " + ", ".join(f"{text} in {dtype}" for dtype, text in ranges.items())


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags left out are None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}


def config_from_args(args: argparse.Namespace) -> Config:
    return make_config(args.preset, **overrides_from_args(args))

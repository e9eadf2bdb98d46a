"""One dataclass of plain values, the named presets, validation, and the CLI flags derived
from them. Every field of :class:`Config` is a ``--flag`` of ``bench run``."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchError, unknown_name

TASKS = ("echo", "ptb")
OPTIMIZERS = ("sgd", "adagrad")
LOSS_REDUCTIONS = ("sum_steps_mean_batch", "mean")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "gpu", "auto")
ACTIVATIONS = ("tanh", "sigmoid")


def _f(default: Any, help: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class Config:
    """Everything that decides a run's numbers. Defaults are the echo preset."""

    task: str = _f("echo", "echo (synthetic memory task) or ptb (Penn Treebank language model)", TASKS)
    backend: str = _f("numpy", "framework that runs the model (see `bench list`)")
    impl: str | None = _f(None, "implementation within the backend: cell or fused (default: the backend's)")
    cell: str = _f("lstm", "recurrent cell (see `bench list`)")
    activation: str = _f("tanh", "vanilla RNN activation (tanh, or the seed tutorial's sigmoid)", ACTIVATIONS)
    forget_bias: float = _f(1.0, "LSTM forget-gate bias at initialisation (0.0 in the published PTB runs)")
    hidden_size: int = _f(4, "units per layer (also the embedding size for PTB)")
    num_layers: int = _f(1, "stacked recurrent layers")
    num_steps: int = _f(15, "time steps per window (truncated BPTT length)")
    batch_size: int = _f(5, "rows processed in parallel, each a contiguous stream")
    init_scale: float = _f(0.1, "weights start uniform in ±init_scale")
    keep_prob: float = _f(1.0, "dropout keep probability on the embedding and each layer's output")
    optimizer: str = _f("adagrad", "update rule", OPTIMIZERS)
    learning_rate: float = _f(0.3, "initial learning rate")
    lr_decay: float = _f(1.0, "lr at epoch e (0-based) = learning_rate * lr_decay ** max(e + 1 - max_lr_epoch, 0)")
    max_lr_epoch: int = _f(1, "epochs trained at the initial learning rate")
    max_grad_norm: float = _f(0.0, "clip gradients by this global norm (0: no clipping)")
    adagrad_initial_accumulator: float = _f(0.1, "Adagrad's starting accumulator (TensorFlow 1's 0.1)")
    epochs: int = _f(100, "passes over the training data")
    loss_reduction: str = _f(
        "mean", "loss to differentiate: CE summed over steps and averaged over the batch, or averaged", LOSS_REDUCTIONS
    )
    eval_batch_size: int = _f(5, "batch size for evaluation (the published PTB runs use 1)")
    eval_num_steps: int = _f(
        15, "window length for evaluation; ptb scores every token whatever the length (a shorter last window), "
        "so it sets the steps per call, not the result"
    )
    total_series_length: int = _f(50_000, "echo: length of each random series")
    echo_step: int = _f(3, "echo: the target is the input this many steps earlier")
    max_tokens: int = _f(0, "ptb: use only the first N tokens of each split (0: all); for quick checks")
    grad_probe_windows: int = _f(
        4, "held-out windows on which gradient norms over time are measured at init and after each epoch (0: off)"
    )
    seed: int = _f(0, "seeds weights, data order, dropout: the same seed gives the same numbers")
    dtype: str = _f("float32", "floating-point type of the weights and activations", DTYPES)
    device: str = _f("cpu", "cpu, gpu (error if absent) or auto", DEVICES)
    threads: int | None = _f(None, "CPU threads of every thread pool (default: all cores)")

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
        raise unknown_name("task", task, list(TASKS))
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


_POSITIVE_INTS = (
    "hidden_size", "num_layers", "num_steps", "batch_size", "epochs", "eval_batch_size",
    "eval_num_steps", "total_series_length", "echo_step",
)
_POSITIVE_FLOATS = ("init_scale", "learning_rate", "lr_decay", "adagrad_initial_accumulator")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "int | None": (int, type(None)), "str | None": (str, type(None))}


def validate(config: Config) -> None:
    """Reject every invalid value before anything is trained or written."""
    for f in dataclasses.fields(Config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, _TYPES[str(f.type)]):
            raise BenchError(f"{_flag(f.name)} must be of type {f.type}, got {value!r}")
    for f in dataclasses.fields(Config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise unknown_name(f.name.replace("_", " "), str(value), list(choices))
    for name in _POSITIVE_INTS:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise BenchError(f"{_flag(name)} must be a positive integer, got {value!r}")
    for name in _POSITIVE_FLOATS:
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
            raise BenchError(f"{_flag(name)} must be a positive number, got {value!r}")
    if not 0 < config.keep_prob <= 1:
        raise BenchError(f"--keep-prob must be in (0, 1], got {config.keep_prob!r}")
    if not 0 <= config.max_grad_norm < float("inf"):
        raise BenchError(f"--max-grad-norm must be >= 0 (0 disables clipping), got {config.max_grad_norm!r}")
    for name in ("max_lr_epoch", "max_tokens", "grad_probe_windows"):
        if getattr(config, name) < 0:
            raise BenchError(f"{_flag(name)} must be >= 0, got {getattr(config, name)!r}")
    if config.threads is not None and config.threads < 1:
        raise BenchError(f"--threads must be a positive integer, got {config.threads!r}")
    if config.task == "echo" and config.total_series_length % config.batch_size:
        raise BenchError(
            f"--total-series-length {config.total_series_length} is not a multiple of --batch-size "
            f"{config.batch_size}; the series is cut into batch rows of equal length"
        )
    if config.task == "echo" and config.total_series_length % config.eval_batch_size:
        raise BenchError(
            f"--total-series-length {config.total_series_length} is not a multiple of --eval-batch-size "
            f"{config.eval_batch_size}"
        )


def learning_rate_at(config: Config, epoch: int) -> float:
    """The seed's schedule: ``lr * lr_decay ** max(epoch + 1 - max_lr_epoch, 0)``, epoch 0-based."""
    return config.learning_rate * config.lr_decay ** max(epoch + 1 - config.max_lr_epoch, 0)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per Config field; defaults are None so only given flags override the preset."""
    parser.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)} (default: the task's)")
    for f in dataclasses.fields(Config):
        kind = {"int": int, "float": float, "int | None": int, "str | None": str}.get(str(f.type), str)
        parser.add_argument(_flag(f.name), dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                            help=f.metadata["help"] + f" (echo default: {f.default})")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags left out are None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}


def config_from_args(args: argparse.Namespace) -> Config:
    return make_config(args.preset, **overrides_from_args(args))

"""Tasks: what a model learns and how a split is scored.

A task is a class registered under the entry-point group ``bench.tasks`` (as cells and
backends are): a :class:`TaskSpec` declares the task's own settings (each a ``bench run``
flag), its presets, the rules that join its settings, the model's input and output head
(:class:`Shape`), its memoryless baseline, and builds a run's windows. What the runner sees
of a built task is a :class:`Task`: NumPy windows for training and each evaluation split,
and the shape of the model they need. A task checks up front that the window sizes fit its
data, so a bad size fails before anything is trained or written.

Two kinds of data, one runner:

- **streams** (echo, PTB): each batch row is a long series cut into windows; the state is
  carried from window to window and zeroed at the start of each epoch and split;
- **independent sequences** (``Task.independent``; copy, adding): every window is a batch of
  whole sequences; the state starts at zero for each, backpropagation runs over the whole
  sequence, training draws fresh sequences for every update (seeded by the run's seed and
  the epoch) and evaluation scores fixed held-out sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

from cells.options import Option

Windows = Iterable[tuple[np.ndarray, np.ndarray]]

# Independent random streams per purpose: numpy.random.default_rng([seed, purpose, ...]).
SEED_INIT, SEED_TRAIN_DATA, SEED_DROPOUT, SEED_VALID_DATA, SEED_TEST_DATA, SEED_PROBE_DATA = range(6)


def rng_for(seed: int, purpose: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, *more])


@dataclass(frozen=True)
class Shape:
    """What the model must look like for a task's data (known before any data is read):
    its input (``tokens`` ids from ``vocab_size``, or ``scalar`` / ``vector`` values with
    ``vocab_size`` features per step), its output head (``classify`` over ``n_classes``
    classes, or ``regress`` to ``n_classes`` values) and the window's steps the loss and the
    metrics read (``scored_steps``, negative from the end; None: every step). See
    ``backends/spec.py``."""

    input_kind: str
    vocab_size: int
    n_classes: int
    head: str = "classify"
    scored_steps: tuple[int, ...] | None = None

    def describe(self) -> dict[str, Any]:
        return {"input_kind": self.input_kind, "vocab_size": self.vocab_size, "n_classes": self.n_classes,
                "head": self.head, "scored_steps": list(self.scored_steps) if self.scored_steps else None}


@dataclass
class Task:
    """Windows for training and for each evaluation split, plus what the model must look like."""

    name: str
    shape: Shape
    train_windows: Callable[[int], Windows]  # epoch -> windows
    n_train_windows: int
    eval_windows: dict[str, Callable[[], Windows]]  # split -> windows
    n_eval_windows: dict[str, int]
    per_epoch_splits: tuple[str, ...]  # evaluated after every epoch; the rest only at the end
    probe_windows: Callable[[], Windows]  # fixed held-out windows (training shape) for gradient norms
    words: tuple[str, ...] | None = None  # id -> word, for printing predictions
    reports_perplexity: bool = False
    independent: bool = False  # whole sequences, the state zeroed for each window (see the module doc)
    # the best loss per scored step a model without memory can reach (None: not known)
    baseline: float | None = None

    @property
    def reports_accuracy(self) -> bool:
        return self.shape.head == "classify"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.shape.describe(),
            "independent_sequences": self.independent,
            "memoryless_baseline": self.baseline,
            "train_windows_per_epoch": self.n_train_windows,
            "eval_windows": dict(self.n_eval_windows),
        }


class TaskSpec:
    """A task as the registry knows it. ``config`` arguments are ``bench.config.Config``s
    (any object with the settings as attributes)."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `bench list`
    # The task's own settings: flags of `bench run`, kept in a run's config when it runs this task.
    options: ClassVar[tuple[Option, ...]] = ()
    # name -> settings (core ones, this task's options, and cells' options such as forget_bias)
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    default_preset: ClassVar[str]
    # preset -> where its settings come from (the protocol it follows), shown by `bench list`
    preset_sources: ClassVar[dict[str, str]] = {}
    # preset -> published (valid, test) perplexity of the LSTM in that configuration
    published: ClassVar[dict[str, tuple[float, float]]] = {}
    # the report's main metric for this task: "test_ppl", "accuracy", "loss_vs_baseline" or
    # "test_loss" (None: the loss over the memoryless baseline where the task has one)
    report_metric: ClassVar[str | None] = None
    # the flags a memory refusal names: what sets the window length, what sets the data's size
    length_flags: ClassVar[str] = "--num-steps"
    data_flags: ClassVar[str] = "--batch-size"

    @classmethod
    def check(cls, config: Any) -> None:
        """Refuse settings that do not fit together for this task (a BenchError naming them)."""

    @classmethod
    def derived(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Settings this task fixes from the others (an independent-sequence task's window
        length is its sequence length): applied to a preset with the user's flags, a flag
        that disagrees is an error. ``values``: every setting given so far, by name."""
        return {}

    @classmethod
    def model_shape(cls, config: Any) -> Shape:
        """The model's input and head, known before any data is read (for the memory
        estimate and ``bench speed``)."""
        raise NotImplementedError

    @classmethod
    def baseline(cls, config: Any) -> float | None:
        """The memoryless baseline: the lowest loss per scored step a model without memory
        can reach in expectation (None where none is known)."""
        return None

    @classmethod
    def data_bytes(cls, config: Any) -> int:
        """The memory the task's data takes at its peak, for the run's memory estimate."""
        return 0

    @classmethod
    def build(cls, config: Any, data_dir: str | None = None) -> Task:
        raise NotImplementedError


def make_task(config: Any, data_dir: str | None = None) -> Task:
    """The windows of ``config``'s task (``data_dir``: where a corpus lies, if it needs one)."""
    from bench.registry import get_task_class

    return get_task_class(config.task).build(config, data_dir)

"""The memory a run will need, estimated from its settings before anything is allocated,
and the check that refuses a run the machine cannot hold.

Without it a typo (``--hidden-size 65000``) is not an error but minutes of swapping and
then the kernel's OOM killer: no record, no message. The estimate sums what the process
holds at its peak; each term is calibrated against the ``peak_rss_mb`` of real runs
(``docs/performance.md``, "Memory estimate") so that it bounds them without being far above:

- the interpreter and the framework once imported (measured);
- per parameter: the float64 initial weights, then the backend's weights, gradients and
  optimizer slots, and in the frameworks a transient copy and the checkpoint's copies of
  weights and slots;
- per window, for training and the gradient probe (evaluation's windows where larger):
  each layer's activations kept for backpropagation, ``steps x batch x hidden`` times
  ``a x blocks + b`` copies per backend and impl, and the logits and softmax buffers,
  ``steps x batch x classes`` times a few copies;
- the task's data, as the task estimates it (``TaskSpec.data_bytes``: the echo series, or
  the PTB corpus as it is read).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from backends.base import OPTIMIZER_SLOTS
from bench.config import Config
from bench.errors import BenchError
from bench.registry import get_task_class

GIB, MIB = 2**30, 2**20


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of a run, by what holds them."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """The parts of at least 1 MiB, largest first."""
        parts = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {_size(n)}" for name, n in parts if n >= MIB)


# What to lower when a part is the largest.
def _remedy(part: str, task: Any) -> str:
    """The flags that shrink ``part`` of a run of ``task`` (a TaskSpec class)."""
    return {
        "weights and optimizer": "--hidden-size or --num-layers",
        "activations": f"--batch-size, {task.length_flags} or --hidden-size (and their --eval-* twins)",
        "logits": f"--batch-size or {task.length_flags} (and their --eval-* twins)",
        "data": task.data_flags,
        "framework": "nothing: the framework alone",
    }[part]


def estimate(config: Config, plan: Any = None) -> Estimate:
    """The peak resident bytes of ``config``'s run (a validated config; ``plan``, its
    :class:`~bench.run.plan.RunPlan` where the run has resolved one)."""
    from bench.run.factory import model_spec
    from bench.registry import get_backend

    task = plan.task if plan is not None else get_task_class(config.task)
    spec = model_spec(config, task.model_shape(config), plan.cell if plan is not None else None)
    backend = plan.backend if plan is not None else get_backend(config.backend)
    memory = backend.memory  # what the backend holds: its framework, copies per window and parameter
    impl = config.impl or backend.default_impl
    itemsize = 8 if config.dtype == "float64" else 4
    n_params = sum(math.prod(shape) for shape in spec.param_shapes().values())
    slots = len(OPTIMIZER_SLOTS[config.optimizer])
    a, b = memory.activation_copies.get(impl, max(memory.activation_copies.values()))
    fixed, per_slot = memory.param_copies
    rows = max(config.batch_size * config.num_steps, config.eval_batch_size * config.eval_num_steps)
    return Estimate({
        "framework": memory.framework_bytes,
        "weights and optimizer": n_params * (8 + itemsize * (fixed + per_slot * slots)),
        "activations": config.num_layers * rows * config.hidden_size * (a * spec.cell.n_blocks + b) * itemsize,
        "logits": int(rows * spec.n_classes * memory.logit_copies * itemsize),
        "data": task.data_bytes(config),
    })


def available_bytes() -> int | None:
    """Memory the kernel could give this process now without swapping: ``MemAvailable``
    of ``/proc/meminfo``, else the free physical pages; None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(config: Config, available: int | None = None, plan: Any = None) -> Estimate:
    """Refuse a run whose estimated peak exceeds the memory available (measured now unless
    given); returns the estimate (``plan``: as for :func:`estimate`)."""
    needed = estimate(config, plan)
    available = available_bytes() if available is None else available
    if available is not None and needed.total > available:
        largest = max(needed.parts, key=needed.parts.__getitem__)
        raise BenchError(
            f"this run needs about {_size(needed.total)} of memory ({config.num_layers} x {config.hidden_size:,} "
            f"units: {needed.describe()}); {_size(available)} available; "
            f"lower {_remedy(largest, plan.task if plan is not None else get_task_class(config.task))}"
        )
    return needed


def _size(n: int) -> str:
    return f"{n / GIB:,.1f} GiB" if n >= GIB else f"{n / MIB:,.0f} MiB"

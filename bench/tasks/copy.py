"""The copy task (Arjovsky, Shah & Bengio 2016, section 4.1): remember ``copy_length``
symbols over a lag of ``copy_lag`` steps and repeat them after a delimiter. Data:
``bench/data/sequences.py``; the runner's handling of independent sequences:
``bench/tasks/sequences.py``."""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.sequences import copy_baseline, copy_batch, copy_sequence_length
from bench.tasks import Shape
from bench.tasks.sequences import SEQUENCE_OPTIONS, SequenceTask
from cells.options import Bound, Option, size

# Arjovsky et al. 2016: RMSProp, learning rate 1e-3, decay 0.9, batch 20; the LSTM with 128
# units. Every cell gets the same size here, so the cells differ in nothing but the cell.
# Clipping at norm 1 is ours (it keeps the vanilla RNN's exploding gradients from ending a
# run); the forget bias 1 is the usual LSTM initialisation. The budget (30 x 100 updates) is
# ours too, for a CPU: the paper trains for longer.
_PROTOCOL = dict(
    hidden_size=128, num_layers=1, batch_size=20, optimizer="rmsprop", learning_rate=1e-3, lr_decay=1.0,
    max_lr_epoch=1, max_grad_norm=1.0, init_scale=0.1, forget_bias=1.0, keep_prob=1.0, loss_reduction="mean",
    eval_batch_size=100, eval_sequences=1000, batches_per_epoch=100, epochs=30, grad_probe_windows=1,
)


class CopyTask(SequenceTask):
    name = "copy"
    summary = "copy task (Arjovsky et al. 2016): repeat 10 symbols after a lag of --copy-lag blank steps"
    options = (
        Option("copy_lag", 100, "copy: T, the steps from the last symbol to the delimiter included "
               "(sequences are T + 2 x copy_length steps)", int, bound=size()),
        Option("copy_length", 10, "copy: symbols to remember", int, bound=size()),
        Option("copy_categories", 8, "copy: categories the symbols are drawn from", int,
               bound=Bound(2, 1_000_000, "one or none leaves nothing to remember")),
        *SEQUENCE_OPTIONS,
    )
    presets = {
        "copy": _PROTOCOL,
        # seconds, for tests and smoke runs
        "copy-tiny": dict(_PROTOCOL, hidden_size=8, copy_lag=5, copy_length=3, batches_per_epoch=5, epochs=2,
                          eval_batch_size=10, eval_sequences=20, learning_rate=1e-2),
    }
    default_preset = "copy"
    preset_sources = {
        "copy": "Arjovsky, Shah & Bengio 2016 (RMSProp 1e-3, batch 20, 128 units); clip, forget bias, budget ours",
        "copy-tiny": "for tests",
    }
    length_flags = "--copy-lag"
    data_flags = "--copy-lag, --copy-categories or --batch-size"

    @classmethod
    def sequence_length(cls, config: Any) -> int:
        return copy_sequence_length(int(config.copy_lag), int(config.copy_length))

    @classmethod
    def batch(cls, config: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return copy_batch(n, config.copy_lag, rng, config.copy_length, config.copy_categories)

    @classmethod
    def model_shape(cls, config: Any) -> Shape:
        # one-hot of blank, the symbols and the delimiter in; blank or a symbol out, every step scored
        return Shape("vector", config.copy_categories + 2, config.copy_categories + 1)

    @classmethod
    def baseline(cls, config: Any) -> float | None:
        return copy_baseline(config.copy_lag, config.copy_length, config.copy_categories)

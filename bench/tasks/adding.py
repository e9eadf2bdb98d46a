"""The adding problem (Arjovsky et al. 2016, section 4.2; Le, Jaitly & Hinton 2015): add the
two marked values of a sequence of ``adding_length`` steps, answered at the last step (a
regression head read there only). Data: ``bench/data/sequences.py``; the runner's handling
of independent sequences: ``bench/tasks/sequences.py``."""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.sequences import ADDING_BASELINE, adding_batch
from bench.tasks import Shape
from bench.tasks.copy import _PROTOCOL
from bench.tasks.sequences import SEQUENCE_OPTIONS, SequenceTask
from cells.options import Bound, Option


class AddingTask(SequenceTask):
    name = "adding"
    summary = "adding problem (Arjovsky et al. 2016): sum the two marked values of --adding-length steps"
    options = (
        Option("adding_length", 100, "adding: T, the steps of each sequence (one marker in each half)", int,
               bound=Bound(2, 10**9, "each half holds one marker")),
        *SEQUENCE_OPTIONS,
    )
    # The protocol of the copy task's preset (Arjovsky et al. train both alike).
    presets = {
        "adding": _PROTOCOL,
        "adding-tiny": dict(_PROTOCOL, hidden_size=8, adding_length=10, batches_per_epoch=5, epochs=2,
                            eval_batch_size=10, eval_sequences=20, learning_rate=1e-2),
    }
    default_preset = "adding"
    preset_sources = {
        "adding": "Arjovsky, Shah & Bengio 2016 (RMSProp 1e-3, batch 20, 128 units); clip, forget bias, budget ours",
        "adding-tiny": "for tests",
    }
    length_flags = data_flags = "--adding-length"

    @classmethod
    def sequence_length(cls, config: Any) -> int:
        return int(config.adding_length)

    @classmethod
    def batch(cls, config: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return adding_batch(n, config.adding_length, rng)

    @classmethod
    def model_shape(cls, config: Any) -> Shape:
        return Shape("vector", 2, 1, head="regress", scored_steps=(-1,))

    @classmethod
    def baseline(cls, config: Any) -> float | None:
        return ADDING_BASELINE

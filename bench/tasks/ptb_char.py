"""Character-level language modelling on the Penn Treebank: Mikolov's ``ptb.char.*`` split,
derived from the word-level corpus (``bench.data.ptb_char``), scored in bits per character.

Published: test 1.38 bits per character for a one-layer LSTM of 1,000 units (Cooijmans et
al. 2016, "Recurrent Batch Normalization"), 1.36 unregularised (Krueger et al. 2016,
"Zoneout"): Adam at 2e-3, batch 64 (32), 100 steps, gradients clipped at 1. Those runs
train with Adam, which this project does not have yet, so no preset here claims their
protocol: ``ptb-char-cpu`` is a one-core scale of it with RMSprop, ``ptb-char-tiny`` a
test. Bits per character = the mean loss per symbol in nats / ln 2, every symbol scored,
the line ends included (``bench.data.ptb_char``)."""
from __future__ import annotations

from typing import Any

from bench.data.ptb_char import load_ptb_char
from bench.tasks import Shape, Task, TaskSpec
from bench.tasks.ptb import language_model_task
from cells.options import Option, size

SYMBOLS = 50  # 49 characters of the training text and the line end
CHARACTERS = 5_852_947  # train + valid + test, line ends included
BYTES_PER_SYMBOL = 40  # the three splits' text, symbol lists and ids while they are derived

_ONE_LAYER = dict(task="ptb-char", num_layers=1, num_steps=100, init_scale=0.1, max_grad_norm=1.0,
                  loss_reduction="mean", eval_batch_size=1, eval_num_steps=100, keep_prob=1.0,
                  forget_bias=1.0)


class PTBCharTask(TaskSpec):
    name = "ptb-char"
    summary = ("Penn Treebank character-level language model (Mikolov's ptb.char split, 50 symbols, derived "
               "from the word-level corpus; needs it); bits per character")
    options = (
        Option("max_tokens", 0, "ptb: use only the first N tokens of each split (0: all); for quick checks", int,
               bound=size(0)),
    )
    presets = {
        # one core, under the hour it is meant for: 256 units, RMSprop (no Adam here yet), 100 steps, clip 1
        "ptb-char-cpu": dict(_ONE_LAYER, hidden_size=256, batch_size=32, optimizer="rmsprop", learning_rate=2e-3,
                             lr_decay=0.5, max_lr_epoch=4, epochs=6),
        "ptb-char-tiny": dict(_ONE_LAYER, hidden_size=16, num_steps=10, batch_size=4, eval_num_steps=10,
                              optimizer="rmsprop", learning_rate=1e-2, lr_decay=1.0, max_lr_epoch=1, epochs=2,
                              max_tokens=2000),
    }
    default_preset = "ptb-char-cpu"
    preset_sources = {
        "ptb-char-cpu": "a one-core scale of Cooijmans et al. 2016 (1,000 units, Adam; test 1.38 bpc), with RMSprop",
        "ptb-char-tiny": "for tests: the first 2,000 symbols",
    }
    data_flags = "--max-tokens"
    report_metric = "test_bpc"

    @classmethod
    def model_shape(cls, config: Any) -> Shape:
        return Shape("tokens", SYMBOLS, SYMBOLS)

    @classmethod
    def data_bytes(cls, config: Any) -> int:
        return CHARACTERS * BYTES_PER_SYMBOL

    @classmethod
    def build(cls, config: Any, data_dir: str | None = None) -> Task:
        corpus, _ = load_ptb_char(data_dir)
        return language_model_task("ptb-char", corpus, config, reports_perplexity=False)

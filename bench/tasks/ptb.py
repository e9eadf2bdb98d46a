"""Word-level language modelling on the Penn Treebank (Mikolov's split, 10,000 words), with
the configurations of Zaremba, Sutskever & Vinyals (2014), "Recurrent Neural Network
Regularization", and TensorFlow's PTB tutorial."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from bench.data import load_ptb, ptb_windows
from bench.data.batching import check_fits, eval_window_count, ptb_eval_windows
from bench.tasks import Shape, Task, TaskSpec, Windows
from cells.options import Option, size

VOCABULARY = 10_000  # Mikolov's split; the corpus is checked by its sha256 sums
TOKENS = 1_085_779  # train + valid + test, <eos> included
BYTES_PER_TOKEN = 96  # 89 MB peak while load_ptb reads the three splits

_PUBLISHED = dict(
    task="ptb",
    num_layers=2,
    batch_size=20,
    optimizer="sgd",
    learning_rate=1.0,
    loss_reduction="sum_steps_mean_batch",  # the cross-entropy summed over the steps, averaged over the batch
    forget_bias=0.0,  # "to match the paper", as TensorFlow's tutorial passes it
    eval_batch_size=1,
    # The published runs scored one step per call. The state is carried and every token is
    # scored whatever the window length (bench/data/batching.py), so 35 steps per call score
    # the same tokens from the same states, to float rounding, several times faster at batch 1
    # (docs/performance.md, "Evaluation at batch 1").
    eval_num_steps=35,
)


class PTBTask(TaskSpec):
    name = "ptb"
    summary = "Penn Treebank word-level language model (Mikolov's split, 10,000 words; needs the corpus)"
    options = (
        Option("max_tokens", 0, "ptb: use only the first N tokens of each split (0: all); for quick checks", int,
               bound=size(0)),
    )
    # Zaremba et al. (2014), small / medium / large; the learning rate decays from epoch max_lr_epoch.
    presets = {
        "ptb-small": dict(_PUBLISHED, hidden_size=200, num_steps=20, init_scale=0.1, max_grad_norm=5.0,
                          max_lr_epoch=4, epochs=13, keep_prob=1.0, lr_decay=0.5),
        "ptb-medium": dict(_PUBLISHED, hidden_size=650, num_steps=35, init_scale=0.05, max_grad_norm=5.0,
                           max_lr_epoch=6, epochs=39, keep_prob=0.5, lr_decay=0.8),
        "ptb-large": dict(_PUBLISHED, hidden_size=1500, num_steps=35, init_scale=0.04, max_grad_norm=10.0,
                          max_lr_epoch=14, epochs=55, keep_prob=0.35, lr_decay=1 / 1.15),
        # TensorFlow's PTB tutorial's own run: medium-sized, forget bias 1.0, a slower decay.
        "ptb-tutorial": dict(_PUBLISHED, hidden_size=650, num_steps=35, init_scale=0.05, max_grad_norm=5.0,
                             max_lr_epoch=10, epochs=38, keep_prob=0.5, lr_decay=0.93, forget_bias=1.0),
        # Seconds, not hours: a few thousand tokens, for tests and smoke runs.
        "ptb-tiny": dict(_PUBLISHED, hidden_size=16, num_steps=5, batch_size=4, init_scale=0.1, max_grad_norm=5.0,
                         max_lr_epoch=1, epochs=2, keep_prob=1.0, lr_decay=0.5, max_tokens=2000),
    }
    default_preset = "ptb-small"
    preset_sources = {
        "ptb-small": "Zaremba, Sutskever & Vinyals 2014, small (test perplexity 114.5)",
        "ptb-medium": "Zaremba et al. 2014, medium (82.7)",
        "ptb-large": "Zaremba et al. 2014, large (78.4)",
        "ptb-tutorial": "TensorFlow's PTB tutorial's own run",
        "ptb-tiny": "for tests: the first 2,000 tokens",
    }
    data_flags = "--max-tokens"
    report_metric = "test_ppl"
    published = {"ptb-small": (120.7, 114.5), "ptb-medium": (86.2, 82.7), "ptb-large": (82.2, 78.4)}

    @classmethod
    def model_shape(cls, config: Any) -> Shape:
        return Shape("tokens", VOCABULARY, VOCABULARY)

    @classmethod
    def data_bytes(cls, config: Any) -> int:
        return TOKENS * BYTES_PER_TOKEN

    @classmethod
    def build(cls, config: Any, data_dir: str | None = None) -> Task:
        return language_model_task("ptb", load_ptb(data_dir), config, reports_perplexity=True)


def language_model_task(name: str, corpus: Any, config: Any, reports_perplexity: bool) -> Task:
    """The windows of a corpus read as one stream per split (a ``bench.data.Corpus``): the
    first ``config.max_tokens`` of each split where it is set, training windows cut from the
    training split, every token of valid and test scored once, the gradient probe on the
    start of the validation split cut like the training data."""
    def split(which: str) -> np.ndarray:
        ids = corpus.split(which)
        return ids[: config.max_tokens] if config.max_tokens else ids

    n_train = check_fits(len(split("train")), config.batch_size, config.num_steps, f"{name} train",
                         "--batch-size or --num-steps")
    n_eval = {which: eval_window_count(len(split(which)), config.eval_batch_size, config.eval_num_steps,
                                       f"{name} {which}") for which in ("valid", "test")}

    def eval_windows(which: str) -> Callable[[], Windows]:
        return lambda: ptb_eval_windows(split(which), config.eval_batch_size, config.eval_num_steps, which)

    return Task(
        name=name,
        shape=Shape("tokens", corpus.vocab_size, corpus.vocab_size),
        train_windows=lambda epoch: ptb_windows(split("train"), config.batch_size, config.num_steps, "train"),
        n_train_windows=n_train,
        eval_windows={which: eval_windows(which) for which in ("valid", "test")},
        n_eval_windows=n_eval,
        per_epoch_splits=("valid",),
        probe_windows=lambda: ptb_windows(split("valid"), config.batch_size, config.num_steps, "valid"),
        words=corpus.words,
        reports_perplexity=reports_perplexity,
    )

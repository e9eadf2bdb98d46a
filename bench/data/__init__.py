"""Files and generators in, NumPy windows out. This package imports no framework."""
from bench.data.batching import epoch_size, ptb_windows
from bench.data.echo import echo_series, echo_windows
from bench.data.ptb import Corpus, load_ptb, resolve_data_dir

__all__ = [
    "Corpus",
    "echo_series",
    "echo_windows",
    "epoch_size",
    "load_ptb",
    "ptb_windows",
    "resolve_data_dir",
]

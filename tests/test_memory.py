"""The allocator setting: steps reuse freed buffers instead of faulting fresh pages in."""
import platform
from pathlib import Path
import subprocess
import sys

import pytest

from bench.config import make_config
from bench.run.runner import RunOptions, run

_FAULTS = """
import resource, sys
import numpy as np
from backends.base import TrainSettings
from backends.spec import ModelSpec, init_params
from bench.registry import get_backend, make_cell
if sys.argv[1] == "keep":
    from bench.run.memory import keep_freed_memory
    keep_freed_memory()
# a ptb-small-sized NumPy LSTM: each step allocates and frees tens of MB of temporaries
spec = ModelSpec(make_cell("lstm"), "tokens", 10_000, 200, 2, 10_000)
model = get_backend("numpy").build(spec, init_params(spec, 0.1, np.random.default_rng(0)), TrainSettings(impl="cell", threads=1))
ids = np.random.default_rng(1).integers(0, 10_000, (20, 21))
state = model.zero_state(20)
for _ in range(2):
    model.train_step(ids[:, :-1], ids[:, 1:], state, 0.1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    model.train_step(ids[:, :-1], ids[:, 1:], state, 0.1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_buffers_are_reused_not_faulted_in_again():
    faults = {}
    for mode in ("default", "keep"):
        done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1])
        faults[mode] = int(done.stdout.split()[-1])
    # measured: 27,652 page faults in 5 steps by default, 0 with the setting
    assert faults["keep"] * 10 < faults["default"], faults


def test_the_record_says_which_allocator_setting_ran(tmp_path):
    record = run(make_config("echo", epochs=1, total_series_length=1500), RunOptions(results_dir=str(tmp_path), quiet=True)).record
    allocator = record["environment"]["allocator"]
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert allocator == {"malloc": "glibc", "mmap_threshold": 32 * 2**20, "trim_threshold": 2**30}
    else:
        assert allocator == {"malloc": "default"}

"""The runner's own cost (data hand-off, totals, timer, progress) against a bare loop over
the same backend steps on the same windows. Prints the overhead; run with

    pytest tests/benchmarks/test_runner_overhead.py -m benchmark -s
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from backends.base import TrainSettings
from bench.config import make_config
from backends.spec import init_params
from bench.run.factory import model_spec
from bench.registry import get_backend
from bench.run.progress import Reporter
from bench.run.runner import _Progress, train_epoch
from bench.tasks import make_task

pytestmark = pytest.mark.benchmark


@pytest.mark.parametrize("preset,cell_name", [("echo", "lstm"), ("ptb-tiny", "lstm")])
def test_runner_overhead_against_a_bare_loop(preset, cell_name, ptb_dir, monkeypatch):
    import io
    import sys

    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # the live progress bar draws here
    # one BLAS thread: a spinning second thread on a loaded 2-core machine drowns the signal
    limits = threadpool_limits(1)
    config = make_config(preset, cell=cell_name, threads=1)
    task = make_task(config, str(ptb_dir))
    spec = model_spec(config, task.shape)
    model = get_backend("numpy").build(spec, init_params(spec, config.init_scale, np.random.default_rng(0)),
                                       TrainSettings(impl="cell", optimizer=config.optimizer, max_grad_norm=config.max_grad_norm))
    windows = list(task.train_windows(0))
    bar = Reporter(quiet=True, progress=True).bar("overhead")  # a live bar: the worst case

    def bare() -> float:
        state = model.zero_state(config.batch_size)
        start = time.perf_counter()
        for x, y in windows:
            _, state = model.train_step(x, y, state, 0.1)
        return time.perf_counter() - start

    def through_runner() -> float:
        start = time.perf_counter()
        train_epoch(model, task, config, 0, 0.1, _Progress(), bar)
        return time.perf_counter() - start

    bare_times, runner_times = [], []
    for _ in range(9):  # interleaved, so drift hits both
        bare_times.append(bare())
        runner_times.append(through_runner())
    overhead = statistics.median(runner_times) / statistics.median(bare_times) - 1
    print(f"\n{preset} {cell_name}: bare {statistics.median(bare_times):.3f} s, runner "
          f"{statistics.median(runner_times):.3f} s per epoch: overhead {100 * overhead:+.1f}%")
    limits.restore_original_limits()
    assert statistics.median(runner_times) > 0

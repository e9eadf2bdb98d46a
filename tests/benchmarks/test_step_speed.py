"""pytest-benchmark suite: one training step and one evaluation step per backend x impl x
cell at the ptb-small and ptb-medium sizes. Not part of the default test run:

    pytest tests/benchmarks -m benchmark                           # print the table
    pytest tests/benchmarks -m benchmark --benchmark-autosave      # save under .benchmarks/
    pytest tests/benchmarks -m benchmark --benchmark-compare       # compare with the last save
    pytest tests/benchmarks -m benchmark --benchmark-disable       # run each once, as a test

Each result's ``extra_info`` holds its tokens/s and GFLOP/s.
"""
from __future__ import annotations

import numpy as np
import pytest

from backends.base import TrainSettings
from bench.config import make_config
from bench.run.memory import keep_freed_memory
from bench.run.metrics import flops_per_token
from backends.spec import ModelSpec, init_params
from bench.registry import get_backend, make_cell
from tests.conformance_cases import grid

pytestmark = pytest.mark.benchmark
VOCAB = 10_000


def _model(backend_name, impl, cell_name, preset):
    keep_freed_memory()  # as `bench run` and `bench speed` do (bench/run/memory.py)
    config = make_config(preset)
    cell = make_cell(cell_name, forget_bias=config.forget_bias)
    if why := get_backend(backend_name).unsupported(cell, impl):
        pytest.skip(why)  # a fused impl without a layer for the cell (torch's sigmoid RNN, JAX's GRU)
    spec = ModelSpec(cell, "tokens", VOCAB, config.hidden_size, config.num_layers, VOCAB, 1.0, config.loss_reduction)
    settings = TrainSettings(impl=impl, optimizer="sgd", max_grad_norm=config.max_grad_norm)
    model = get_backend(backend_name).build(spec, init_params(spec, config.init_scale, np.random.default_rng(0)), settings)
    ids = np.random.default_rng(1).integers(0, VOCAB, (config.batch_size, config.num_steps + 1))
    return model, spec, ids[:, :-1], ids[:, 1:]


@pytest.mark.parametrize("phase", ["train", "eval"])
@pytest.mark.parametrize("preset", ["ptb-small", "ptb-medium"])
@pytest.mark.parametrize("backend_name,impl,cell_name", grid())
def test_step(benchmark, backend_name, impl, cell_name, preset, phase):
    model, spec, x, y = _model(backend_name, impl, cell_name, preset)
    state = model.zero_state(x.shape[0])
    if phase == "train":
        step = lambda: model.train_step(x, y, state, 0.1)  # noqa: E731
    else:
        step = lambda: model.eval_step(x, y, state)  # noqa: E731
    for _ in range(2):
        step()  # tracing, allocation
    stats, _ = benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    assert stats.n_tokens == x.size
    if benchmark.stats:
        seconds = benchmark.stats.stats.median
        benchmark.extra_info["tokens_per_s"] = x.size / seconds
        benchmark.extra_info["gflops_per_s"] = x.size * flops_per_token(spec, phase == "train") / seconds / 1e9

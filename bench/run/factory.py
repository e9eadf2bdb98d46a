"""From a run's settings to a model: the one place that turns a :class:`~bench.config.Config`
into a model spec, the train settings and initial weights, and asks the backend to build
it. ``bench run`` and ``bench speed`` both build through here, so a model measured for speed
is the model that trains."""
from __future__ import annotations

import os

from typing import Any

from backends.base import Model, TrainSettings
from backends.spec import ModelSpec, init_params
from bench.config import Config
from bench.registry import get_backend, make_cell
from bench.tasks import SEED_INIT, Shape, rng_for


def model_spec(config: Config, shape: Shape, cell: Any = None) -> ModelSpec:
    """The function the run's model computes, on data of this shape (``cell``: the run's
    cell, already built from its options; built here when not given)."""
    cell = cell if cell is not None else make_cell(config.cell, **dict(config.cell_options))
    return ModelSpec(cell, shape.input_kind, shape.vocab_size, config.hidden_size, config.num_layers, shape.n_classes,
                     config.keep_prob, config.loss_reduction, shape.head, shape.scored_steps)


def train_settings(config: Config) -> TrainSettings:
    """How the model is run and updated (``config.impl`` already resolved)."""
    return TrainSettings(
        impl=config.impl, optimizer=config.optimizer, max_grad_norm=config.max_grad_norm,
        adagrad_initial_accumulator=config.adagrad_initial_accumulator, dtype=config.dtype,
        device=config.device, threads=config.threads, seed=config.seed,
    )


def build_model(config: Config, spec: ModelSpec, backend: Any = None, settings: TrainSettings | None = None) -> Model:
    """The backend's model of ``spec``, from the initial weights the seed draws (``backend``
    and ``settings``: the run's, already resolved; resolved here when not given)."""
    params = init_params(spec, config.init_scale, rng_for(config.seed, SEED_INIT))
    backend = backend if backend is not None else get_backend(config.backend)
    if config.impl is None:  # a config not resolved by a run (tests, scripts): the backend's default
        config = config.replace(impl=backend.default_impl)
    return backend.build(spec, params, settings if settings is not None else train_settings(config))


def limit_thread_pools(threads: int | None) -> int:
    """Limit NumPy's BLAS pool (backends set their own framework's pools); returns the count."""
    from threadpoolctl import threadpool_limits

    count = threads or os.cpu_count() or 1
    threadpool_limits(limits=count)
    return count

"""A run's settings resolved once: the checked :class:`~bench.config.Config` (its impl
resolved), the backend class, the cell built from its options, the task class and the
train settings. :func:`bench.run.runner.run` resolves one at its start and every step of
the set-up (memory estimate, model spec, model, record) reads it, so no later step looks a
name up again or checks a setting a second time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends.base import Backend, Model, TrainSettings
from backends.spec import ModelSpec
from bench.config import Config, validate
from bench.errors import BenchError
from bench.registry import get_backend, get_task_class, make_cell, require_available
from bench.run.factory import build_model, model_spec, train_settings
from bench.tasks import Shape, Task, TaskSpec
from cells.base import CellSpec


@dataclass(frozen=True)
class RunPlan:
    config: Config
    backend: type[Backend]
    cell: CellSpec
    task: type[TaskSpec]
    settings: TrainSettings

    @classmethod
    def resolve(cls, config: Config) -> "RunPlan":
        """Check ``config`` and resolve what it names; a BenchError (one line) for settings
        that do not fit together, a backend that cannot run here, or an impl that cannot run
        the cell. Nothing is built or written."""
        validate(config)
        backend = get_backend(config.backend)
        config = config.replace(impl=require_available(backend, config.impl))
        cell = make_cell(config.cell, **dict(config.cell_options))
        if why := backend.unsupported(cell, config.impl):
            raise BenchError(why)
        return cls(config, backend, cell, get_task_class(config.task), train_settings(config))

    def build_task(self, data_dir: str | None) -> Task:
        """The run's windows (``data_dir``: where a corpus lies, if it needs one)."""
        return self.task.build(self.config, data_dir)

    def spec(self, shape: Shape) -> ModelSpec:
        return model_spec(self.config, shape, self.cell)

    def build_model(self, spec: ModelSpec) -> Model:
        return build_model(self.config, spec, self.backend, self.settings)

    def declarations_args(self) -> dict[str, Any]:
        """What :func:`bench.declarations.declarations` would otherwise look up."""
        return {"task": self.task, "cell": type(self.cell)}

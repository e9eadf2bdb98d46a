"""What a run's record declares of its task, cell and preset, so that a report can read the
record alone: no registry, no installed plugin, no task or cell named in the report's code.

A run writes these at its start (``record["declared"]``, schema 5); the report's
:mod:`bench.report.legacy` computes the same for a record written before, while the task
and cell it names are installed. Each entry says what the report would otherwise have to
ask the task or cell:

- ``main_metric``: the task's headline column (``TaskSpec.report_metric``: ``test_ppl``,
  ``accuracy``, ``loss_vs_baseline``, ``test_loss``; None: the report's rule, the loss over
  the memoryless baseline where there is one);
- ``reports_perplexity``: whether the task's loss is a log-likelihood per token, so that
  perplexity is its natural scale (PTB);
- ``derived_settings``: the settings the task fixes from the others (a sequence task's
  window length follows its lag), left out of a sweep's configuration;
- ``task_options`` and ``cell_options``: the names of the task's and the cell's own
  settings (a cell's options make another cell to compare, not another configuration);
- ``preset_settings``: every setting of the preset the run started from, to say how the
  run's configuration differs from it; ``preset_cell_options``: the run's cell's options as
  that preset gives them (their defaults where it says nothing);
- ``published``: the published experiment the run repeats (``{preset, valid, test}``: the
  published perplexities of that preset's LSTM; null where it repeats none).
"""
from __future__ import annotations

from typing import Any

from bench.config import Config, default_preset, make_config, presets, published_perplexity, published_preset
from bench.registry import declared_options, get_cell_class, get_task_class



def published(config: dict[str, Any]) -> dict[str, Any] | None:
    """The published experiment ``config`` repeats, with its perplexities (None: none)."""
    preset = published_preset(config)
    numbers = published_perplexity(preset) if preset else None
    return {"preset": preset, "valid": numbers[0], "test": numbers[1]} if numbers else None


def declarations(config: dict[str, Any], preset: str | None, reports_perplexity: bool,
                 task: Any = None, cell: Any = None) -> dict[str, Any]:
    """The declarations of a run of ``config`` (its settings as a record keeps them) started
    from ``preset`` (None, a run resumed from a checkpoint that named none: the task's default
    preset, from which the description then says what differs); ``reports_perplexity`` is
    what its built task says (``Task``); ``task`` and ``cell``: their classes where the
    caller has resolved them (looked up by name when not given)."""
    task = task if task is not None else get_task_class(config["task"])
    cell = cell if cell is not None else get_cell_class(config["cell"])
    preset = preset or default_preset(config["task"])
    given = presets()[preset]
    # the preset's own cell may be another: no cell's options belong to the configuration
    cell_option_names = {name for name, d in declared_options().items() if any(k == "cell" for k, _ in d.owners)}
    return {
        "main_metric": task.report_metric,
        "reports_perplexity": bool(reports_perplexity),
        "derived_settings": sorted(task.derived(dict(config))),
        "task_options": [option.name for option in task.options],
        "cell_options": [option.name for option in cell.options],
        "preset": preset,
        "preset_settings": {k: v for k, v in make_config(preset).as_dict().items() if k not in cell_option_names},
        "preset_cell_options": {option.name: given.get(option.name, option.default) for option in cell.options},
        "published": published(config),
    }


def run_declarations(config: Config, preset: str | None, reports_perplexity: bool,
                     task: Any = None, cell: Any = None) -> dict[str, Any]:
    """:func:`declarations` of a run about to start."""
    return declarations(config.as_dict(), preset, reports_perplexity, task, cell)

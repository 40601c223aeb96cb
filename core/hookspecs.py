"""The pluggy hooks that every plugin, built-in or third-party, implements."""
from __future__ import annotations

import pluggy

from transferlab.specs import BackboneSpec, StrategySpec, TaskSpec

PROJECT = "transferlab"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backbones() -> list[BackboneSpec]:
    """Return the backbones (feature extractors) this plugin provides."""


@hookspec
def register_tasks() -> list[TaskSpec]:
    """Return the tasks (labelled datasets with their head and metric) this plugin provides."""


@hookspec
def register_strategies() -> list[StrategySpec]:
    """Return the training strategies (lists of phases) this plugin provides."""


#: hook name -> the spec class each returned item must be
HOOK_RESULT_TYPES: dict[str, type] = {
    "register_backbones": BackboneSpec,
    "register_tasks": TaskSpec,
    "register_strategies": StrategySpec,
}

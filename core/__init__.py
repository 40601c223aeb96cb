"""transferlab: compare transfer-learning strategies and backbones with real runs.

The public API for plugin authors lives here. Importing it never imports TensorFlow.
"""
from __future__ import annotations

__version__ = "0.1.0"

from transferlab.errors import (  # noqa: E402
    DatasetUnavailableError,
    TransferlabError,
    UserError,
    WeightsError,
)
from transferlab.hookspecs import hookimpl  # noqa: E402
from transferlab.specs import (  # noqa: E402
    BackboneSpec,
    PhaseSpec,
    StrategySpec,
    TaskSpec,
    WeightSourceSpec,
)

__all__ = [
    "BackboneSpec",
    "DatasetUnavailableError",
    "PhaseSpec",
    "StrategySpec",
    "TaskSpec",
    "TransferlabError",
    "UserError",
    "WeightSourceSpec",
    "WeightsError",
    "hookimpl",
    "__version__",
]

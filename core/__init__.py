"""transferlab: compare transfer-learning strategies and backbones with real runs.

The public API for plugin authors lives here (defined in :mod:`transferlab.api`): the specs, errors
and ``hookimpl`` are imported at once, every other public name on first use, so importing
transferlab never imports TensorFlow.
"""
from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any  # noqa: E402

from transferlab import api  # noqa: E402
from transferlab.api import (  # noqa: E402
    BackboneSpec,
    DatasetUnavailableError,
    PhaseSpec,
    SpecError,
    StrategySpec,
    TaskSpec,
    TransferlabError,
    UserError,
    WeightSourceSpec,
    WeightsError,
    hookimpl,
)

if TYPE_CHECKING:  # pragma: no cover
    from transferlab.api import *  # noqa: F401,F403

__all__ = [*api.__all__, "__version__"]


def __getattr__(name: str) -> Any:
    # The lazy names of transferlab.api; anything else raises AttributeError, which lets
    # `from transferlab import data` fall through to importing the submodule.
    if name not in api.LAZY:
        raise AttributeError(f"module 'transferlab' has no attribute {name!r}")
    value = api.load_lazy(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

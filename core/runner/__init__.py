"""Running one job: build the model, train each phase, verify what changed, evaluate, report.

- :mod:`~transferlab.runner.runner`: the :class:`Runner` and its :class:`RunResult`;
- :mod:`~transferlab.runner.freezing`: which units train in a phase, and the freeze check;
- :mod:`~transferlab.runner.optimizers`: per-unit learning rates (layer-wise decay), exact for Adam;
- :mod:`~transferlab.runner.budget`: the step budget and early stopping (that restores the best weights);
- :mod:`~transferlab.runner.checkpoints`: per-phase checkpoints and epoch backups (every 10 s of training), for resume;
- :mod:`~transferlab.runner.assembly`: the backbone with its weights, inputs, feature map, augmentation;
- :mod:`~transferlab.runner.callbacks`: epoch log, live progress, NaN guard.
"""
from __future__ import annotations

from transferlab.runner.assembly import (
    augmentation_layers, feature_map, input_shape, load_weights_strictly, model_inputs,
)
from transferlab.runner.checkpoints import checkpoint_dir, has_checkpoint
from transferlab.runner.budget import phase_epochs
from transferlab.runner.freezing import (
    PhaseCheck, check_phase, count_params, expected_to_change, freeze_for_phase, model_weights, set_trainable,
    snapshot, unit_lr_scales, verify_phase,
)
from transferlab.runner.optimizers import make_optimizer
from transferlab.runner.runner import Runner, RunResult

__all__ = [
    "PhaseCheck", "Runner", "RunResult", "augmentation_layers", "check_phase", "checkpoint_dir", "count_params",
    "expected_to_change", "feature_map", "freeze_for_phase", "has_checkpoint", "input_shape", "load_weights_strictly",
    "make_optimizer", "model_inputs", "model_weights", "phase_epochs", "set_trainable", "snapshot", "unit_lr_scales",
    "verify_phase",
]

"""Freezing and its verification: which units of the base train in a phase, at which learning-rate scale,
and a check after every phase that exactly the weights meant to train changed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from transferlab.errors import FreezeViolationError, SpecError
from transferlab.specs import PhaseSpec


def _is_seed_state(variable: Any) -> bool:
    # Keras 3 keeps random-layer RNG state (Dropout, augmentation) as variables that change every
    # call; they are not model weights and take no part in the freeze check or the counts.
    return "seed_generator" in variable.path


def model_weights(model: Any) -> list[Any]:
    """The model's weights without RNG state."""
    return [v for v in model.weights if not _is_seed_state(v)]


def count_params(variables: list[Any]) -> int:
    """Total number of scalars in a list of variables."""
    return int(sum(int(np.prod(v.shape)) for v in variables))


def snapshot(model: Any) -> dict[str, np.ndarray]:
    """A copy of every weight, by variable path."""
    return {v.path: np.array(v.numpy(), copy=True) for v in model_weights(model)}


def all_layers(model: Any) -> list[Any]:
    """Every layer of ``model``, nested models' layers included (depth first)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(all_layers(layer))
    return out


def _with_sublayers(unit: Any) -> list[Any]:
    return [unit, *all_layers(unit)] if hasattr(unit, "layers") else [unit]


def expected_to_change(model: Any, batchnorm: str) -> set[str]:
    """Paths of the weights a phase is meant to change.

    The trainable weights, and the moving statistics of trainable BatchNorm layers when the phase runs
    BatchNorm in training mode (scratch). Everything else must stay bit-identical.
    """
    import keras

    expected = {v.path for v in model.trainable_weights}
    if batchnorm == "train":
        for layer in all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
                expected.update(v.path for v in layer.non_trainable_weights)
    return expected


def _layer_of(path: str) -> str:
    return path.rsplit("/", 1)[0]


#: A trainable weight that did not change and whose gradient stays below this (largest magnitude over a few
#: training batches) received no learning signal; one with a larger gradient that did not change is a freeze
#: violation (it was meant to train and something kept it still). Measured, for the margin on both sides:
#: EfficientNet-Lite0 from random init, its BatchNorm in inference mode on untrained statistics (mean 0,
#: variance 1), passes features of 1e-11 and gradients of 1e-14 to 5e-11 back to its base; the trained layers
#: of the test backbones see 1e-4 to 1e-1.
VANISHING_GRADIENT = 1e-8

#: ``gradients(paths) -> {path: largest |gradient|}`` over a few training batches, for weights that did not move
GradientProbe = Callable[[set[str]], dict[str, float]]


@dataclass(frozen=True)
class PhaseCheck:
    """What the check after a phase found: the scalars in weights that changed, and the layers whose weights
    were meant to train but received no gradient (``no_signal_layers``; empty when every one moved)."""

    changed_params: int
    no_signal_layers: tuple[str, ...] = ()


def check_phase(model: Any, before: dict[str, np.ndarray], expected: set[str], phase: str,
                gradients: GradientProbe | None = None) -> PhaseCheck:
    """Fail unless exactly the weights meant to train changed (BatchNorm statistics included), telling a
    trainable weight that received no gradient from one kept still.

    A frozen weight that changed is always a :class:`FreezeViolationError`. A weight meant to train that did
    not change is one too, unless ``gradients`` measures its gradient below :data:`VANISHING_GRADIENT`: then
    no learning signal reached it (a base whose BatchNorm runs in inference mode on untrained statistics), the
    layer is listed in ``no_signal_layers`` and the phase passes.
    """
    after = snapshot(model)
    changed = {p for p, value in after.items() if p in before and not np.array_equal(value, before[p])}
    leaked = sorted(changed - expected)
    stuck = sorted(p for p in expected - changed if p in after)
    peaks = gradients(set(stuck)) if stuck and gradients is not None else {}
    silent = {p for p in stuck if p in peaks and peaks[p] < VANISHING_GRADIENT}
    kept_still = [p for p in stuck if p not in silent]
    if leaked or kept_still:
        parts = []
        if leaked:
            parts.append(f"frozen weights changed in layers {sorted({_layer_of(p) for p in leaked})}")
        if kept_still:
            part = f"weights meant to train did not change in layers {sorted({_layer_of(p) for p in kept_still})}"
            measured = [peaks[p] for p in kept_still if p in peaks]
            if measured:
                part += f" although their gradients reached {max(measured):.2g}"
            parts.append(part)
        raise FreezeViolationError(f"Freeze check failed after phase {phase!r}: " + "; ".join(parts) + ".")
    return PhaseCheck(int(sum(after[p].size for p in changed)), tuple(sorted({_layer_of(p) for p in silent})))


def verify_phase(model: Any, before: dict[str, np.ndarray], expected: set[str], phase: str) -> int:
    """Fail unless exactly the weights meant to train changed (BatchNorm statistics included); no gradient is
    measured, so a weight that received none fails too (:func:`check_phase` tells the two apart).

    Returns how many scalars live in the weights that changed, for the dashboard's freeze check.
    """
    return check_phase(model, before, expected, phase).changed_params


def max_gradients(model: Any, dataset: Any, paths: set[str], batches: int = 2) -> dict[str, float]:
    """The largest gradient magnitude of the loss of compiled ``model`` over the first ``batches`` batches of
    ``dataset``, for each trainable weight whose path is in ``paths`` (0.0 for a weight the loss does not reach).

    The model leaves as it came: the forward passes run in training mode (the gradients a phase saw), which
    moves the statistics of BatchNorm layers that train and advances the RNG state of Dropout and augmentation,
    so every non-trainable variable is put back afterwards; the probe runs after the freeze check's snapshot,
    and the model it leaves is the one checkpointed and tested."""
    import tensorflow as tf

    wanted = [v for v in model.trainable_variables if v.path in paths]
    peaks = {v.path: 0.0 for v in wanted}
    if not wanted:
        return peaks
    kept = [(v, np.array(v.numpy(), copy=True)) for v in model.variables if not v.trainable]  # seed states too
    try:
        for batch in dataset.take(batches):
            x, y = batch[0], batch[1]  # (inputs, targets[, sample weights])
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True), training=True)
            for variable, gradient in zip(wanted, tape.gradient(loss, wanted)):
                if gradient is not None:
                    peaks[variable.path] = max(peaks[variable.path], float(tf.reduce_max(tf.abs(gradient))))
    finally:
        for variable, value in kept:
            variable.assign(value)
    return peaks


def base_units(base: Any, blocks: list[Any] | None = None) -> list[Any]:
    """The units a phase selects from: the backbone's ``blocks`` when it names them, else the base's layers."""
    return list(blocks) if blocks is not None else list(base.layers)


def select_units(phase: PhaseSpec, units: list[Any], top_layers: int) -> list[Any]:
    """The units of the base that train in ``phase`` (bottom to top), from its ``train`` field."""
    train = phase.train
    if isinstance(train, str):
        if train == "head":
            return []
        if train == "all":
            return list(units)
        return list(units[max(0, len(units) - top_layers):])  # "top": the job's fine_tune_layers, as counted always
    if isinstance(train, int):
        weighted = [u for u in units if u.weights]
        return weighted[max(0, len(weighted) - train):]
    chosen = list(train(list(units)))
    ids = {id(u) for u in units}
    if any(id(u) not in ids for u in chosen):
        raise SpecError(f"Phase {phase.name!r}: its train callable returned something that is not one of the "
                        "base's units; return a selection of the list it is given.")
    picked = {id(u) for u in chosen}
    return [u for u in units if id(u) in picked]


def set_trainable(base: Any, training_units: list[Any], batchnorm: str = "inference") -> None:
    """Freeze the base except ``training_units`` (and their sublayers).

    With ``batchnorm="inference"`` every BatchNormalization layer of the base stays frozen. Calling the
    base with ``training=False`` is not enough: in Keras 3 a trainable BatchNorm nested in a functional
    model still updates its moving statistics during ``fit`` (the freeze check caught this), while a
    BatchNorm whose ``trainable`` is False always runs in inference mode.
    """
    import keras

    # Every layer is set explicitly: in Keras 3, `model.trainable = True` does not undo a `False` set
    # earlier on a sublayer (a top-k phase followed by a full phase would keep the bottom frozen).
    base.trainable = bool(training_units)
    for layer in all_layers(base):
        layer.trainable = False
    for unit in training_units:
        for layer in _with_sublayers(unit):
            layer.trainable = True
    if batchnorm == "inference":
        for layer in all_layers(base):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def freeze_for_phase(base: Any, phase: PhaseSpec, top_layers: int, batchnorm: str,
                     blocks: list[Any] | None = None) -> list[Any]:
    """Select the units ``phase`` trains and freeze everything else; returns those units (bottom to top)."""
    units = select_units(phase, base_units(base, blocks), top_layers)
    set_trainable(base, units, batchnorm)
    return units


def unit_lr_scales(training_units: list[Any], decay: float) -> dict[str, float]:
    """Learning-rate scale per variable path under layer-wise decay.

    The top unit with trainable weights gets scale 1, each one below it ``decay`` times the one above;
    units with nothing to train take no step. Variables not listed (the head) keep scale 1.
    """
    scales: dict[str, float] = {}
    if decay == 1:
        return scales
    depth = 0
    for unit in reversed(training_units):
        variables = unit.trainable_weights
        if not variables:
            continue
        for variable in variables:
            scales[variable.path] = decay ** depth
        depth += 1
    return scales

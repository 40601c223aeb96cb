"""Head phases on cached features, trained once per identical prefix.

A phase that trains only the head over a frozen base in inference mode, without augmentation, computes the
same function of the same inputs whether the base runs inside the model every epoch or once per image: the
runner then trains the head on the cached features (:mod:`transferlab.features`, the same ones ``rank``,
``frozen_features`` and the transferability score use) and loads it into the full model for the next phase.
Validation then runs on features too, so a 5-per-class head phase no longer pushes 500 validation images
through the base each epoch.

Strategies that start with the same head phase (``lp_ft``, ``fine_tune_top_k``, ``discriminative_lr``,
``gradual_unfreeze`` of one backbone, data, subset and seed) train that identical head: the first run files
its result under a content key (:func:`head_key`: everything that decides the head's training, its initial
weights included) and every later one loads it, across sweeps and restarts. Entries are written atomically
and hash-checked before they are read (:class:`~transferlab.safe_io.VerifiedFile`); one that fails its check
is trained again. The switch ``TRANSFERLAB_REUSE=off`` turns both off, and with them the thinned validation
before a phase's step floor (:func:`transferlab.runner.budget.validation_epochs`): the runner of before, for
benchmark baselines.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.safe_io import VerifiedFile

#: bump when what a cached head means changes (its key's inputs or its file layout)
HEAD_CACHE_VERSION = 1


def reuse_enabled() -> bool:
    """Whether head phases may train on cached features and be shared (``TRANSFERLAB_REUSE`` is not ``off``)."""
    return os.environ.get("TRANSFERLAB_REUSE", "on").strip().lower() not in ("off", "0", "false", "no")


def on_features_ok(job: Any, head: Any, strategy: Any, phase: Any, index: int) -> bool:
    """Whether phase ``index`` of ``strategy`` can train on cached features: the first phase, head only, the base
    called in inference mode for good, no augmentation, pooled features (not a detection map), float32."""
    return (reuse_enabled() and index == 0 and not phase.trains_base and strategy.batchnorm_always_inference
            and not job.augment and head.feature != "map" and not job.mixed_precision)


def head_variables(model: Any, base: Any) -> list[Any]:
    """The full model's variables outside ``base``, in the model's order: the head's weights, RNG state included
    (a Dropout's seed state decides its masks, so copying it keeps the masks the end-to-end phase would draw)."""
    inside = {id(v) for v in base.variables}
    return [v for v in model.variables if id(v) not in inside]  # `variables`: `weights` leaves out seed states


def same_layout(a: list[Any], b: list[Any]) -> bool:
    """Whether two variable lists hold the same shapes in the same order."""
    return len(a) == len(b) and all(tuple(x.shape) == tuple(y.shape) for x, y in zip(a, b))


def _digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(np.asarray(array))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _layer_configs(model: Any) -> list[Any]:
    """Each layer's class and config without its name (auto-numbered names differ between processes)."""
    out = []
    for layer in model.layers:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        out.append([type(layer).__module__ + "." + type(layer).__qualname__, config])
    return out


def head_key(*, train_features_key: str, val_features_key: str, y_train: Any, y_val: Any, head_model: Any,
             initial: list[Any], head: Any, job: Any, num_classes: int, epochs: int, floor: int, learning_rate: float,
             phase: Any, class_weight: dict | None, compile_args: dict[str, Any], scale: float | None,
             base_weights_sha256: str | None = None) -> str:
    """The content key of one head phase: everything its result depends on.

    The features' keys (backbone, weights and their sha256, task, data version, subset, input size,
    preprocessing), the training and validation targets (shuffled-label controls differ), the seed (it orders
    the batches), batch size, class weights, epochs and step floor, early stopping, learning rate, optimizer and
    weight decay, the head's layers and initial weights (their init depends on the seed and on what was built
    before them), its loss and metrics, the feature scale, the sha256 of the weights file the base loaded (a
    ``run:`` source names no sha in the job) and the TensorFlow and Keras versions. Any part that changes gives
    another key: no reuse.
    """
    from transferlab.runner.runner import package_versions

    payload = dict(
        version=HEAD_CACHE_VERSION, train=train_features_key, val=val_features_key,
        y_train=_digest(y_train), y_val=_digest(y_val), seed=int(job.seed), batch_size=int(job.batch_size),
        class_weight=sorted((int(k), float(v)) for k, v in class_weight.items()) if class_weight else None,
        epochs=int(epochs), floor=int(floor), early_stopping=int(job.early_stopping), learning_rate=float(learning_rate),
        optimizer=phase.optimizer, weight_decay=phase.weight_decay, num_classes=int(num_classes),
        head=type(head).__module__ + "." + type(head).__qualname__, val_metric=getattr(head, "val_metric", None),
        layers=_layer_configs(head_model), initial=_digest(*initial),
        compile={k: _describe(v) for k, v in sorted(compile_args.items())}, scale=scale,
        base_weights=base_weights_sha256,
        frameworks=package_versions(("tensorflow", "keras")),
    )
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _describe(value: Any) -> Any:
    """A stable description of a compile argument: strings as they are, objects by class and config."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items())}
    config = value.get_config() if hasattr(value, "get_config") else None
    return [type(value).__module__ + "." + type(value).__qualname__, config]


@dataclass(frozen=True)
class CachedHead:
    """A head phase's result: its weights (in :func:`head_variables` order), the phase record, the epochs it
    logged (``[epoch, metrics]``) and the job that trained it."""

    arrays: list[np.ndarray]
    record: dict[str, Any]
    epochs: list[list[Any]]
    trained_by: str


def _files(key: str) -> tuple[VerifiedFile, VerifiedFile]:
    from transferlab.paths import cache_dir

    folder = cache_dir("heads")
    return VerifiedFile(folder / f"{key}.npz"), VerifiedFile(folder / f"{key}.json")


def load_head(key: str) -> CachedHead | None:
    """The cached head phase filed under ``key``, or None when absent, unreadable or failing its hash check."""
    from transferlab.progress import say

    weights, meta = _files(key)
    states = (weights.status(), meta.status())
    if "altered" in states:
        say(f"Cached head {key[:12]} failed its hash check; training it again.")
    if states != ("ok", "ok"):
        return None
    try:
        info = json.loads(meta.path.read_text())
        # the record names the weights it was written with: a pair from two runs racing is trained again
        if info.get("version") != HEAD_CACHE_VERSION or not weights.check(info["weights_sha256"]):
            return None
        with np.load(weights.path, allow_pickle=False) as npz:
            arrays = [npz[f"a{i}"] for i in range(int(info["count"]))]
        return CachedHead(arrays, dict(info["record"]), list(info["epochs"]), str(info["trained_by"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_head(key: str, arrays: list[np.ndarray], record: dict[str, Any], epochs: list[list[Any]],
               trained_by: str) -> None:
    """File a head phase's result under ``key``: the weights, then the record naming their sha256 (each atomic)."""
    weights, meta = _files(key)

    def save_weights(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{f"a{i}": np.asarray(a) for i, a in enumerate(arrays)})

    digest = weights.write(save_weights)
    info = dict(version=HEAD_CACHE_VERSION, count=len(arrays), record=record, epochs=epochs, trained_by=trained_by,
                weights_sha256=digest)
    meta.write(lambda tmp: tmp.write_text(json.dumps(info, default=float)))

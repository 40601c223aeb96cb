"""Cached backbone features for frozen-base strategies.

Features are computed once per (backbone, weights, task, subset, input size, preprocessing) and reused
by every head, epoch, seed and learning rate that shares them. The cache survives restarts, is keyed
by content, and a file that fails its hash check is recomputed rather than loaded.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.data import TaskData, indices_hash, make_dataset
from transferlab.safe_io import VerifiedFile

FEATURE_CACHE_VERSION = 1


def feature_key(backbone_name: str, weights: str, weights_sha256: str | None, task: str, data: TaskData,
                indices: np.ndarray, input_size: int, preprocessing: str, seed: int = 0,
                mixed_precision: bool = False) -> str:
    """The content key of one feature matrix.

    A randomly initialised base differs per seed, so its features are keyed by the seed too; pretrained
    bases are shared by every seed. Mixed precision computes different features, so it is part of the key.
    """
    payload = dict(
        version=FEATURE_CACHE_VERSION, backbone=backbone_name, weights=weights, weights_sha256=weights_sha256,
        task=task, provenance=data.provenance, n_images=int(len(data)), indices=indices_hash(indices),
        input_size=int(input_size), preprocessing=preprocessing,
        init_seed=int(seed) if weights == "none" else None, mixed_precision=bool(mixed_precision),
    )
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _cache_file(key: str) -> VerifiedFile:
    from transferlab.paths import cache_dir

    return VerifiedFile(cache_dir("features") / f"{key}.npy")


def load_cached(key: str) -> np.ndarray | None:
    """The cached features for ``key``, or None when absent or failing their hash check."""
    from transferlab.progress import say

    cache = _cache_file(key)
    status = cache.status()
    if status == "altered":
        say(f"Feature cache {cache.path.name} failed its hash check; recomputing it.")
    if status != "ok":
        return None
    return np.load(cache.path, allow_pickle=False)


def store_cached(key: str, features: np.ndarray) -> None:
    """Write features atomically, then their hash."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, features, allow_pickle=False)

    _cache_file(key).write(save)


def job_feature_key(backbone: Any, job: Any, data: TaskData, indices: np.ndarray) -> str:
    """The key :func:`cached_features` files ``job``'s features of ``indices`` under. ``job`` is a
    :class:`~transferlab.jobs.JobSpec` or anything with its ``task``, ``weights``, ``weights_sha256``,
    ``input_size``, ``seed`` and ``mixed_precision`` (``transferlab rank`` asks with such a request, and looks
    the key up before building a model, so a warm cache builds none)."""
    return feature_key(backbone.name, job.weights, job.weights_sha256, job.task, data, indices, job.input_size,
                       backbone.preprocessing, job.seed, job.mixed_precision)


def cached_features(base: Any, backbone: Any, job: Any, data: TaskData, indices: np.ndarray, split: str) -> np.ndarray:
    """Features of the examples at ``indices`` through the frozen ``base``, from the cache when possible."""
    from transferlab.progress import keras_bar_callback

    key = job_feature_key(backbone, job, data, indices)
    hit = load_cached(key)
    if hit is not None and len(hit) == len(indices):
        return hit
    ds = make_dataset(data, indices, data.labels[indices], backbone, job.input_size, 64)
    bar = keras_bar_callback(f"features {backbone.name} · {split}", math.ceil(len(indices) / 64), "batch")
    features = base.predict(ds.map(lambda x, y: x), verbose=0, callbacks=[bar]).astype(np.float32)
    store_cached(key, features)
    return features

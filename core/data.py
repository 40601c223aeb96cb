"""Task data: fixed splits, deterministic training subsets, and tf.data input pipelines.

The test and validation splits depend only on the task (a fixed seed), never on the job's seed or
training-set size. Training subsets are nested: for a given seed, the 20-per-class subset contains the
5-per-class one, so curves over size compare like with like.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from transferlab.errors import UserError

#: Seed of the fixed test/validation split of every task without an official split.
SPLIT_SEED = 1729
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
VAL_MAX_PER_CLASS = 50


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy fields would be ambiguous
class ImageFiles:
    """Images that stay on disk: tf.data decodes them as it streams (the set is never held in memory).

    ``paths``: file paths (str); ``rois``: optional (N, 4) pixel boxes ``x1, y1, x2, y2`` to crop to.
    Files are decoded with :func:`transferlab.image_files.read_image_rgb` (any Pillow format and mode).
    """

    paths: np.ndarray
    rois: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", np.asarray(self.paths, dtype=str))
        if self.rois is not None:
            object.__setattr__(self, "rois", np.asarray(self.rois, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class TaskData:
    """What a task's ``load()`` returns.

    Inputs, one of: ``images``, a uint8 array (N, H, W, C) with C in {1, 3}, or :class:`ImageFiles`
    streamed from disk; ``texts``, a 1-D array of strings (then ``images`` is None).
    ``labels``: int array (N,) in ``range(len(class_names))``; ``test_indices``: the official test split,
    or None for a fixed, seeded, stratified one made by core; ``groups``: optional ids that must not be
    split across test, validation and training (e.g. several images of one skin lesion);
    ``targets``: optional per-example structured targets for non-classification heads (e.g. boxes);
    ``provenance``: where the data came from (files, hashes).
    """

    images: np.ndarray | ImageFiles | None
    labels: np.ndarray
    class_names: tuple[str, ...]
    test_indices: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    texts: np.ndarray | None = None
    groups: np.ndarray | None = None
    targets: list[Any] | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.texts is None):
            raise UserError("Task data needs either images or texts (one of them).")
        if self.texts is not None:
            self.texts = np.asarray(self.texts, dtype=object)
            if self.texts.ndim != 1 or not all(isinstance(t, str) for t in self.texts):
                raise UserError(f"Task texts must be a 1-D sequence of strings. Received: texts.shape={self.texts.shape}")
        elif isinstance(self.images, ImageFiles):
            if self.images.rois is not None and np.shape(self.images.rois) != (len(self.images), 4):
                raise UserError(f"ImageFiles rois must have shape (N, 4). Received: rois.shape={np.shape(self.images.rois)}")
        else:
            if self.images.ndim == 3:
                self.images = self.images[..., None]
            if self.images.ndim != 4 or self.images.shape[-1] not in (1, 3) or self.images.dtype != np.uint8:
                raise UserError(
                    "Task images must be a uint8 array of shape (N, H, W, 1 or 3). "
                    f"Received: images.shape={self.images.shape}, images.dtype={self.images.dtype}"
                )
        self.labels = np.asarray(self.labels).astype(np.int64)
        if len(self.labels) != len(self):
            raise UserError(f"Task has {len(self)} examples but {len(self.labels)} labels.")
        for name in ("groups", "targets"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self):
                raise UserError(f"Task has {len(self)} examples but {len(value)} {name}.")
        present = np.unique(self.labels)
        if len(present) < 2:
            raise UserError(
                f"A task needs examples of at least 2 classes; this one has {len(present)}"
                + (f" ({self.class_names[present[0]]!r})" if len(present) == 1 and present[0] < len(self.class_names) else "")
                + ". Add examples of another class."
            )
        if present.min() < 0 or present.max() >= len(self.class_names):
            raise UserError(
                f"Labels must lie in 0..{len(self.class_names) - 1} (one per class name). "
                f"Received: labels in {present.min()}..{present.max()}"
            )

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.images)

    @property
    def modality(self) -> str:
        """``text`` or ``image``."""
        return "text" if self.texts is not None else "image"


#: task name -> ((data version, location), its data): one version per task is kept, and a task whose data
#: changed (a long-lived dashboard process) is loaded again instead of served from here
_TASK_DATA: dict[str, tuple[tuple[str | None, str | None], TaskData]] = {}
_NOW = object()


def load_task_data(registry: Any, task_name: str, data_version: Any = _NOW) -> TaskData:
    """A task's data, loaded once per process and data version (``TaskSpec.fingerprint``; by default the
    version now). The version goes into ``provenance`` as ``data_version``, so feature-cache keys change
    with the data; data that changed while it was read is refused (:class:`UserError`), never labelled with a
    version it is not."""
    from transferlab.fingerprints import task_data_version

    task = registry.task(task_name)
    version = task_data_version(task) if data_version is _NOW else data_version
    key = (version, task.data)
    cached = _TASK_DATA.get(task_name)
    if cached is None or cached[0] != key:
        data = task.load()
        if not isinstance(data, TaskData):
            raise UserError(f"Task {task_name!r}: load() must return transferlab.data.TaskData. Received: {type(data).__name__}")
        if version is not None:
            # The files may change while load() reads them: data labelled with a version it is not would file
            # features of the new content under the old version's cache key. The walk again is cheap (the
            # bytes' hashes are remembered per file state).
            after = task_data_version(task, fresh=True)
            if after != version:
                raise UserError(data_changed_message(task, version, after))
            data.provenance = {**data.provenance, "data_version": version}
        _TASK_DATA[task_name] = (key, data)
    return _TASK_DATA[task_name][1]


def data_changed_message(task: Any, queued: str | None, now: str | None) -> str:
    """What to say when the data of ``task`` is not the version a job was made for."""
    where = f" ({task.data})" if task.data else ""
    return (f"The data at {task.name}{where} changed since this job was queued (data version {queued}, now "
            f"{now}); run the sweep again to train on the data as it is now.")


def check_jobs_fit_data(registry: Any, jobs: list[Any]) -> None:
    """Fail before anything is stored when a task's data cannot be loaded, changed since its jobs were made
    (their ``data_version``), is too small for the fixed splits, or a job asks for more examples per class
    than its task has. Tasks made from ``--data`` are registered from the jobs as needed."""
    from transferlab.fingerprints import task_data_version
    from transferlab.userdata import task_for_job

    needed: dict[str, int] = {}
    versions: dict[str, set[str]] = {}
    for job in jobs:  # every task a job reads, sources included, so missing data is caught here
        task_for_job(registry, job)
        needed[job.task] = max(needed.get(job.task, 0), job.examples_per_class or 0)
        if job.data_version is not None:
            versions.setdefault(job.task, set()).add(job.data_version)
    for task_name, most in needed.items():
        task = registry.task(task_name)
        now = task_data_version(task, fresh=True) if task_name in versions else _NOW
        stale = sorted(versions.get(task_name, set()) - {now})
        if stale:
            raise UserError(data_changed_message(task, stale[0], now))
        data = load_task_data(registry, task_name, now)
        splits = make_splits(data)
        available = max_examples_per_class(data.labels, splits.pool)
        if most > available:
            raise UserError(
                f"Task {task_name!r} has only {available} labelled training examples in its smallest class (after "
                f"holding out the test and validation splits). Received: examples_per_class={most}. "
                "Ask for at most that, or use --fraction."
            )


@dataclass(frozen=True)
class Splits:
    """Indices into the task's arrays: fixed test and validation splits, and the training pool."""

    test: np.ndarray
    val: np.ndarray
    pool: np.ndarray
    method: str


def _stratified_take(indices: np.ndarray, labels: np.ndarray, fraction: float, cap: int | None, rng) -> np.ndarray:
    taken = []
    for cls in np.unique(labels[indices]):
        members = indices[labels[indices] == cls]
        n = max(1, int(round(fraction * len(members))))
        if cap is not None:
            n = min(n, cap)
        n = min(n, len(members) - 1) if len(members) > 1 else 0
        taken.append(rng.permutation(members)[:n])
    return np.sort(np.concatenate(taken)) if taken else np.array([], dtype=np.int64)


def _grouped_take(indices: np.ndarray, data: TaskData, fraction: float, cap: int | None, rng) -> np.ndarray:
    """Stratified take of whole groups: a group goes to one side only (labelled by its first example)."""
    groups = data.groups[indices]
    names, first = np.unique(groups, return_index=True)
    group_labels = data.labels[indices[first]]
    taken_groups = _stratified_take(np.arange(len(names)), group_labels, fraction, cap, rng)
    return np.sort(indices[np.isin(groups, names[taken_groups])])


def make_splits(data: TaskData) -> Splits:
    """The fixed test, validation and pool split of a task (same for every job on that task).

    With ``groups`` every group lies wholly in one of test, validation or pool (split by group,
    stratified by the group's label), so near-duplicates never leak from training into evaluation.
    """
    rng = np.random.default_rng(SPLIT_SEED)
    all_idx = np.arange(len(data.labels))
    take = _stratified_take if data.groups is None else (
        lambda idx, labels, fraction, cap, rng: _grouped_take(idx, data, fraction, cap, rng))
    by = "" if data.groups is None else " by group"
    if data.test_indices is not None:
        test = np.sort(np.asarray(data.test_indices, dtype=np.int64))
        method = "official test split; validation: stratified%s, seed %d" % (by, SPLIT_SEED)
    else:
        test = take(all_idx, data.labels, TEST_FRACTION, None, rng)
        method = f"stratified{by} {TEST_FRACTION:.0%} test, seed {SPLIT_SEED}"
    rest = np.setdiff1d(all_idx, test)
    val = take(rest, data.labels, VAL_FRACTION, VAL_MAX_PER_CLASS, rng)
    pool = np.setdiff1d(rest, val)
    splits = Splits(test=test, val=val, pool=pool,
                    method=method + f"; validation {VAL_FRACTION:.0%} (max {VAL_MAX_PER_CLASS}/class)")
    if data.targets is None:  # with structured targets (boxes) labels only stratify; classes need not be split
        _refuse_classes_missing_a_split(data, splits)
    return splits


#: a class needs one example in each of test, validation and training
MIN_EXAMPLES_PER_CLASS = 3


def _refuse_classes_missing_a_split(data: TaskData, splits: Splits) -> None:
    """A class that is absent from test, validation or training cannot be learnt and scored (and would
    still count in macro averages): refuse it, naming the class and how many examples (or groups) it has.
    An official test split is the task's own: only validation and training are checked then."""
    names = [("validation", splits.val), ("training", splits.pool)]
    if data.test_indices is None:
        names.insert(0, ("test", splits.test))
    k = int(data.labels.max()) + 1 if len(data.labels) else 0
    # one count per split, not one pass over the labels per class: thousands of classes stay cheap
    absent = {name: np.bincount(data.labels[idx], minlength=k) == 0 for name, idx in names}
    short = []
    for cls in np.flatnonzero(np.bincount(data.labels, minlength=k)):
        missing = [name for name, _ in names if absent[name][cls]]
        if missing:
            members = data.labels == cls
            count = len(np.unique(data.groups[members])) if data.groups is not None else int(members.sum())
            unit = "group" if data.groups is not None else "example"
            name = data.class_names[cls] if cls < len(data.class_names) else str(cls)
            short.append(f"{name!r} has {count} {unit}{'s' if count != 1 else ''} (none left for {' or '.join(missing)})")
    if short:
        unit = "groups (e.g. lesions)" if data.groups is not None else "examples"
        raise UserError(
            f"Every class needs at least {MIN_EXAMPLES_PER_CLASS} {unit}: one each for the test, validation and "
            f"training splits. Too small: {'; '.join(short)}. Add examples of these classes, or remove them "
            "from the data."
        )


def max_examples_per_class(labels: np.ndarray, pool: np.ndarray) -> int:
    """The largest examples-per-class that every class of the pool can supply."""
    return int(np.bincount(labels[pool]).min()) if len(pool) else 0


def sample_subset(
    labels: np.ndarray,
    pool: np.ndarray,
    seed: int,
    examples_per_class: int | None = None,
    fraction: float | None = None,
    task_name: str = "task",
) -> np.ndarray:
    """Deterministic, stratified, nested training subset of ``pool``.

    Each class's pool is permuted by ``(seed, class)`` and the first n are taken, so growing n for the
    same seed only adds examples. ``None`` for both sizes means the whole pool.
    """
    chosen = []
    classes = np.unique(labels[pool])
    for cls in classes:
        members = np.sort(pool[labels[pool] == cls])
        perm = np.random.default_rng([int(seed), int(cls)]).permutation(members)
        if examples_per_class is not None:
            if examples_per_class > len(members):
                raise UserError(
                    f"Task {task_name!r} has only {max_examples_per_class(labels, pool)} labelled training examples "
                    f"in its smallest class (after holding out the test and validation splits). "
                    f"Received: examples_per_class={examples_per_class}. Ask for at most that, or use --fraction."
                )
            n = examples_per_class
        elif fraction is not None:
            n = max(1, int(round(fraction * len(members))))
        else:
            n = len(members)
        chosen.append(perm[:n])
    return np.concatenate(chosen)


def indices_hash(indices: np.ndarray) -> str:
    """A short content hash of a set of indices (order-independent)."""
    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()[:16]


def shuffled_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """A label permutation for corrupted-source controls: class frequencies kept, content destroyed."""
    return np.random.default_rng([int(seed), 7919]).permutation(labels)


def balanced_class_weight(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """scikit-learn's ``balanced`` class weights, as the dict Keras ``fit`` takes."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    out = {int(c): 1.0 for c in range(num_classes)}
    out.update({int(c): float(w) for c, w in zip(present, weights)})
    return out


def make_image_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    input_size: int,
    preprocess: Callable[[Any], Any],
    batch_size: int,
    shuffle_seed: int | None = None,
):
    """A tf.data pipeline: resize to the backbone's input size, its preprocessing, cache, batch, prefetch.

    Resizing and preprocessing run once per image (batched, before ``cache``); shuffling, when a seed is
    given, happens after the cache so each epoch reshuffles without redoing the work.
    """
    import tensorflow as tf

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        if x.shape[-1] == 1:
            x = tf.image.grayscale_to_rgb(x)
        x = tf.image.resize(x, (input_size, input_size))
        return preprocess(x), y

    ds = tf.data.Dataset.from_tensor_slices((images, _as_targets(labels)))
    ds = ds.batch(256).map(prepare, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    # unbatch() forgets the length; restoring it lets Keras size epochs and progress bars exactly.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(labels))).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _as_targets(labels: Any) -> np.ndarray:
    labels = np.asarray(labels)
    return labels.astype(np.int64) if np.issubdtype(labels.dtype, np.integer) else labels.astype(np.float32)


def make_file_dataset(
    files: ImageFiles,
    targets: np.ndarray,
    input_size: int,
    preprocess: Callable[[Any], Any],
    batch_size: int,
    shuffle_seed: int | None = None,
):
    """A tf.data pipeline that streams images from disk: shuffle paths, decode (crop to the ROI),
    resize, preprocess, batch, prefetch. Nothing is cached, so memory stays flat for any dataset size.

    Decoding goes through Pillow inside ``tf.numpy_function`` because ``tf.io.decode_image`` reads
    neither PPM (GTSRB) nor CMYK or 16-bit files; the rest of the pipeline stays in TensorFlow.
    """
    import tensorflow as tf

    from transferlab.image_files import read_image_rgb

    n = len(files)
    rois = files.rois if files.rois is not None else np.full((n, 4), -1, dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((files.paths.astype(str), np.asarray(rois, dtype=np.int32), _as_targets(targets)))
    if shuffle_seed is not None:
        ds = ds.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)

    def decode(path, roi):
        roi = None if roi[0] < 0 else roi.tolist()
        return read_image_rgb(path, roi)

    def prepare(path, roi, y):
        x = tf.numpy_function(decode, [path, roi], tf.uint8, stateful=False)
        x.set_shape((None, None, 3))
        x = tf.image.resize(tf.cast(x, tf.float32), (input_size, input_size))
        return preprocess(x), y

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_text_dataset(
    texts: np.ndarray,
    targets: np.ndarray,
    sequence_length: int,
    tokenize: Callable[[list[str], int], dict[str, Any]],
    batch_size: int,
    shuffle_seed: int | None = None,
):
    """A tf.data pipeline of tokenised texts: the backbone's tokenizer runs once, up front (a fast
    Rust tokenizer; the arrays are small), then shuffle, batch, prefetch."""
    import tensorflow as tf

    encoded = {k: np.asarray(v, dtype=np.int32) for k, v in tokenize([str(t) for t in texts], sequence_length).items()}
    ds = tf.data.Dataset.from_tensor_slices((encoded, _as_targets(targets)))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_dataset(data: TaskData, indices: np.ndarray, targets: np.ndarray, backbone: Any, input_size: int,
                 batch_size: int, shuffle_seed: int | None = None):
    """The input pipeline for ``data`` at ``indices`` through ``backbone``'s preprocessing, whatever the
    task keeps: in-memory images, image files, or texts."""
    if data.texts is not None:
        if backbone.tokenize is None:
            raise UserError(f"Backbone {backbone.name!r} reads images; this task's examples are texts.")
        return make_text_dataset(data.texts[indices], targets, input_size, backbone.tokenize, batch_size, shuffle_seed)
    if isinstance(data.images, ImageFiles):
        files = ImageFiles(data.images.paths[indices], None if data.images.rois is None else data.images.rois[indices])
        return make_file_dataset(files, targets, input_size, backbone.preprocess, batch_size, shuffle_seed)
    return make_image_dataset(data.images[indices], targets, input_size, backbone.preprocess, batch_size, shuffle_seed)


def tfds_prepared(name: str) -> bool:
    """Whether tensorflow-datasets has ``name`` fully prepared on this machine (cheap: no TensorFlow
    import). A prepared dataset has a version folder holding ``dataset_info.json``, written last."""
    import os
    from pathlib import Path

    data_dir = Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))
    return any(data_dir.glob(f"{name}/*/dataset_info.json")) or any(data_dir.glob(f"{name}/*/*/dataset_info.json"))

"""Your own data as a task: ``--data`` on ``run``, ``sweep`` and ``rank``, and the Run page's path field.

Three forms, each becoming a task with a stable name shown everywhere:

- a class-folder tree (``folder:/abs/path``, or just the path): ``root/<class>/<images>``, nested folders,
  any Pillow format and any case of extension, class names with spaces and non-ASCII letters;
  task ``data.<folder name>``;
- a CSV of ``path,label`` (``csv:/abs/file.csv``, or a path ending in ``.csv``), paths relative to the
  CSV's folder (or absolute); task ``data.<file name>`` (``data.<folder name>`` for ``labels.csv`` and
  other generic names);
- a prepared tensorflow-datasets set, ``tfds:NAME[:split]``; task ``tfds.<name>``.

Tasks made here have neutral defaults (no augmentation, no class weights: ask for them), a fingerprint of
the data (:mod:`transferlab.fingerprints`) that is part of every job id, and ``TaskSpec.data``, the
location, which every job of them carries, so a worker process rebuilds the task from the job alone
(:func:`task_for_job`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.errors import DatasetUnavailableError, UserError
from transferlab.specs import TaskSpec

KINDS = ("folder", "csv", "tfds")
#: the registry's owner of every task made from ``--data``
DATA_OWNER = "your data (--data)"
#: CSV names that say nothing about the data: such a CSV's task is named after its folder
GENERIC_CSV_NAMES = frozenset({"labels", "label", "data", "dataset", "train", "index", "annotations", "metadata",
                               "images", "list", "files"})
FORMS = ("a folder of class folders (root/<class>/<images>), a CSV of path,label, or tfds:NAME[:split] "
         "(a tensorflow-datasets set prepared on this machine)")


@dataclass(frozen=True)
class DataLocation:
    """Where a ``--data`` dataset lies: ``kind`` (folder, csv, tfds), ``target`` (an absolute path, or the
    tensorflow-datasets name) and, for tfds, ``split``."""

    kind: str
    target: str
    split: str | None = None

    @property
    def text(self) -> str:
        """The canonical location string, stored with every job: ``folder:/abs/path``, ``csv:/abs/f.csv``,
        ``tfds:NAME[:split]``."""
        return f"{self.kind}:{self.target}" + (f":{self.split}" if self.split else "")


def _absolute(text: str) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(text)))


def parse_data(text: str) -> DataLocation:
    """A ``--data`` argument as a :class:`DataLocation`; a path without a prefix is a folder or, ending in
    ``.csv``, a CSV. A path that does not exist, or is neither, is refused with what to give instead."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"Give the data: {FORMS}.")
    text = text.strip()
    kind, sep, rest = text.partition(":")
    if sep and kind in KINDS and not (len(kind) == 1 and os.name == "nt"):
        if not rest.strip():
            raise UserError(f"{kind}: needs a location after it. Give {FORMS}. Received: {text!r}")
        if kind == "tfds":
            name, _, split = rest.strip().partition(":")
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./\-]*", name):
                raise UserError(f"tfds:NAME takes a tensorflow-datasets name such as cifar10 or voc/2007. "
                                f"Received: {text!r}")
            return DataLocation("tfds", name, split.strip() or None)
        location = DataLocation(kind, _absolute(rest.strip()))
    else:
        path = _absolute(text)
        location = DataLocation("csv" if path.lower().endswith(".csv") and not os.path.isdir(path) else "folder", path)
    path = Path(location.target)
    if not path.exists():
        raise DatasetUnavailableError(f"No folder or file at {path}. Give {FORMS}.")
    if location.kind == "folder" and not path.is_dir():
        raise UserError(f"{path} is a file, not a folder of class folders. For a CSV of path,label give a file "
                        f"ending in .csv (or csv:{path}). Give {FORMS}.")
    if location.kind == "csv" and not path.is_file():
        raise UserError(f"{path} is a folder, not a CSV file. Give {FORMS}.")
    return location


def _slug(text: str) -> str:
    """A name part for a task: ASCII letters and digits, accents dropped, the rest ``_``; a name with no
    such letter (``鳥``) gets a short hash of itself, so it stays stable."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    return slug or "h" + hashlib.sha256(text.encode()).hexdigest()[:8]


def data_task_name(location: DataLocation) -> str:
    """The task name of a location: ``data.my_birds`` for a folder ``My Birds``, ``tfds.cifar10``."""
    if location.kind == "tfds":
        return "tfds." + _slug(location.target) + (f".{_slug(location.split)}" if location.split else "")
    path = Path(location.target)
    if location.kind == "csv":
        name = path.stem if path.stem.lower() not in GENERIC_CSV_NAMES else (path.parent.name or path.stem)
    else:
        name = path.name or "root"
    return "data." + _slug(name)


# ------------------------------------------------------------------------------------------ loading

def _csv_rows(csv_path: Path) -> tuple[list[str], list[str], int]:
    """The image paths (absolute) and labels a CSV of ``path,label`` lists, and the line of its first row;
    parse errors, empty cells and a path listed twice are refused with their lines. Opens no image."""
    from transferlab.image_files import read_table

    fix = ("Give a CSV with a header row path,label and one row per image: its path (relative to the CSV's folder, "
           "or absolute) and its class.")
    options = dict(dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8")
    table = read_table(csv_path, (), fix, **options)
    columns = {c.lower(): c for c in table.columns}
    if {"path", "label"} <= set(columns):
        table = table.rename(columns={columns["path"]: "path", columns["label"]: "label"})
        first_line = 2
    elif len(table.columns) == 2:  # no header: the first row is an image too
        table = read_table(csv_path, (), fix, header=None, names=["path", "label"], **options)
        first_line = 1
    else:
        raise UserError(f"{csv_path} has columns {', '.join(map(repr, table.columns))}; it needs path and label. {fix}")
    if table.empty:
        raise UserError(f"{csv_path} has no rows. {fix}")
    paths = table["path"].astype(str).str.strip().to_list()
    labels = table["label"].astype(str).str.strip().to_list()
    empty = [i for i, (p, label) in enumerate(zip(paths, labels)) if not p or not label]
    if empty:
        lines = ", ".join(str(i + first_line) for i in empty[:10])
        raise UserError(f"{csv_path}: {len(empty)} row(s) have an empty path or label (line {lines}). Fill them in or "
                        "remove them.")
    files = [os.path.normpath(p if os.path.isabs(p) else os.path.join(csv_path.parent, p)) for p in paths]
    seen: dict[str, int] = {}
    for line, (path, given) in enumerate(zip(files, paths), start=first_line):
        if path in seen:
            raise UserError(f"{csv_path}: {given!r} is listed twice (lines {seen[path]} and {line}); an image belongs "
                            "to one class and one split. Remove one of the rows.")
        seen[path] = line
    return files, labels, first_line


def read_labelled_csv(csv_path: str | os.PathLike, max_bad_fraction: float | None = None):
    """List the images of a CSV of ``path,label`` (a header row ``path,label`` or none; more columns are
    ignored) as an :class:`~transferlab.image_files.ImageFolderScan`. Paths are relative to the CSV's
    folder, or absolute; classes are the labels, sorted.

    Refused with the lines named: a CSV that cannot be parsed, rows with an empty path or label, a path
    listed twice, a class none of whose images can be read; missing or corrupt images are skipped and
    listed up to ``max_bad_fraction`` (default ``MAX_BAD_FRACTION``) of the rows, refused above it.
    """
    from transferlab.image_files import MAX_BAD_FRACTION, ImageFolderScan, check_files, refuse_if_too_many_bad

    max_bad_fraction = MAX_BAD_FRACTION if max_bad_fraction is None else max_bad_fraction
    csv_path = Path(_absolute(os.fspath(csv_path)))
    files, labels, _ = _csv_rows(csv_path)
    reasons = check_files(files, missing=f"file not found (paths are relative to {csv_path.parent})")
    bad = [(f, reason) for f, reason in zip(files, reasons) if reason is not None]
    refuse_if_too_many_bad(bad, len(files), max_bad_fraction, str(csv_path),
                           f"Paths in the CSV are relative to its folder {csv_path.parent}; fix those rows or the files.")
    class_names = sorted(set(labels))
    kept_labels = {label for label, reason in zip(labels, reasons) if reason is None}
    lost = [name for name in class_names if name not in kept_labels]
    if lost:
        raise UserError(f"{csv_path}: no image of class(es) {', '.join(map(repr, lost))} can be read. Fix their rows "
                        "or the files.")
    index = {name: i for i, name in enumerate(class_names)}
    kept = [(f, index[label]) for f, label, reason in zip(files, labels, reasons) if reason is None]
    return ImageFolderScan(paths=np.array([f for f, _ in kept], dtype=str),
                           labels=np.array([label for _, label in kept], dtype=np.int64),
                           class_names=tuple(class_names), skipped=tuple(bad))


def _not_prepared(name: str) -> DatasetUnavailableError:
    from transferlab.fingerprints import tfds_data_dir

    return DatasetUnavailableError(
        f"tensorflow-datasets has no prepared copy of {name!r} in {tfds_data_dir()} (TFDS_DATA_DIR), and transferlab "
        f"reads tfds sets offline only. Prepare it once where there is internet access (`python -c \"import "
        f"tensorflow_datasets as tfds; tfds.builder('{name}').download_and_prepare()\"`), then copy that folder here "
        "or point TFDS_DATA_DIR at it."
    )


def _stack_images(images: Any, size: int = 256) -> tuple[np.ndarray, bool]:
    """tfds images as one uint8 array; images of different sizes are resized to ``size`` px (said in the
    provenance)."""
    shapes = {tuple(np.shape(x)) for x in images}
    if len(shapes) == 1:
        return np.stack(images).astype(np.uint8), False
    from PIL import Image

    out = [np.asarray(Image.fromarray(np.squeeze(np.asarray(x, np.uint8))).convert("RGB").resize((size, size)))
           for x in images]
    return np.stack(out), True


def load_tfds(name: str, split: str | None = None):
    """A prepared tensorflow-datasets image set as task data, offline. With no ``split``: ``train`` with
    ``test`` as the official test split when both exist (else the only split, or ``train``); with one, that
    split alone (tfds split syntax, e.g. ``train[:10%]``) and core's fixed splits."""
    from transferlab.data import TaskData
    from transferlab.fingerprints import tfds_data_dir, tfds_prepared_version

    if tfds_prepared_version(name) is None:
        raise _not_prepared(name)
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=str(tfds_data_dir()))
    except Exception as exc:  # tfds signals a broken or foreign folder in several ways
        raise DatasetUnavailableError(f"tensorflow-datasets cannot read its prepared {name!r} ({str(exc)[:200]}). "
                                      "Prepare it again.") from None
    info = builder.info
    available = list(info.splits)
    if split:
        parts = [split]
    elif "train" in available and "test" in available:
        parts = ["train", "test"]
    elif len(available) == 1 or "train" in available:
        parts = ["train" if "train" in available else available[0]]
    else:
        raise UserError(f"tfds:{name} has splits {', '.join(available)} and none is called train: choose one, e.g. "
                        f"tfds:{name}:{available[0]}.")
    keys = info.supervised_keys
    if not keys or len(keys) != 2 or not isinstance(keys[0], str):
        raise UserError(f"tfds:{name} names no (image, label) pair (supervised_keys); --data takes labelled image sets.")
    names = getattr(info.features[keys[1]], "names", None)
    if not names:
        raise UserError(f"tfds:{name}: its label {keys[1]!r} is not a class label (no class names).")
    images, labels, sizes = [], [], []
    for part in parts:
        try:
            rows = list(tfds.as_numpy(builder.as_dataset(split=part, as_supervised=True)))
        except Exception as exc:
            raise UserError(f"tfds:{name}: split {part!r} cannot be read ({str(exc)[:200]}). Its splits: "
                            f"{', '.join(available)}.") from None
        if rows and np.asarray(rows[0][0]).dtype.kind in "OSU":
            raise UserError(f"tfds:{name} holds texts; --data takes image sets (for text use a text task, e.g. "
                            "sentiment_tweets).")
        images += [np.asarray(x) for x, _ in rows]
        labels += [int(y) for _, y in rows]
        sizes.append(len(rows))
    if not images:
        raise UserError(f"tfds:{name}: split(s) {', '.join(parts)} hold no examples.")
    if any(np.asarray(x).ndim != 3 or np.asarray(x).shape[-1] not in (1, 3) for x in images[:1]):
        raise UserError(f"tfds:{name} does not hold images (height x width x 1 or 3 channels). Received: "
                        f"shape={np.shape(images[0])}")
    stacked, resized = _stack_images(images)
    test = np.arange(sizes[0], len(images)) if len(parts) == 2 else None
    provenance = {"source": f"tfds:{name}", "splits": "+".join(parts), "tfds_version": str(info.version)}
    if resized:
        provenance["resized"] = 256
    return TaskData(images=stacked, labels=np.array(labels), class_names=tuple(names), test_indices=test,
                    provenance=provenance)


def _load(location: DataLocation):
    from transferlab.image_files import scan_class_folders, scan_to_task_data

    if location.kind == "tfds":
        return load_tfds(location.target, location.split)
    scan = scan_class_folders(location.target) if location.kind == "folder" else read_labelled_csv(location.target)
    return scan_to_task_data(scan, location.target, source=location.text,
                             layout="class folders" if location.kind == "folder" else "csv path,label")


def _available(location: DataLocation) -> bool:
    if location.kind == "tfds":
        from transferlab.fingerprints import tfds_prepared_version

        return tfds_prepared_version(location.target) is not None
    return os.path.exists(location.target)


def _fingerprint(location: DataLocation) -> str | None:
    from transferlab import fingerprints

    if location.kind == "tfds":
        return fingerprints.fingerprint_tfds(location.target, location.split)
    if location.kind == "folder":
        return fingerprints.fingerprint_class_folders(location.target)
    # a CSV: the CSV itself (its labels) and every file its rows name
    csv_path = Path(location.target)
    try:
        files, _, _ = _csv_rows(csv_path)
    except UserError:
        files = []  # load() says what is wrong with it
    return fingerprints.fingerprint_files([str(csv_path), *files], csv_path.parent, extra={"layout": "csv"})


# ------------------------------------------------------------------------------------------ the task

def resolve_data(registry: Any, text: str) -> TaskSpec:
    """The task made from a ``--data`` argument, registered in ``registry`` (under ``data.<name>`` or
    ``tfds.<name>``, owner :data:`DATA_OWNER`) and returned. The same location gives the same task; a
    location of another dataset with the same name replaces it. Bad input (a path that does not exist, a
    tfds set not prepared offline) raises :class:`UserError`; the contents are checked when loaded."""
    location = parse_data(text)
    if location.kind == "tfds":
        import importlib.util

        from transferlab.fingerprints import tfds_prepared_version

        if importlib.util.find_spec("tensorflow_datasets") is None:
            raise UserError("tfds:NAME needs tensorflow-datasets: pip install tensorflow-datasets.")
        if tfds_prepared_version(location.target) is None:
            raise _not_prepared(location.target)
    name = data_task_name(location)
    existing = registry.tasks.get(name)
    if existing is not None and existing.data is None:
        owner = registry.owner.get(("task", name), "a plugin")
        raise UserError(f"Your data would make task {name!r}, but {owner} registers a task of that name. Rename the "
                        "folder or file, or use that task with --task.")
    if existing is not None and existing.data == location.text:
        return existing  # the same task object: its data version and loaded data are reused
    what = {"folder": "class folders", "csv": "CSV of path,label", "tfds": "tensorflow-datasets"}[location.kind]
    spec = TaskSpec(
        name=name, description=f"Your data: {what} at {location.text.split(':', 1)[1]}.",
        load=functools.partial(_load, location), num_classes=None, available=functools.partial(_available, location),
        fingerprint=functools.partial(_fingerprint, location), data=location.text,
    )
    registry.tasks[name] = spec
    registry.owner[("task", name)] = DATA_OWNER
    return spec


def task_for_job(registry: Any, job: Any) -> TaskSpec:
    """The task of ``job``: a registered one, or for a job made from ``--data`` (``job.data``) the task
    made from its location, registered here if need be (a worker process has only the job)."""
    if job.data is None:
        return registry.task(job.task)
    spec = registry.tasks.get(job.task)
    if spec is not None and spec.data == job.data:
        return spec
    spec = resolve_data(registry, job.data)
    if spec.name != job.task:
        raise UserError(f"Job {job.job_id} was made for task {job.task!r}, but its data {job.data} makes task "
                        f"{spec.name!r} here. Make the jobs again (run the sweep again).")
    return spec


def check_job_data(registry: Any, job: Any) -> str | None:
    """The job's data version, checked against the data as it is now: a :class:`UserError` ("the data at
    ... changed since this job was queued; run the sweep again") when they differ, so a run is never
    recorded under a version it did not read. A job made without a version is not checked."""
    from transferlab.data import data_changed_message
    from transferlab.fingerprints import task_data_version

    task = task_for_job(registry, job)
    if job.data_version is None:
        return None
    now = task_data_version(task, fresh=True)
    if now != job.data_version:
        raise UserError(data_changed_message(task, job.data_version, now))
    return now


def load_job_data(registry: Any, job: Any):
    """The data of ``job`` for the runner, after :func:`check_job_data`."""
    from transferlab.data import _NOW, load_task_data

    version = check_job_data(registry, job)
    return load_task_data(registry, job.task, _NOW if version is None else version)


# ------------------------------------------------------------------------------------------ splits shown

def split_table(data: Any, splits: Any = None):
    """Examples per class in the fixed test and validation splits and the training pool (a DataFrame with
    ``class, examples, test, validation, training``), as every job on the data sees them."""
    import pandas as pd

    from transferlab.data import make_splits

    splits = make_splits(data) if splits is None else splits
    k = len(data.class_names)

    def counts(idx: np.ndarray) -> np.ndarray:
        return np.bincount(data.labels[idx], minlength=k)

    frame = pd.DataFrame({"class": list(data.class_names), "examples": np.bincount(data.labels, minlength=k),
                          "test": counts(splits.test), "validation": counts(splits.val),
                          "training": counts(splits.pool)})
    return frame[frame["examples"] > 0].reset_index(drop=True)


def describe_splits(task: TaskSpec, data: Any, max_rows: int = 20) -> str:
    """A few lines for the terminal: the data's task, version and size, how it is split, and the per-class
    table (:func:`split_table`; the first ``max_rows`` classes, then a total)."""
    from transferlab.data import make_splits

    splits = make_splits(data)
    table = split_table(data, splits)
    version = data.provenance.get("data_version")
    head = (f"Data {task.name} ({task.data}): {len(data):,} examples in {len(table)} classes"
            + (f", data version {version}" if version else "") + f". Splits: {splits.method}.")
    shown = table.head(max_rows)
    text = shown.to_string(index=False)
    if len(table) > max_rows:
        text += f"\n... and {len(table) - max_rows} more classes"
    totals = table[["examples", "test", "validation", "training"]].sum()
    text += ("\ntotal: " + ", ".join(f"{name} {int(totals[name]):,}" for name in totals.index))
    return head + "\n" + text

"""Kept models: the trained weights of the runs worth keeping, as plain arrays with a hash, and their policy.

A run's model is kept (``<home>/models/<run_id>/``) when it is the best of its (task, data version, size)
or when its job asked (``keep_model``: ``--keep-models``, the Run page's checkbox). The folder holds
``weights.npz`` (arrays ``a0000``, ``a0001``, ... in :func:`transferlab.runner.inference.inference_model`'s
order; read with ``allow_pickle=False``) and ``model.json`` (what rebuilds the network around them). It is
written under a temporary name and renamed into place, and the weights' sha256, kept in the store, is
checked on every read. No pickles, no ``keras.saving.load_model``: :func:`rebuild` builds the network from
the plugins and loads the arrays into it, all or nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.errors import UserError
from transferlab.safe_io import atomic_path, sha256_file

FORMAT_VERSION = 1
#: the folder of kept models, under ``transferlab.paths.home()``
MODELS_DIR = "models"
WEIGHTS_FILE = "weights.npz"
META_FILE = "model.json"
#: leftovers of an interrupted keep older than this (seconds) are removed by :func:`gc`
STALE_TEMP_S = 3600.0


class NotKeptError(UserError):
    """A run whose trained model was not kept (or whose kept files are gone)."""


def models_root() -> Path:
    """The folder that holds every kept model (``<home>/models``)."""
    from transferlab.paths import home

    return home() / MODELS_DIR


def _folder(relative: str) -> Path:
    """The model folder a store row names, refused unless it lies inside :func:`models_root`: a row that
    names anything else (an edited store) never makes this code read or delete elsewhere."""
    from transferlab.paths import home

    root = models_root().resolve()
    folder = (home() / relative).resolve()
    if folder.parent != root:
        raise UserError(f"The store names a kept model at {relative!r}, outside {MODELS_DIR}/ of the transferlab home. "
                        "Refusing to use it: run `transferlab gc` to forget it.")
    return folder


def _not_kept(run_id: str, why: str) -> NotKeptError:
    return NotKeptError(
        f"Run {run_id} {why}. Models are kept for the best run of each task, data version and size, and for "
        f"every run asked with --keep-models. Re-run exactly that job with its model kept: "
        f"`transferlab export {run_id} --rerun` (then export it as asked)."
    )


# ------------------------------------------------------------------------------------------ writing

def keep(store: Any, registry: Any, job: Any, result: Any, reason: str, rerun: bool = False) -> dict[str, Any]:
    """Write the trained model of a succeeded run (``result``, a :class:`~transferlab.runner.RunResult` with
    ``final_arrays``) into its folder and register it in ``store``; returns its ``model.json`` dict.

    ``reason`` is ``best`` or ``asked``; ``rerun`` says the model comes from ``transferlab export RUN_ID --rerun``
    (the job trained again for its model), kept as ``"rerun": true`` in ``model.json``. A model kept before for the
    same run is replaced whole, and only once the store has the new one: when registering it fails (the store
    locked or full), the earlier folder is put back as it was and the new one removed, so the store's row and
    the files on disk always belong together.
    """
    if reason not in ("best", "asked"):
        raise ValueError(f"reason must be 'best' or 'asked'. Received: reason={reason!r}")
    if result.final_arrays is None:
        raise UserError(f"Run {job.job_id} has no trained weights to keep (source pretraining and text models are "
                        "not kept).")
    manifest = result.manifest
    class_names = list(manifest.get("class_names") or [])
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "run_id": job.job_id, "job": job.canonical(), "class_names": class_names,
        "num_classes": len(class_names), "input_size": job.input_size, "feature_scale": manifest.get("feature_scale"),
        "weights_sha256": None, "bytes": None, "score": float(result.score), "metric": manifest.get("metric"),
        "head_kind": manifest.get("head"), "reason": reason, "rerun": bool(rerun), "created_at": time.time(),
    }
    root = models_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / job.job_id
    temp = root / f".tmp-{job.job_id}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    old = None
    placed = False  # whether the new folder sits at ``final``
    try:
        with atomic_path(temp / WEIGHTS_FILE) as tmp:
            with open(tmp, "wb") as fh:  # a file object: np.savez adds no suffix to it
                np.savez(fh, **{f"a{i:04d}": np.asarray(a) for i, a in enumerate(result.final_arrays)})
        meta["weights_sha256"] = sha256_file(temp / WEIGHTS_FILE)
        meta["bytes"] = (temp / WEIGHTS_FILE).stat().st_size
        with atomic_path(temp / META_FILE) as tmp:
            tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        size = folder_bytes(temp)
        if final.exists():
            old = root / f".old-{job.job_id}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(temp, final)
        placed = True
        store.add_model(job.job_id, f"{MODELS_DIR}/{job.job_id}", meta["weights_sha256"], size, reason,
                        meta["score"], meta["created_at"])
    except BaseException:
        if placed:  # renamed away first (atomic), so the earlier folder can take its place even if rmtree fails
            os.replace(final, temp)
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None:
            os.replace(old, final)  # the earlier model stays as it was, and its row still names it
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return meta


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under ``folder`` (subfolders included): what removing it frees."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def mark_asked(store: Any, run_ids: Any) -> list[str]:
    """Of ``run_ids``, the runs whose model is kept as the ``best`` of their group are kept as ``asked`` from now
    on (their job was asked again with ``--keep-models``), so a better run or :func:`gc` leaves them. Returns
    those run ids, sorted; ``model.json`` says so too."""
    changed = []
    for run_id in sorted(set(run_ids)):
        row = store.model(run_id)
        if row is None or row["reason"] != "best":
            continue
        try:
            folder = _folder(row["path"])
        except UserError:  # a row naming a place outside the models folder: left for `transferlab gc` to forget
            continue
        meta_file = folder / META_FILE
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict):
            meta["reason"] = "asked"
            with atomic_path(meta_file) as tmp:
                tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        store.add_model(run_id, row["path"], row["sha256"], folder_bytes(folder) if folder.is_dir() else row["bytes"],
                        "asked", row["score"], row["created_at"])
        changed.append(run_id)
    return changed


def _group_of(row: Any) -> tuple[Any, ...]:
    """A run's comparison group: (task, data version, examples per class, fraction), missing values as None."""
    return tuple(None if _missing(row[c]) else row[c] for c in ("task", "data_version", "examples_per_class", "fraction"))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _best_by_group(store: Any, task: str | None = None) -> dict[tuple[Any, ...], tuple[float, set[str]]]:
    """Per comparison group of the store's succeeded training runs (of ``task`` only, when given): the best
    score and the runs that reach it."""
    frame = store.runs_frame(status="succeeded", kind="train", task=task)
    best: dict[tuple[Any, ...], tuple[float, set[str]]] = {}
    for _, row in frame.iterrows():
        if _missing(row["score"]):
            continue
        group, score = _group_of(row), float(row["score"])
        top, ids = best.get(group, (float("-inf"), set()))
        if score > top:
            best[group] = (score, {row["run_id"]})
        elif score == top:
            ids.add(row["run_id"])
    return best


def keep_after_run(store: Any, registry: Any, job: Any, result: Any) -> dict[str, Any] | None:
    """The default policy, after a succeeded run was stored: keep its model when its job asked
    (``keep_model``: reason ``asked``) or when its score is the best of its (task, data version, size) among
    the store's succeeded runs (reason ``best``; a tie keeps it too). A ``best`` model of the same group that
    this one beats is dropped then. Returns the kept ``model.json`` dict, or None (not kept; runs without
    ``final_arrays``, source pretraining and text, never are)."""
    if result.final_arrays is None or job.kind != "train":
        return None
    group = (job.task, job.data_version, job.examples_per_class, job.fraction)
    # after every run: read only its task's runs, not the whole store's
    score, leaders = _best_by_group(store, job.task).get(group, (float("-inf"), set()))
    best = job.job_id in leaders or result.score >= score
    if not (job.keep_model or best):
        return None
    meta = keep(store, registry, job, result, "asked" if job.keep_model else "best")
    if best:
        for run_id in _kept_best_below(store, group, float(result.score)):
            _remove(store, run_id)
    return meta


def kept_frame(store: Any):
    """Kept models (:meth:`~transferlab.store.Store.models_frame`) with their runs' columns beside them
    (``task``, ``data_version``, ``examples_per_class``, ``fraction``, ``backbone``, ``weights``,
    ``strategy``, ``seed``, ``metric``, ``spec_json``); a model whose run is gone has them empty."""
    models = store.models_frame()
    columns = ["task", "data_version", "examples_per_class", "fraction", "backbone", "weights", "strategy", "seed",
               "metric", "spec_json"]
    if models.empty:
        return models.assign(**dict.fromkeys(columns))
    runs = store.runs_frame(run_id=list(models["run_id"]))
    return models.merge(runs[["run_id", *columns]], on="run_id", how="left")


def _kept_best_below(store: Any, group: tuple[Any, ...], score: float) -> list[str]:
    """Kept ``best`` models of ``group`` whose score is below ``score``: superseded."""
    return [row["run_id"] for _, row in kept_frame(store).iterrows()
            if row["reason"] == "best" and _group_of(row) == group and not _missing(row["score"])
            and float(row["score"]) < score]


def _remove(store: Any, run_id: str) -> None:
    """Forget a kept model and delete its folder (the row first: a reader never finds a row without files)."""
    row = store.model(run_id)
    store.drop_model(run_id)
    if row is not None:
        shutil.rmtree(_folder(row["path"]), ignore_errors=True)


# ------------------------------------------------------------------------------------------ reading

def load_kept(store: Any, run_id: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The kept model of ``run_id``: its ``model.json`` dict and its weight arrays, in order.

    The weights file's sha256 is checked against the store's record first. Raises :class:`NotKeptError`
    (which offers ``transferlab export RUN_ID --rerun``) when the run has no kept model or its files are
    gone, and :class:`UserError` (``WeightsError``) for a file that is altered or unreadable.
    """
    from transferlab.safe_io import check_sha256

    row = store.model(run_id)
    if row is None:
        if store.get(run_id) is None:
            raise UserError(f"There is no run {run_id!r} in the store. See `transferlab runs` for run ids.")
        raise _not_kept(run_id, "has no kept model: its trained weights were deleted when it finished")
    folder = _folder(row["path"])
    weights, meta_file = folder / WEIGHTS_FILE, folder / META_FILE
    if not weights.is_file() or not meta_file.is_file():
        raise _not_kept(run_id, f"had a kept model, but its files are gone from {row['path']}/")
    where = f"{row['path']}/{WEIGHTS_FILE}"
    check_sha256(weights, row["sha256"], f"The kept model of run {run_id} ({where})")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"The kept model of run {run_id} has an unreadable {META_FILE} ({type(exc).__name__}). "
                        f"Re-run the job: `transferlab export {run_id} --rerun`.") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION or meta.get("run_id") != run_id \
            or meta.get("weights_sha256") != row["sha256"]:
        raise UserError(f"The kept model of run {run_id} has a {META_FILE} that does not belong to its weights "
                        f"(format {meta.get('format_version') if isinstance(meta, dict) else None!r}, expected "
                        f"{FORMAT_VERSION}). Re-run the job: `transferlab export {run_id} --rerun`.")
    try:
        with np.load(weights, allow_pickle=False) as archive:
            names = sorted(archive.files)
            if names != [f"a{i:04d}" for i in range(len(names))]:
                raise ValueError("unexpected array names")
            arrays = [archive[name] for name in names]
    except (OSError, ValueError) as exc:
        raise UserError(f"The kept model of run {run_id} cannot be read ({type(exc).__name__}: {str(exc)[:120]}). "
                        f"Re-run the job: `transferlab export {run_id} --rerun`.") from None
    return meta, arrays


def architecture(registry: Any, meta: dict[str, Any]) -> Any:
    """The kept network's architecture (:func:`~transferlab.runner.inference.inference_model`), its weights not
    yet the kept ones: preprocessed images of ``meta["input_size"]`` px in, the task head's outputs out.

    The base is built as training built it: from its named weight source when the run started from one. A
    source may change the architecture, not only the numbers (torchvision's MobileNetV2 pads before its
    strided convolutions; the MedMNIST DenseNet121 has a layer inverting its preprocessing), and the kept
    arrays would load into the random-init layout without an error, since their shapes are the same.
    """
    from transferlab.jobs import JobSpec
    from transferlab.runner.assembly import input_shape
    from transferlab.runner.inference import inference_model

    job = JobSpec.from_json(json.dumps(meta["job"]))
    backbone = registry.backbone(job.backbone)
    named = job.weights not in ("none",) and not job.weights.startswith(("file:", "run:"))
    try:
        base = backbone.build(input_shape(backbone, int(meta["input_size"])), job.weights if named else None)
    except Exception as exc:
        raise UserError(
            f"The model of {'run ' + meta['run_id'] if meta.get('run_id') else 'this export'} is built on "
            f"{job.backbone!r} with weights {job.weights!r}, "
            f"and building that failed here ({type(exc).__name__}: {str(exc)[:200]}). Install the package that "
            "provides those weights (see `transferlab backbones`)."
        ) from None
    return inference_model(backbone, _head(registry, job, meta), job, int(meta["num_classes"]),
                           meta.get("feature_scale"), base=base)


def rebuild(registry: Any, meta: dict[str, Any], arrays: list[np.ndarray]) -> Any:
    """The kept network (:func:`architecture`) with its weights loaded, all or nothing."""
    from transferlab.runner.inference import load_arrays

    model = architecture(registry, meta)
    load_arrays(model, arrays, f"kept model of run {meta.get('run_id')}")
    return model


def _head(registry: Any, job: Any, meta: dict[str, Any]) -> Any:
    """The task head of a kept model. A task made from ``--data`` is not looked for where its data lay (the
    model may have moved to another machine): its head is the one registered now, else classification."""
    from transferlab.heads import ClassificationHead

    if job.data is None:
        return registry.task(job.task).task_head
    spec = registry.tasks.get(job.task)
    if spec is not None:
        return spec.task_head
    if meta.get("head_kind") not in (None, "classification"):
        raise UserError(f"The kept model of run {meta.get('run_id')} needs the {meta.get('head_kind')} head of task "
                        f"{job.task!r}, which is not registered here.")
    return ClassificationHead()


# ------------------------------------------------------------------------------------------ what stays

def needed(store: Any) -> set[str]:
    """The run ids whose models a page needs: the best run of each (task, data version, size) and every run
    that asked for its model (by its job's ``keep_model``, or a model kept as ``asked``)."""
    ids = {run_id for _, leaders in _best_by_group(store).values() for run_id in leaders}
    kept = store.models_frame()
    ids |= set(kept.loc[kept["reason"] == "asked", "run_id"])
    runs = store.runs_frame(status="succeeded")
    ids |= {run_id for run_id, spec in zip(runs["run_id"], runs["spec_json"])
            if isinstance(spec, str) and json.loads(spec).get("keep_model")}
    return ids


def gc(store: Any, dry_run: bool = False) -> dict[str, Any]:
    """Remove the kept models that :func:`needed` does not name, forget those whose files are gone, and
    delete folders left by interrupted keeps; with ``dry_run`` only say what would go.

    Returns ``{"removed": [run ids], "freed_bytes", "missing": [run ids whose files were gone],
    "leftovers": [folder names], "kept": [run ids], "kept_bytes", "dry_run"}``.
    """
    # the kept models first, then what is needed: a model kept between the two reads is not in ``kept``, so it
    # is left alone (read the other way round, it would be in ``kept`` but not yet in ``wanted``, and deleted)
    kept = store.models_frame()
    wanted = needed(store)
    report: dict[str, Any] = dict(removed=[], freed_bytes=0, missing=[], leftovers=[], kept=[], kept_bytes=0,
                                  dry_run=dry_run)
    for _, row in kept.iterrows():
        run_id = row["run_id"]
        try:
            folder = _folder(row["path"])
        except UserError:  # a row naming a place outside the models folder: forgotten, nothing deleted there
            folder = None
        if folder is None or not folder.is_dir():
            report["missing"].append(run_id)
            if not dry_run:
                store.drop_model(run_id)
        elif run_id in wanted:
            report["kept"].append(run_id)
            report["kept_bytes"] += int(row["bytes"])
        else:
            report["removed"].append(run_id)
            report["freed_bytes"] += folder_bytes(folder)
            if not dry_run:
                _remove(store, run_id)
    root, registered = models_root(), set(kept["run_id"])
    now = time.time()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir() or now - path.stat().st_mtime < STALE_TEMP_S:
            continue  # a keep may be writing it right now
        interrupted = path.name.startswith((".tmp-", ".old-"))
        # this store's run, written but never registered (a keep stopped between its rename and its row)
        orphan = not path.name.startswith(".") and path.name not in registered and store.get(path.name) is not None
        if interrupted or orphan:
            report["leftovers"].append(path.name)
            report["freed_bytes"] += folder_bytes(path)
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
    return report

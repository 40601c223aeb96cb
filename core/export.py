"""A stored run's trained model, exported for use without transferlab: Keras, SavedModel, TFLite, ONNX.

:func:`export_run` rebuilds a kept model (:mod:`transferlab.models`: sha256-checked arrays; nothing here
reads a pickle or calls ``keras.saving.load_model``), puts the resize and preprocessing of training in
front of it (:mod:`transferlab.export_model`), checks the result against the trained model's test
predictions (:func:`reproduction`) and writes each format with ``labels.txt``, ``model-card.md``
(:mod:`transferlab.model_card`) and ``export.json`` (the sha256 of every file, the input spec and the
recipe that rebuilds the architecture). :func:`check_export` refuses what cannot be exported before
anything heavy is imported or read.

Everything is written into a temporary folder in the nearest existing folder above ``out`` and renamed into
place at the end (the missing folders between are made only then): a failed export leaves nothing behind.
"""
from __future__ import annotations

import datetime as _dt
import importlib.util
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferlab.errors import TransferlabError, UserError
from transferlab.export_model import FORMAT_FILES, FORMATS
from transferlab.jobs import JobSpec
from transferlab.safe_io import sha256_file

__all__ = ["FORMATS", "FORMAT_FILES", "available_formats", "check_export", "export_archive", "export_run",
           "file_hashes", "format_files", "public_job", "reproduction", "resolve_formats"]

ONNX_EXTRA = "needs the onnx extra: pip install 'transferlab[onnx]'"
TRAIN_EXTRA = "needs TensorFlow: pip install 'transferlab[train]'"
EXPORT_FORMAT_VERSION = 1
#: test images run through the export model, to check it gives the trained model's top class on each
CHECK_IMAGES = 200
#: without the trained model's predictions, the whole test split is run to compare scores, up to this size
WHOLE_CHECK_IMAGES = 5000
#: how far the whole test split's accuracy may be from the kept weights' score (near ties flip on resizing)
SCORE_TOLERANCE = 0.005


# ------------------------------------------------------------------------------------------ formats

def available_formats() -> dict[str, str | None]:
    """Each export format -> None when it can be written here, else why not (which extra to install).

    Cheap: the packages are looked up, not imported."""
    def missing(*modules: str) -> bool:
        return any(importlib.util.find_spec(m) is None for m in modules)

    if missing("tensorflow", "keras"):
        return {name: TRAIN_EXTRA for name in FORMATS}
    return {name: (ONNX_EXTRA if name == "onnx" and missing("tf2onnx", "onnx") else None) for name in FORMATS}


def resolve_formats(asked: Sequence[str] | None) -> list[str]:
    """The formats to write: ``None`` -> ``["keras"]``; ``all`` -> every format usable here; otherwise the
    names asked for, in :data:`FORMATS` order. An unknown name, or one whose exporter is missing, is a
    UserError that says which extra to install."""
    names = ["keras"] if not asked else [n.strip() for a in asked for n in str(a).split(",") if n.strip()]
    usable = available_formats()
    if "all" in names:
        return [name for name in FORMATS if usable[name] is None]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise UserError(f"Unknown export format {unknown[0]!r}. Valid formats: {', '.join(FORMATS)}, all.")
    blocked = [f"{name} {usable[name]}" for name in FORMATS if name in names and usable[name] is not None]
    if blocked:
        raise UserError(f"Cannot export to {'; '.join(blocked)}. Nothing was written.")
    return [name for name in FORMATS if name in names]


# ------------------------------------------------------------------------------------------ refusals

def check_export(store: Any, registry: Any, run_id: str, formats: Sequence[str] | None, out: str | os.PathLike
                 ) -> tuple[dict[str, Any], JobSpec, list[str]]:
    """Everything that can refuse an export, checked before anything heavy is imported, read or written:
    the formats (and their exporters), ``out`` (new, in a folder that can be written:
    :func:`writable_ancestor`), the run (known, succeeded, image classification). Returns
    ``(run row, job, formats)``; a UserError otherwise."""
    names = resolve_formats(formats)
    if not names:
        raise UserError("No export format is usable here: " + "; ".join(
            f"{k} {v}" for k, v in available_formats().items()) + ".")
    if os.path.lexists(out):
        raise UserError(f"The export folder {out} already exists. Give a new --out folder (nothing is overwritten).")
    writable_ancestor(out)
    run = store.get(run_id)
    if run is None:
        raise UserError(f"Unknown run id {run_id!r}. `transferlab runs` lists the stored runs and their ids.")
    if run["status"] != "succeeded":
        why = f" ({str(run['error']).splitlines()[0][:200]})" if run.get("error") else ""
        raise UserError(f"Run {run_id} is {run['status']}{why}: only a succeeded run can be exported. "
                        "Run its sweep again to finish it.")
    job = JobSpec.from_json(run["spec_json"])
    manifest = json.loads(run["manifest_json"] or "{}")
    head = manifest.get("head", "classification")
    backbone = registry.backbone(job.backbone)
    if head != "classification" or backbone.modality != "image" or job.kind != "train":
        what = "text" if backbone.modality != "image" else (head if head != "classification" else job.kind)
        raise UserError(f"Run {run_id} is a {what} run; export covers image classification (runs whose model "
                        "takes images and returns class probabilities).")
    return run, job, names


def writable_ancestor(out: str | os.PathLike) -> Path:
    """The nearest existing folder above ``out`` (absolute): where the export is written first, and under
    which the missing folders up to ``out`` are made at the end. A UserError naming it when it is not a
    folder (a file) or cannot be written to."""
    path = Path(os.path.abspath(out)).parent
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    if not path.is_dir():
        raise UserError(f"Cannot export to {out}: {path} is a file, not a folder. Give an --out inside a folder "
                        "(missing folders are made).")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"Cannot export to {out}: the folder {path} is not writable. Give an --out inside a folder "
                        "you can write to.")
    return path


# ------------------------------------------------------------------------------------------ export

def export_run(store: Any, registry: Any, run_id: str, formats: Sequence[str] | None, out: str | os.PathLike,
               expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export run ``run_id``'s kept model to the folder ``out`` (which must not exist) in ``formats``
    (:data:`FORMATS` names, ``all``, or None for keras), with ``labels.txt``, ``model-card.md`` and
    ``export.json``; returns the export.json content. Refusals are UserErrors and write nothing
    (:func:`check_export`; weights not kept: :class:`transferlab.models.NotKeptError`).

    The export model is checked against the kept weights' test predictions (:func:`reproduction`):
    ``expected`` (compact predictions, as a re-run returns them), else the stored run's when the kept
    weights are its own (model.json's ``rerun`` false or missing), else their score on the whole test split."""
    run, job, names = check_export(store, registry, run_id, formats, out)
    from transferlab.export_model import (affine_preprocessing, check_export_model, custom_layers, export_model,
                                          write_formats)
    from transferlab.model_card import model_card
    from transferlab.models import load_kept, rebuild

    meta, arrays = load_kept(store, run_id)
    backbone = registry.backbone(job.backbone)
    matrix, bias = affine_preprocessing(backbone)
    inference = rebuild(registry, meta, arrays)
    input_size = int(meta["input_size"])
    model = export_model(inference, input_size, matrix, bias)
    check_export_model(model, inference, backbone, input_size)
    if expected is None and not meta.get("rerun", False):
        expected = _stored_predictions(store, run_id)  # the kept weights are the stored run's own
    check = reproduction(registry, job, model, expected, meta.get("score"))

    out = Path(out)
    base = writable_ancestor(out)  # again: the disk may have changed while the model was built
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=base))
    made: list[Path] = []
    try:
        seconds = write_formats(model, work, names)
        class_names = [str(c) for c in meta["class_names"]]
        (work / "labels.txt").write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
        record = export_record(run, job, meta, names, input_size, matrix, bias, seconds, check,
                               custom_layers(model))
        (work / "model-card.md").write_text(model_card(registry, run, job, meta, record), encoding="utf-8")
        record["files"] = file_hashes(work)
        (work / "export.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp makes it private (0700); the export is an ordinary folder
        _move_into_place(work, out, base, made)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        for folder in reversed(made):  # the folders this export made above out, innermost first
            try:
                folder.rmdir()
            except OSError:
                break  # something else was put there meanwhile: it stays, with the folders above it
        raise
    return record


def _move_into_place(work: Path, out: Path, base: Path, made: list[Path]) -> None:
    """Make the missing folders from ``base`` down to ``out``'s parent (each appended to ``made``, so a
    failure can remove them), then rename ``work`` to ``out``."""
    missing = []
    folder = Path(os.path.abspath(out)).parent
    while folder != base:
        missing.append(folder)
        folder = folder.parent
    try:
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        if os.path.lexists(out):
            raise UserError(f"The export folder {out} appeared while exporting; nothing was written there.")
        os.rename(work, out)
    except OSError as exc:
        raise UserError(f"Cannot move the export into {out} ({exc.strerror or exc}). Nothing was written.") from None


def export_archive(store: Any, registry: Any, run_id: str, formats: Sequence[str] | None) -> tuple[str, bytes]:
    """The export of :func:`export_run` as a zip: ``(file name, bytes)``, its files under one folder
    ``transferlab-<run_id>/`` (for a download button)."""
    name = f"transferlab-{run_id}"
    with tempfile.TemporaryDirectory(prefix="transferlab-export-") as tmp:
        folder = Path(tmp) / name
        export_run(store, registry, run_id, formats, folder)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                archive.write(path, f"{name}/{path.relative_to(folder).as_posix()}")
    return f"{name}.zip", buffer.getvalue()


def file_hashes(folder: Path) -> dict[str, dict[str, Any]]:
    """``relative path -> {"sha256", "bytes"}`` of every file under ``folder`` (POSIX separators, sorted)."""
    return {path.relative_to(folder).as_posix(): {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for path in sorted(p for p in folder.rglob("*") if p.is_file())}


def format_files(record: dict[str, Any], name: str) -> list[str]:
    """The files (relative paths) of export.json ``record`` that format ``name`` consists of."""
    root = record["format_files"][name]
    return [path for path in record["files"] if path == root or path.startswith(root + "/")]


# ------------------------------------------------------------------------------------------ records

def public_job(job: JobSpec) -> dict[str, Any]:
    """The job's canonical dict without local paths: weights files and the data location by file name."""
    from transferlab.redact import public_weights, redact_path

    spec = job.canonical()
    spec["weights"] = public_weights(job.weights, job.weights_sha256)
    if job.data:
        kind, sep, where = job.data.partition(":")
        spec["data"] = f"{kind}:{redact_path(where)}" if sep else redact_path(job.data)
    return spec


def export_record(run: dict[str, Any], job: JobSpec, meta: dict[str, Any], formats: list[str], input_size: int,
                  matrix: np.ndarray, bias: np.ndarray, seconds: dict[str, float], check: dict[str, Any],
                  custom: list[str]) -> dict[str, Any]:
    """export.json without its ``files`` (added once every file is written)."""
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "run_id": run["run_id"],
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "formats": formats,
        "format_files": {name: FORMAT_FILES[name] for name in formats},
        "export_seconds": seconds,
        "input": {"name": "image", "dtype": "float32", "shape": [None, None, None, 3], "layout": "NHWC",
                  "channels": "RGB", "range": [0, 255], "resized_to": [input_size, input_size],
                  "resize": "bilinear (tf.image.resize), inside the model"},
        "output": {"shape": [None, int(meta["num_classes"])], "values": "class probabilities (softmax), in "
                   "labels.txt order"},
        "class_names": [str(c) for c in meta["class_names"]],
        "metric": run.get("metric") or "accuracy",
        "stored_score": run.get("score"),
        "kept_score": meta.get("score"),
        "reproduction": check,
        "custom_layers": custom,
        "recipe": {"job": public_job(job), "num_classes": int(meta["num_classes"]), "input_size": input_size,
                   "feature_scale": meta.get("feature_scale"), "head_kind": meta.get("head_kind", "classification"),
                   "preprocess": {"matrix": matrix.tolist(), "bias": bias.tolist()},
                   "weights_sha256": meta.get("weights_sha256")},
    }


# ------------------------------------------------------------------------------------------ reproduction

def reproduction(registry: Any, job: JobSpec, model: Any, reference: dict[str, Any] | None,
                 score: float | None, limit: int = CHECK_IMAGES, whole_limit: int = WHOLE_CHECK_IMAGES
                 ) -> dict[str, Any]:
    """Check that ``model`` (the export model) is the network whose test predictions are ``reference`` (compact
    predictions of these very weights), or whose test score is ``score``, on the test images at their own size.

    With ``reference``: the first ``limit`` of its test images must get the same top class (99 % of them; near
    ties may flip). Without: the whole test split (at most ``whole_limit`` images, else not checked) must score
    ``score`` within :data:`SCORE_TOLERANCE` (the accuracy of the weights when kept). Either failing is a
    TransferlabError: the export would not be the trained model, and nothing is written. Returns
    ``{"checked": True, "images", "accuracy", "agreement"}`` (agreement None without reference, and then also
    ``"score"`` and ``"tolerance"``: what the accuracy was held against), or ``{"checked": False, "why"}``
    when the data is not on this machine (or too large to run whole)."""
    from transferlab.data import make_splits
    from transferlab.predict import predict_images
    from transferlab.redact import redact_text
    from transferlab.test_images import image_at
    from transferlab.userdata import load_job_data

    try:
        data = load_job_data(registry, job)
    except UserError as exc:
        return {"checked": False, "why": redact_text(str(exc))[:300]}
    indices = np.asarray(reference["indices"] if reference else make_splits(data).test, dtype=np.int64)
    if reference:
        indices = indices[:limit]
    elif len(indices) > whole_limit or score is None:
        return {"checked": False, "why": f"no stored predictions of these weights to compare with, and "
                f"{'no score' if score is None else f'{len(indices)} test images, more than {whole_limit}'} "
                "to check the whole test split against."}
    images = (image_at(data.images, int(i)) for i in indices)
    probabilities = predict_images(lambda batch: np.asarray(model(batch)), images)
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == np.asarray(data.labels)[indices]))
    agreement = float(np.mean(predicted == np.asarray(reference["predicted"][:len(indices)]))) if reference else None
    off = agreement < 0.99 if agreement is not None else abs(accuracy - float(score)) > SCORE_TOLERANCE
    if off:
        found = (f"its top class agrees with the trained model's on {agreement:.1%} of {len(indices)} test images"
                 if agreement is not None else
                 f"it scores {accuracy:.3f} on the {len(indices)} test images, the weights {float(score):.3f}")
        raise TransferlabError(
            f"The rebuilt model of run {job.job_id} is not the trained one: {found}. Nothing was written. The "
            f"network of backbone {job.backbone!r} with weights {job.weights!r} was probably rebuilt with another "
            "architecture; please report this."
        )
    result = {"checked": True, "images": int(len(indices)), "accuracy": accuracy, "agreement": agreement}
    if agreement is None:  # what the accuracy was held against
        result.update(score=float(score), tolerance=SCORE_TOLERANCE)
    return result


def _stored_predictions(store: Any, run_id: str) -> dict[str, Any] | None:
    read = getattr(store, "predictions", None)
    stored = read(run_id) if read is not None else None
    return stored if stored and stored.get("kind") == "classification" and stored.get("indices") else None

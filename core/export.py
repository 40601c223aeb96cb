"""A stored run's trained model, exported for use without transferlab: Keras, SavedModel, TFLite, ONNX.

The exported network takes raw RGB images of any size (float32, 0-255, batch first) and does what
training did before the network: a bilinear resize to the run's input size (``tf.image.resize``, as
:func:`transferlab.data.make_image_dataset`), then the backbone's preprocessing, here as a fixed
per-pixel affine map of the three channels (:func:`affine_preprocessing`: ``x / 127.5 - 1``, torch's
mean and std, caffe's BGR flip and mean are all ``A x + b``) put in with standard Keras layers, so the
``.keras`` file loads with plain Keras. Beside the model files: ``labels.txt``, ``model-card.md``
(:func:`model_card`) and ``export.json`` (the sha256 of every file, the input spec and the recipe that
rebuilds the architecture).

Everything is written into a temporary folder beside ``out`` and renamed into place at the end:
a failed export leaves nothing behind. Weights come from :mod:`transferlab.models` (kept, sha256-checked
arrays); nothing here reads a pickle or calls ``keras.saving.load_model``.
"""
from __future__ import annotations

import datetime as _dt
import importlib.util
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from transferlab.errors import TransferlabError, UserError
from transferlab.jobs import JobSpec
from transferlab.safe_io import sha256_file

FORMATS = ("keras", "saved_model", "tflite", "onnx")
#: the file (or folder) each format writes
FORMAT_FILES = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
ONNX_EXTRA = "needs the onnx extra: pip install 'transferlab[onnx]'"
TRAIN_EXTRA = "needs TensorFlow: pip install 'transferlab[train]'"
EXPORT_FORMAT_VERSION = 1
#: test images run through the export model, to check it gives the trained model's top class on each
CHECK_IMAGES = 200
#: without the trained model's predictions, the whole test split is run to compare scores, up to this size
WHOLE_CHECK_IMAGES = 5000


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


# ------------------------------------------------------------------------------------------ the model

def affine_preprocessing(backbone: Any) -> tuple[np.ndarray, np.ndarray]:
    """The backbone's ``preprocess`` as ``y = matrix @ x + bias`` per pixel (``matrix`` 3x3, ``bias`` (3,)),
    found by probing it with one pixel per channel and verified on random images.

    A preprocessing that is not such a map (one that mixes pixels, or is not linear) is a UserError
    naming the backbone: it cannot go inside the exported model as standard layers."""
    import tensorflow as tf

    probe = np.zeros((4, 1, 1, 3), np.float32)
    for channel in range(3):
        probe[channel + 1, 0, 0, channel] = 255.0
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    try:
        out = np.asarray(backbone.preprocess(tf.constant(probe)), dtype=np.float64).reshape(4, 3)
        got = np.asarray(backbone.preprocess(tf.constant(images)), dtype=np.float64)
    except Exception as exc:
        raise UserError(f"Backbone {backbone.name!r}: its preprocessing failed on a float32 RGB tensor "
                        f"({type(exc).__name__}: {str(exc)[:160]}), so it cannot be exported.") from None
    bias = out[0]
    matrix = (out[1:] - bias).T / 255.0  # column c: what one unit of input channel c adds
    want = images.astype(np.float64) @ matrix.T + bias
    scale = max(1.0, float(np.abs(want).max()))
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5 * scale):
        raise UserError(
            f"Backbone {backbone.name!r}: its preprocessing ({backbone.preprocessing!r}) is not a per-pixel affine "
            "map of the RGB values (y = A x + b), so export cannot put it inside the model with standard Keras "
            "layers. Export covers backbones whose preprocessing scales, shifts or reorders the channels."
        )
    return matrix, bias


def preprocessing_layer(matrix: np.ndarray, bias: np.ndarray) -> Any:
    """A fixed standard Keras layer computing ``matrix @ x + bias`` per pixel, or None for the identity:
    ``Rescaling`` (per-channel scale and offset) for a diagonal matrix, else a non-trainable ``Dense(3)``
    (its weights are set by :func:`export_model` once it is built)."""
    import keras

    diagonal = np.diag(matrix)
    if np.array_equal(matrix, np.diag(diagonal)):
        if np.array_equal(diagonal, np.ones(3)) and not bias.any():
            return None
        same = np.all(diagonal == diagonal[0]) and np.all(bias == bias[0])
        scale = float(diagonal[0]) if same else [float(v) for v in diagonal]
        offset = float(bias[0]) if same else [float(v) for v in bias]
        return keras.layers.Rescaling(scale=scale, offset=offset, name="preprocess")
    return keras.layers.Dense(3, trainable=False, name="preprocess")


def export_model(inference: Any, input_size: int, matrix: np.ndarray, bias: np.ndarray) -> Any:
    """``inference`` (:func:`transferlab.runner.inference.inference_model`) behind a bilinear resize to
    ``input_size`` px and the preprocessing: a ``keras.Model`` from float32 RGB images 0-255 of shape
    (batch, any height, any width, 3) to the head's output."""
    import keras

    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    x = keras.layers.Resizing(input_size, input_size, interpolation="bilinear", name="resize")(inputs)
    layer = preprocessing_layer(matrix, bias)
    if layer is not None:
        x = layer(x)
        if isinstance(layer, keras.layers.Dense):
            layer.set_weights([matrix.T.astype(np.float32), bias.astype(np.float32)])
    # training=False: behind a Resizing layer, Keras 3.15 otherwise calls the nested network in training mode
    # when the model is called without a training flag (as model.export traces it): dropout on, BatchNorm
    # statistics updated on every call.
    outputs = inference(x, training=False)
    return keras.Model(inputs, outputs, name="transferlab_export")


def check_export_model(model: Any, inference: Any, backbone: Any, input_size: int) -> None:
    """Raise TransferlabError unless ``model`` gives what training's pipeline gives (``tf.image.resize``,
    the backbone's own ``preprocess``, ``inference``) on random images of another size, twice alike."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, input_size + 3, input_size + 11, 3)).astype(np.float32)
    expected = np.asarray(inference(backbone.preprocess(tf.image.resize(images, (input_size, input_size))),
                                    training=False))
    first, second = np.asarray(model(images)), np.asarray(model(images))
    if not np.array_equal(first, second) or not np.allclose(first, expected, atol=1e-4, rtol=1e-3):
        raise TransferlabError(
            f"The export model does not reproduce the training pipeline (largest difference "
            f"{float(np.abs(first - expected).max()):.2g}, repeatable: {np.array_equal(first, second)}). "
            "Nothing was written; please report this with the run's backbone."
        )


def custom_layers(model: Any) -> list[str]:
    """Class names of the layers in ``model`` (nested models included) that are not Keras's own: a plain
    ``keras.saving.load_model`` of the ``.keras`` file needs these classes (``custom_objects``)."""
    import keras

    found: set[str] = set()

    def walk(layer: Any) -> None:
        cls = type(layer)
        if not cls.__module__.startswith("keras."):
            found.add(f"{cls.__module__}.{cls.__qualname__}")
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                walk(inner)

    for layer in model.layers:
        walk(layer)
    return sorted(found)


# ------------------------------------------------------------------------------------------ refusals

def check_export(store: Any, registry: Any, run_id: str, formats: Sequence[str] | None, out: str | os.PathLike
                 ) -> tuple[dict[str, Any], JobSpec, list[str]]:
    """Everything that can refuse an export before anything is read or written: the formats, ``out``, the
    run (known, succeeded, image classification). Returns ``(run row, job, formats)``; a UserError otherwise."""
    names = resolve_formats(formats)
    if not names:
        raise UserError("No export format is usable here: " + "; ".join(
            f"{k} {v}" for k, v in available_formats().items()) + ".")
    if Path(out).exists():
        raise UserError(f"The export folder {out} already exists. Give a new --out folder (nothing is overwritten).")
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


# ------------------------------------------------------------------------------------------ export

def export_run(store: Any, registry: Any, run_id: str, formats: Sequence[str] | None, out: str | os.PathLike,
               expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export run ``run_id``'s kept model to the folder ``out`` (which must not exist) in ``formats``
    (:data:`FORMATS` names, ``all``, or None for keras), with ``labels.txt``, ``model-card.md`` and
    ``export.json``; returns the export.json content. Refusals are UserErrors and write nothing
    (:func:`check_export`; weights not kept: :class:`transferlab.models.NotKeptError`).

    The export model is checked against the kept weights' test predictions (:func:`reproduction`):
    ``expected`` (compact predictions, as a re-run returns them), else the stored run's when the kept
    weights are its own, else their score on the whole test split."""
    from transferlab.models import load_kept, rebuild

    run, job, names = check_export(store, registry, run_id, formats, out)
    meta, arrays = load_kept(store, run_id)
    backbone = registry.backbone(job.backbone)
    matrix, bias = affine_preprocessing(backbone)
    inference = rebuild(registry, meta, arrays)
    input_size = int(meta["input_size"])
    model = export_model(inference, input_size, matrix, bias)
    check_export_model(model, inference, backbone, input_size)
    if expected is None and _same_score(meta, run):
        expected = _stored_predictions(store, run_id)  # the kept weights are the stored run's
    check = reproduction(registry, job, model, expected, meta.get("score"))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        seconds = write_formats(model, work, names)
        class_names = [str(c) for c in meta["class_names"]]
        (work / "labels.txt").write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
        record = export_record(run, job, meta, names, input_size, matrix, bias, seconds, check,
                               custom_layers(model))
        (work / "model-card.md").write_text(model_card(registry, run, job, meta, record), encoding="utf-8")
        record["files"] = file_hashes(work)
        (work / "export.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        if out.exists():
            raise UserError(f"The export folder {out} appeared while exporting; nothing was written there.")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp makes it private (0700); the export is an ordinary folder
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return record


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


def write_formats(model: Any, folder: Path, formats: Iterable[str]) -> dict[str, float]:
    """Write ``model`` into ``folder`` in each format; returns the seconds each took. TFLite is converted
    from a SavedModel (``from_keras_model`` fails on Keras 3): the exported one, or a temporary one."""
    seconds: dict[str, float] = {}
    formats = list(formats)
    for name in formats:
        start = time.perf_counter()
        try:
            if name == "keras":
                model.save(folder / FORMAT_FILES["keras"])
            elif name == "saved_model":
                model.export(str(folder / FORMAT_FILES["saved_model"]), format="tf_saved_model", verbose=False)
            elif name == "tflite":
                _write_tflite(model, folder, "saved_model" in formats)
            elif name == "onnx":
                _write_onnx(model, folder)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise TransferlabError(f"Exporting to {name} failed ({type(exc).__name__}: {str(exc)[:300]}). "
                                   "Nothing was written.") from exc
        seconds[name] = round(time.perf_counter() - start, 3)
    return seconds


def _write_tflite(model: Any, folder: Path, have_saved_model: bool) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="saved-model-", dir=folder) as tmp:
        source = folder / FORMAT_FILES["saved_model"] if have_saved_model else Path(tmp) / "saved_model"
        if not have_saved_model:
            model.export(str(source), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(source))
        (folder / FORMAT_FILES["tflite"]).write_bytes(converter.convert())


def _write_onnx(model: Any, folder: Path) -> None:
    import logging
    import warnings

    for name in ("tf2onnx", "onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():  # Keras's numpy-2 patch of tf2onnx probes np.object, which numpy warns about
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(folder / FORMAT_FILES["onnx"]), format="onnx", verbose=False)


def file_hashes(folder: Path) -> dict[str, dict[str, Any]]:
    """``relative path -> {"sha256", "bytes"}`` of every file under ``folder`` (POSIX separators, sorted)."""
    return {path.relative_to(folder).as_posix(): {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for path in sorted(p for p in folder.rglob("*") if p.is_file())}


def format_files(record: dict[str, Any], name: str) -> list[str]:
    """The files (relative paths) of export.json ``record`` that format ``name`` consists of."""
    root = record["format_files"][name]
    return [path for path in record["files"] if path == root or path.startswith(root + "/")]


# ------------------------------------------------------------------------------------------ records

def _same_score(meta: dict[str, Any], run: dict[str, Any]) -> bool:
    score, stored = meta.get("score"), run.get("score")
    return score is not None and stored is not None and abs(float(score) - float(stored)) < 1e-9


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
    ``score`` within 0.005 (the accuracy of the weights when kept). Either failing is a TransferlabError:
    the export would not be the trained model, and nothing is written. Returns ``{"checked": True, "images",
    "accuracy", "agreement"}`` (agreement None without reference), or ``{"checked": False, "why"}`` when the
    data is not on this machine (or too large to run whole)."""
    from transferlab.data import make_splits
    from transferlab.predict import data_image, predict_images
    from transferlab.redact import redact_text
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
    probabilities = predict_images(lambda batch: np.asarray(model(batch)), (data_image(data, int(i)) for i in indices))
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == np.asarray(data.labels)[indices]))
    agreement = float(np.mean(predicted == np.asarray(reference["predicted"][:len(indices)]))) if reference else None
    if (agreement is not None and agreement < 0.99) or (agreement is None and abs(accuracy - float(score)) > 0.005):
        found = (f"its top class agrees with the trained model's on {agreement:.1%} of {len(indices)} test images"
                 if agreement is not None else
                 f"it scores {accuracy:.3f} on the {len(indices)} test images, the weights {float(score):.3f}")
        raise TransferlabError(
            f"The rebuilt model of run {job.job_id} is not the trained one: {found}. Nothing was written. The "
            f"network of backbone {job.backbone!r} with weights {job.weights!r} was probably rebuilt with another "
            "architecture; please report this."
        )
    return {"checked": True, "images": int(len(indices)), "accuracy": accuracy, "agreement": agreement}


def _stored_predictions(store: Any, run_id: str) -> dict[str, Any] | None:
    read = getattr(store, "predictions", None)
    stored = read(run_id) if read is not None else None
    return stored if stored and stored.get("kind") == "classification" and stored.get("indices") else None


# ------------------------------------------------------------------------------------------ model card

_LOAD = {
    "keras": ('import keras',
              'model = keras.saving.load_model("model.keras")  # standard layers only',
              'probabilities = model.predict(images)'),
    "saved_model": ('import tensorflow as tf',
                    'serve = tf.saved_model.load("saved_model").signatures["serving_default"]',
                    'probabilities = serve(image=tf.constant(images))["output_0"].numpy()'),
    "tflite": ('import tensorflow as tf  # or ai_edge_litert.interpreter',
               'interpreter = tf.lite.Interpreter(model_path="model.tflite")',
               'i, o = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]',
               'interpreter.resize_tensor_input(i, images.shape); interpreter.allocate_tensors()',
               'interpreter.set_tensor(i, images); interpreter.invoke(); probabilities = interpreter.get_tensor(o)'),
    "onnx": ('import onnxruntime',
             'session = onnxruntime.InferenceSession("model.onnx")',
             'probabilities = session.run(None, {"image": images})[0]'),
}


def _score_text(score: Any, metric: str, label: str, n_test: Any) -> str:
    if score is None:
        return "not recorded"
    text = f"{label} {float(score):.3f}"
    if metric == "accuracy" and isinstance(n_test, int) and n_test > 0:
        from transferlab.compare import wilson_interval

        low, high = wilson_interval(float(score), n_test)
        text += f" (95 % Wilson interval {float(low):.3f}–{float(high):.3f}, over {n_test} test images)"
    return text


def model_card(registry: Any, run: dict[str, Any], job: JobSpec, meta: dict[str, Any], record: dict[str, Any]) -> str:
    """``model-card.md``: what the model does, its input, data and split, training, scores with intervals,
    weights provenance, package versions, and how to load each exported format. No local paths."""
    from transferlab.redact import public_weights, redact_text
    from transferlab.runner.runner import package_versions

    manifest = json.loads(run.get("manifest_json") or "{}")
    metrics = json.loads(run.get("metrics_json") or "{}")
    phases = json.loads(run.get("phases_json") or "[]")
    metric = run.get("metric") or "accuracy"
    label = run.get("metric_label") or metric
    n_test = manifest.get("n_test")
    names = record["class_names"]
    size = record["input"]["resized_to"][0]
    task = registry.tasks.get(job.task)
    backbone = registry.backbone(job.backbone)
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    weights = public_weights(job.weights, job.weights_sha256)
    source_sha = manifest.get("weights_sha256")
    lines = [
        f"# Model card: {job.task} · {job.backbone} · {job.strategy}", "",
        f"Run `{run['run_id']}`, exported {record['exported_at']} by transferlab "
        f"{package_versions(['transferlab']).get('transferlab', '?')}.", "",
        "## What it does",
        f"Image classification into {len(names)} classes (`labels.txt`, one per line, in output order): {shown}.",
        *([f"Task: {task.description}"] if task is not None and task.description else []), "",
        "## Input and output",
        "- Input `image`: float32, RGB, values 0–255, shape (batch, height, width, 3), any height and width.",
        f"- Inside the model: bilinear resize to {size}×{size} px (as in training), then the backbone's "
        f"preprocessing ({backbone.preprocessing!r}, a fixed per-channel affine map).",
        "- Grey images: repeat the channel three times. Decode other modes to RGB first (Pillow `.convert(\"RGB\")`).",
        f"- Output: shape (batch, {len(names)}), class probabilities (softmax) in `labels.txt` order.", "",
        "## Data and split",
        f"- Task `{job.task}`, data version {run.get('data_version') or 'not fingerprinted'}.",
        f"- Split ({manifest.get('split', 'fixed, seeded')}): {manifest.get('n_train', '?')} training, "
        f"{manifest.get('n_val', '?')} validation, {n_test if n_test is not None else '?'} test images; training set "
        + (f"{job.examples_per_class} examples per class" if job.examples_per_class else
           (f"a fraction {job.fraction:g} of the pool" if job.fraction else "the whole pool"))
        + f", seed {job.seed}.", "",
        "## Training",
        f"- Strategy `{job.strategy}`; backbone `{job.backbone}` ({backbone.family or backbone.description or 'plugin'}), "
        f"starting weights `{weights}`" + (f", sha256 {source_sha}" if source_sha else ", no pinned sha256") + ".",
        f"- Input size {size} px, batch size {job.batch_size}, augmentation {'on' if job.augment else 'off'}, "
        f"class weights {job.class_weight}.",
        *[f"- Phase `{p.get('phase')}`: trains {p.get('train')}, {p.get('epochs_run', p.get('epochs'))} epochs, "
          f"learning rate {p.get('learning_rate')}" for p in phases], "",
        "## Scores (test split)",
        f"- Stored run: {_score_text(run.get('score'), metric, label, n_test)}.",
    ]
    if run.get("balanced_accuracy") is not None:
        lines.append(f"- Balanced accuracy {float(run['balanced_accuracy']):.3f}"
                     + (f", macro F1 {float(metrics['macro_f1']):.3f}." if "macro_f1" in metrics else "."))
    if not _same_score(meta, run):
        lines.append(f"- **These weights** come from a re-run of the same job ({meta.get('created_at', '?')}): "
                     f"{_score_text(meta.get('score'), metric, label, n_test)}. The stored run's figures above are of "
                     "its first training; training is not bit-for-bit repeatable.")
    check = record["reproduction"]
    if check.get("checked") and check.get("agreement") is not None:
        lines.append(f"- Checked at export on the first {check['images']} test images at their original size: the "
                     f"exported model's top class is the trained model's on {check['agreement']:.1%} of them "
                     f"(accuracy on them {check['accuracy']:.3f}).")
    elif check.get("checked"):
        lines.append(f"- Checked at export on all {check['images']} test images at their original size: accuracy "
                     f"{check['accuracy']:.3f}, as the kept weights scored.")
    else:
        lines.append(f"- Not checked against the test images at export: {check.get('why', 'no data')}")
    custom = record["custom_layers"]
    lines += [
        "", "## Weights provenance",
        f"- Kept weights (transferlab `weights.npz`): sha256 {meta.get('weights_sha256', '?')}.",
        "- Every exported file's sha256: `export.json`.",
        "- " + ("Standard Keras layers only: `keras.saving.load_model` needs no custom objects." if not custom else
                "Layers from plugins (`keras.saving.load_model` needs them as custom_objects): " + ", ".join(custom)),
        "", "## Software",
        "- Trained with: " + ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("packages", {}).items()))
        + (f", Python {manifest['python']}" if manifest.get("python") else "") + ".",
        "- Exported with: " + ", ".join(f"{k} {v}" for k, v in sorted(
            package_versions(["tensorflow", "keras", "tf2onnx", "onnx"]).items())) + ".",
        "", "## How to load",
        "`images`: a float32 numpy array (n, height, width, 3), RGB 0–255 (one size per call).",
    ]
    for name in record["formats"]:
        lines += ["", f"{name} (`{FORMAT_FILES[name]}`):", "```python", *_LOAD[name], "```"]
    return redact_text("\n".join(lines) + "\n")

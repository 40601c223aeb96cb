"""Run an exported model (:mod:`transferlab.export`) on images: any of its formats, sha256-checked first.

:func:`load_export` reads ``export.json``, picks a format (asked for, else the first present of
:data:`PREFERENCE`), checks the sha256 of every file of that format, and returns an :class:`ExportedModel`
whose ``probabilities(images)`` takes uint8 or float RGB arrays of any size. TFLite runs in
``tf.lite.Interpreter`` (its input resized per image size), ONNX in onnxruntime, SavedModel through its
serving signature. The Keras format is never given to ``keras.saving.load_model`` (house rule: nothing read
back may run code): the architecture is rebuilt through transferlab from the recipe in export.json and
only the weights are read from ``model.keras``.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from transferlab.errors import UserError
from transferlab.safe_io import sha256_file

#: formats tried, in order, when none is asked for: the lightest runtime first
PREFERENCE = ("tflite", "onnx", "saved_model", "keras")


@dataclass
class ExportedModel:
    """An export folder opened in one format; ``run(batch)`` maps float32 (n, h, w, 3) to probabilities."""

    folder: Path
    record: dict[str, Any]
    format: str
    run: Callable[[np.ndarray], np.ndarray]

    @property
    def class_names(self) -> list[str]:
        """The class of each output, in order (as ``labels.txt``)."""
        return list(self.record["class_names"])

    def probabilities(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """Class probabilities (n, classes) for RGB images (h, w, 3) of any sizes."""
        return predict_images(self.run, images)


def read_record(folder: str | Path) -> dict[str, Any]:
    """``export.json`` of an export folder; a UserError when the folder is not one."""
    path = Path(folder) / "export.json"
    if not path.is_file():
        raise UserError(f"{folder} is not an export folder (no export.json). Make one with `transferlab export "
                        "RUN_ID --out DIR`.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read as JSON ({exc}). Export the run again.") from None
    needed = ("files", "format_files", "class_names", "recipe")
    if not isinstance(record, dict) or any(key not in record for key in needed):
        raise UserError(f"{path} is not a transferlab export record (it lacks one of {', '.join(needed)}). "
                        "Export the run again.")
    return record


def choose_format(record: dict[str, Any], asked: str | None = None) -> str:
    """``asked`` when the export has it, else the first of :data:`PREFERENCE` it has (and this machine can
    run: onnxruntime installed for ONNX)."""
    present = list(record["format_files"])
    if asked is not None:
        if asked not in present:
            raise UserError(f"This export has no {asked!r} format. It has: {', '.join(present) or 'none'}.")
        return asked
    for name in PREFERENCE:
        if name in present and (name != "onnx" or _has("onnxruntime")):
            return name
    raise UserError(f"This export has no format this machine can run (it has: {', '.join(present) or 'none'}); "
                    "onnx needs pip install 'transferlab[onnx]'.")


def check_files(folder: Path, record: dict[str, Any], name: str) -> list[Path]:
    """The files of format ``name``, each checked against its sha256 in export.json (a UserError naming
    the first missing or altered one)."""
    from transferlab.export import format_files

    files = format_files(record, name)
    if not files:
        raise UserError(f"export.json lists no files for the {name} format. Export the run again.")
    for relative in files:
        path = folder / relative
        if not path.is_file():
            raise UserError(f"{relative} is missing from the export folder {folder}. Export the run again.")
        if sha256_file(path) != record["files"][relative]["sha256"]:
            raise UserError(f"{relative} in {folder} does not match its sha256 in export.json: the file is altered "
                            "or truncated. Export the run again.")
    return [folder / relative for relative in files]


def load_export(folder: str | Path, asked: str | None = None, registry: Any = None) -> ExportedModel:
    """Open export folder ``folder`` in format ``asked`` (or the preferred one), its files sha256-checked.
    ``registry`` rebuilds the architecture for the keras format (default: the installed plugins)."""
    folder = Path(folder)
    record = read_record(folder)
    name = choose_format(record, asked)
    check_files(folder, record, name)
    path = folder / record["format_files"][name]
    if name == "tflite":
        run = _tflite(path)
    elif name == "onnx":
        run = _onnx(path)
    elif name == "saved_model":
        run = _saved_model(path)
    else:
        run = _keras(path, record, registry)
    return ExportedModel(folder=folder, record=record, format=name, run=run)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _tflite(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to ai-edge-litert
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run(batch: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(source, list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source, batch)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(target))

    return run


def _onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    if not _has("onnxruntime"):
        raise UserError("Running the onnx format needs onnxruntime: pip install 'transferlab[onnx]' (or pick "
                        "another format with --format).")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: np.asarray(session.run(None, {name: batch})[0])


def _saved_model(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    name = next(iter(serve.structured_input_signature[1]))
    return lambda batch: next(iter(serve(**{name: tf.constant(batch)}).values())).numpy()


def _keras(path: Path, record: dict[str, Any], registry: Any) -> Callable[[np.ndarray], np.ndarray]:
    from transferlab.runner.assembly import load_weights_strictly

    model = rebuild_export_model(record["recipe"], registry)
    load_weights_strictly(model, path, record["recipe"]["job"]["backbone"])
    return lambda batch: np.asarray(model(batch))


def rebuild_export_model(recipe: dict[str, Any], registry: Any = None) -> Any:
    """The export model's architecture from export.json's ``recipe`` (its weights not loaded): the run's
    inference network (:func:`transferlab.runner.inference.inference_model`) behind the export's resize and
    preprocessing (:func:`transferlab.export_model.export_model`)."""
    from transferlab.export_model import export_model
    from transferlab.models import architecture

    if registry is None:
        from transferlab.registry import get_registry

        registry = get_registry()
    inference = architecture(registry, recipe)
    preprocess = recipe["preprocess"]
    return export_model(inference, int(recipe["input_size"]), np.asarray(preprocess["matrix"], np.float64),
                        np.asarray(preprocess["bias"], np.float64))


# ------------------------------------------------------------------------------------------ images

def read_images(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Every image file decoded to uint8 RGB (h, w, 3), or a UserError naming the first that cannot be read
    (nothing is predicted then). Decoded as training decodes files (:func:`transferlab.image_files.read_image_rgb`:
    EXIF orientation applied, grey and palettes to RGB, alpha on black)."""
    from transferlab.image_files import check_image, read_image_rgb

    images = []
    for path in paths:
        try:
            images.append(read_image_rgb(path))
        except UserError:
            reason = check_image(path) or "it cannot be decoded"
            raise UserError(f"Cannot read image {path}: {reason}. Nothing was predicted; give image files Pillow "
                            "can read (JPEG, PNG, BMP, GIF, TIFF, WebP, PPM).") from None
    return images


def predict_images(run: Callable[[np.ndarray], np.ndarray], images: Iterable[np.ndarray], batch: int = 64
                   ) -> np.ndarray:
    """``run``'s outputs for RGB ``images`` of any sizes, as float32 batches (consecutive images of one size
    share a batch of at most ``batch``)."""
    outputs: list[np.ndarray] = []
    group: list[np.ndarray] = []

    def flush() -> None:
        if group:
            outputs.append(np.asarray(run(np.stack(group).astype(np.float32))))
            group.clear()

    for image in images:
        if group and (image.shape != group[0].shape or len(group) == batch):
            flush()
        group.append(image)
    flush()
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> list[list[dict[str, Any]]]:
    """Per row, the ``k`` most probable classes: ``{"label", "index", "probability"}``, most probable first
    (ties by class index)."""
    k = max(1, min(int(k), len(class_names)))
    rows = []
    for row in np.asarray(probabilities, dtype=np.float64):
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        rows.append([{"label": str(class_names[i]), "index": int(i), "probability": float(row[i])} for i in order])
    return rows

"""The network an export writes, and writing it in each format.

:func:`export_model` puts in front of a run's inference network what training did before it: a bilinear
resize to the run's input size (``tf.image.resize``, as :func:`transferlab.data.make_image_dataset`), then
the backbone's preprocessing as a fixed per-pixel affine map of the three channels
(:func:`affine_preprocessing`: ``x / 127.5 - 1``, torch's mean and std, caffe's BGR flip and mean are all
``A x + b``), with standard Keras layers only, so the ``.keras`` file loads with plain Keras.
:func:`check_export_model` proves it computes what training's pipeline computes; :func:`write_formats`
writes it as Keras, SavedModel, TFLite and ONNX. TensorFlow is imported only inside the functions.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from transferlab.errors import TransferlabError, UserError

FORMATS = ("keras", "saved_model", "tflite", "onnx")
#: the file (or folder) each format writes
FORMAT_FILES = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}


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


# ------------------------------------------------------------------------------------------ writing

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

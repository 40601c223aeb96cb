"""Model assembly: a backbone with its starting weights, its inputs, its spatial feature map, augmentation."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from transferlab.errors import UserError, WeightsError
from transferlab.specs import BackboneSpec

def load_weights_strictly(model: Any, path: Path, backbone_name: str) -> None:
    """``model.load_weights`` that refuses a file for another architecture.

    Keras loads what matches and only warns about parts of the file it skips, which would leave some
    layers at their random init without an error; any such warning is turned into a WeightsError.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:
            raise WeightsError(
                f"Weights file {path} does not fit backbone {backbone_name!r}: {str(exc)[:300]}. "
                "Use a .weights.h5 saved from the same architecture."
            ) from None
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "freshly-initialized" in str(w.message)]
    if skipped:
        raise WeightsError(
            f"Weights file {path} does not fit backbone {backbone_name!r}: {skipped[0][:300]} "
            "Use a .weights.h5 saved from the same architecture."
        )


def feature_standardizer(train_features: Any) -> Any:
    """A fixed layer that scales features so that over the training subset their root mean square is 1.

    Every frozen strategy puts it between the base and the head: the head then trains on features of one
    scale whatever the base, so a random-init base (Lite0's features come out near 1e-12) is measured by
    its features, not by how its head's optimiser copes with their scale. One scale for all features
    keeps their geometry (per-feature standardisation amplifies near-constant features, which cost
    pretrained bases accuracy at small training sets). ``keras.layers.Rescaling`` rather than
    ``Normalization``: the latter floors each standard deviation at 1e-7 and would leave such features
    unscaled. Fixed (nothing trains in it), from the training subset only, saved with the model.
    """
    import keras
    import numpy as np

    features = np.asarray(train_features, dtype=np.float64)
    rms = float(np.sqrt(np.mean(np.square(features)))) if features.size else 0.0
    scale = 1.0 / rms if rms > 0 and np.isfinite(rms) else 1.0
    return keras.layers.Rescaling(scale=scale, name="feature_scale")


def feature_map(base: Any, backbone_name: str) -> Any:
    """The backbone's last spatial feature map, as a model sharing the base's layers.

    Backbones return pooled vectors; heads that need positions (detection) take the input of the last
    global pooling layer. Freezing and the freeze check apply to this model as to the base.
    """
    import keras

    pools = [layer for layer in base.layers
             if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D))]
    if not pools:
        raise UserError(
            f"Backbone {backbone_name!r} has no global pooling layer, so its spatial feature map cannot be found; "
            "this task needs a backbone that ends in GlobalAveragePooling2D."
        )
    return keras.Model(base.inputs, pools[-1].input, name=f"{base.name}_map")


def input_shape(backbone: BackboneSpec, size: int) -> tuple[int, ...]:
    """The shape a backbone is built for: ``(size, size, 3)`` pixels, or ``(size,)`` tokens for text."""
    return (size,) if backbone.modality == "text" else (size, size, 3)


def model_inputs(backbone: BackboneSpec, base: Any, size: int) -> Any:
    """The Keras inputs of a model around ``base``: an image of ``size`` px, or for a text backbone one
    int32 input of ``size`` tokens per input the base takes (``token_ids``, ``padding_mask``)."""
    import keras

    if backbone.modality == "text":
        return {name: keras.Input(shape=(size,), dtype="int32", name=name) for name in base.input}
    return keras.Input(shape=(size, size, 3), name="image")


def augmentation_layers():
    """Rotation 20 degrees, shifts 0.2, horizontal flip, zoom 0.2 (Keras preprocessing layers)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomRotation(20 / 360, fill_mode="nearest"),
            layers.RandomTranslation(0.2, 0.2, fill_mode="nearest"),
            layers.RandomFlip("horizontal"),
            layers.RandomZoom(0.2, fill_mode="nearest"),
        ],
        name="augmentation",
    )

"""A small CNN backbone: fast on CPU, used from scratch and as the network the engine pretrains on a
source task for transfer (and corrupted-source) comparisons."""
from __future__ import annotations

from transferlab import BackboneSpec, hookimpl


def preprocess_unit(x):
    """Scale [0, 255] images to [0, 1]."""
    return x / 255.0


def build_small_cnn(input_shape: tuple[int, int, int], weights: str | None = None):
    """Four conv blocks (32-32-64-128 filters) with BatchNorm and ReLU, then global average pooling.

    BatchNorm momentum is 0.9 (not Keras's 0.99) so its moving statistics settle within the few dozen
    steps that small training sets give. Only random init is offered here; pretrained versions come from the engine's own pretrain jobs.
    """
    import keras
    from keras import layers

    if weights not in (None, "none"):
        raise ValueError(f"small_cnn has no named weight source. Received: weights={weights!r}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((32, 32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        if i < 4:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="small_cnn")


@hookimpl
def register_backbones() -> list[BackboneSpec]:
    """The small CNN."""
    return [
        BackboneSpec(
            name="small_cnn",
            build=build_small_cnn,
            preprocess=preprocess_unit,
            preprocessing="unit",
            min_input_size=16,
            default_input_size=32,
            family="small CNN",
            description="4 conv blocks, 32-32-64-128 filters, BatchNorm; ~0.1 M parameters.",
        )
    ]

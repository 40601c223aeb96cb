"""An example third-party transferlab plugin.

It registers one backbone (a two-block CNN) and one strategy (train the head, then the top 4 layers
with weights and the head at a tenth of the head phase's learning rate), written only with the public
``PhaseSpec`` fields: no change to transferlab is needed for a new strategy. Install it with ``pip install ./docs/example-plugin`` and it
shows up in ``transferlab plugins``, ``transferlab backbones`` and the dashboard.
"""
from __future__ import annotations

from transferlab import BackboneSpec, PhaseSpec, StrategySpec, hookimpl


def build_example_convnet(input_shape, weights=None):
    """Two conv blocks and global average pooling. Keras is imported here, not at module import."""
    import keras
    from keras import layers

    if weights not in (None, "none"):
        raise ValueError(f"example_convnet has no pretrained weights. Received: weights={weights!r}")
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="block1_conv")(inputs)
    x = layers.MaxPooling2D(name="block1_pool")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="block2_conv")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="example_convnet")


def scale_to_unit(x):
    """Images in [0, 255] to [0, 1]."""
    return x / 255.0


@hookimpl
def register_backbones():
    """The example backbone."""
    return [
        BackboneSpec(
            name="example_convnet",
            build=build_example_convnet,
            preprocess=scale_to_unit,
            preprocessing="unit",
            min_input_size=8,
            default_input_size=32,
            description="Example plugin: 2 conv blocks, ~5 k parameters.",
        )
    ]


@hookimpl
def register_strategies():
    """The example strategy."""
    return [
        StrategySpec(
            name="example_head_then_top4",
            description="Example plugin: head first, then the top 4 layers with weights at a tenth of the head's "
            "learning rate, for `fine_tune_epochs`.",
            phases=(
                PhaseSpec("head", train="head", epochs="epochs", learning_rate="learning_rate"),
                PhaseSpec("top4", train=4, epochs="fine_tune_epochs", learning_rate="learning_rate", lr_scale=0.1),
            ),
        )
    ]

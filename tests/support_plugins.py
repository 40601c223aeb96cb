"""Test-only plugins: tiny backbones that make strategy and freeze tests fast, and broken plugins."""
from __future__ import annotations

from transferlab import BackboneSpec, StrategySpec, TaskSpec, hookimpl


def _unit(x):
    return x / 255.0


def build_tiny(input_shape, weights=None):
    """Two small conv layers with BatchNorm: enough structure for every strategy, milliseconds to train."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="tiny_conv1")(inputs)
    x = layers.BatchNormalization(momentum=0.5, name="tiny_bn1")(x)
    x = layers.ReLU(name="tiny_relu1")(x)
    x = layers.Conv2D(8, 3, padding="same", name="tiny_conv2")(x)
    x = layers.ReLU(name="tiny_relu2")(x)
    x = layers.GlobalAveragePooling2D(name="tiny_pool")(x)
    return keras.Model(inputs, x, name="tiny")


def _leaky_layer_class():
    import keras

    class LeakyCounter(keras.layers.Layer):
        """A layer that changes one of its (non-trainable) weights on every call: breaks any freeze."""

        def build(self, input_shape):
            self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

        def call(self, x):
            self.calls.assign_add(1.0)
            return x

    return LeakyCounter


def build_leaky(input_shape, weights=None):
    """The tiny backbone with a layer that writes to its own weights even when frozen."""
    import keras

    base = build_tiny(input_shape)
    inputs = keras.Input(shape=input_shape)
    x = _leaky_layer_class()(name="leaky_counter")(inputs)
    return keras.Model(inputs, base(x), name="leaky")


def build_nan(input_shape, weights=None):
    """The tiny backbone whose features are NaN: the loss is NaN from the first batch."""
    import keras

    base = build_tiny(input_shape)
    inputs = keras.Input(shape=input_shape)
    feats = base(inputs)
    return keras.Model(inputs, keras.layers.Rescaling(float("nan"), name="poison")(feats), name="nan_net")


class TinyPlugin:
    """Registers the test backbones the way a third-party plugin would."""

    @staticmethod
    @hookimpl
    def register_backbones():
        common = dict(preprocess=_unit, preprocessing="unit", min_input_size=8, default_input_size=16)
        return [
            BackboneSpec(name="tiny", build=build_tiny, **common),
            BackboneSpec(name="leaky", build=build_leaky, **common),
            BackboneSpec(name="nan_net", build=build_nan, **common),
        ]


class RaisingPlugin:
    @staticmethod
    @hookimpl
    def register_strategies():
        raise RuntimeError("boom in hook")


class WrongTypePlugin:
    @staticmethod
    @hookimpl
    def register_tasks():
        return ["not a TaskSpec"]


class DuplicatePlugin:
    @staticmethod
    @hookimpl
    def register_strategies():
        from transferlab import PhaseSpec

        return [
            StrategySpec(name="scratch", description="a clash", phases=(PhaseSpec("p", "all"),)),
            StrategySpec(name="my_unique_strategy", description="fine", phases=(PhaseSpec("p", "all"),)),
        ]


class UnknownHookPlugin:
    @staticmethod
    @hookimpl
    def register_backbone():  # misspelled: must be register_backbones
        return []


class GoodTaskPlugin:
    @staticmethod
    @hookimpl
    def register_tasks():
        from transferlab.plugins.image_tasks import load_digits_task

        return [TaskSpec(name="digits_again", description="digits under another name", load=load_digits_task,
                         num_classes=10)]

"""Multimodal (image + text): a STUB, the starting point for a third-party plugin.

It registers the task ``multimodal_stub``, marked ``stub=True``: listed everywhere with "(stub)", never
counted as a working task, and refused by every run with :data:`MISSING`.

The interface is the one the slide sketches: a vision encoder and a text encoder (any registered image
and text backbones), a joint encoder over their concatenated embeddings, and a task head.
:func:`build_joint_model` builds that Keras model for real, so a plugin author starts from working code.
What a working multimodal plugin still has to add is listed in :data:`MISSING`.
"""
from __future__ import annotations

from typing import Any

from transferlab import TaskSpec, UserError, hookimpl

MISSING = (
    "multimodal_stub is a stub and cannot run. A working multimodal plugin needs (1) a paired image-text dataset "
    "(TaskData with both images and texts), (2) a runner path that feeds two inputs, i.e. a TaskHead whose model "
    "takes an image and a text backbone, and (3) strategies that say which of the two encoders to freeze. "
    "Start from transferlab.plugins.multimodal_stub.build_joint_model; see docs/hooks.md."
)


def build_joint_model(image_encoder: Any, text_encoder: Any, num_classes: int, image_size: int, sequence_length: int,
                      joint_units: int = 256) -> Any:
    """Vision encoder + text encoder -> joint encoder (dense layers over both embeddings) -> task head.

    ``image_encoder`` and ``text_encoder`` are models built by an image and a text ``BackboneSpec``
    (``build``); the text encoder takes ``token_ids`` and ``padding_mask``. Returns a Keras model with
    inputs ``image``, ``token_ids`` and ``padding_mask`` and a softmax over ``num_classes``.
    """
    import keras
    from keras import layers

    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    token_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input(shape=(sequence_length,), dtype="int32", name="padding_mask")
    seen = image_encoder(image, training=False)
    read = text_encoder({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
    joint = layers.Concatenate(name="joint_concat")([seen, read])
    joint = layers.Dense(joint_units, activation="relu", name="joint_encoder")(joint)
    joint = layers.Dropout(0.2, name="joint_dropout")(joint)
    outputs = layers.Dense(num_classes, activation="softmax", name="head", dtype="float32")(joint)
    return keras.Model({"image": image, "token_ids": token_ids, "padding_mask": padding_mask}, outputs,
                       name="multimodal_joint")


def refuse() -> Any:
    """The stub's loader: always refuses, saying what is missing."""
    raise UserError(MISSING)


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """The multimodal stub task (refuses to run)."""
    return [
        TaskSpec(
            name="multimodal_stub",
            description="STUB: image + text -> joint encoder -> head; a starting point for a plugin, not runnable.",
            load=refuse,
            num_classes=None,
            available=lambda: False,
            kind="multimodal",
            stub=True,
        )
    ]

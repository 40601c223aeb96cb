"""The trained network in the one form that is kept and exported, whatever path trained it.

A run trains either end to end (image -> [augmentation] -> base -> [feature scale] -> head) or, for
frozen strategies, a head on cached features with the base outside the model. Both end as the same
network: a preprocessed image -> the base in inference mode -> the fixed feature scale (frozen
strategies) -> the head. :func:`inference_model` builds that network and :func:`trained_arrays` reads a
finished run's weights in its order, so a kept model is a plain list of arrays (no pickles, no
``load_model``) that :func:`load_arrays` puts back all or nothing.
"""
from __future__ import annotations

from typing import Any, Sequence

from transferlab.errors import WeightsError
from transferlab.runner.assembly import feature_map, input_shape, model_inputs


def inference_model(backbone: Any, head: Any, job: Any, num_classes: int, feature_scale: float | None = None,
                    base: Any = None) -> Any:
    """The network a run of ``job`` trained, for inference: preprocessed inputs of ``job.input_size`` px ->
    ``backbone`` (``training=False``) -> ``Rescaling(feature_scale)`` when given -> ``head``.

    ``base`` reuses a built backbone; otherwise one is built without weights (the caller loads them).
    """
    import keras

    if base is None:
        base = backbone.build(input_shape(backbone, job.input_size), None)
    inputs = model_inputs(backbone, base, job.input_size)
    net = feature_map(base, backbone.name) if head.feature == "map" else base
    x = net(inputs, training=False)
    if feature_scale is not None:
        x = keras.layers.Rescaling(scale=float(feature_scale), name="feature_scale")(x)
    return keras.Model(inputs, head.outputs(x, num_classes, job), name=f"{backbone.name}_inference")


def trained_arrays(*parts: Any) -> list[Any]:
    """The weights of a finished run in :func:`inference_model`'s order, as numpy arrays.

    End to end, ``parts`` is the trained model (augmentation and dropout hold no weights, so its weights
    are the inference model's, in order); on cached features it is ``(base, head_model)``.
    """
    return [variable.numpy() for part in parts for variable in part.weights]


def load_arrays(model: Any, arrays: Sequence[Any], what: str = "kept model") -> None:
    """Put ``arrays`` into ``model`` all or nothing: a count or shape that differs raises WeightsError
    naming the first mismatch, and nothing is assigned."""
    variables = model.weights
    if len(variables) != len(arrays):
        raise WeightsError(
            f"The {what} holds {len(arrays)} weight arrays, but the network it should fit has {len(variables)}. "
            "It was saved from another architecture or version; re-run the job with --keep-models."
        )
    for variable, array in zip(variables, arrays):
        if tuple(variable.shape) != tuple(array.shape):
            raise WeightsError(
                f"The {what} does not fit: {variable.path} has shape {tuple(variable.shape)}, the file "
                f"{tuple(array.shape)}. Re-run the job with --keep-models."
            )
    for variable, array in zip(variables, arrays):
        variable.assign(array)

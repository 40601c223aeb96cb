"""PyTorch checkpoints onto Keras layers, without torch: the layout conversion and an all-or-nothing loader.

Plugins that ship a backbone with weights from a PyTorch checkpoint (EfficientNet-Lite, torchvision's
MobileNetV2) read the file with :func:`transferlab.torch_legacy.load_legacy_state_dict` (no pickled code
runs), describe which checkpoint entries feed which Keras layer in a *plan*, and call
:func:`load_torch_state`: every array is converted and shape-checked before any is assigned, every Keras
layer that holds weights must be fed, and every checkpoint entry must be used, so a checkpoint for another
architecture never leaves a model half-loaded or partly at random init.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["LAYER_KINDS", "load_torch_state", "torch_layer_arrays"]

#: the layer kinds a plan may name, with the checkpoint entries each reads (``<prefix>.<entry>``)
LAYER_KINDS = {
    "conv": ("weight",),  # (O, I, kh, kw) -> Conv2D kernel (kh, kw, I, O)
    "dwconv": ("weight",),  # (C, 1, kh, kw) -> DepthwiseConv2D kernel (kh, kw, C, 1): depth multiplier 1
    "bn": ("weight", "bias", "running_mean", "running_var"),  # Keras order: gamma, beta, mean, variance
    "dense": ("weight", "bias"),  # (out, in) -> Dense kernel (in, out), bias
}


def torch_layer_arrays(kind: str, prefix: str, state: Mapping[str, np.ndarray], layer: str
                       ) -> tuple[list[str], list[np.ndarray]]:
    """The checkpoint keys a Keras ``layer`` of ``kind`` reads under ``prefix``, and its weights in Keras
    layout (float32), in the order ``layer.set_weights`` takes them.

    Raises:
        ValueError: Naming the layer, when an entry is missing or the kind is unknown.
    """
    if kind not in LAYER_KINDS:
        raise ValueError(f"layer {layer!r}: unknown layer kind {kind!r}; one of {sorted(LAYER_KINDS)}")
    keys = [f"{prefix}.{entry}" for entry in LAYER_KINDS[kind]]
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"layer {layer!r}: checkpoint has no {missing[0]!r}")
    arrays = [np.asarray(state[key], dtype=np.float32) for key in keys]
    if kind == "conv":
        arrays[0] = arrays[0].transpose(2, 3, 1, 0)
    elif kind == "dwconv":
        arrays[0] = arrays[0].transpose(2, 3, 0, 1)
    elif kind == "dense":
        arrays[0] = arrays[0].T
    return keys, arrays


def load_torch_state(model: Any, plan: Mapping[str, tuple[str, str]], state_dict: Mapping[str, np.ndarray],
                     ignored: Iterable[str] = (), source: str = "checkpoint") -> None:
    """Copy ``state_dict`` into ``model`` as ``plan`` says (Keras layer name -> (kind, checkpoint prefix)).

    ``num_batches_tracked`` buffers and the entries starting with one of ``ignored`` (e.g. a classifier the
    model leaves out) are not used; ``source`` names the checkpoint in messages. Everything is converted and
    checked before anything is assigned.

    Raises:
        ValueError: Naming the layer, when a weighted layer has no entry in the plan, the model lacks a
            planned layer, an entry is missing, a shape differs, or the checkpoint holds entries nobody uses.
    """
    layers_by_name = {layer.name: layer for layer in model.layers}
    for layer in model.layers:  # a weighted layer left out would silently keep its random init
        if layer.weights and layer.name not in plan:
            raise ValueError(f"layer {layer.name!r} has weights but no {source} source")
    assignments: list[tuple[Any, list[np.ndarray]]] = []
    used: set[str] = set()
    for name, (kind, prefix) in plan.items():
        layer = layers_by_name.get(name)
        if layer is None:
            raise ValueError(f"model has no layer {name!r} that the {source} plan feeds")
        keys, arrays = torch_layer_arrays(kind, prefix, state_dict, name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [a.shape for a in arrays]
        if expected != got:
            raise ValueError(f"layer {name!r}: shape mismatch, model {expected} vs {source} {got}")
        used.update(keys)
        assignments.append((layer, arrays))
    skip = tuple(ignored)
    unused = sorted(k for k in set(state_dict) - used
                    if not k.endswith(".num_batches_tracked") and not (skip and k.startswith(skip)))
    if unused:
        raise ValueError(f"{source} entries not used by the model: {unused[:5]}{' ...' if len(unused) > 5 else ''}")
    for layer, arrays in assignments:
        layer.set_weights(arrays)

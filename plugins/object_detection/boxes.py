"""Validation and overlap of boxes, shared by every part of the detector.

Conventions shared by every module of the detector:

* A box is normalised to [0, 1] image coordinates in corner format ``[x1, y1, x2, y2]``.
* Object class ids passed *in* are ``0..C-1``. In encoded targets and in predicted class
  probabilities, column/class 0 is background and object class ``c`` is ``c + 1``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "as_boxes",
    "as_class_ids",
    "as_variances",
    "centre_size",
    "check_fraction",
    "check_positive_int",
    "pairwise_iou",
]


def as_boxes(value: Any, name: str) -> np.ndarray:
    """Validate an (n, 4) box array and return it as float64 (empty input becomes shape (0, 4))."""
    boxes = np.asarray(value, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"Expected `{name}` of shape (n, 4) in corner format [x1, y1, x2, y2]. "
            f"Received: {name}.shape={boxes.shape}"
        )
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"Expected `{name}` to be finite. Received: {name} with NaN or inf values")
    return boxes


def as_variances(variances: Sequence[float]) -> np.ndarray:
    """Validate SSD variances: 4 positive numbers, as float64."""
    v = np.asarray(variances, dtype=np.float64)
    if v.shape != (4,) or not np.all(v > 0):
        raise ValueError(f"Expected `variances` to be 4 positive numbers. Received: variances={variances!r}")
    return v


def centre_size(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre x, centre y, width and height of corner-format boxes."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of validated float64 boxes; 0 wherever the union is empty."""
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    # Two zero-area boxes have union 0; dividing would give NaN, and they overlap nowhere anyway.
    np.divide(inter, union, out=out, where=union > 0)
    return out


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int, or ValueError unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_fraction(value: Any, name: str) -> float:
    """``value`` as a float, or ValueError unless it is a number in [0, 1]."""
    if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"Expected `{name}` to be a number in [0, 1]. Received: {name}={value!r}")
    return float(value)


def as_class_ids(value: Any, name: str, length: int, num_classes: int | None = None) -> np.ndarray:
    """Validate ``length`` integer object class ids (in ``0..num_classes-1`` when given) as int64."""
    ids = np.asarray(value)
    if ids.size == 0:
        ids = ids.reshape(0)
    if ids.ndim != 1 or len(ids) != length:
        raise ValueError(f"Expected `{name}` of shape ({length},). Received: {name}.shape={ids.shape}")
    if ids.size and (not np.all(np.isfinite(ids.astype(np.float64))) or not np.all(ids == np.round(ids))):
        raise ValueError(f"Expected `{name}` to hold integer class ids. Received: {name}={ids!r}")
    ids = ids.astype(np.int64)
    upper = f"..{num_classes - 1}" if num_classes is not None else ""
    if ids.size and (ids.min() < 0 or (num_classes is not None and ids.max() >= num_classes)):
        raise ValueError(f"Expected `{name}` in 0{upper} (object classes). Received: {name}={ids.tolist()!r}")
    return ids

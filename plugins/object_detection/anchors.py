"""SSD maths: anchors, IoU, target encoding and decoding, non-maximum suppression, detections.

Everything here is numpy. Why not ``keras.utils.bounding_boxes`` or KerasHub's anchor generator and
box matcher: those are backend tensor ops for in-graph pipelines with their own box formats and
matching rules; here targets are encoded once per example in numpy at data-preparation time, and
every function is small enough to test exhaustively (Hypothesis round trips). Box conventions are in
:mod:`.boxes`.
"""
from __future__ import annotations

import math

import numpy as np

from transferlab.plugins.object_detection.boxes import (
    as_boxes,
    as_class_ids,
    as_variances,
    centre_size,
    check_fraction,
    check_positive_int,
    pairwise_iou,
)

__all__ = [
    "DEFAULT_ASPECT_RATIOS",
    "DEFAULT_SCALES",
    "DEFAULT_VARIANCES",
    "anchors_per_cell",
    "decode_boxes",
    "detect",
    "encode_targets",
    "iou",
    "make_anchors",
    "non_max_suppression",
]

DEFAULT_SCALES: tuple[float, ...] = (0.2, 0.35, 0.5)
DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5)
# The usual SSD variances: they rescale the offsets to roughly unit variance, which keeps the
# smooth-L1 loss in its quadratic region for typical errors.
DEFAULT_VARIANCES: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
# exp() of a raw network output can overflow float32; torchvision clamps at the same value, which
# still lets a decoded box be 62.5 times its anchor.
_MAX_LOG_SCALE = math.log(1000.0 / 16.0)


# --------------------------------------------------------------------------------------------- anchors
def anchors_per_cell(
    scales: tuple[float, ...] = DEFAULT_SCALES, aspect_ratios: tuple[float, ...] = DEFAULT_ASPECT_RATIOS
) -> int:
    """Number of anchors K centred on each feature-map cell: ``len(scales) * len(aspect_ratios)``."""
    return len(tuple(scales)) * len(tuple(aspect_ratios))


def make_anchors(
    feature_size: int,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    aspect_ratios: tuple[float, ...] = DEFAULT_ASPECT_RATIOS,
) -> np.ndarray:
    """Anchor boxes for a square ``feature_size`` x ``feature_size`` feature map.

    Cell (i, j) (row i, column j) is centred at ``((j + 0.5) / F, (i + 0.5) / F)``. Each cell holds
    K = ``anchors_per_cell(scales, aspect_ratios)`` anchors, scales outer and aspect ratios inner,
    with ``width = scale * sqrt(ratio)`` and ``height = scale / sqrt(ratio)``. Rows are ordered
    row-major over cells and then over the K anchors, which is exactly the order of a conv output
    of shape (F, F, K * D) reshaped to (F * F * K, D). Anchors are not clipped to the image.

    Returns:
        float32 array of shape (F * F * K, 4), corner format.
    """
    feature_size = check_positive_int(feature_size, "feature_size")
    for name, values in (("scales", scales), ("aspect_ratios", aspect_ratios)):
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0 or not np.all(arr > 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"Expected `{name}` to be a non-empty tuple of positive numbers. Received: {name}={values!r}")
    scale = np.repeat(np.asarray(scales, dtype=np.float64), len(aspect_ratios))
    ratio = np.tile(np.asarray(aspect_ratios, dtype=np.float64), len(scales))
    w, h = scale * np.sqrt(ratio), scale / np.sqrt(ratio)  # (K,)
    centres = (np.arange(feature_size, dtype=np.float64) + 0.5) / feature_size
    cy, cx = np.meshgrid(centres, centres, indexing="ij")  # (F, F): i indexes y, j indexes x
    cx, cy = cx[:, :, None], cy[:, :, None]
    anchors = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)  # (F, F, K, 4)
    return anchors.reshape(-1, 4).astype(np.float32)


# ------------------------------------------------------------------------------------ IoU and encoding
def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of boxes ``a`` (N, 4) and ``b`` (M, 4).

    Returns a float32 (N, M) array in [0, 1]; disjoint boxes give 0 and so do zero-area boxes
    (never NaN).
    """
    return pairwise_iou(as_boxes(a, "a"), as_boxes(b, "b")).astype(np.float32)


def encode_targets(
    anchors: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    iou_threshold: float = 0.5,
    variances: tuple[float, float, float, float] = DEFAULT_VARIANCES,
) -> np.ndarray:
    """SSD training targets for one image.

    Matching: each anchor takes the ground-truth box it overlaps most if that IoU is at least
    ``iou_threshold``. In addition every ground-truth box is forced onto one anchor, even below the
    threshold, so no object goes unlearnt. The forced pairs are chosen greedily by descending IoU,
    one anchor per box, so two small boxes whose best anchor is the same still each get their own
    anchor (the one with the lower IoU takes its next best). Forced pairs override threshold
    matches. Only with more boxes than anchors can a box stay unmatched.

    Returns:
        float32 (A, 5): columns 0..3 the offsets ``dx = (gcx - acx) / aw / v0``,
        ``dy = (gcy - acy) / ah / v1``, ``dw = log(gw / aw) / v2``, ``dh = log(gh / ah) / v3``
        (zero for background), column 4 the class (0 background, object class c as c + 1).
    """
    anchors = as_boxes(anchors, "anchors")
    gt = as_boxes(gt_boxes, "gt_boxes")
    classes = as_class_ids(gt_classes, "gt_classes", len(gt))
    iou_threshold = check_fraction(iou_threshold, "iou_threshold")
    v = as_variances(variances)
    if len(gt) and not np.all((gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])):
        # log(0) would make the size targets infinite.
        bad = gt[~((gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1]))]
        raise ValueError(f"Expected every ground-truth box to have x2 > x1 and y2 > y1. Received: gt_boxes={bad.tolist()!r}")
    targets = np.zeros((len(anchors), 5), dtype=np.float32)
    if len(gt) == 0 or len(anchors) == 0:
        return targets

    overlaps = pairwise_iou(anchors, gt)  # (A, k)
    best_gt = overlaps.argmax(axis=1)
    matched = overlaps.max(axis=1) >= iou_threshold
    remaining = overlaps.copy()
    for _ in range(min(len(anchors), len(gt))):
        a, g = np.unravel_index(np.argmax(remaining), remaining.shape)
        best_gt[a], matched[a] = g, True
        remaining[a, :] = -1.0
        remaining[:, g] = -1.0

    acx, acy, aw, ah = centre_size(anchors[matched])
    gcx, gcy, gw, gh = centre_size(gt[best_gt[matched]])
    targets[matched, 0] = (gcx - acx) / aw / v[0]
    targets[matched, 1] = (gcy - acy) / ah / v[1]
    targets[matched, 2] = np.log(gw / aw) / v[2]
    targets[matched, 3] = np.log(gh / ah) / v[3]
    targets[matched, 4] = classes[best_gt[matched]] + 1
    return targets


def decode_boxes(
    anchors: np.ndarray, offsets: np.ndarray, variances: tuple[float, float, float, float] = DEFAULT_VARIANCES
) -> np.ndarray:
    """Boxes (A, 4) from SSD offsets (A, 4): the inverse of :func:`encode_targets`' columns 0..3.

    The log-size offsets are clamped at ``log(1000 / 16)`` (as torchvision does) so untrained
    network outputs cannot overflow; boxes are not clipped to the image.
    """
    anchors = as_boxes(anchors, "anchors")
    deltas = np.asarray(offsets, dtype=np.float64)
    if deltas.shape != anchors.shape:
        raise ValueError(
            f"Expected `offsets` with one row of 4 per anchor, shape {anchors.shape}. Received: offsets.shape={deltas.shape}"
        )
    v = as_variances(variances)
    acx, acy, aw, ah = centre_size(anchors)
    cx = deltas[:, 0] * v[0] * aw + acx
    cy = deltas[:, 1] * v[1] * ah + acy
    w = np.exp(np.minimum(deltas[:, 2] * v[2], _MAX_LOG_SCALE)) * aw
    h = np.exp(np.minimum(deltas[:, 3] * v[3], _MAX_LOG_SCALE)) * ah
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------------- suppression, detect
def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, max_output: int = 100
) -> np.ndarray:
    """Greedy NMS: keep the best-scored box, drop every box overlapping it by IoU > ``iou_threshold``,
    repeat. Returns the kept indices (int64) in descending score order, at most ``max_output``.
    Equal scores keep their input order."""
    boxes = as_boxes(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1) if np.size(scores) else np.zeros(0)
    if scores.shape != (len(boxes),) or not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Expected `scores` to be {len(boxes)} finite numbers, one per box. Received: scores.shape={scores.shape}"
        )
    iou_threshold = check_fraction(iou_threshold, "iou_threshold")
    max_output = check_positive_int(max_output, "max_output", minimum=0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_output:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        overlaps = pairwise_iou(boxes[best : best + 1], boxes[rest])[0]
        order = rest[overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def detect(
    anchors: np.ndarray,
    offsets: np.ndarray,
    class_probs: np.ndarray,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.45,
    max_detections: int = 50,
    variances: tuple[float, float, float, float] = DEFAULT_VARIANCES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final detections for one image from the network's outputs.

    Boxes are decoded, clipped to [0, 1] and those left with zero area (entirely outside the image)
    dropped. For each object class, anchors whose probability exceeds ``score_threshold`` go through
    NMS separately (so a dog does not suppress an overlapping cat). Column 0 of ``class_probs`` is
    background and is never reported.

    Returns:
        ``(boxes (d, 4) float32, scores (d,) float32, classes (d,) int64 in 0..C-1)`` sorted by
        descending score, ``d <= max_detections``.
    """
    anchors = as_boxes(anchors, "anchors")
    probs = np.asarray(class_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(anchors) or probs.shape[1] < 2:
        raise ValueError(
            f"Expected `class_probs` of shape ({len(anchors)}, C + 1) with C >= 1 (column 0 = background). "
            f"Received: class_probs.shape={probs.shape}"
        )
    score_threshold = check_fraction(score_threshold, "score_threshold")
    max_detections = check_positive_int(max_detections, "max_detections", minimum=0)
    boxes = np.clip(decode_boxes(anchors, offsets, variances).astype(np.float64), 0.0, 1.0)
    has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    found_boxes, found_scores, found_classes = [], [], []
    for column in range(1, probs.shape[1]):
        candidates = np.flatnonzero(has_area & (probs[:, column] > score_threshold))
        if candidates.size == 0:
            continue
        kept = candidates[non_max_suppression(boxes[candidates], probs[candidates, column], iou_threshold, max_detections)]
        found_boxes.append(boxes[kept])
        found_scores.append(probs[kept, column])
        found_classes.append(np.full(len(kept), column - 1, dtype=np.int64))
    if not found_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    all_scores = np.concatenate(found_scores)
    order = np.argsort(-all_scores, kind="stable")[:max_detections]
    return (
        np.concatenate(found_boxes)[order].astype(np.float32),
        all_scores[order].astype(np.float32),
        np.concatenate(found_classes)[order],
    )

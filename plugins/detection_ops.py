"""Pure building blocks of an SSD-style object detector: anchors, IoU, target encoding and decoding,
non-maximum suppression, VOC mAP, the SSD loss, and synthetic detection canvases built from
classification images.

Conventions shared by every function here:

* A box is normalised to [0, 1] image coordinates in corner format ``[x1, y1, x2, y2]``.
* Object class ids passed *in* are ``0..C-1``. In encoded targets and in predicted class
  probabilities, column/class 0 is background and object class ``c`` is ``c + 1``.

Everything is numpy except :func:`ssd_loss`, which imports TensorFlow only when called so that
importing this module (e.g. during plugin discovery) stays cheap.

Why not ``keras.utils.bounding_boxes`` or KerasHub's anchor generator and box matcher: those are
backend tensor ops for in-graph pipelines with their own box formats and matching rules; here targets
are encoded once per example in numpy at data-preparation time, scoring needs the VOC devkit's exact
matching and AP, and every function is small enough to test exhaustively (Hypothesis round trips).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ASPECT_RATIOS",
    "DEFAULT_SCALES",
    "DEFAULT_VARIANCES",
    "OBJECT_PIXEL_THRESHOLD",
    "anchors_per_cell",
    "average_precision",
    "compose_canvases",
    "decode_boxes",
    "detect",
    "encode_targets",
    "iou",
    "make_anchors",
    "non_max_suppression",
    "primary_class",
    "ssd_loss",
    "voc_map",
]

DEFAULT_SCALES: tuple[float, ...] = (0.2, 0.35, 0.5)
DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5)
# The usual SSD variances: they rescale the offsets to roughly unit variance, which keeps the
# smooth-L1 loss in its quadratic region for typical errors.
DEFAULT_VARIANCES: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
#: A canvas pixel above this value belongs to an object; boxes from compose_canvases are tight
#: around such pixels. Bilinear resizing leaves faint fringes, which should not widen a box.
OBJECT_PIXEL_THRESHOLD = 32
# exp() of a raw network output can overflow float32; torchvision clamps at the same value, which
# still lets a decoded box be 62.5 times its anchor.
_MAX_LOG_SCALE = math.log(1000.0 / 16.0)
_MAX_OVERLAP_BETWEEN_OBJECTS = 0.3
_PLACEMENT_TRIES = 30
_PROB_EPSILON = 1e-7


# --------------------------------------------------------------------------------------------- helpers
def _as_boxes(value: Any, name: str) -> np.ndarray:
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


def _as_variances(variances: Sequence[float]) -> np.ndarray:
    v = np.asarray(variances, dtype=np.float64)
    if v.shape != (4,) or not np.all(v > 0):
        raise ValueError(f"Expected `variances` to be 4 positive numbers. Received: variances={variances!r}")
    return v


def _centre_size(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def _check_fraction(value: Any, name: str) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"Expected `{name}` to be a number in [0, 1]. Received: {name}={value!r}")
    return float(value)


def _as_class_ids(value: Any, name: str, length: int, num_classes: int | None = None) -> np.ndarray:
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
    feature_size = _check_positive_int(feature_size, "feature_size")
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
    return _pairwise_iou(_as_boxes(a, "a"), _as_boxes(b, "b")).astype(np.float32)


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
    anchors = _as_boxes(anchors, "anchors")
    gt = _as_boxes(gt_boxes, "gt_boxes")
    classes = _as_class_ids(gt_classes, "gt_classes", len(gt))
    iou_threshold = _check_fraction(iou_threshold, "iou_threshold")
    v = _as_variances(variances)
    if len(gt) and not np.all((gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])):
        # log(0) would make the size targets infinite.
        bad = gt[~((gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1]))]
        raise ValueError(f"Expected every ground-truth box to have x2 > x1 and y2 > y1. Received: gt_boxes={bad.tolist()!r}")
    targets = np.zeros((len(anchors), 5), dtype=np.float32)
    if len(gt) == 0 or len(anchors) == 0:
        return targets

    overlaps = _pairwise_iou(anchors, gt)  # (A, k)
    best_gt = overlaps.argmax(axis=1)
    matched = overlaps.max(axis=1) >= iou_threshold
    remaining = overlaps.copy()
    for _ in range(min(len(anchors), len(gt))):
        a, g = np.unravel_index(np.argmax(remaining), remaining.shape)
        best_gt[a], matched[a] = g, True
        remaining[a, :] = -1.0
        remaining[:, g] = -1.0

    acx, acy, aw, ah = _centre_size(anchors[matched])
    gcx, gcy, gw, gh = _centre_size(gt[best_gt[matched]])
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
    anchors = _as_boxes(anchors, "anchors")
    deltas = np.asarray(offsets, dtype=np.float64)
    if deltas.shape != anchors.shape:
        raise ValueError(
            f"Expected `offsets` with one row of 4 per anchor, shape {anchors.shape}. Received: offsets.shape={deltas.shape}"
        )
    v = _as_variances(variances)
    acx, acy, aw, ah = _centre_size(anchors)
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
    boxes = _as_boxes(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1) if np.size(scores) else np.zeros(0)
    if scores.shape != (len(boxes),) or not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Expected `scores` to be {len(boxes)} finite numbers, one per box. Received: scores.shape={scores.shape}"
        )
    iou_threshold = _check_fraction(iou_threshold, "iou_threshold")
    max_output = _check_positive_int(max_output, "max_output", minimum=0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_output:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        overlaps = _pairwise_iou(boxes[best : best + 1], boxes[rest])[0]
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
    anchors = _as_boxes(anchors, "anchors")
    probs = np.asarray(class_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(anchors) or probs.shape[1] < 2:
        raise ValueError(
            f"Expected `class_probs` of shape ({len(anchors)}, C + 1) with C >= 1 (column 0 = background). "
            f"Received: class_probs.shape={probs.shape}"
        )
    score_threshold = _check_fraction(score_threshold, "score_threshold")
    max_detections = _check_positive_int(max_detections, "max_detections", minimum=0)
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


# ------------------------------------------------------------------------------------------ evaluation
def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve with VOC2010+ all-point interpolation.

    ``recall`` and ``precision`` are the cumulative values down a score-sorted detection list.
    Precision is replaced by its envelope (the maximum precision at any higher recall) and the
    area under that step function is returned. Empty input gives 0.0.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if rec.ndim != 1 or prec.shape != rec.shape:
        raise ValueError(
            f"Expected `recall` and `precision` as 1-D arrays of equal length. "
            f"Received: recall.shape={rec.shape}, precision.shape={prec.shape}"
        )
    if rec.size == 0:
        return 0.0
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc_map(
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[float, dict[int, float]]:
    """PASCAL VOC mean average precision over a list of images.

    ``detections[i]`` is ``(boxes, scores, classes)`` and ``ground_truth[i]`` is ``(boxes, classes)``
    for image i, with class ids 0..num_classes-1. Per class, detections from all images are taken by
    descending score (ties in image order); as in the VOC devkit, each is compared with the
    ground-truth box of its class in its image that it overlaps most: it is a true positive if that
    IoU is >= ``iou_threshold`` and that box was not already matched, otherwise a false positive
    (so duplicates count against the detector). AP per class is :func:`average_precision`.

    Returns:
        ``(mAP, {class_id: AP})``. Classes without any ground-truth box are left out of both (their
        AP is undefined; their false positives therefore do not count). With no ground truth at all
        the result is ``(0.0, {})``.
    """
    num_classes = _check_positive_int(num_classes, "num_classes")
    iou_threshold = _check_fraction(iou_threshold, "iou_threshold")
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"Expected one detection entry per ground-truth image. "
            f"Received: len(detections)={len(detections)}, len(ground_truth)={len(ground_truth)}"
        )
    gts = []
    for i, (boxes, classes) in enumerate(ground_truth):
        boxes = _as_boxes(boxes, f"ground_truth[{i}].boxes")
        gts.append((boxes, _as_class_ids(classes, f"ground_truth[{i}].classes", len(boxes), num_classes)))
    dets = []
    for i, (boxes, scores, classes) in enumerate(detections):
        boxes = _as_boxes(boxes, f"detections[{i}].boxes")
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(boxes),):
            raise ValueError(
                f"Expected one score per detection box. Received: detections[{i}] with "
                f"{len(boxes)} boxes and scores.shape={scores.shape}"
            )
        dets.append((boxes, scores, _as_class_ids(classes, f"detections[{i}].classes", len(boxes), num_classes)))

    per_class: dict[int, float] = {}
    for cls in range(num_classes):
        gt_of_class = [boxes[classes == cls] for boxes, classes in gts]
        n_gt = sum(len(b) for b in gt_of_class)
        if n_gt == 0:
            continue
        images, scores, boxes = [], [], []
        for image, (det_boxes, det_scores, det_classes) in enumerate(dets):
            mask = det_classes == cls
            images.extend([image] * int(mask.sum()))
            scores.append(det_scores[mask])
            boxes.append(det_boxes[mask])
        if not images:
            per_class[cls] = 0.0
            continue
        all_scores = np.concatenate(scores)
        all_boxes = np.concatenate(boxes)
        order = np.argsort(-all_scores, kind="stable")
        used = [np.zeros(len(b), dtype=bool) for b in gt_of_class]
        tp = np.zeros(len(order))
        for rank, d in enumerate(order):
            candidates = gt_of_class[images[d]]
            if len(candidates) == 0:
                continue
            overlaps = _pairwise_iou(all_boxes[d : d + 1], candidates)[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou_threshold and not used[images[d]][best]:
                tp[rank] = 1.0
                used[images[d]][best] = True
        cum_tp = np.cumsum(tp)
        per_class[cls] = average_precision(cum_tp / n_gt, cum_tp / np.arange(1, len(tp) + 1))
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return mean, per_class


# ------------------------------------------------------------------------------------------------ loss
def ssd_loss(num_classes: int, neg_pos_ratio: float = 3.0, loc_weight: float = 1.0):
    """A Keras loss ``loss(y_true, y_pred)`` for SSD with hard negative mining.

    ``y_true`` is (B, A, 5) as built by :func:`encode_targets` (class id in column 4, as a float);
    ``y_pred`` is (B, A, 4 + num_classes + 1): raw offsets, then class *probabilities* (softmax
    already applied; they are clipped to [1e-7, 1] before the log).

    Per image: smooth-L1 (Huber, delta 1) on the offsets of positive anchors, times ``loc_weight``;
    cross-entropy on positive anchors; and cross-entropy on the hardest negatives (highest
    background cross-entropy), ``floor(neg_pos_ratio * max(n_pos, 1))`` of them, at least 1 and at
    most the image's negatives. An image without objects thus still contributes as many negatives as
    an image with one object, so background-only images teach "nothing here" without swamping the
    batch.

    Normalisation: the sum over the batch is divided by N = max(total positives in the batch, 1),
    as in the SSD paper. Keras reduces a per-sample loss by its mean, so each image's share is
    returned multiplied by B / N: the returned (B,) vector's mean is exactly that total.
    Works in graph mode with an unknown batch size.
    """
    num_classes = _check_positive_int(num_classes, "num_classes")
    if not isinstance(neg_pos_ratio, (int, float)) or not neg_pos_ratio > 0:
        raise ValueError(f"Expected `neg_pos_ratio` to be a positive number. Received: neg_pos_ratio={neg_pos_ratio!r}")
    if not isinstance(loc_weight, (int, float)) or not loc_weight >= 0:
        raise ValueError(f"Expected `loc_weight` to be a number >= 0. Received: loc_weight={loc_weight!r}")
    import tensorflow as tf

    depth = num_classes + 1
    ratio, weight = float(neg_pos_ratio), float(loc_weight)

    def loss(y_true, y_pred):
        """Per-sample SSD loss (B,); see :func:`ssd_loss` for the normalisation."""
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        if y_pred.shape.rank is not None and y_pred.shape[-1] is not None and y_pred.shape[-1] != 4 + depth:
            raise ValueError(
                f"Expected y_pred's last axis to be 4 offsets + {depth} class probabilities = {4 + depth}. "
                f"Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        true_class = tf.cast(tf.round(y_true[..., 4]), tf.int32)
        positive = tf.cast(true_class > 0, tf.float32)  # (B, A)
        n_pos = tf.reduce_sum(positive, axis=1)  # (B,)

        error = tf.abs(y_pred[..., :4] - y_true[..., :4])
        smooth_l1 = tf.reduce_sum(tf.where(error < 1.0, 0.5 * tf.square(error), error - 0.5), axis=-1)
        loc = tf.reduce_sum(smooth_l1 * positive, axis=1)

        probs = tf.clip_by_value(y_pred[..., 4 : 4 + depth], _PROB_EPSILON, 1.0)
        cross_entropy = -tf.reduce_sum(tf.one_hot(true_class, depth) * tf.math.log(probs), axis=-1)  # (B, A)
        pos_cls = tf.reduce_sum(cross_entropy * positive, axis=1)

        # Cross-entropy is >= 0, so -1 sends positives behind every negative in the sort; the count
        # below never reaches them. Summing sorted values avoids a second argsort for a mask.
        negatives_only = tf.where(positive > 0, -tf.ones_like(cross_entropy), cross_entropy)
        ranked = tf.sort(negatives_only, axis=1, direction="DESCENDING")
        n_anchors = tf.shape(cross_entropy)[1]
        wanted = tf.maximum(tf.cast(tf.floor(ratio * tf.maximum(n_pos, 1.0)), tf.int32), 1)
        n_neg = tf.minimum(wanted, n_anchors - tf.cast(n_pos, tf.int32))
        take = tf.cast(tf.range(n_anchors)[None, :] < n_neg[:, None], tf.float32)
        neg_cls = tf.reduce_sum(ranked * take, axis=1)

        per_image = weight * loc + pos_cls + neg_cls
        batch = tf.cast(tf.shape(per_image)[0], tf.float32)
        normaliser = tf.maximum(tf.reduce_sum(n_pos), 1.0)
        return per_image * batch / normaliser

    loss.__name__ = "ssd_loss"
    return loss


# --------------------------------------------------------------------------------------------- canvases
def compose_canvases(
    images: np.ndarray,
    labels: np.ndarray,
    n_canvases: int,
    canvas_size: int = 128,
    max_objects: int = 4,
    scale_range: tuple[float, float] = (0.25, 0.5),
    seed: int = 0,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Detection images built from classification images (bright objects on a black background,
    e.g. Animal-MNIST or Fashion-MNIST).

    Each canvas gets a uniformly drawn number of objects in 1..``max_objects``. Each object is a
    random source image resized (bilinear) to a square of side ``scale * canvas_size``, scale uniform
    in ``scale_range``, placed at a random position fully inside the canvas and composited by taking
    the pixel maximum. A placement whose box has IoU > 0.3 with an already placed box is redrawn
    (new image, size and position) up to 30 times; after that the canvas keeps the objects it has,
    so crowded settings may give fewer objects than drawn. There is no added background noise.

    Boxes are tight around the object's own pasted pixels above :data:`OBJECT_PIXEL_THRESHOLD`
    (pixel k spans [k, k + 1) / canvas_size), not the paste square. Source images with no pixel
    above the threshold are never used. The output depends only on the arguments: the same seed
    gives identical canvases.

    Returns:
        ``(canvases (n, S, S, 3) uint8 grey replicated to RGB, boxes: list of (k, 4) float32,
        classes: list of (k,) int64 labels of the pasted images)``.
    """
    from PIL import Image

    source = np.asarray(images)
    if source.ndim == 4 and source.shape[-1] == 1:
        source = source[..., 0]
    if source.ndim != 3 or source.shape[0] == 0:
        raise ValueError(
            f"Expected `images` of shape (N, h, w) or (N, h, w, 1) with N >= 1. Received: images.shape={np.shape(images)}"
        )
    if source.dtype != np.uint8:
        raise ValueError(f"Expected `images` of dtype uint8 (0..255). Received: images.dtype={source.dtype}")
    label_ids = _as_class_ids(labels, "labels", len(source))
    n_canvases = _check_positive_int(n_canvases, "n_canvases", minimum=0)
    canvas_size = _check_positive_int(canvas_size, "canvas_size", minimum=8)
    max_objects = _check_positive_int(max_objects, "max_objects")
    low, high = (float(s) for s in scale_range) if len(scale_range) == 2 else (0.0, -1.0)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(
            f"Expected `scale_range` as (low, high) with 0 < low <= high <= 1. Received: scale_range={scale_range!r}"
        )
    usable = np.flatnonzero(source.reshape(len(source), -1).max(axis=1) > OBJECT_PIXEL_THRESHOLD)
    if usable.size == 0:
        raise ValueError(
            f"Expected source images with object pixels above {OBJECT_PIXEL_THRESHOLD} on a black background. "
            f"Received: images with maximum value {int(source.max())}"
        )

    rng = np.random.default_rng(seed)
    size = canvas_size
    canvases = np.zeros((n_canvases, size, size), dtype=np.uint8)
    all_boxes: list[np.ndarray] = []
    all_classes: list[np.ndarray] = []
    for index in range(n_canvases):
        canvas = canvases[index]
        boxes: list[np.ndarray] = []
        classes: list[int] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(_PLACEMENT_TRIES):
                chosen = usable[rng.integers(len(usable))]
                side = max(2, int(round(rng.uniform(low, high) * size)))
                patch = np.asarray(Image.fromarray(source[chosen]).resize((side, side), Image.BILINEAR))
                rows, cols = np.nonzero(patch > OBJECT_PIXEL_THRESHOLD)
                x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                if rows.size == 0:  # shrinking blurred a faint object below the threshold
                    continue
                box = np.array([x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1]) / size
                if boxes and _pairwise_iou(box[None], np.stack(boxes)).max() > _MAX_OVERLAP_BETWEEN_OBJECTS:
                    continue
                region = canvas[y0 : y0 + side, x0 : x0 + side]
                np.maximum(region, patch, out=region)
                boxes.append(box)
                classes.append(int(label_ids[chosen]))
                break
            else:
                break  # no room found for another object: keep the ones placed
        if not boxes:
            raise ValueError(
                f"Expected objects that stay visible when resized to {low}..{high} of the canvas. "
                f"Received: canvas_size={canvas_size}, scale_range={scale_range!r} (no object survived resizing)"
            )
        all_boxes.append(np.stack(boxes).astype(np.float32))
        all_classes.append(np.asarray(classes, dtype=np.int64))
    return np.repeat(canvases[..., None], 3, axis=-1), all_boxes, all_classes


def primary_class(classes_list: Sequence[np.ndarray]) -> np.ndarray:
    """Each canvas's label for stratified splitting: the class of its first object (int64, (n,))."""
    firsts = []
    for i, classes in enumerate(classes_list):
        classes = np.asarray(classes).reshape(-1)
        if classes.size == 0:
            raise ValueError(f"Expected every canvas to hold at least one object. Received: classes_list[{i}] is empty")
        firsts.append(int(classes[0]))
    return np.asarray(firsts, dtype=np.int64)

"""PASCAL VOC mean average precision (all-point interpolation, VOC2010+), as the devkit matches."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transferlab.plugins.object_detection.boxes import as_boxes, as_class_ids, check_fraction, check_positive_int, pairwise_iou

__all__ = ["average_precision", "voc_map"]


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
    num_classes = check_positive_int(num_classes, "num_classes")
    iou_threshold = check_fraction(iou_threshold, "iou_threshold")
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"Expected one detection entry per ground-truth image. "
            f"Received: len(detections)={len(detections)}, len(ground_truth)={len(ground_truth)}"
        )
    gts = []
    for i, (boxes, classes) in enumerate(ground_truth):
        boxes = as_boxes(boxes, f"ground_truth[{i}].boxes")
        gts.append((boxes, as_class_ids(classes, f"ground_truth[{i}].classes", len(boxes), num_classes)))
    dets = []
    for i, (boxes, scores, classes) in enumerate(detections):
        boxes = as_boxes(boxes, f"detections[{i}].boxes")
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(boxes),):
            raise ValueError(
                f"Expected one score per detection box. Received: detections[{i}] with "
                f"{len(boxes)} boxes and scores.shape={scores.shape}"
            )
        dets.append((boxes, scores, as_class_ids(classes, f"detections[{i}].classes", len(boxes), num_classes)))

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
            overlaps = pairwise_iou(all_boxes[d : d + 1], candidates)[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou_threshold and not used[images[d]][best]:
                tp[rank] = 1.0
                used[images[d]][best] = True
        cum_tp = np.cumsum(tp)
        per_class[cls] = average_precision(cum_tp / n_gt, cum_tp / np.arange(1, len(tp) + 1))
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return mean, per_class

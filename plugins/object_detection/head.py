"""The SSD task head: a shared 3x3 conv on the backbone's feature map, then per-anchor box offsets and
class probabilities; trained with the SSD loss, scored by VOC mAP@0.5."""
from __future__ import annotations

from typing import Any

import numpy as np

from transferlab import TaskHead, UserError
from transferlab.plugins.object_detection.anchors import (
    DEFAULT_ASPECT_RATIOS,
    DEFAULT_SCALES,
    anchors_per_cell,
    detect,
    encode_targets,
    make_anchors,
)
from transferlab.plugins.object_detection.loss import ssd_loss
from transferlab.plugins.object_detection.voc_map import voc_map

__all__ = ["SSDHead"]

#: the most boxes per test image kept with a run (the best-scoring ones)
KEPT_BOXES = 20


class SSDHead(TaskHead):
    """An SSD head: a shared 3x3 conv, then per-anchor box offsets and class probabilities.

    Output per image: (anchors, 4 + classes + 1), offsets first, then softmax probabilities with
    background in column 0. Anchors follow the feature map's size, known once the model is built.
    """

    kind = "detection"
    feature = "map"
    metric = "map50"
    metric_label = "test mAP@0.5"
    val_metric = "val_map50"
    supports_cached_features = False
    supports_augment = False
    supports_class_weight = False

    def __init__(self, scales=DEFAULT_SCALES, aspect_ratios=DEFAULT_ASPECT_RATIOS, channels: int = 128):
        self.scales, self.aspect_ratios, self.channels = tuple(scales), tuple(aspect_ratios), channels
        self._anchors: dict[int, np.ndarray] = {}
        self._sizes: dict[str, int] = {}  # feature-map size per job, known once its model is built
        self._decoded: tuple[Any, str, list] | None = None  # the last test predictions and their detections

    def anchors(self, feature_size: int) -> np.ndarray:
        """The anchors of a feature map of ``feature_size`` x ``feature_size`` cells."""
        if feature_size not in self._anchors:
            self._anchors[feature_size] = make_anchors(feature_size, self.scales, self.aspect_ratios)
        return self._anchors[feature_size]

    def _feature_size(self, job: Any) -> int:
        if job.job_id not in self._sizes:
            raise UserError("The detection head's targets were asked for before its model was built.")
        return self._sizes[job.job_id]

    def outputs(self, features, num_classes, job):
        """Per-anchor offsets and class probabilities from the feature map."""
        import keras
        from keras import layers

        height, width = features.shape[1], features.shape[2]
        if height is None or height != width:
            raise UserError(f"The detection head needs a square feature map of known size. Received: shape={features.shape}")
        self._sizes[job.job_id] = int(height)
        k = anchors_per_cell(self.scales, self.aspect_ratios)
        x = layers.Conv2D(self.channels, 3, padding="same", activation="relu", name="ssd_conv")(features)
        loc = layers.Conv2D(k * 4, 3, padding="same", name="ssd_loc")(x)
        cls = layers.Conv2D(k * (num_classes + 1), 3, padding="same", name="ssd_cls")(x)
        loc = layers.Reshape((-1, 4), name="ssd_loc_flat")(loc)
        cls = layers.Reshape((-1, num_classes + 1), name="ssd_cls_flat")(cls)
        cls = layers.Softmax(name="ssd_probs", dtype="float32")(cls)
        loc = layers.Activation("linear", dtype="float32", name="ssd_offsets")(loc)
        return keras.layers.Concatenate(axis=-1, name="head", dtype="float32")([loc, cls])

    def compile_args(self, num_classes, job):
        """SSD loss (smooth-L1 + cross-entropy with 3:1 hard negative mining); mAP comes per epoch."""
        return dict(loss=ssd_loss(num_classes))

    def targets(self, data, indices, labels, job):
        """Encoded anchor targets (n, anchors, 5) for the boxes of each example."""
        anchors = self.anchors(self._feature_size(job))
        return np.stack([encode_targets(anchors, *data.targets[i]) for i in indices]).astype(np.float32)

    def detections(self, predictions: np.ndarray, job: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Decoded, NMS-filtered detections per image."""
        anchors = self.anchors(self._feature_size(job))
        return [detect(anchors, p[:, :4], p[:, 4:]) for p in predictions]

    def score(self, predictions, data, indices, job, found=None) -> tuple[float, dict[int, float]]:
        """mAP@0.5 and per-class AP of ``predictions`` (or of their detections ``found``, when already
        decoded) against the boxes of ``indices``."""
        found = self.detections(predictions, job) if found is None else found
        return voc_map(found, [data.targets[i] for i in indices], len(data.class_names), 0.5)

    def epoch_callback(self, predict_val, data, val_indices, job):
        """Adds ``val_map50`` to each epoch's logs."""
        import keras

        head = self

        class _ValMap(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs is not None:
                    logs["val_map50"] = head.score(predict_val(), data, val_indices, job)[0]

        return _ValMap()

    def evaluate(self, predictions, data, indices, labels, num_classes, job):
        """mAP@0.5 (the score), the SSD loss on the test set, per-class AP and detections per image."""
        import tensorflow as tf

        found = self._test_detections(predictions, job)  # decoded and NMS-filtered once, for mAP and the counts
        mean, per_class = self.score(predictions, data, indices, job, found)
        y_true = self.targets(data, indices, labels, job)
        loss = float(np.mean(ssd_loss(num_classes)(tf.constant(y_true), tf.constant(predictions)).numpy()))
        names = list(data.class_names)
        return dict(score=mean, loss=loss, metrics=dict(
            ap_per_class={names[c]: float(ap) for c, ap in sorted(per_class.items())},
            mean_detections=float(np.mean([len(d[0]) for d in found])) if found else 0.0,
            mean_objects=float(np.mean([len(data.targets[i][0]) for i in indices])) if len(indices) else 0.0,
        ))

    def _test_detections(self, predictions: np.ndarray, job: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`detections` of the test predictions, decoded once for :meth:`evaluate` and
        :meth:`compact_predictions` of the same run (NMS over every anchor is most of a small run's time)."""
        last = self._decoded
        if last is not None and last[0] is predictions and last[1] == job.job_id:
            return last[2]
        found = self.detections(predictions, job)
        self._decoded = (predictions, job.job_id, found)
        return found

    def compact_predictions(self, predictions, data, indices, job):
        """The test detections the store keeps with the run: per test image at most :data:`KEPT_BOXES` boxes,
        best score first, as ``[x0, y0, x1, y1, class_index, score]`` with corners in [0, 1] of the image
        (4 decimals). The true boxes are the task data's (``data.targets[i]``), not stored again."""
        boxes = []
        found, self._decoded = self._test_detections(predictions, job), None
        for found_boxes, scores, classes in found:
            order = np.argsort(-np.asarray(scores), kind="stable")[:KEPT_BOXES]
            boxes.append([[*(round(float(v), 4) for v in np.clip(found_boxes[i], 0.0, 1.0)), int(classes[i]),
                           round(float(scores[i]), 4)] for i in order])
        return dict(kind="detection", indices=[int(i) for i in indices],
                    class_names=[str(name) for name in data.class_names], boxes=boxes)

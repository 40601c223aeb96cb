"""Task heads: what a task puts on top of a backbone, how it learns, and how it is scored.

The runner owns everything a task shares with every other (splits, subsets, phases, freezing, the
freeze check, progress, the store); a head owns what is particular to the task. Classification is the
default; a task with other outputs (boxes, say) returns its own :class:`TaskHead` in its ``TaskSpec``.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class TaskHead:
    """The interface a task head implements. Subclass it; the default methods classify.

    Attributes:
        kind: a short name shown with runs (``classification``, ``detection``).
        feature: ``pooled`` (the backbone's feature vector) or ``map`` (its last spatial feature map).
        metric: the name of the score stored as a run's test score, e.g. ``accuracy`` or ``map50``.
        metric_label: how charts and tables call that score.
        val_metric: the per-epoch validation metric shown in learning curves.
        supports_cached_features: whether strategies that train on cached features can run.
        supports_augment: whether image augmentation can be applied (it must move targets too).
        supports_class_weight: whether ``class_weight=balanced`` applies.
    """

    kind = "classification"
    feature = "pooled"
    metric = "accuracy"
    metric_label = "test accuracy"
    val_metric = "val_accuracy"
    supports_cached_features = True
    supports_augment = True
    supports_class_weight = True

    def outputs(self, features: Any, num_classes: int, job: Any) -> Any:
        """The head's output tensor, given the backbone's output tensor (Keras functional API)."""
        import keras

        x = keras.layers.Dropout(0.2, name="head_dropout")(features)
        return keras.layers.Dense(num_classes, activation="softmax", name="head", dtype="float32")(x)

    def compile_args(self, num_classes: int, job: Any) -> dict[str, Any]:
        """``loss`` and ``metrics`` for ``model.compile``."""
        return dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def targets(self, data: Any, indices: np.ndarray, labels: np.ndarray, job: Any) -> np.ndarray:
        """The training targets of ``data`` at ``indices`` (``labels`` may be shuffled for controls)."""
        return np.asarray(labels, dtype=np.int64)

    def epoch_callback(self, predict_val: Any, data: Any, val_indices: np.ndarray, job: Any) -> Any:
        """A Keras callback that adds extra validation metrics to each epoch's logs, or None.

        ``predict_val()`` returns the model's predictions on the validation split.
        """
        return None

    def evaluate(self, predictions: np.ndarray, data: Any, indices: np.ndarray, labels: np.ndarray,
                 num_classes: int, job: Any) -> dict[str, Any]:
        """Score test predictions: ``score`` (the task's metric), ``loss``, and optionally
        ``balanced_accuracy``, ``confusion`` and ``metrics`` (a JSON-ready dict of further figures).

        The default classifies: accuracy, cross-entropy, balanced accuracy, macro F1, per-class recall
        (the metrics that mean something under class imbalance) and the confusion matrix.
        """
        from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, log_loss, recall_score

        labels = np.asarray(labels, dtype=np.int64)
        pred = predictions.argmax(axis=1)
        present = sorted(set(labels.tolist()))
        recall = recall_score(labels, pred, labels=present, average=None, zero_division=0)
        names = list(data.class_names)
        return dict(
            score=float((pred == labels).mean()),
            loss=float(log_loss(labels, predictions, labels=list(range(num_classes)))),
            balanced_accuracy=float(balanced_accuracy_score(labels, pred)),
            confusion=confusion_matrix(labels, pred, labels=list(range(num_classes))).tolist(),
            metrics=dict(
                macro_f1=float(f1_score(labels, pred, labels=present, average="macro", zero_division=0)),
                per_class_recall={names[c]: float(r) for c, r in zip(present, recall)},
            ),
        )


    def compact_predictions(self, predictions: np.ndarray, data: Any, indices: np.ndarray, job: Any) -> dict[str, Any]:
        """The test predictions in the compact, JSON-ready form the store keeps with the run, so that pages
        show a run's mistakes without retraining it.

        The default classifies: ``{"kind": "classification", "indices"`` (the data indices of the test
        split, in order)``, "labels"`` (the true class of each)``, "predicted"`` (the top class)``,
        "confidence"`` (its probability, 4 decimals)``, "class_names"}``. A head with other outputs
        overrides it with its own ``kind`` (the detection head keeps boxes).
        """
        probs = np.asarray(predictions, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[0] != len(indices):
            raise ValueError(f"Expected class probabilities of shape ({len(indices)}, classes). "
                             f"Received: predictions.shape={probs.shape}")
        top = probs.argmax(axis=1)
        return dict(
            kind="classification",
            indices=[int(i) for i in indices],
            labels=[int(y) for y in np.asarray(data.labels)[np.asarray(indices, dtype=np.int64)]],
            predicted=[int(c) for c in top],
            confidence=[round(float(p), 4) for p in probs[np.arange(len(top)), top]],
            class_names=[str(name) for name in data.class_names],
        )


class ClassificationHead(TaskHead):
    """Dropout and a softmax layer; scored by accuracy, balanced accuracy, macro F1, per-class recall and
    the confusion matrix (all the defaults of :class:`TaskHead`)."""

"""The SSD loss: smooth-L1 on positive anchors plus cross-entropy with hard negative mining.

TensorFlow is imported only when the loss is made, so importing this module stays cheap.
"""
from __future__ import annotations

from transferlab.plugins.object_detection.boxes import check_positive_int

__all__ = ["ssd_loss"]

_PROB_EPSILON = 1e-7


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
    num_classes = check_positive_int(num_classes, "num_classes")
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

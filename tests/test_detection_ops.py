"""Tests of the SSD building blocks of transferlab.plugins.object_detection (no training)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transferlab.plugins import object_detection as ops

ANCHORS = ops.make_anchors(4)
NUM_CLASSES = 3


@st.composite
def boxes_strategy(draw, min_side: float = 0.02):
    """A valid normalised box with sides at least ``min_side``."""
    x1 = draw(st.floats(0.0, 1.0 - min_side))
    y1 = draw(st.floats(0.0, 1.0 - min_side))
    x2 = draw(st.floats(x1 + min_side, 1.0))
    y2 = draw(st.floats(y1 + min_side, 1.0))
    return [x1, y1, x2, y2]


# ----------------------------------------------------------------------------------------------- anchors
def test_anchor_count_and_sizes_follow_scales_outer_ratios_inner():
    scales, ratios = (0.2, 0.4), (1.0, 4.0, 0.25)
    anchors = ops.make_anchors(3, scales, ratios)
    k = ops.anchors_per_cell(scales, ratios)
    assert k == 6
    assert anchors.shape == (3 * 3 * k, 4) and anchors.dtype == np.float32
    widths = anchors[:k, 2] - anchors[:k, 0]
    heights = anchors[:k, 3] - anchors[:k, 1]
    expected_w = [s * math.sqrt(r) for s in scales for r in ratios]
    expected_h = [s / math.sqrt(r) for s in scales for r in ratios]
    np.testing.assert_allclose(widths, expected_w, rtol=1e-5)
    np.testing.assert_allclose(heights, expected_h, rtol=1e-5)


def test_anchor_order_matches_a_reshaped_conv_grid():
    """Row r of a (F, F, K*D) conv output reshaped to (F*F*K, D) must pair with anchor r."""
    f, scales, ratios = 5, (0.1, 0.3), (1.0, 2.0)
    k, depth = ops.anchors_per_cell(scales, ratios), 3
    conv = np.zeros((f, f, k * depth))
    for i in range(f):
        for j in range(f):
            for a in range(k):
                conv[i, j, a * depth : (a + 1) * depth] = (i, j, a)  # tag each slot with where it came from
    rows = conv.reshape(f * f * k, depth)
    anchors = ops.make_anchors(f, scales, ratios)
    widths = [s * math.sqrt(r) for s in scales for r in ratios]
    for (i, j, a), box in zip(rows.astype(int), anchors):
        assert (box[0] + box[2]) / 2 == pytest.approx((j + 0.5) / f, abs=1e-6)
        assert (box[1] + box[3]) / 2 == pytest.approx((i + 0.5) / f, abs=1e-6)
        assert box[2] - box[0] == pytest.approx(widths[a], abs=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"feature_size": 0}, {"feature_size": 4, "scales": ()}, {"feature_size": 4, "aspect_ratios": (1.0, -2.0)}]
)
def test_make_anchors_rejects_bad_arguments_with_the_received_value(kwargs):
    with pytest.raises(ValueError, match="Received:"):
        ops.make_anchors(**kwargs)


# ------------------------------------------------------------------------------------------------ IoU
@settings(max_examples=60, deadline=None)
@given(st.lists(boxes_strategy(), min_size=1, max_size=5), st.lists(boxes_strategy(), min_size=1, max_size=5))
def test_iou_is_symmetric_bounded_and_one_on_identical_boxes(a, b):
    ab, ba = ops.iou(np.array(a), np.array(b)), ops.iou(np.array(b), np.array(a))
    assert ab.shape == (len(a), len(b))
    np.testing.assert_allclose(ab, ba.T, atol=1e-6)
    assert np.all((ab >= 0) & (ab <= 1 + 1e-6))
    np.testing.assert_allclose(np.diag(ops.iou(np.array(a), np.array(a))), 1.0, atol=1e-5)


def test_iou_hand_computed_disjoint_and_degenerate_boxes():
    a = np.array([[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 0.5, 0.5]])
    b = np.array([[0.2, 0.2, 0.6, 0.6], [0.6, 0.6, 0.9, 0.9], [0.5, 0.5, 0.5, 0.5]])
    out = ops.iou(a, b)
    assert out[0, 0] == pytest.approx(0.04 / (0.16 + 0.16 - 0.04), rel=1e-5)
    assert out[0, 1] == 0.0  # disjoint
    assert not np.any(np.isnan(out))
    assert out[1, 2] == 0.0  # two identical zero-area boxes: union 0
    assert ops.iou(np.zeros((0, 4)), b).shape == (0, 3)


# ----------------------------------------------------------------------------------- encode / decode
@settings(max_examples=80, deadline=None)
@given(st.lists(boxes_strategy(), min_size=1, max_size=4))
def test_encode_decode_round_trip_recovers_each_matched_box(gt):
    gt = np.array(gt, dtype=np.float32)
    classes = np.arange(len(gt))  # distinct classes tell which box each anchor took
    targets = ops.encode_targets(ANCHORS, gt, classes)
    positive = targets[:, 4] > 0
    decoded = ops.decode_boxes(ANCHORS, targets[:, :4])
    np.testing.assert_allclose(decoded[positive], gt[targets[positive, 4].astype(int) - 1], atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(st.lists(boxes_strategy(min_side=0.005), min_size=1, max_size=8))
def test_every_ground_truth_box_is_matched_to_an_anchor(gt):
    targets = ops.encode_targets(ANCHORS, np.array(gt), np.arange(len(gt)))
    assert set(targets[:, 4].astype(int)) - {0} == set(range(1, len(gt) + 1))


def test_two_tiny_boxes_sharing_a_best_anchor_both_get_one():
    # Both sit in the same cell, far below the threshold; a plain "force each onto its argmax anchor"
    # would let the second overwrite the first.
    gt = np.array([[0.10, 0.10, 0.12, 0.12], [0.11, 0.11, 0.13, 0.13]])
    targets = ops.encode_targets(ANCHORS, gt, [0, 1])
    assert sorted(targets[targets[:, 4] > 0, 4].tolist()) == [1.0, 2.0]


def test_threshold_matching_and_offsets_of_a_box_equal_to_an_anchor():
    gt = ANCHORS[7:8].copy()
    targets = ops.encode_targets(ANCHORS, gt, [2])
    assert targets.shape == (len(ANCHORS), 5) and targets.dtype == np.float32
    assert targets[7, 4] == 3.0
    np.testing.assert_allclose(targets[7, :4], 0.0, atol=1e-6)
    overlaps = ops.iou(ANCHORS, gt)[:, 0]
    np.testing.assert_array_equal(targets[:, 4] > 0, overlaps >= 0.5)
    np.testing.assert_array_equal(targets[overlaps < 0.5, :4], 0.0)


def test_offsets_follow_the_ssd_formula_with_each_variance_in_its_place():
    anchors = np.array([[0.2, 0.2, 0.4, 0.6]])  # centre (0.3, 0.4), size (0.2, 0.4)
    gt = np.array([[0.25, 0.35, 0.55, 0.55]])  # centre (0.4, 0.45), size (0.3, 0.2)
    variances = (0.1, 0.15, 0.2, 0.3)  # all different, so a swapped index shows
    t = ops.encode_targets(anchors, gt, [0], variances=variances)[0]
    expected = [0.1 / 0.2 / 0.1, 0.05 / 0.4 / 0.15, math.log(1.5) / 0.2, math.log(0.5) / 0.3, 1.0]
    np.testing.assert_allclose(t, expected, atol=1e-5)
    np.testing.assert_allclose(ops.decode_boxes(anchors, t[None, :4], variances=variances), gt, atol=1e-6)


def test_encode_without_objects_is_all_background():
    targets = ops.encode_targets(ANCHORS, np.zeros((0, 4)), np.zeros(0, dtype=int))
    assert targets.shape == (len(ANCHORS), 5)
    assert not targets.any()


def test_encode_rejects_degenerate_boxes_and_negative_classes():
    with pytest.raises(ValueError, match="x2 > x1"):
        ops.encode_targets(ANCHORS, [[0.5, 0.5, 0.5, 0.6]], [0])
    with pytest.raises(ValueError, match="Received: gt_classes"):
        ops.encode_targets(ANCHORS, [[0.1, 0.1, 0.3, 0.3]], [-1])


def test_decode_clamps_huge_size_offsets_instead_of_overflowing():
    boxes = ops.decode_boxes(ANCHORS[:1], np.array([[0.0, 0.0, 1e4, 1e4]]))
    assert np.all(np.isfinite(boxes))


# ------------------------------------------------------------------------------------------------ NMS
def test_nms_suppresses_overlapping_lower_scores_and_keeps_disjoint_boxes():
    boxes = np.array(
        [
            [0.1, 0.1, 0.4, 0.4],
            [0.12, 0.1, 0.42, 0.4],  # overlaps box 0 heavily, lower score
            [0.6, 0.6, 0.9, 0.9],  # disjoint
            [0.1, 0.1, 0.4, 0.4],  # duplicate of 0 but the best score
        ]
    )
    scores = np.array([0.8, 0.7, 0.5, 0.9])
    keep = ops.non_max_suppression(boxes, scores, iou_threshold=0.45)
    assert keep.tolist() == [3, 2]
    assert ops.non_max_suppression(boxes, scores, iou_threshold=0.45, max_output=1).tolist() == [3]
    # With a threshold above every overlap nothing is suppressed, and order follows score.
    assert ops.non_max_suppression(boxes, scores, iou_threshold=1.0).tolist() == [3, 0, 1, 2]


def test_nms_on_no_boxes_returns_empty_indices():
    assert ops.non_max_suppression(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


# --------------------------------------------------------------------------------------------- detect
def _perfect_predictions(gt, classes, confidence=0.9):
    targets = ops.encode_targets(ANCHORS, gt, classes)
    probs = np.zeros((len(ANCHORS), NUM_CLASSES + 1))
    cls = targets[:, 4].astype(int)
    probs[np.arange(len(ANCHORS)), cls] = np.where(cls > 0, confidence, 1.0)
    probs[cls > 0, 0] = 1.0 - confidence
    return targets[:, :4], probs


def test_detect_on_perfect_predictions_recovers_the_ground_truth():
    gt = np.array([[0.05, 0.1, 0.45, 0.5], [0.5, 0.55, 0.95, 0.9], [0.3, 0.3, 0.6, 0.55]], dtype=np.float32)
    classes = np.array([2, 0, 2])
    offsets, probs = _perfect_predictions(gt, classes)
    boxes, scores, found = ops.detect(ANCHORS, offsets, probs)
    assert len(boxes) == 3  # the several anchors matched to one object collapse under NMS
    order = np.lexsort((boxes[:, 0], found))
    expected = np.lexsort((gt[:, 0], classes))
    np.testing.assert_allclose(boxes[order], gt[expected], atol=1e-5)
    np.testing.assert_array_equal(found[order], classes[expected])
    np.testing.assert_allclose(scores, 0.9, atol=1e-6)
    assert found.dtype == np.int64 and boxes.dtype == np.float32


def test_detect_clips_sorts_thresholds_and_caps():
    anchors = np.array([[0.8, 0.8, 1.2, 1.2], [0.0, 0.0, 0.2, 0.2], [0.5, 0.0, 0.7, 0.2]])
    probs = np.array([[0.2, 0.8, 0.0], [0.3, 0.0, 0.7], [0.99, 0.01, 0.0]])
    boxes, scores, classes = ops.detect(anchors, np.zeros((3, 4)), probs, score_threshold=0.05)
    np.testing.assert_allclose(boxes, [[0.8, 0.8, 1.0, 1.0], [0.0, 0.0, 0.2, 0.2]], atol=1e-6)
    np.testing.assert_allclose(scores, [0.8, 0.7], atol=1e-6)
    assert classes.tolist() == [0, 1]
    assert len(ops.detect(anchors, np.zeros((3, 4)), probs, max_detections=1)[0]) == 1


def test_detect_does_not_let_one_class_suppress_another():
    anchors = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5]])
    probs = np.array([[0.1, 0.9, 0.0], [0.2, 0.0, 0.8]])
    _, _, classes = ops.detect(anchors, np.zeros((2, 4)), probs)
    assert sorted(classes.tolist()) == [0, 1]


# ---------------------------------------------------------------------------------------- AP and mAP
def test_average_precision_hand_computed():
    # Down the ranked list: TP, FP, TP with 2 ground-truth boxes.
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert ops.average_precision(recall, precision) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    # The envelope lifts a dip: precision 0.4 at recall 0.5 is replaced by the 0.8 reached later.
    assert ops.average_precision(np.array([0.25, 0.5, 1.0]), np.array([1.0, 0.4, 0.8])) == pytest.approx(0.25 + 0.75 * 0.8)
    assert ops.average_precision(np.zeros(0), np.zeros(0)) == 0.0


def _scene():
    gt = [
        (np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.8, 0.9]]), np.array([0, 1])),
        (np.array([[0.2, 0.6, 0.4, 0.9], [0.6, 0.1, 0.9, 0.3]]), np.array([1, 2])),
    ]
    detections = [(boxes, np.linspace(0.9, 0.6, len(boxes)), classes.copy()) for boxes, classes in gt]
    return gt, detections


def test_voc_map_is_one_for_perfect_detections():
    gt, detections = _scene()
    mean, per_class = ops.voc_map(detections, gt, num_classes=4)
    assert mean == pytest.approx(1.0)
    assert per_class == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})  # class 3 has no ground truth: left out


def test_voc_map_drops_when_half_the_boxes_are_shifted_or_class_swapped():
    gt, detections = _scene()
    shifted = [(boxes.copy(), scores, classes) for boxes, scores, classes in detections]
    shifted[0][0][0, [0, 2]] += 0.5  # now overlaps nothing in image 0
    shifted[1][0][1, [1, 3]] += 0.5  # likewise in image 1
    mean, per_class = ops.voc_map(shifted, gt, num_classes=3)
    assert mean == pytest.approx(1 / 3) and per_class == pytest.approx({0: 0.0, 1: 1.0, 2: 0.0})

    swapped = [(boxes, scores, classes.copy()) for boxes, scores, classes in detections]
    swapped[0][2][0], swapped[1][2][1] = 2, 0
    mean, per_class = ops.voc_map(swapped, gt, num_classes=3)
    assert mean == pytest.approx(1 / 3) and per_class == pytest.approx({0: 0.0, 1: 1.0, 2: 0.0})


def test_voc_map_hand_computed_with_a_duplicate_false_positive():
    gt = [(np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([0])), (np.array([[0.5, 0.5, 1.0, 1.0]]), np.array([0]))]
    detections = [
        (np.array([[0.0, 0.0, 0.5, 0.5], [0.01, 0.0, 0.5, 0.5]]), np.array([0.9, 0.8]), np.array([0, 0])),  # TP, dup
        (np.array([[0.5, 0.5, 1.0, 1.0]]), np.array([0.7]), np.array([0])),  # TP
    ]
    mean, per_class = ops.voc_map(detections, gt, num_classes=1)
    assert mean == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert per_class == {0: pytest.approx(mean)}


def test_voc_map_without_ground_truth_and_with_missing_detections():
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))
    assert ops.voc_map([empty], [(np.zeros((0, 4)), np.zeros(0, dtype=int))], num_classes=2) == (0.0, {})
    gt, _ = _scene()
    mean, per_class = ops.voc_map([empty, empty], gt, num_classes=3)
    assert mean == 0.0 and per_class == {0: 0.0, 1: 0.0, 2: 0.0}
    with pytest.raises(ValueError, match="Received: len"):
        ops.voc_map([empty], gt, num_classes=3)


# ------------------------------------------------------------------------------------------------ loss
@pytest.fixture(scope="module")
def tf():
    """TensorFlow, only for the loss tests (it is an optional dependency)."""
    return pytest.importorskip("tensorflow")


def _batch(classes_per_image):
    """y_true for images of 8 anchors whose class column is given; offsets 0.5 on positives."""
    y_true = np.zeros((len(classes_per_image), 8, 5), np.float32)
    for b, classes in enumerate(classes_per_image):
        y_true[b, :, 4] = classes
        y_true[b, :, :4] = np.where(np.asarray(classes)[:, None] > 0, 0.5, 0.0)
    return y_true


def _prediction(y_true, correct: bool, depth=NUM_CLASSES + 1):
    classes = y_true[..., 4].astype(int)
    if not correct:
        classes = (classes + 1) % depth
    probs = np.full(classes.shape + (depth,), 0.05 / (depth - 1), np.float32)
    np.put_along_axis(probs, classes[..., None], 0.95, axis=-1)
    offsets = y_true[..., :4] if correct else y_true[..., :4] + 2.0
    return np.concatenate([offsets, probs], axis=-1)


def test_loss_is_finite_and_lower_for_correct_predictions(tf):
    loss = ops.ssd_loss(NUM_CLASSES)
    y_true = _batch([[1, 0, 0, 0, 3, 0, 0, 0], [0, 0, 2, 0, 0, 0, 0, 0]])
    good = loss(y_true, _prediction(y_true, correct=True)).numpy()
    bad = loss(y_true, _prediction(y_true, correct=False)).numpy()
    assert good.shape == (2,) and np.all(np.isfinite(good)) and np.all(np.isfinite(bad))
    assert good.mean() < bad.mean()
    # A probability of exactly 0 for the true class must not give inf.
    zero_prob = _prediction(y_true, correct=True)
    zero_prob[..., 4:] = 0.0
    assert np.all(np.isfinite(loss(y_true, zero_prob).numpy()))


def test_hard_negative_mining_takes_the_three_worst_negatives_per_positive(tf):
    depth = NUM_CLASSES + 1
    y_true = _batch([[2, 0, 0, 0, 0, 0, 0, 0]])
    y_pred = np.zeros((1, 8, 4 + depth), np.float32)
    y_pred[0, :, :4] = y_true[0, :, :4]  # perfect localisation
    y_pred[0, 0, 4 + 2] = 1.0  # perfect positive
    background = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.7])  # for negatives 1..7
    y_pred[0, 1:, 4] = background
    y_pred[0, 1:, 5] = 1.0 - background
    loss = ops.ssd_loss(NUM_CLASSES, neg_pos_ratio=3.0)
    expected = -np.log([0.1, 0.2, 0.3]).sum()  # the three lowest background probabilities
    assert loss(y_true, y_pred).numpy().mean() == pytest.approx(expected, rel=1e-5)
    expected_two = -np.log([0.1, 0.2]).sum()
    assert ops.ssd_loss(NUM_CLASSES, neg_pos_ratio=2.0)(y_true, y_pred).numpy().mean() == pytest.approx(expected_two, rel=1e-5)


def test_loss_normalises_by_positives_in_the_batch_and_mines_negatives_without_objects(tf):
    depth = NUM_CLASSES + 1
    loss = ops.ssd_loss(NUM_CLASSES, loc_weight=2.0)
    y_true = _batch([[1, 1, 0, 0, 0, 0, 0, 0], [0] * 8])
    y_pred = np.zeros((2, 8, 4 + depth), np.float32)
    y_pred[..., 4] = 0.5  # every anchor: background 0.5, class 1 0.5
    y_pred[..., 5] = 0.5
    per_sample = loss(y_true, y_pred).numpy()
    smooth_l1 = 4 * 0.5 * 0.5**2  # offsets off by 0.5 on each of 4 coordinates
    image0 = 2 * (2.0 * smooth_l1 + math.log(2)) + 6 * math.log(2)  # 2 positives, 6 negatives
    image1 = 3 * math.log(2)  # no positives: as many negatives as for one positive
    assert per_sample.mean() == pytest.approx((image0 + image1) / 2, rel=1e-5)  # / 2 positives in the batch
    np.testing.assert_allclose(per_sample, np.array([image0, image1]) * 2 / 2, rtol=1e-5)


def test_loss_runs_under_tf_function_with_unknown_batch_size_and_has_gradients(tf):
    depth = NUM_CLASSES + 1
    loss = ops.ssd_loss(NUM_CLASSES)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 5]), tf.TensorSpec([None, 8, 4 + depth])])
    def mean_loss(y_true, y_pred):
        return tf.reduce_mean(loss(y_true, y_pred))

    for classes in ([[1, 0, 0, 0, 0, 0, 0, 0]], [[1, 0, 0, 0, 0, 0, 0, 0], [0, 3, 0, 2, 0, 0, 0, 0], [0] * 8]):
        y_true = _batch(classes)
        assert np.isfinite(mean_loss(y_true, _prediction(y_true, correct=False)).numpy())

    y_true = _batch([[1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 2, 0, 0, 0, 0, 0]])
    logits = tf.Variable(tf.zeros((2, 8, 4 + depth)))
    with tf.GradientTape() as tape:
        y_pred = tf.concat([logits[..., :4], tf.nn.softmax(logits[..., 4:])], axis=-1)
        value = mean_loss(y_true, y_pred)
    grad = tape.gradient(value, logits).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_loss_rejects_a_prediction_of_the_wrong_width(tf):
    with pytest.raises(ValueError, match="Received: y_pred.shape"):
        ops.ssd_loss(NUM_CLASSES)(np.zeros((1, 8, 5), np.float32), np.zeros((1, 8, 7), np.float32))
    with pytest.raises(ValueError, match="Received: neg_pos_ratio"):
        ops.ssd_loss(NUM_CLASSES, neg_pos_ratio=0)


# -------------------------------------------------------------------------------------------- canvases
def _sources(n=20):
    """28x28 black images with an off-centre bright blob whose brightness encodes the class."""
    rng = np.random.default_rng(1)
    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.arange(n) % 5
    for k in range(n):
        top, left = rng.integers(2, 10, size=2)
        images[k, top : top + rng.integers(8, 16), left : left + rng.integers(6, 16)] = 100 + 30 * labels[k]
    return images, labels


def test_compose_canvases_is_deterministic_by_seed_and_varies_across_seeds():
    images, labels = _sources()
    first = ops.compose_canvases(images, labels, 6, canvas_size=64, seed=3)
    again = ops.compose_canvases(images[..., None], labels, 6, canvas_size=64, seed=3)
    other = ops.compose_canvases(images, labels, 6, canvas_size=64, seed=4)
    np.testing.assert_array_equal(first[0], again[0])
    for a, b in zip(first[1] + first[2], again[1] + again[2]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert first[0].shape == (6, 64, 64, 3) and first[0].dtype == np.uint8


def test_compose_canvases_boxes_are_inside_tight_and_apart():
    images, labels = _sources()
    canvases, boxes, classes = ops.compose_canvases(images, labels, 40, canvas_size=96, max_objects=4, seed=0)
    counts = [len(b) for b in boxes]
    assert min(counts) >= 1 and max(counts) <= 4
    assert set(counts) == {1, 2, 3, 4}  # uniform over 1..4, 40 canvases
    for canvas, canvas_boxes, canvas_classes in zip(canvases, boxes, classes):
        assert canvas_boxes.dtype == np.float32 and canvas_classes.dtype == np.int64
        assert canvas_boxes.shape == (len(canvas_classes), 4)
        assert np.all((canvas_boxes >= 0) & (canvas_boxes <= 1))
        assert np.all(canvas_boxes[:, 2:] > canvas_boxes[:, :2])
        overlaps = ops.iou(canvas_boxes, canvas_boxes)
        assert np.all(overlaps[~np.eye(len(canvas_boxes), dtype=bool)] <= 0.3 + 1e-6)
        grey = canvas[..., 0]
        for x1, y1, x2, y2 in np.rint(canvas_boxes * 96).astype(int):
            inside = grey[y1:y2, x1:x2] > ops.OBJECT_PIXEL_THRESHOLD
            # Tight: every edge row and column of the box holds object pixels.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            # Not the paste square: the blobs cover at most ~16/28 of each side of it.
            assert (x2 - x1) < 0.5 * 96 * 0.6 + 2


def test_compose_canvases_single_object_box_holds_every_object_pixel_and_its_class():
    images, labels = _sources()
    canvases, boxes, classes = ops.compose_canvases(images, labels, 10, canvas_size=64, max_objects=1, seed=5)
    for canvas, (box,), (cls,) in zip(canvases[..., 0], boxes, classes):
        x1, y1, x2, y2 = np.rint(box * 64).astype(int)
        outside = canvas.copy()
        outside[y1:y2, x1:x2] = 0
        assert outside.max() <= ops.OBJECT_PIXEL_THRESHOLD
        assert canvas.max() == 100 + 30 * cls  # bilinear keeps the flat interior value of the source blob
    np.testing.assert_array_equal(ops.primary_class(classes), [c[0] for c in classes])


def test_compose_canvases_rejects_bad_input():
    images, labels = _sources()
    with pytest.raises(ValueError, match="Received: labels.shape"):
        ops.compose_canvases(images, labels[:-1], 2)
    with pytest.raises(ValueError, match="Received: images.dtype"):
        ops.compose_canvases(images.astype(np.float32), labels, 2)
    with pytest.raises(ValueError, match="Received: scale_range"):
        ops.compose_canvases(images, labels, 2, scale_range=(0.5, 0.25))
    with pytest.raises(ValueError, match="Received: images with maximum"):
        ops.compose_canvases(np.zeros_like(images), labels, 2)
    with pytest.raises(ValueError, match="empty"):
        ops.primary_class([np.array([1]), np.array([], dtype=np.int64)])

"""LogME: informative features score higher than noise, and the score is deterministic."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transferlab.transferability import logme


def _data(seed, signal):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 120)
    centers = rng.normal(size=(3, 16))
    features = signal * centers[labels] + rng.normal(size=(120, 16))
    return features, labels


def test_separable_features_score_higher_than_noise():
    informative = logme(*_data(0, signal=3.0))
    noise = logme(*_data(0, signal=0.0))
    assert informative > noise + 0.1


def test_more_signal_scores_higher():
    scores = [logme(*_data(1, signal=s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert scores == sorted(scores)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), d=st.integers(1, 64))
def test_finite_for_wide_and_narrow_features(seed, d):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(30, d))
    labels = rng.integers(0, 4, 30)
    score = logme(features, labels)
    assert np.isfinite(score) and score == logme(features, labels)


def test_non_finite_features_give_nan():
    features, labels = _data(2, signal=1.0)
    features[0, 0] = np.nan
    assert np.isnan(logme(features, labels))


# ------------------------------------------------------------------ cross-validated probe and k-NN

from transferlab.transferability import (  # noqa: E402
    FoldScores, compare_folds, cv_folds, knn_accuracy, linear_probe,
)


def _blobs(seed, signal, n=200, d=24, classes=4):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    centers = rng.normal(size=(classes, d))
    return (signal * centers[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def test_probe_and_knn_rank_separable_features_above_noise():
    separable, labels = _blobs(0, signal=4.0)
    noise, _ = _blobs(0, signal=0.0)
    for score in (linear_probe, knn_accuracy):
        good, bad = score(separable, labels), score(noise, labels)
        assert good.mean > 0.95, score.__name__
        assert abs(bad.mean - 0.25) < 0.12, score.__name__  # chance with 4 balanced classes
        assert len(good.folds) == 5 and good.n_train + good.n_test == 200


def test_scores_are_deterministic_and_share_folds_across_feature_sets():
    features, labels = _blobs(1, signal=1.0)
    assert linear_probe(features, labels).folds == linear_probe(features, labels).folds
    # the folds depend only on labels and seed: a feature set that copies the labels is perfect on every fold
    oracle = np.eye(4, dtype=np.float32)[labels] * 10
    assert linear_probe(oracle, labels).folds == (1.0,) * 5
    assert linear_probe(features, labels, seed=1).folds != linear_probe(features, labels, seed=0).folds


def test_fewer_folds_for_small_classes_and_none_for_singletons():
    assert cv_folds(np.array([0] * 3 + [1] * 10)) == 3
    assert cv_folds(np.array([0] * 1 + [1] * 10)) == 0
    features, labels = _blobs(2, signal=2.0, n=12, classes=4)  # 3 per class
    assert len(linear_probe(features, labels).folds) == 3


def test_non_finite_features_score_nan_not_raise():
    features, labels = _blobs(3, signal=2.0)
    features[5, 5] = np.inf
    assert np.isnan(linear_probe(features, labels).mean) and np.isnan(knn_accuracy(features, labels).mean)


def test_compare_folds_calls_noise_a_tie_and_a_steady_gap_a_win():
    def scores(*folds):
        return FoldScores(tuple(folds), n_train=160, n_test=40)

    assert compare_folds(scores(0.9, 0.8, 0.85, 0.9, 0.8), scores(0.9, 0.8, 0.85, 0.9, 0.8)) == (0.0, 1.0)
    diff, p = compare_folds(scores(0.90, 0.82, 0.88, 0.86, 0.84), scores(0.86, 0.85, 0.85, 0.88, 0.83))
    assert p > 0.05 and abs(diff - 0.006) < 1e-9
    _, p = compare_folds(scores(0.95, 0.93, 0.96, 0.94, 0.95), scores(0.70, 0.71, 0.69, 0.72, 0.70))
    assert p < 0.01
    # the corrected test is less confident than a plain paired t-test on the same folds
    from scipy import stats

    a, b = scores(0.90, 0.86, 0.88, 0.89, 0.87), scores(0.87, 0.85, 0.86, 0.88, 0.84)
    assert compare_folds(a, b)[1] > stats.ttest_rel(a.folds, b.folds).pvalue

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

"""Transferability scores: how well a frozen backbone's features suit a target task, before training.

LogME (You et al., ICML 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning") is the log of the maximum evidence of a Bayesian linear model from features to one-hot
labels, averaged over classes and divided by the number of examples. Higher means the features
linearly explain the labels better. It needs no training and no hyper-parameters, which is why it is
computed for every run on the training subset before any weight changes.

Two cross-validated scores sit beside it (:func:`linear_probe`, :func:`knn_accuracy`): a logistic probe
and a k-NN vote on the same frozen features, scored on the same stratified folds, so two backbones can be
compared fold by fold (:func:`compare_folds`) and a tie is called a tie. ``transferlab rank`` uses all three.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 50, tol: float = 1e-4) -> float:
    """LogME of ``features`` (n, d) for integer ``labels`` (n,); the mean evidence per example.

    For each class, the evidence of y = F w + noise with prior w ~ N(0, 1/alpha) and noise precision
    beta is maximised over (alpha, beta) by the fixed-point updates of MacKay's evidence framework,
    using one SVD of F shared by all classes.
    """
    f = np.asarray(features, dtype=np.float64)
    y_all = np.asarray(labels)
    n, d = f.shape
    if n < 2 or not np.isfinite(f).all():
        return float("nan")
    try:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
    except np.linalg.LinAlgError:
        return float("nan")
    sigma = np.zeros(d)
    sigma[: len(s)] = s**2  # eigenvalues of F^T F, zero beyond the rank
    evidences = []
    for cls in np.unique(y_all):
        y = (y_all == cls).astype(np.float64)
        x = u.T @ y
        x2 = x**2
        residual_out_of_span = max(float(y @ y - x2.sum()), 0.0)
        sig_r = sigma[: len(x2)]
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = float(np.sum(sigma / (sigma + t)))
            m2 = float(np.sum(sig_r * x2 / (t + sig_r) ** 2))
            res2 = float(np.sum(x2 / (1.0 + sig_r / t) ** 2)) + residual_out_of_span
            new_alpha = gamma / (m2 + 1e-5)
            new_beta = (n - gamma) / (res2 + 1e-5)
            converged = abs(new_alpha / new_beta - t) / t < tol
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        evidence = (
            n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * res2 - alpha / 2 * m2 - 0.5 * np.sum(np.log(alpha + beta * sigma))
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


# ------------------------------------------------------------------ cross-validated scores on frozen features

#: folds of the cross-validated scores (fewer when the smallest class has fewer examples)
CV_FOLDS = 5
#: neighbours of the k-NN score (fewer when a training fold is smaller)
KNN_NEIGHBOURS = 10


@dataclass(frozen=True)
class FoldScores:
    """Held-out accuracy on each fold of one stratified k-fold cross-validation.

    The folds depend only on the labels and the seed, so two feature sets of the same examples are scored on
    the same folds and can be compared fold by fold (:func:`compare_folds`). ``n_train``/``n_test``: the
    examples fitted on and held out per fold (the larger fold, when they differ by one).
    """

    folds: tuple[float, ...]
    n_train: int
    n_test: int

    @property
    def mean(self) -> float:
        """Mean accuracy over the folds (NaN when the features could not be scored)."""
        return float(np.mean(self.folds)) if self.folds else float("nan")

    @property
    def std(self) -> float:
        """Standard deviation of the fold accuracies (ddof 1; NaN with fewer than two folds)."""
        return float(np.std(self.folds, ddof=1)) if len(self.folds) > 1 else float("nan")


def cv_folds(labels: np.ndarray, folds: int = CV_FOLDS) -> int:
    """How many stratified folds ``labels`` allow: ``folds``, or fewer when the smallest class is smaller
    (every fold needs one example of every class); 0 when a class has a single example."""
    counts = np.bincount(np.unique(np.asarray(labels), return_inverse=True)[1])
    most = int(counts.min()) if len(counts) else 0
    return min(int(folds), most) if most >= 2 else 0


def _cross_validate(estimator: Any, features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> FoldScores:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    # float32, as the features are cached: the probe then takes half the time for the same fold accuracies
    # (measured on Lite0/DenseNet121 features of 1,000 images: equal to 4 decimals).
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    k = cv_folds(y, folds)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 examples of every class. Received: class counts "
                         f"{np.bincount(np.unique(y, return_inverse=True)[1]).tolist()}")
    n_test = -(-len(y) // k)
    if not np.isfinite(x).all():
        return FoldScores(folds=(), n_train=len(y) - n_test, n_test=n_test)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # One BLAS thread: these problems are small, and on a shared 2-core machine OpenBLAS's threads fighting
    # over the cores made a 5-fold logistic probe 20-100x slower (0.2 s with one thread, 4-100 s with two).
    with threadpool_limits(1), warnings.catch_warnings():
        # A probe a little short of its optimum after 1,000 steps still ranks; the warning would only be noise.
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        scores = cross_val_score(estimator, x, y, cv=splitter, error_score="raise")
    return FoldScores(folds=tuple(float(s) for s in scores), n_train=len(y) - n_test, n_test=n_test)


def linear_probe(features: np.ndarray, labels: np.ndarray, folds: int = CV_FOLDS, seed: int = 0,
                 c: float = 1.0) -> FoldScores:
    """Cross-validated accuracy of a logistic-regression probe on standardised ``features``.

    scikit-learn's ``LogisticRegression`` (L2, ``C=c``, lbfgs) after a ``StandardScaler`` fitted on each
    training fold, over a stratified, shuffled k-fold split seeded by ``seed``: the linear probe that recent
    transferability benchmarks find as good a predictor of fine-tuned accuracy as the published scores.
    Non-finite features give no folds (a NaN mean)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    return _cross_validate(probe, features, labels, folds, seed)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = CV_FOLDS, seed: int = 0,
                 neighbours: int = KNN_NEIGHBOURS) -> FoldScores:
    """Cross-validated accuracy of a k-nearest-neighbour vote on standardised, unit-length ``features``
    (cosine similarity after standardising; raw cosine fails on features that are nearly constant, such as a
    random-init base's), on the same folds as :func:`linear_probe` for the same labels and seed."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    k = cv_folds(labels, folds)
    n_train = len(labels) - (-(-len(labels) // max(k, 1)))
    knn = KNeighborsClassifier(n_neighbors=max(1, min(int(neighbours), n_train)))
    return _cross_validate(make_pipeline(StandardScaler(), Normalizer(), knn), features, labels, folds, seed)


def compare_folds(a: FoldScores, b: FoldScores) -> tuple[float, float]:
    """(mean difference ``a - b``, two-sided p-value) of two scores on the same folds.

    Fold accuracies share most of their training data, so a plain paired t-test over folds is far too
    confident; this is Nadeau and Bengio's corrected resampled t-test (Machine Learning 52, 2003), which
    inflates the variance of the differences by ``1/k + n_test/n_train``. Identical folds give p = 1; a
    difference that is the same on every fold gives p = 0.
    """
    from scipy import stats

    if len(a.folds) != len(b.folds) or len(a.folds) < 2:
        return float("nan"), float("nan")
    diff = np.asarray(a.folds) - np.asarray(b.folds)
    mean = float(diff.mean())
    variance = float(diff.var(ddof=1))
    if variance == 0:
        return mean, 1.0 if mean == 0 else 0.0
    k = len(diff)
    t = mean / np.sqrt((1 / k + a.n_test / a.n_train) * variance)
    return mean, float(2 * stats.t.sf(abs(t), k - 1))

"""Transferability scores: how well a frozen backbone's features suit a target task, before training.

LogME (You et al., ICML 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning") is the log of the maximum evidence of a Bayesian linear model from features to one-hot
labels, averaged over classes and divided by the number of examples. Higher means the features
linearly explain the labels better. It needs no training and no hyper-parameters, which is why it is
computed for every run on the training subset before any weight changes.
"""
from __future__ import annotations

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

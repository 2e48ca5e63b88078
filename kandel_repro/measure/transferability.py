"""Transferability scores of a frozen network's features, before any training: LogME
(You et al. 2021, ICML, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning") and the H-score (Bao et al. 2019, ICIP, "An Information-Theoretic Approach to
Transferability in Task Transfer Learning"), implemented from the papers.

LogME is the log marginal evidence of a Bayesian linear model from the features to each
class's one-hot target, its prior and noise precisions (α, β) found by MacKay's
fixed-point iteration, per image and averaged over the classes (one target for two
classes' labels 0/1 in each column: both columns are kept, as the paper does). Higher
is better; the values are comparable between feature sets of the same images and labels.
The H-score is tr(cov(f)⁻¹ cov(E[f | y])): how much of the features' variance the class
means explain; a pseudo-inverse is used where the covariance is singular.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

MAX_ITERATIONS = 100
TOLERANCE = 1e-6


def log_evidence(features: np.ndarray, target: np.ndarray, alpha: float,
                 beta: float) -> float:
    """The log evidence of target ≈ features · m, m ~ N(0, α⁻¹I), noise N(0, β⁻¹), per
    image, computed directly from its matrices (the reference :func:`logme`'s SVD form is
    checked against)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
                - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - logdet / 2)
    return float(evidence / n)


def _class_evidence(u, sigma, d, target):
    """LogME of one target column: MacKay's fixed point on the SVD of the features."""
    n = target.shape[0]
    x = u.T @ target
    x2 = x ** 2
    outside = float(target @ target - x2.sum())  # the target's part off the features' span
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITERATIONS):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        residual = float((x2 / (1 + sigma / t) ** 2).sum()) + outside
        alpha, beta = gamma / max(m2, 1e-12), (n - gamma) / max(residual, 1e-12)
        if abs(alpha / beta - t) / t < TOLERANCE:
            break
    t = alpha / beta
    m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
    residual = float((x2 / (1 + sigma / t) ** 2).sum()) + outside
    logdet = float(np.log(alpha + beta * sigma).sum()) + (d - sigma.size) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
                - beta / 2 * residual - alpha / 2 * m2 - logdet / 2)
    return evidence / n, alpha, beta


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME of ``features`` (n × d) for integer class ``labels`` (n): the mean over the
    classes of each one-hot column's log evidence per image."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2
    classes = np.unique(labels)
    return float(np.mean([_class_evidence(u, sigma, f.shape[1],
                                          (labels == k).astype(np.float64))[0]
                          for k in classes]))


def h_score(features: ArrayLike, labels: ArrayLike) -> float:
    """tr(cov(f)⁻¹ cov(E[f | y])) of ``features`` (n × d) and class ``labels``."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    f = f - f.mean(axis=0)
    covariance = f.T @ f / f.shape[0]
    means = np.zeros_like(f)
    for k in np.unique(labels):
        means[labels == k] = f[labels == k].mean(axis=0)
    between = means.T @ means / f.shape[0]
    return float(np.trace(np.linalg.pinv(covariance, rcond=1e-10) @ between))

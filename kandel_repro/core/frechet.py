"""The Fréchet distance between two sets of features, each summarised by a Gaussian.

:func:`frechet_distance` fits a Gaussian (mean, covariance) to each set and returns the
squared Fréchet (2-Wasserstein) distance between the two (Dowson & Landau 1982)::

    ||mu_a - mu_b||² + Tr(Σa + Σb − 2 (Σa Σb)^{1/2})

On features of ImageNet's InceptionV3 (its pooled 2,048 outputs) this is the FID of
Heusel et al. (2017); on any other network, or on random weights, it is a Fréchet
distance in that network's feature space and not comparable with published FIDs.

The matrix square root is :func:`scipy.linalg.sqrtm`. With fewer samples than features
the covariances are singular and the product's root may not exist numerically: then, as
the reference implementation does, ε = 1e-6 is added to both diagonals. The root's tiny
imaginary part (rounding) is dropped; where it is not tiny the trace is taken from the
eigenvalues of Σa Σb instead (real and ≥ 0 for two covariance matrices), which needs no
root of a matrix.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .errors import DataError

EPSILON = 1e-6  # added to the covariances' diagonals when their product has no root
IMAGINARY_TOLERANCE = 1e-3  # of the root's largest real entry: rounding, dropped


def gaussian(features: ArrayLike, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """``(mean, covariance)`` of ``features`` (n samples × d), the covariance with n − 1;
    a :class:`DataError` for fewer than 2 samples or non-finite values."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{what}: expected an array of samples × features, got shape {x.shape}")
    if len(x) < 2:
        raise DataError(f"{what}: a Fréchet distance needs at least 2 samples per set, got "
                        f"{len(x)}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: features must be finite (found NaN or infinity)")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _trace_sqrt_product(cov_a, cov_b):
    """Tr((Σa Σb)^{1/2})."""
    import warnings

    from scipy.linalg import LinAlgWarning, sqrtm

    with warnings.catch_warnings():
        # NOTE: singular covariances (fewer samples than features) are expected; what
        # the root is then worth is checked below, not warned about.
        warnings.simplefilter("ignore", LinAlgWarning)
        root = sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = np.eye(len(cov_a)) * EPSILON
            root = sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        scale = max(1.0, float(np.abs(root.real).max()))
        if np.abs(root.imag).max() > IMAGINARY_TOLERANCE * scale or \
                not np.isfinite(root).all():
            eigenvalues = np.linalg.eigvals(cov_a @ cov_b).real
            return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
        root = root.real
    return float(np.trace(root))


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """The Fréchet distance between Gaussians fitted to ``features_a`` and
    ``features_b`` (each n × d, the same d; n ≥ 2): 0 for identical sets, and for 1-D
    Gaussians (m1 − m2)² + (s1 − s2)²."""
    mu_a, cov_a = gaussian(features_a, "the first set")
    mu_b, cov_b = gaussian(features_b, "the second set")
    if mu_a.shape != mu_b.shape:
        raise DataError(f"the two sets have {mu_a.size} and {mu_b.size} features; a Fréchet "
                        "distance compares features of the same network")
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b)
                  - 2.0 * _trace_sqrt_product(cov_a, cov_b))
    return max(value, 0.0)  # NOTE: ≥ 0 exactly; rounding can leave −1e-12

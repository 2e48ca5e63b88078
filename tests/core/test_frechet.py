"""The Fréchet distance between Gaussians fitted to two feature sets
(kandel_repro.core.frechet): hand cases, and agreement with the formula computed
another way."""
import numpy as np
import pytest

from kandel_repro.core.errors import DataError
from kandel_repro.core.frechet import frechet_distance, gaussian


def _exact(n, mean, std, seed):
    """n 1-D samples whose sample mean and (n − 1) standard deviation are exactly these."""
    x = np.random.default_rng(seed).normal(size=n)
    return (x - x.mean()) / x.std(ddof=1) * std + mean


def reference(features_a, features_b):
    """The FID formula of Heusel et al. (2017) written plainly: Tr((Σa Σb)^{1/2}) as the sum
    of the square roots of the eigenvalues of Σa Σb (real and ≥ 0 for covariances), and
    once more by the symmetric form Tr((Σa^{1/2} Σb Σa^{1/2})^{1/2})."""
    from scipy.linalg import sqrtm

    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    by_eigen = np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0, None)).sum()
    half = sqrtm(cov_a).real
    by_symmetric = np.trace(sqrtm(half @ cov_b @ half).real)
    assert by_eigen == pytest.approx(by_symmetric, rel=1e-6)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * by_eigen)


def test_identical_sets_are_at_distance_zero():
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(x, x.copy()) >= 0.0


def test_one_dimensional_gaussians():
    a, b = _exact(50, 1.0, 2.0, 0), _exact(80, -2.5, 0.5, 1)
    expected = (1.0 + 2.5) ** 2 + (2.0 - 0.5) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a[:, None], b[:, None]) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def _uncorrelated(n, means, stds, seed):
    """n samples of len(means) features with exactly these means and standard deviations
    and exactly no correlation (orthogonal centred columns)."""
    x = np.random.default_rng(seed).normal(size=(n, len(means)))
    q, _ = np.linalg.qr(x - x.mean(0))
    return q * np.sqrt(n - 1) * np.asarray(stds) + np.asarray(means)


def test_independent_features_add_up():
    # diagonal covariances: the sum over features of the 1-D distances
    a = _uncorrelated(60, [0.0, 3.0, -1.0], [1.0, 2.0, 0.5], 2)
    b = _uncorrelated(90, [1.0, 3.0, 1.0], [3.0, 2.0, 0.5], 4)
    assert np.allclose(np.cov(a, rowvar=False), np.diag([1.0, 4.0, 0.25]))
    expected = (1.0 + 4.0) + 0.0 + 4.0
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, b) == pytest.approx(reference(a, b), rel=1e-9)


def test_agrees_with_the_reference_formula_on_random_data():
    rng = np.random.default_rng(7)
    mix = rng.normal(size=(12, 12))
    a = rng.normal(size=(300, 12)) @ mix
    b = rng.normal(size=(250, 12)) @ (mix + 0.5 * rng.normal(size=(12, 12))) + 0.3
    value = frechet_distance(a, b)
    assert value == pytest.approx(reference(a, b), rel=1e-8)
    assert value > 1.0
    # a shift of the mean adds its squared length, nothing else
    shift = np.arange(12) / 10
    assert frechet_distance(a, b + shift) == pytest.approx(
        reference(a, b + shift), rel=1e-8)


def test_fewer_samples_than_features_stays_finite_and_ordered():
    rng = np.random.default_rng(3)
    a, a2 = rng.normal(size=(20, 64)), rng.normal(size=(20, 64))
    far = rng.normal(size=(20, 64)) * 3 + 2
    near_value, far_value = frechet_distance(a, a2), frechet_distance(a, far)
    assert np.isfinite(near_value) and np.isfinite(far_value)
    assert 0 <= near_value < far_value


def test_bad_input_is_one_clear_error():
    x = np.zeros((5, 3))
    with pytest.raises(DataError, match="at least 2 samples"):
        frechet_distance(x[:1], x)
    with pytest.raises(DataError, match="at least 2 samples"):
        frechet_distance(x, np.zeros((0, 3)))
    with pytest.raises(DataError, match="3 and 4 features"):
        frechet_distance(x, np.zeros((5, 4)))
    with pytest.raises(DataError, match="finite"):
        frechet_distance(np.full((5, 3), np.nan), x)
    mean, cov = gaussian(np.arange(6.0).reshape(3, 2))
    assert mean.tolist() == [2.0, 3.0] and cov.shape == (2, 2)

"""DeLong's interval and paired test, Holm's adjustment, threshold measures
(kandel_repro.core.stats), checked against independent implementations."""
import numpy as np
import pytest
from MLstatkit.delong import Delong_test
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score

from kandel_repro.core import ranks, stats
from kandel_repro.core.errors import DataError


def _data(n, seed, ties=True):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    a = labels * 0.8 + rng.normal(0, 0.7, n)
    b = 0.6 * a + labels * 0.3 + rng.normal(0, 0.6, n)  # correlated with a, as two runs are
    if ties:  # coarse scores: many tied values within and across the classes
        a, b = np.round(a, 1), np.round(b, 1)
    return labels, a, b


def test_midranks_share_tied_ranks():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    np.testing.assert_array_equal(ranks.midranks(x), rankdata(x))
    x = np.round(np.random.default_rng(0).normal(size=5000), 1)
    np.testing.assert_array_equal(ranks.midranks(x), rankdata(x))


@pytest.mark.parametrize("n, seed, ties", [(60, 0, True), (500, 1, True), (2000, 2, False),
                                           (3000, 3, True)])
def test_delong_agrees_with_an_independent_implementation(n, seed, ties):
    labels, a, b = _data(n, seed, ties)
    z_ref, p_ref, ci_a_ref, ci_b_ref, auc_a_ref, auc_b_ref, info = Delong_test(labels, a, b)
    assert info["method"] == "delong"
    auc_a, low_a, high_a = stats.auc_ci(labels, a)
    auc_b, low_b, high_b = stats.auc_ci(labels, b)
    assert auc_a == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
    assert auc_a == pytest.approx(auc_a_ref, abs=1e-6) and auc_b == pytest.approx(auc_b_ref, abs=1e-6)
    np.testing.assert_allclose([low_a, high_a], ci_a_ref, atol=1e-6)
    np.testing.assert_allclose([low_b, high_b], ci_b_ref, atol=1e-6)
    diff, z, p = stats.paired_test(labels, a, b)
    assert diff == pytest.approx(auc_a - auc_b, abs=1e-12)
    assert z == pytest.approx(-z_ref, abs=1e-6)  # the reference signs it B − A
    assert p == pytest.approx(p_ref, abs=1e-6)


def test_the_interval_covers_the_auc_as_often_as_it_says():
    """Coverage by simulation: 95 % intervals from samples of one population."""
    rng = np.random.default_rng(7)
    truth = norm.cdf(1 / np.sqrt(2))  # P(N(1, 1) > N(0, 1))
    hits = 0
    for _ in range(300):
        labels = rng.integers(0, 2, 400)
        scores = labels + rng.normal(0, 1, 400)
        _, low, high = stats.auc_ci(labels, scores)
        hits += low <= truth <= high
    assert 0.92 <= hits / 300 <= 0.98


def test_identical_classifiers_are_not_different():
    labels, a, _ = _data(200, 4)
    diff, z, p = stats.paired_test(labels, a, a.copy())
    assert diff == 0 and z == 0 and p == 1.0


def test_holm_adjusts_step_down():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    # sorted 0.01, 0.03, 0.04, 0.20 → ×4, ×3, ×2, ×1 → 0.04, 0.09, 0.08→0.09, 0.20
    np.testing.assert_allclose(stats.holm(p), [0.04, 0.09, 0.09, 0.20])
    assert list(stats.holm([0.5, 0.9])) == [1.0, 1.0]
    assert list(stats.holm([])) == []


def test_threshold_measures_and_youden():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    scores = np.array([0.1, 0.3, 0.6, 0.4, 0.8, 0.9, 0.7, 0.2])
    m = stats.threshold_measures(labels, scores, 0.5)
    # predicted 1: 0.6, 0.8, 0.9, 0.7 → TP 3, FP 1, FN 1, TN 3
    assert m == {"accuracy": 0.75, "sensitivity": 0.75, "specificity": 0.75,
                 "precision": 0.75, "f1": 0.75}
    t = stats.youden_threshold(labels, scores)
    at = stats.threshold_measures(labels, scores, t)
    assert at["sensitivity"] + at["specificity"] - 1 >= 0.5  # J at least that of 0.5
    summary = stats.run_summary(labels, scores)
    assert summary["measures_split"] == "validation" and summary["youden_threshold"] == t
    assert summary["accuracy_t05"] == 0.75 and len(summary["val_auc_ci"]) == 2


def test_one_class_is_refused():
    with pytest.raises(DataError, match="needs both classes"):
        stats.auc_ci([1, 1, 1], [0.2, 0.3, 0.4])

"""DeLong's interval and paired test, Holm's adjustment, threshold measures
(kandel_repro.core.stats), checked against independent implementations."""
import numpy as np
import pytest
from MLstatkit.delong import Delong_test
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score

from kandel_repro.core import ranks, stats
from kandel_repro.core.assessable import MIN_PER_CLASS, too_small
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


def test_a_split_too_small_has_no_interval_and_no_test():
    """Fewer than MIN_PER_CLASS images of a class: the AUC, but no interval and no p."""
    labels, a, b = _data(200, 5)
    labels = np.r_[labels[labels == 0], 1]  # every negative and one positive
    a, b = np.r_[a[:len(labels) - 1], 3.0], np.r_[b[:len(labels) - 1], 0.1]
    auc, low, high = stats.auc_ci(labels, a)
    assert auc == 1.0 and np.isnan(low) and np.isnan(high)
    diff, z, p = stats.paired_test(labels, a, b)
    assert diff > 0 and np.isnan(z) and np.isnan(p)
    assert too_small(labels, "the test split", ["normal", "tumour"]) == (
        "the test split holds 1 image of class 'tumour' (an interval or a paired test "
        f"needs at least {MIN_PER_CLASS} of each class)")
    summary = stats.run_summary(labels, a, labels, a)
    assert np.isnan(summary["val_auc_ci"]).all() and np.isnan(summary["test_auc_ci"]).all()
    assert set(summary["intervals_not_assessable"]) == {"val_auc", "test_auc"}
    assert "1 image of class 1" in summary["intervals_not_assessable"]["test_auc"]
    # one image fewer than the rule asks is refused, the rule itself is enough
    edge = np.r_[np.zeros(MIN_PER_CLASS - 1), np.ones(30)].astype(int)
    assert too_small(edge) and too_small(np.r_[edge, 0]) is None


def test_a_zero_variance_is_not_an_interval_nor_a_certainty():
    """Perfectly separated classes: DeLong's variance is 0. No interval of zero width,
    and a difference with a variance of 0 is not assessable, not p = 0."""
    labels = np.array([0, 1] * 40)
    perfect = labels + np.linspace(0, 0.5, 80)
    auc, low, high = stats.auc_ci(labels, perfect)
    assert auc == 1.0 and np.isnan(low) and np.isnan(high)
    also_perfect = labels * 2 + np.linspace(0.5, 0, 80)
    assert stats.paired_test(labels, perfect, also_perfect) == (0.0, 0.0, 1.0)
    summary = stats.run_summary(labels, perfect)
    assert "perfectly separated" in summary["intervals_not_assessable"]["val_auc"]


def test_holm_leaves_a_test_not_assessable_out_of_the_family():
    adjusted = stats.holm([0.01, np.nan, 0.04])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04])


def test_an_undefined_measure_is_nan_not_zero():
    """Nothing predicted positive: precision is undefined (0 / 0), not 0."""
    labels = np.array([0, 0, 1, 1])
    m = stats.threshold_measures(labels, np.array([0.1, 0.2, 0.3, 0.4]), 0.5)
    assert np.isnan(m["precision"]) and m["sensitivity"] == 0.0 and m["specificity"] == 1.0
    assert m["f1"] == 0.0 and m["accuracy"] == 0.5

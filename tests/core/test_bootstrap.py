"""The macro one-vs-rest AUC and its stratified bootstrap (kandel_repro.core.bootstrap),
checked against scikit-learn, explicit resamples and simulations with a known answer."""
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                             f1_score, roc_auc_score)

from kandel_repro.core import bootstrap
from kandel_repro.core.errors import DataError


def _probabilities(n, k, seed, signal=1.5, grain=12):
    """Labels and coarse class probabilities (multiples of 1/grain: many ties), each
    row leaning to its true class."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % k)  # every class present
    logits = rng.normal(0, 1, (n, k)) + signal * np.eye(k)[labels]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    counts = np.array([rng.multinomial(grain, row) for row in p])
    return labels, counts / grain


def _gaussian(counts, mu, rng):
    """Labels with ``counts`` images per class; the score of column c is N(mu, 1) for an
    image of class c and N(0, 1) otherwise, so every one-vs-rest AUC is Φ(mu/√2)."""
    labels = np.repeat(np.arange(len(counts)), counts)
    scores = rng.normal(0, 1, (len(labels), len(counts))) + mu * np.eye(len(counts))[labels]
    return labels, scores


@pytest.mark.parametrize("k, seed", [(3, 0), (5, 1), (9, 2)])
def test_macro_auc_equals_scikit_learn(k, seed):
    labels, scores = _probabilities(40 * k, k, seed)
    assert len(np.unique(scores)) < 20  # heavily tied
    expected = roc_auc_score(labels, scores, multi_class="ovr", average="macro",
                             labels=list(range(k)))
    assert bootstrap.macro_auc(labels, scores) == pytest.approx(expected, abs=1e-12)
    per_class = [roc_auc_score(labels == c, scores[:, c]) for c in range(k)]
    np.testing.assert_allclose(bootstrap.class_aucs(labels, scores), per_class, atol=1e-12)
    assert len(set(np.round(per_class, 6))) > 1  # the classes do differ


def test_bootstrap_aucs_are_the_macro_aucs_of_the_resamples(monkeypatch):
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 16 * 90)  # chunks of 16: several chunks
    labels, a = _probabilities(90, 4, 3)
    _, b = _probabilities(90, 4, 4)
    boot = bootstrap.bootstrap_aucs(labels, [a, b], n=40, seed=5)
    resamples = np.concatenate(list(bootstrap.stratified_resamples(labels, 40, seed=5)))
    assert boot.shape == (40, 2) and resamples.shape == (40, 90)
    explicit = [[bootstrap.macro_auc(labels[r], s[r]) for s in (a, b)] for r in resamples]
    np.testing.assert_allclose(boot, explicit, atol=1e-12)
    # a classifier's column does not depend on the others scored with it
    np.testing.assert_array_equal(bootstrap.bootstrap_aucs(labels, [b], n=40, seed=5)[:, 0],
                                  boot[:, 1])


def test_resamples_are_stratified_and_seeded():
    labels = np.array([2] * 7 + [0] * 12 + [1] * 3 + [2] * 5)
    chunks = list(bootstrap.stratified_resamples(labels, 300, seed=1))
    resamples = np.concatenate(chunks)
    assert resamples.shape == (300, len(labels))
    for row in resamples:
        np.testing.assert_array_equal(np.bincount(labels[row]), np.bincount(labels))
    assert max(np.bincount(row).max() for row in resamples) > 1  # drawn with replacement
    assert len({tuple(np.sort(row)) for row in resamples}) > 290  # the resamples differ
    again = np.concatenate(list(bootstrap.stratified_resamples(labels, 300, seed=1)))
    np.testing.assert_array_equal(again, resamples)
    other = np.concatenate(list(bootstrap.stratified_resamples(labels, 300, seed=2)))
    assert not np.array_equal(other, resamples)

    labels, scores = _probabilities(60, 3, 6)
    first = bootstrap.bootstrap_aucs(labels, [scores], n=100, seed=3)
    np.testing.assert_array_equal(bootstrap.bootstrap_aucs(labels, [scores], n=100, seed=3), first)
    assert not np.array_equal(bootstrap.bootstrap_aucs(labels, [scores], n=100, seed=4), first)
    assert bootstrap.bootstrap_ci(labels, scores, n=100, seed=3) == \
        bootstrap.bootstrap_ci(labels, scores, n=100, seed=3)


def test_the_interval_covers_the_true_macro_auc_as_often_as_it_says():
    """Coverage by simulation: 95 % intervals from 200 samples of one population whose
    macro AUC is Φ(μ/√2)."""
    rng = np.random.default_rng(11)
    mu = 1.0
    truth = norm.cdf(mu / np.sqrt(2))
    hits = 0
    for i in range(200):
        labels, scores = _gaussian([60, 100, 140], mu, rng)
        auc, low, high = bootstrap.bootstrap_ci(labels, scores, n=500, seed=i)
        hits += low <= truth <= high
    assert 0.90 <= hits / 200 <= 0.99


def test_a_narrower_level_gives_a_narrower_interval():
    labels, scores = _gaussian([50, 50, 50], 1.0, np.random.default_rng(2))
    auc, low, high = bootstrap.bootstrap_ci(labels, scores, n=400)
    assert auc == bootstrap.macro_auc(labels, scores)
    _, low50, high50 = bootstrap.bootstrap_ci(labels, scores, n=400, level=0.5)
    assert low < low50 < auc < high50 < high


def test_identical_classifiers_are_not_different():
    labels, scores = _probabilities(90, 3, 7)
    assert bootstrap.paired_bootstrap(labels, scores, scores.copy(), n=200) == (0.0, 0.0, 1.0)
    # the same rankings in every column (a monotone transform) are no different either
    assert bootstrap.paired_bootstrap(labels, scores, scores ** 2 + 1, n=200) == (0.0, 0.0, 1.0)


def test_a_clearly_better_classifier_is_found_with_the_right_sign():
    rng = np.random.default_rng(3)
    labels, good = _gaussian([100, 100, 100], 1.5, rng)
    _, poor = _gaussian([100, 100, 100], 0.5, rng)
    diff, z, p = bootstrap.paired_bootstrap(labels, good, poor, n=500)
    auc_good, auc_poor = bootstrap.macro_auc(labels, good), bootstrap.macro_auc(labels, poor)
    assert diff == pytest.approx(auc_good - auc_poor)
    assert diff > 0.1 and z > 3 and p < 0.01
    # p = 2·Φ(−|z|) (pROC's bootstrap test): not floored at 2 / (n + 1) by the resamples
    assert p == pytest.approx(2 * norm.sf(abs(z))) and p < 2 / 501
    back = bootstrap.paired_bootstrap(labels, poor, good, n=500)
    assert back[0] == pytest.approx(-diff) and back[1] < -3 and back[2] < 0.01


def test_equally_good_classifiers_are_rarely_called_different():
    """Under the null (two independent classifiers of the same skill) the test at 5 %
    rejects in about 5 % of 200 data sets, and at most 10 %."""
    rng = np.random.default_rng(5)
    rejected = 0
    for i in range(200):
        labels, a = _gaussian([80, 80, 80], 1.0, rng)
        _, b = _gaussian([80, 80, 80], 1.0, rng)
        _, _, p = bootstrap.paired_bootstrap(labels, a, b, n=400, seed=i)
        assert 0 < p <= 1
        rejected += p < 0.05
    assert rejected / 200 <= 0.10


@pytest.mark.parametrize("labels, scores, message", [
    ([0, 1, 1, 0, 3], np.full((5, 4), 0.25), r"class\(es\) 2 have no image among the 5 labels"),
    ([0, 1, 2, 3, 1], np.full((5, 3), 0.3),
     r"labels run from 0 to 3 but (validation )?scores( of classifier 1)? have 3 columns"),
    ([0, 1, 2], np.full((4, 3), 0.3), r"scores( of classifier 1)? have 4 rows for 3 labels"),
    ([0, 1, 0], [0.2, 0.7, 0.1], r"must be an \(images, classes\) array .* got shape \(3,\)"),
    ([0, 1, 0], [[0.2, 0.8], [np.nan, 0.5], [0.9, np.inf]], r"2 of 3 rows hold NaN or infinity"),
    ([0, 1.5, 0], np.full((3, 2), 0.5), r"labels must be integer class indices"),
])
def test_bad_input_is_refused_in_one_line(labels, scores, message):
    for call in (lambda: bootstrap.macro_auc(labels, scores),
                 lambda: bootstrap.bootstrap_aucs(labels, [scores], n=10),
                 lambda: bootstrap.multiclass_summary(labels, scores, n=10)):
        with pytest.raises(DataError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_multiclass_summary_records_intervals_and_measures():
    val_labels, val_scores = _probabilities(60, 3, 8)
    test_labels, test_scores = _probabilities(45, 3, 9, signal=0.8)
    out = bootstrap.multiclass_summary(val_labels, val_scores, test_labels, test_scores,
                                       test_key="auc", n=300, seed=2)
    assert set(out) == {"val_auc_ci", "auc_ci", "ci_method", "measures_split", "class_aucs",
                        "accuracy", "balanced_accuracy", "macro_f1", "confusion"}
    assert out["ci_method"] == "stratified bootstrap, 300 resamples"
    assert out["measures_split"] == "test"
    for key, labels, scores in (("val_auc_ci", val_labels, val_scores),
                                ("auc_ci", test_labels, test_scores)):
        assert out[key] == list(bootstrap.bootstrap_ci(labels, scores, n=300, seed=2)[1:])
    predicted = test_scores.argmax(axis=1)
    assert out["accuracy"] == pytest.approx(accuracy_score(test_labels, predicted))
    assert out["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(test_labels, predicted))
    assert out["macro_f1"] == pytest.approx(f1_score(test_labels, predicted, average="macro"))
    assert out["confusion"] == confusion_matrix(test_labels, predicted, labels=[0, 1, 2]).tolist()
    assert all(type(v) is int for row in out["confusion"] for v in row)
    per_class = [roc_auc_score(test_labels == c, test_scores[:, c]) for c in range(3)]
    np.testing.assert_allclose(out["class_aucs"], per_class)
    assert out["accuracy"] != pytest.approx(accuracy_score(val_labels, val_scores.argmax(axis=1)))

    only_val = bootstrap.multiclass_summary(val_labels, val_scores, n=300, seed=2)
    assert only_val["measures_split"] == "validation" and "test_auc_ci" not in only_val
    assert only_val["val_auc_ci"] == out["val_auc_ci"]
    assert only_val["confusion"] == confusion_matrix(val_labels, val_scores.argmax(axis=1)).tolist()
    # a class never predicted keeps its column (of zeros), and its F1 of 0 counts
    never = np.where(val_scores.argmax(axis=1, keepdims=True) == 2, 0.0, val_scores)
    never_out = bootstrap.multiclass_summary(val_labels, never, n=20)
    assert [row[2] for row in never_out["confusion"]] == [0, 0, 0]
    assert np.array(never_out["confusion"]).shape == (3, 3)
    assert never_out["macro_f1"] == pytest.approx(
        f1_score(val_labels, never.argmax(axis=1), labels=[0, 1, 2], average="macro",
                 zero_division=0.0))


def test_a_class_of_one_image_has_no_interval_and_no_test():
    """12 classes of one test image each: the macro AUC, but no interval (the resamples
    of a one-image class never vary) and no paired p — never [a, a] or p = 0."""
    rng = np.random.default_rng(4)
    labels = np.arange(12)
    a, b = rng.dirichlet(np.ones(12), 12), rng.dirichlet(np.ones(12), 12)
    auc, low, high = bootstrap.bootstrap_ci(labels, a, n=200)
    assert auc == bootstrap.macro_auc(labels, a) and np.isnan(low) and np.isnan(high)
    diff, z, p = bootstrap.paired_bootstrap(labels, a, b, n=200)
    assert diff == pytest.approx(bootstrap.macro_auc(labels, a) - bootstrap.macro_auc(labels, b))
    assert np.isnan(z) and np.isnan(p)
    summary = bootstrap.multiclass_summary(labels, a, labels, a, n=200)
    assert np.isnan(summary["test_auc_ci"]).all()
    assert "1 image of class" in summary["intervals_not_assessable"]["test_auc"]


def test_resamples_that_do_not_vary_give_no_interval():
    """Every class perfectly separated in its column: each resample's macro AUC is 1."""
    labels = np.repeat(np.arange(3), 20)
    scores = np.eye(3)[labels] * 0.9 + 0.05
    auc, low, high = bootstrap.bootstrap_ci(labels, scores, n=100)
    assert auc == 1.0 and np.isnan(low) and np.isnan(high)

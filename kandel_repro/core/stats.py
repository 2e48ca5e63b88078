"""How sure is an AUC: DeLong's confidence interval, paired test, Holm's adjustment, and
the threshold measures of a run.

- :func:`delong` — AUCs of k classifiers on the same images and their covariance, by
  the fast algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21(11)): the
  structural components of DeLong, DeLong & Clarke-Pearson (1988) come from midranks,
  so the cost is that of sorting (O(n log n)), not of comparing every positive with
  every negative.
- :func:`auc_ci` — the 95 % interval AUC ± 1.96·SE (normal approximation, clipped to
  [0, 1]).
- :func:`paired_test` — DeLong's test of two classifiers scored on the same images
  (two-sided; the difference's variance includes their covariance).
- :func:`holm` — Holm's step-down adjustment of a family of p-values.
- :func:`threshold_measures` — accuracy, sensitivity, specificity, precision, F1 at a
  threshold (scikit-learn), and :func:`youden_threshold`, the threshold maximising
  Youden's J = sensitivity + specificity − 1 on the data given. A measure that is not
  defined (precision when nothing is predicted positive) is NaN, never 0.

**What a small split cannot support.** An interval or a paired test is *not assessable*
(NaN, never a zero-width interval or p = 0) where the split holds fewer than
:data:`~.assessable.MIN_PER_CLASS` images of a class (:func:`~.assessable.too_small`),
and where the method's own spread is zero: DeLong's variance at a perfect separation, a
bootstrap whose resampled AUCs (or differences) do not vary. The rule, its reason and how
callers report it: :mod:`.assessable`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .assessable import interval_note, too_small
from .errors import DataError
from .ranks import midranks

MEASURES = ("accuracy", "sensitivity", "specificity", "precision", "f1")

def _check(labels, scores):
    labels = np.asarray(labels).astype(int).reshape(-1)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    if scores.shape[1] != len(labels):
        raise ValueError(f"{scores.shape[1]} scores for {len(labels)} labels")
    if not set(np.unique(labels)) <= {0, 1}:
        raise DataError("labels must be 0 or 1")
    if labels.min() == labels.max():
        raise DataError(f"an AUC needs both classes; all {len(labels)} labels are {labels[0]}")
    if not np.isfinite(scores).all():
        raise DataError("scores must be finite")
    return labels, scores


def delong(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(aucs, covariance)`` of the classifiers whose scores are the rows of ``scores``
    (one row: a single classifier) on the images of ``labels`` (0/1)."""
    labels, scores = _check(labels, scores)
    positives, negatives = scores[:, labels == 1], scores[:, labels == 0]
    m, n = positives.shape[1], negatives.shape[1]
    k = len(scores)
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    aucs = np.empty(k)
    for r in range(k):
        tx, ty = midranks(positives[r]), midranks(negatives[r])
        tz = midranks(np.r_[positives[r], negatives[r]])
        aucs[r] = (tz[:m].sum() / m - (m + 1) / 2.0) / n
        v10[r] = (tz[:m] - tx) / n  # per positive: share of negatives it outscores
        v01[r] = 1.0 - (tz[m:] - ty) / m  # per negative: share of positives outscoring it
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((k, k))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((k, k))
    return aucs, s10 / m + s01 / n


ZERO_VARIANCE = ("DeLong's variance is 0 there (the classes are perfectly separated, or every "
                 "image got the same score): no interval of zero width is given")


def auc_ci(labels: ArrayLike, scores: ArrayLike,
           level: float = 0.95) -> tuple[float, float, float]:
    """``(auc, lower, upper)``: DeLong's interval at ``level`` (default 95 %); the ends
    are NaN (not assessable) for a split of fewer than :data:`~.assessable.MIN_PER_CLASS` images of
    a class, or where DeLong's variance is 0 (the classes perfectly separated, or one score
    for every image)."""
    from scipy.stats import norm

    aucs, cov = delong(labels, np.asarray(scores, dtype=float)[None, :])
    if too_small(labels) or not cov[0, 0] > 0:
        return float(aucs[0]), math.nan, math.nan
    half = norm.ppf(0.5 + level / 2) * math.sqrt(cov[0, 0])
    return float(aucs[0]), max(0.0, float(aucs[0] - half)), min(1.0, float(aucs[0] + half))


def paired_test(labels: ArrayLike, scores_a: ArrayLike,
                scores_b: ArrayLike) -> tuple[float, float, float]:
    """``(auc_a − auc_b, z, two-sided p)``: DeLong's test on the same images. ``z`` and
    ``p`` are NaN (not assessable) for a split of fewer than :data:`~.assessable.MIN_PER_CLASS`
    images of a class, or where the difference's variance is 0 but the AUCs differ (a
    zero variance is no evidence of certainty); identical rankings otherwise give
    (0, 0, 1)."""
    from scipy.stats import norm

    aucs, cov = delong(labels, np.vstack([scores_a, scores_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if too_small(labels):
        return diff, math.nan, math.nan
    if var <= 0:  # identical rankings: no evidence of a difference; else not assessable
        return (0.0, 0.0, 1.0) if diff == 0 else (diff, math.nan, math.nan)
    z = diff / math.sqrt(var)
    return diff, z, float(2 * norm.sf(abs(z)))


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjustment: adjusted p-values in the given order. A NaN p (a
    test not assessable) stays NaN and does not count in the family."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="mergesort")]
    count = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def youden_threshold(labels: ArrayLike, scores: ArrayLike) -> float:
    """The score threshold maximising sensitivity + specificity − 1 (Youden's J)."""
    from sklearn.metrics import roc_curve

    labels, scores = _check(labels, scores)
    fpr, tpr, thresholds = roc_curve(labels, scores[0])
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))  # roc_curve's first threshold is +inf


def threshold_measures(labels: ArrayLike, scores: ArrayLike,
                       threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, precision and F1 of ``scores ≥ threshold``;
    a measure whose denominator is 0 is NaN (undefined), not 0: precision when nothing
    is predicted positive, sensitivity (specificity) without positives (negatives)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(scores, dtype=float) >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "sensitivity": float(recall_score(labels, predicted, zero_division=np.nan)),
        "specificity": float(recall_score(1 - labels, 1 - predicted, zero_division=np.nan)),
        "precision": float(precision_score(labels, predicted, zero_division=np.nan)),
        "f1": float(f1_score(labels, predicted, zero_division=np.nan)),
    }


# How a table reads a run's threshold measures: at the threshold maximising Youden's J
# on the validation split (a score of 0.5 has no special meaning for a model whose
# outputs are not calibrated, and the classes are not balanced).
TABLE_RULE = "youden"


def run_summary(val_labels: ArrayLike, val_scores: ArrayLike, test_labels: ArrayLike | None = None,
                test_scores: ArrayLike | None = None, test_key: str = "test_auc",
                names: Sequence[str] | None = None) -> dict:
    """What a run records beside its AUC: DeLong 95 % intervals and the threshold
    measures.

    ``val_auc_ci`` (and ``<test_key>_ci`` when the test labels are known); the Youden
    threshold chosen on the validation split; and each of :data:`MEASURES` at 0.5
    (``…_t05``) and at that threshold (``…_youden``), computed on the test split when
    its labels are known, else on the validation split (``measures_split`` says which;
    on the validation split the Youden threshold was chosen on the same images, so its
    measures are optimistic).

    An interval that is not assessable (:func:`auc_ci`) is recorded as ``[NaN, NaN]``
    and its reason under ``intervals_not_assessable`` (``{AUC key: reason}``; ``names``:
    the classes by label, for the reason's words).
    """
    out = {"val_auc_ci": list(auc_ci(val_labels, val_scores)[1:])}
    threshold = youden_threshold(val_labels, val_scores)
    labels, scores, split = val_labels, val_scores, "validation"
    notes = {"val_auc": interval_note(val_labels, out["val_auc_ci"], "the validation split",
                                      ZERO_VARIANCE, names)}
    if test_labels is not None:
        out[f"{test_key}_ci"] = list(auc_ci(test_labels, test_scores)[1:])
        notes[test_key] = interval_note(test_labels, out[f"{test_key}_ci"], "the test split",
                                        ZERO_VARIANCE, names)
        labels, scores, split = test_labels, test_scores, "test"
    notes = {key: note for key, note in notes.items() if note}
    if notes:
        out["intervals_not_assessable"] = notes
    out.update(youden_threshold=threshold, measures_split=split)
    for rule, cut in (("t05", 0.5), ("youden", threshold)):
        out.update({f"{name}_{rule}": value
                    for name, value in threshold_measures(labels, scores, cut).items()})
    return out


# --- two classes or more: one call whichever the scores are ---------------------------
# A binary run's scores are one column (the positive class's probability): DeLong's
# exact methods above. A run of k ≥ 3 classes scores an (n, k) array of class
# probabilities: its AUC is the macro one-vs-rest AUC and its intervals and paired tests
# come from the stratified bootstrap (:mod:`kandel_repro.core.bootstrap`).

def multiclass(scores: ArrayLike) -> bool:
    """Whether ``scores`` are a multi-class (n, k ≥ 2 columns) array."""
    return np.ndim(scores) == 2 and np.shape(scores)[1] > 1


def auc_of(labels: ArrayLike, scores: ArrayLike) -> float:
    """The ROC AUC of a run's scores: binary, or the macro one-vs-rest AUC."""
    if multiclass(scores):
        from .bootstrap import macro_auc

        return float(macro_auc(labels, scores))
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.asarray(scores, dtype=float).reshape(-1)))


def paired_of(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike,
              bootstrap: int | None = None, seed: int = 0) -> tuple[float, float, float]:
    """``(auc_a − auc_b, z, two-sided p)`` of two runs on the same images: DeLong's test
    for binary scores, the paired stratified bootstrap (``bootstrap`` resamples, default
    :data:`~kandel_repro.core.bootstrap.BOOTSTRAP`) for multi-class ones."""
    if multiclass(scores_a):
        from .bootstrap import BOOTSTRAP, paired_bootstrap

        return paired_bootstrap(labels, scores_a, scores_b, n=bootstrap or BOOTSTRAP, seed=seed)
    return paired_test(labels, scores_a, scores_b)


def summary_of(val_labels: ArrayLike, val_scores: ArrayLike,
               test_labels: ArrayLike | None = None, test_scores: ArrayLike | None = None,
               test_key: str = "test_auc", bootstrap: int | None = None,
               names: Sequence[str] | None = None) -> dict:
    """What a run records beside its AUC: :func:`run_summary` for binary scores,
    :func:`~kandel_repro.core.bootstrap.multiclass_summary` for multi-class ones
    (``names``: the classes by label, for the words of an interval not assessable)."""
    if multiclass(val_scores):
        from .bootstrap import BOOTSTRAP, multiclass_summary

        return multiclass_summary(val_labels, val_scores, test_labels, test_scores, test_key,
                                  n=bootstrap or BOOTSTRAP, names=names)
    return run_summary(val_labels, val_scores, test_labels, test_scores, test_key, names)

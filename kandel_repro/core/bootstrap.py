"""How sure is a multi-class AUC: the macro one-vs-rest ROC AUC and its stratified
bootstrap (interval and paired test), and the measures a multi-class run records.

DeLong's variance (:mod:`.stats`) is that of one binary AUC; the macro average of k
one-vs-rest AUCs shares its images between the k terms, so its uncertainty is
estimated here by resampling instead.

- :func:`macro_auc`, :func:`class_aucs` — the mean of the k one-vs-rest AUCs (equal to
  scikit-learn's ``roc_auc_score(…, multi_class="ovr", average="macro")``), from
  midranks.
- :func:`bootstrap_aucs` — the macro AUCs of several classifiers on the same stratified
  resamples: each class is resampled with replacement within itself, so every resample
  keeps every class with its original count (the AUC is defined on every resample, and
  the class mix, which the split fixed, does not vary). A resample is a count per image,
  and the AUC of counted images is a sum over each column's score order, computed once;
  no resample is sorted, so 2,000 resamples cost little more than 2,000 passes over the
  data.
- :func:`bootstrap_ci` — the percentile interval (Efron & Tibshirani 1993, *An
  Introduction to the Bootstrap*, ch. 13).
- :func:`paired_bootstrap` — two classifiers compared on the same resamples, returning
  what :func:`.stats.paired_test` returns.
- :func:`multiclass_summary` — the intervals, per-class AUCs, accuracy, balanced
  accuracy, macro F1 and confusion matrix of a run (the multi-class
  :func:`.stats.run_summary`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .errors import DataError
from .ranks import midranks
from .assessable import interval_note, too_small

BOOTSTRAP = 2000  # default number of resamples

# Resamples are drawn and scored in chunks. A chunk's temporaries (a few float64 arrays
# of images × resamples) stay under _CHUNK_BYTES; below that, chunks of about
# _CHUNK_CELLS counts (1 MB) stay in cache and run fastest, unless that leaves fewer
# than _MIN_CHUNK resamples, whose per-chunk overhead would then dominate. The size
# depends on the number of images only, so a seed gives the same resamples whatever
# the classifiers.
_CHUNK_BYTES = 50_000_000
_ARRAYS_PER_CHUNK = 5
_CHUNK_CELLS = 1 << 17
_MIN_CHUNK = 16


def _check(labels: ArrayLike, scores: ArrayLike,
           what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """``(labels, scores)`` as an int vector and an (n, k) float array, or a DataError."""
    raw = np.asarray(labels)
    if raw.ndim != 1:
        raise DataError(f"labels must be a vector of class indices, got shape {raw.shape}")
    if raw.dtype.kind not in "iub":
        if raw.dtype.kind != "f" or not np.array_equal(raw, np.round(raw)):
            raise DataError("labels must be integer class indices 0..k-1, got "
                            f"{raw[:5].tolist()}{'…' if len(raw) > 5 else ''}")
    labels = raw.astype(int)
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise DataError(f"{what} must be an (images, classes) array with a column per class "
                        f"(at least 2), got shape {scores.shape}")
    n, k = scores.shape
    if n != len(labels):
        raise DataError(f"{what} have {n:,} rows for {len(labels):,} labels: "
                        "give one row per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise DataError(f"labels run from {labels.min()} to {labels.max()} but {what} have {k} "
                        f"columns: labels must be class indices 0..{k - 1}, one column per class")
    counts = np.bincount(labels, minlength=k)
    if (counts == 0).any():
        missing = ", ".join(str(c) for c in np.flatnonzero(counts == 0))
        raise DataError(f"class(es) {missing} have no image among the {n:,} labels: a macro AUC "
                        f"over the {k} columns of {what} needs images of every class")
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).any(axis=1).sum())
        raise DataError(f"{what} must be finite; {bad:,} of {n:,} rows hold NaN or infinity")
    return labels, scores


def class_aucs(labels: ArrayLike, scores: ArrayLike) -> list[float]:
    """The k one-vs-rest ROC AUCs: column c's scores, class c against all others."""
    labels, scores = _check(labels, scores)
    n = len(labels)
    out = []
    for c in range(scores.shape[1]):
        positive = labels == c
        m = int(positive.sum())
        ranks = midranks(scores[:, c])
        out.append(float((ranks[positive].sum() - m * (m + 1) / 2.0) / (m * (n - m))))
    return out


def macro_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """The macro one-vs-rest ROC AUC: the unweighted mean of :func:`class_aucs`."""
    return float(np.mean(class_aucs(labels, scores)))


def _chunk_size(images: int) -> int:
    images = max(images, 1)
    fits = _CHUNK_BYTES // (8 * _ARRAYS_PER_CHUNK * images)
    return max(1, min(fits, max(_MIN_CHUNK, _CHUNK_CELLS // images)))


def stratified_resamples(labels: ArrayLike, n: int = BOOTSTRAP,
                         seed: int = 0) -> Iterator[np.ndarray]:
    """The ``n`` stratified resamples :func:`bootstrap_aucs` uses, in chunks: arrays of
    (resamples, images) indices into ``labels``, each row drawing every class's images
    with replacement from that class (its columns grouped by class, 0 first)."""
    labels = np.asarray(labels).astype(int)
    if n < 1:
        raise ValueError(f"the number of resamples must be at least 1, got {n}")
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rng = np.random.default_rng([int(seed), 23])
    size = _chunk_size(len(labels))
    for start in range(0, n, size):
        rows = min(size, n - start)
        yield np.concatenate([idx[rng.integers(0, len(idx), size=(rows, len(idx)))]
                              for idx in members], axis=1)


def _column_orders(labels: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """Per column c: the images of other classes in score order, the images of class c,
    for each of those how many others score below it and how many not above it, and
    the AUC's denominator n_c·(n − n_c)."""
    orders = []
    for c in range(scores.shape[1]):
        positive = np.flatnonzero(labels == c)
        negative = np.flatnonzero(labels != c)
        negative = negative[np.argsort(scores[negative, c], kind="mergesort")]
        ordered = scores[negative, c]
        lows = np.searchsorted(ordered, scores[positive, c], side="left")
        highs = np.searchsorted(ordered, scores[positive, c], side="right")
        orders.append((negative, positive, lows, highs, float(len(positive) * len(negative))))
    return orders


def _running_sums(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """W with W[t] the sum of ``counts[rows[:t]]`` (W[0] = 0), t = 0 … len(rows).

    NOTE: ``np.cumsum`` down the rows of a wide array runs several times slower than
    adding whole rows, so the sums are taken in √len blocks of rows: within every block
    at once, then the blocks' totals; each step adds contiguous rows."""
    size, width = len(rows), counts.shape[1]
    block = max(1, math.isqrt(size))
    blocks = -(-size // block)
    out = np.zeros((1 + blocks * block, width))
    out[1:1 + size] = counts[rows]
    view = out[1:].reshape(blocks, block, width)
    for r in range(1, block):
        view[:, r] += view[:, r - 1]
    for b in range(1, blocks):
        view[b] += view[b - 1, -1]
    return out


def _weighted_macro(counts: np.ndarray, orders: list[tuple]) -> np.ndarray:
    """Macro AUCs of the resamples whose image counts are the columns of ``counts``
    (images × resamples).

    Column c's AUC is Σ over positive i, negative j of w_i·w_j·([s_i > s_j] + ½[s_i = s_j])
    over n_c·(n − n_c): with W(t) the weight of the t lowest-scoring negatives, positive
    i adds w_i·(W(below i) + W(not above i)) / 2."""
    total = np.zeros(counts.shape[1])
    for negative, positive, lows, highs, denominator in orders:
        cumulative = _running_sums(counts, negative)
        beaten = cumulative[lows]
        beaten += cumulative[highs]
        total += np.einsum("ij,ij->j", counts[positive], beaten) / (2.0 * denominator)
    return total / len(orders)


def _classifiers(scores) -> list:
    """A sequence of (n, k) score arrays; one array of at most 2 dimensions alone is one
    classifier (a list is always a list of classifiers)."""
    if isinstance(scores, np.ndarray):
        return [scores] if scores.ndim <= 2 else list(scores)
    return list(scores)


def bootstrap_aucs(labels: ArrayLike, scores: Sequence[ArrayLike], n: int = BOOTSTRAP,
                   seed: int = 0) -> np.ndarray:
    """(n, m) macro AUCs of the m classifiers ``scores`` (each an (images, k) array) on
    the same ``n`` stratified resamples (:func:`stratified_resamples`); seeded, so the
    same seed gives the same numbers, and a classifier's column does not depend on
    which others come with it."""
    classifiers = _classifiers(scores)
    if not classifiers:
        raise ValueError("bootstrap_aucs needs at least one classifier's scores")
    if n < 1:
        raise ValueError(f"the number of resamples must be at least 1, got {n}")
    checked = [_check(labels, s, what=f"scores of classifier {i + 1}")
               for i, s in enumerate(classifiers)]
    labels = checked[0][0]
    orders = [_column_orders(labels, s) for _, s in checked]
    images = len(labels)
    out = np.empty((n, len(orders)))
    row = 0
    for idx in stratified_resamples(labels, n, seed):
        rows = len(idx)
        flat = (idx * rows + np.arange(rows)[:, None]).ravel()  # image-major: rows gather fast
        counts = np.bincount(flat, minlength=rows * images).reshape(images, rows).astype(float)
        for j, column_orders in enumerate(orders):
            out[row:row + rows, j] = _weighted_macro(counts, column_orders)
        row += rows
    return out


def bootstrap_ci(labels: ArrayLike, scores: ArrayLike, n: int = BOOTSTRAP, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(macro AUC on all images, lower, upper)``: the percentile interval at ``level``
    of :func:`bootstrap_aucs`; the ends are NaN (not assessable) for a split of fewer
    than :data:`~.assessable.MIN_PER_CLASS` images of a class, or where the resampled AUCs do
    not vary (an interval of zero width)."""
    if not 0 < level < 1:
        raise ValueError(f"the interval's level must lie between 0 and 1, got {level}")
    auc = macro_auc(labels, scores)
    if too_small(labels):
        return auc, math.nan, math.nan
    boot = bootstrap_aucs(labels, [scores], n=n, seed=seed)[:, 0]
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    if not high > low:
        return auc, math.nan, math.nan
    return auc, float(low), float(high)


def paired_bootstrap(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike,
                     n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """``(auc_a − auc_b, z, two-sided p)`` of two classifiers on the same images, from the
    differences d* of their macro AUCs on the same ``n`` stratified resamples (paired, so
    their correlation is kept). The shape of :func:`.stats.paired_test`'s result.

    ``z`` is the difference over the standard deviation of d* and ``p`` = 2·Φ(−|z|),
    as pROC's bootstrap test (Robin et al. 2011, BMC Bioinformatics 12:77; the
    bootstrap's standard error in a Wald test): unlike a p counted from the resamples
    (whose least value is 2 / (n + 1)), it is not floored by ``n``, so a table's Holm
    adjustment over many cells (a p times the number of comparisons) can still reach
    5 % with the default 2,000 resamples. Identical classifiers (no difference that
    varies) give (0, 0, 1); ``z`` and ``p`` are NaN (not assessable) for a split of
    fewer than :data:`~.assessable.MIN_PER_CLASS` images of a class, or where d* does not
    vary but the AUCs differ (a spread of 0 is no evidence of certainty)."""
    from scipy.stats import norm

    diff = macro_auc(labels, scores_a) - macro_auc(labels, scores_b)
    if too_small(labels):
        return float(diff), math.nan, math.nan
    aucs = bootstrap_aucs(labels, [scores_a, scores_b], n=n, seed=seed)
    resampled = aucs[:, 0] - aucs[:, 1]
    spread = float(resampled.std(ddof=1)) if n > 1 else 0.0
    if spread > 0:
        z = diff / spread
    elif diff == 0:
        return 0.0, 0.0, 1.0
    else:
        return float(diff), math.nan, math.nan
    p = 1.0 if z == 0 else float(2 * norm.sf(abs(z)))
    return float(diff), float(z), float(p)


def _measures(labels: np.ndarray, scores: np.ndarray) -> dict:
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                                 f1_score)

    k = scores.shape[1]
    predicted = np.argmax(scores, axis=1)
    classes = list(range(k))
    return {
        "class_aucs": class_aucs(labels, scores),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro",
                                   zero_division=0.0)),
        "confusion": confusion_matrix(labels, predicted, labels=classes).astype(int).tolist(),
    }


NO_SPREAD = "the resampled AUCs do not vary: no interval of zero width is given"


def multiclass_summary(val_labels: ArrayLike, val_scores: ArrayLike,
                       test_labels: ArrayLike | None = None, test_scores: ArrayLike | None = None,
                       test_key: str = "test_auc", n: int = BOOTSTRAP, seed: int = 0,
                       names: Sequence[str] | None = None) -> dict:
    """What a multi-class run records beside its macro AUC (the multi-class
    :func:`.stats.run_summary`).

    ``val_auc_ci`` (and ``<test_key>_ci`` when the test labels are known): stratified
    bootstrap 95 % intervals (``ci_method`` says how many resamples); and, on the test
    split when its labels are known, else on the validation split (``measures_split``
    says which): ``class_aucs`` (one-vs-rest, per class), ``accuracy``,
    ``balanced_accuracy`` and ``macro_f1`` of the predicted class (the highest score),
    and ``confusion`` (k × k counts, rows the true class, columns the predicted)."""
    val_labels, val_scores = _check(val_labels, val_scores, what="validation scores")
    out = {"val_auc_ci": list(bootstrap_ci(val_labels, val_scores, n=n, seed=seed)[1:])}
    notes = {"val_auc": interval_note(val_labels, out["val_auc_ci"], "the validation split",
                                      NO_SPREAD, names)}
    labels, scores, split = val_labels, val_scores, "validation"
    if test_labels is not None:
        if test_scores is None:
            raise ValueError("test labels were given without test scores")
        test_labels, test_scores = _check(test_labels, test_scores, what="test scores")
        if test_scores.shape[1] != val_scores.shape[1]:
            raise DataError(f"test scores have {test_scores.shape[1]} columns but validation "
                            f"scores {val_scores.shape[1]}: both need one column per class")
        out[f"{test_key}_ci"] = list(bootstrap_ci(test_labels, test_scores, n=n, seed=seed)[1:])
        notes[test_key] = interval_note(test_labels, out[f"{test_key}_ci"], "the test split",
                                        NO_SPREAD, names)
        labels, scores, split = test_labels, test_scores, "test"
    notes = {key: note for key, note in notes.items() if note}
    if notes:
        out["intervals_not_assessable"] = notes
    out["ci_method"] = f"stratified bootstrap, {n} resamples"
    out["measures_split"] = split
    out.update(_measures(labels, scores))
    return out

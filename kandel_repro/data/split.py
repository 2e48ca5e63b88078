"""The splits of a labelled set: train/validation (paper §4.1: 80 % / 20 %) and
train/validation/test (§4.3: 80 % / 10 % / 10 %), by image or keeping each group (slide,
patient) on one side, for two classes or more. Data too small for a split are refused
before it is drawn (:func:`check_splittable`), naming each class short of the split's
real rule, its count and the count it needs."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..core.errors import ConfigError, DataError


def check_splittable(labels: ArrayLike, fractions: Sequence[float],
                     what: str = "the labelled set",
                     names: Sequence[str] | None = None, seed: int = 0,
                     by_image: bool = True) -> None:
    """Refuse labels a stratified split into parts of ``fractions`` cannot serve: one
    class only (a ROC AUC needs two classes at least), or too few images of a class for
    every part to get one. ``what`` names the data in the message, ``names`` the classes
    (by label index; default: the labels themselves).

    ``by_image``: the split is the stratified split by image (:func:`stratified_parts`),
    and the rule is that split's own, run on these counts (:func:`image_minimums`): every
    class short of it is named with its count and the count it needs, which depends on
    the other classes (for 80/10/10 from 3 to 7 images, as the other classes' counts
    round the parts' shares). Otherwise
    (a split by group) a class needs one image per part at least; its groups decide the
    rest."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)

    def name(c):
        return str(names[c]) if names is not None else str(c)

    described = ", ".join(f"{n:,} of class {name(c)!r}" for c, n in zip(classes, counts)) or "none"
    if len(classes) < 2:
        raise DataError(f"{what} has {len(labels):,} image(s), {described}: training and its "
                        "ROC AUC need images of both classes (at least two classes)")
    parts = len(fractions) + 1
    if not by_image:
        if counts.min() < parts:
            raise DataError(f"{what} has too few images for its {parts}-way split ({described}): "
                            f"every class needs at least {parts} images, one in each part")
        return
    needs = image_minimums(labels, fractions, seed)
    if needs:
        have = dict(zip(classes, counts))
        ordered = sorted(needs.items(), key=lambda item: have[item[0]])
        short = "; ".join(f"class {name(c)!r} has {have[c]:,} image{'s' if have[c] != 1 else ''}; "
                          f"it needs {m:,}" for c, m in ordered[:5])
        if len(ordered) > 5:
            short += f"; and {len(ordered) - 5} more classes"
        raise DataError(f"{what} has too few images for its {parts}-way split ({described}): the "
                        f"stratified {shares(fractions)} split puts an image of every class in "
                        f"each part only with more of them ({short}); add images of "
                        f"{'that class' if len(needs) == 1 else 'those classes'}")


def shares(fractions: Sequence[float]) -> str:
    """``"80/10/10"``: the parts of a split of validation (and test) ``fractions``."""
    return "/".join(f"{share:.0%}".rstrip("%") for share in (1 - sum(fractions), *fractions))


def stratified_parts(labels: ArrayLike, fractions: Sequence[float],
                     seed: int = 0) -> list[np.ndarray] | None:
    """The parts of the stratified split by image this package makes of ``labels``
    (scikit-learn's ``train_test_split`` once for one fraction, as
    :func:`train_val_split`; twice for two, as :func:`three_way`), or None where
    scikit-learn refuses the labels (a class of one image, a part smaller than the
    number of classes)."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    try:
        if len(fractions) == 1:
            return list(train_test_split(np.arange(len(labels)), test_size=fractions[0],
                                         random_state=seed, stratify=labels))
        return list(three_way(labels, None, *fractions, seed))
    except ValueError:
        return None


def image_minimums(labels: ArrayLike, fractions: Sequence[float],
                   seed: int = 0) -> dict[int, int]:
    """``{class: images it needs}`` of the classes of ``labels`` that the stratified
    split by image (:func:`stratified_parts`) leaves out of a part: the split is run on
    the counts, the classes missing from a part (all, where scikit-learn refuses the
    counts; those of one image first) are given one image more, and so on until every
    class reaches every part. Empty when the labels split as they are."""
    # NOTE: which classes reach a part depends on the counts alone (scikit-learn
    # allocates each part's images to the classes by their counts), so the split is run
    # on counts, not on the images; the seed only breaks ties between equal remainders.
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    need = {c: int(n) for c, n in zip(classes, counts)}
    for _ in range(10_000):
        y = np.repeat(np.arange(len(classes)), [need[c] for c in classes])
        parts = stratified_parts(y, fractions, seed)
        if parts is None:
            ones = [c for c in classes if need[c] < 2]
            grow = ones or list(classes)
        else:
            present = [set(y[part].tolist()) for part in parts]
            grow = [c for k, c in enumerate(classes) if any(k not in part for part in present)]
            if not grow:
                break
        for c in grow:
            need[c] += 1
    return {c: need[c] for c, n in zip(classes, counts) if need[c] > n}


def nested_subset(indices: ArrayLike, labels: ArrayLike, fraction: float,
                  seed: int = 0) -> np.ndarray:
    """A stratified ``fraction`` of ``indices`` (sorted), nested: each class's rows are
    taken in one fixed random order, so a smaller fraction's rows are among a larger's.
    At least one image of each class is kept."""
    indices = np.asarray(indices)
    labels = np.asarray(labels)[indices]
    kept = []
    for cls in np.unique(labels):
        rows = indices[labels == cls]
        order = np.random.default_rng([seed, 31, int(cls)]).permutation(len(rows))
        kept.append(rows[order[:max(1, int(np.ceil(fraction * len(rows))))]])
    return np.sort(np.concatenate(kept))


def downsample(indices: ArrayLike, labels: ArrayLike, seed: int = 0) -> np.ndarray:
    """``indices`` with the negatives cut at random to as many as the positives
    (Tajbakhsh et al. 2016 balance their classes so)."""
    indices = np.asarray(indices)
    labels = np.asarray(labels)[indices]
    positives, negatives = indices[labels == 1], indices[labels == 0]
    if len(negatives) > len(positives):
        rng = np.random.default_rng([seed, 37])
        negatives = rng.choice(negatives, size=len(positives), replace=False)
    return np.sort(np.concatenate([positives, negatives]))


def group_fold(labels: ArrayLike, groups: ArrayLike, fraction: float, seed: int,
               too_few: Callable[[int, int], Exception]) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held)`` row indices (unsorted) with no group (slide, patient) on both
    sides, stratified by label as far as the groups allow: ``held`` is one of
    round(1 / ``fraction``) folds, at least 2, of ``StratifiedGroupKFold``. The one-fold
    split of :func:`group_split` and of BreakHis' split by patient. With fewer groups
    than folds it raises ``too_few(folds, groups found)``: each caller names its groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = max(2, round(1 / fraction))
    if len(set(groups)) < folds:
        raise too_few(folds, len(set(groups)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return next(splitter.split(np.zeros(len(labels)), labels, groups))


def group_split(labels: ArrayLike, groups: ArrayLike, validation_fraction: float = 0.2,
                seed: int = 0, what: str = "the labelled set") -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices, sorted, with no group (slide) on both sides,
    stratified by label as far as the groups allow (:func:`group_fold`)."""
    if not 0 < validation_fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {validation_fraction}")
    check_splittable(labels, (validation_fraction,), what, by_image=False)
    train, val = group_fold(labels, groups, validation_fraction, seed,
                            lambda folds, found: DataError(
                                f"{what}: a {validation_fraction:.0%} split by slide needs at "
                                f"least {folds} slides, found {found}"))
    if len(np.unique(np.asarray(labels)[val])) < 2:
        raise DataError(f"{what}: the slide-level validation split holds one class only; "
                        "the slides are too few or too one-sided")
    return np.sort(train), np.sort(val)


def train_val_split(labels: ArrayLike, validation_fraction: float = 0.2, seed: int = 0,
                    stratified: bool = True, what: str = "the labelled set"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_indices, val_indices)``, sorted, stratified by label by default."""
    from sklearn.model_selection import train_test_split

    if not 0 < validation_fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {validation_fraction}")
    check_splittable(labels, (validation_fraction,), what, seed=seed, by_image=stratified)
    indices = np.arange(len(labels))
    train_idx, val_idx = train_test_split(
        indices, test_size=validation_fraction, random_state=seed,
        stratify=labels if stratified else None,
    )
    return np.sort(train_idx), np.sort(val_idx)


def three_way(labels: ArrayLike, groups: ArrayLike | None, val_fraction: float,
              test_fraction: float, seed: int, kind: str = "image",
              groups_named: str = "groups", option: str = "--split group"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / validation / test, sorted, stratified by label (any number of
    classes): BreakHis' split (paper §4.3: 80/10/10) and that of a user's own data.

    ``kind="image"`` splits images at random (the paper); ``kind="group"`` keeps each
    group's images (``groups``: a patient, a slide per image) on one side
    (:func:`group_fold`: one fold of about ``test_fraction`` of the groups for test,
    then one for validation), stratified as far as the groups allow. Too few groups is a
    :class:`ConfigError` naming ``option`` (what asked for the split) and the groups
    (``groups_named``).
    """
    from sklearn.model_selection import train_test_split

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(f"validation and test fractions must be in (0, 1) and leave images "
                          f"to train on, got {val_fraction} and {test_fraction}")
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    if kind == "image":
        rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                      stratify=labels)
        train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                      random_state=seed, stratify=labels[rest])
    elif kind == "group":
        groups = np.asarray(groups)

        def one_fold(rows, fraction):
            keep, held = group_fold(labels[rows], groups[rows], fraction, seed,
                                    lambda folds, found: ConfigError(
                                        f"{option} needs at least {folds} {groups_named} for "
                                        f"a {fraction:.0%} split, found {found}"))
            return rows[keep], rows[held]

        rest, test = one_fold(idx, test_fraction)
        train, val = one_fold(rest, val_fraction / (1 - test_fraction))
    else:
        raise ConfigError(f"split must be 'image' or 'group', got {kind!r}")
    return np.sort(train), np.sort(val), np.sort(test)

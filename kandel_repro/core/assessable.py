"""What a small split cannot support: the rule both the DeLong statistics
(:mod:`.stats`) and the bootstrap ones (:mod:`.bootstrap`) apply before they give an
interval or a paired test, and the words that say why one is not assessable."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

# The fewest images of each class a split must hold for an interval or a paired test of
# its AUC. Below it, one image moves a class's share of the AUC by a tenth or more, and
# both methods lose their footing: DeLong's variance is a sample variance of the class's
# few structural components (from four of them its relative error is about 80 %; at one
# image per class it is 0, an interval of zero width), and the stratified bootstrap
# resamples each class within itself (a class of one image never varies: a class of n
# has only C(2n − 1, n) distinct resamples, 126 at n = 5). Ten of each keeps the
# intervals' ends from resting on one or two images; a split of fewer gets its AUC, a
# warning in the run, and "not assessable" in tables and verdicts.
MIN_PER_CLASS = 10
NOT_ASSESSABLE = "not assessable"


def too_small(labels: ArrayLike, what: str = "the split",
              names: Sequence[str] | None = None) -> str | None:
    """Why an interval or a paired test on ``labels`` (class indices) is not assessable
    (fewer than :data:`MIN_PER_CLASS` images of a class), in words naming ``what`` and
    the class (``names``: by label index); None when the split is large enough."""
    labels = np.asarray(labels).reshape(-1)
    if not len(labels):
        return f"{what} holds no image"
    classes, counts = np.unique(labels.astype(int), return_counts=True)
    if counts.min() >= MIN_PER_CLASS:
        return None
    small = int(classes[np.argmin(counts)])
    name = repr(str(names[small])) if names is not None and small < len(names) else str(small)
    return (f"{what} holds {int(counts.min())} image{'s' if counts.min() != 1 else ''} of "
            f"class {name} (an interval or a paired test needs at least {MIN_PER_CLASS} of "
            "each class)")


def interval_note(labels: ArrayLike, interval: Sequence[float], what: str,
                  degenerate: str, names: Sequence[str] | None = None) -> str | None:
    """Why ``interval`` (of the AUC on ``labels``, the split ``what``) is not assessable,
    or None when both its ends are finite: the split too small (:func:`too_small`),
    else ``degenerate`` (the method's spread was 0)."""
    if all(math.isfinite(value) for value in interval):
        return None
    return too_small(labels, what, names) or f"{what}: {degenerate}"

"""Midranks: the ranks both DeLong's AUC (:mod:`kandel_repro.core.stats`) and the
bootstrap's macro AUC (:mod:`kandel_repro.core.bootstrap`) are computed from."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def midranks(x: ArrayLike) -> np.ndarray:
    """Ranks of ``x`` (1 = smallest), ties sharing the mean of their ranks."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    # NOTE: runs of equal values start where the value changes; a run at positions
    # start … end-1 (0-based) takes ranks start+1 … end, whose mean is (start+end+1)/2.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(x)]
    out = np.empty(len(x), dtype=float)
    out[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return out

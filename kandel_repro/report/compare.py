"""Which cells of a table can be told apart: summaries over seeds, ties with the best
cell, and the paper's findings checked against the runs.

Every run of a table (cell × seed) is scored on the same images — the split depends on
``split_seed`` only — so two runs of one seed can be compared pairwise: DeLong's test on
their predictions (:func:`kandel_repro.core.stats.paired_test`; for runs of k ≥ 3 classes
the paired stratified bootstrap of their macro AUCs, the same resampled images for both,
:func:`kandel_repro.core.bootstrap.paired_bootstrap`), on the split the table's
metric is measured on (the held-out test split where it is labelled, else the validation
split). A family of comparisons is Holm-adjusted within each seed, at 5 %.

One cell is *significantly below* another when, in every seed where both have
predictions, it scores lower with an adjusted p below 0.05; a single seed that does not
separate them leaves them *not distinguishable*. So the more seeds, the stricter a claim
of superiority.

- The table's best cell is the one with the highest mean over its seeds; a cell not
  significantly below it is marked tied with it (:meth:`Evidence.ties`).
- A finding's claim (:class:`kandel_repro.core.protocol.Finding`) gets a verdict:
  *supported*, *not distinguishable*, *contradicted*, or *not assessable* (the grid
  lacks the runs, the claim is not one a grid can check, or the split is too small for a
  paired test: :data:`kandel_repro.core.assessable.MIN_PER_CLASS`), with the reason in words.

A paired test that is not assessable (p NaN: the split too small, or the difference's
variance 0 while the AUCs differ) neither ties a cell with the best nor puts it below.
"""
from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.assessable import too_small
from ..core.protocol import CLAIM_KINDS
from ..core.stats import holm, paired_of
from ..runs import rundir

if TYPE_CHECKING:
    from ..studies.types import Study

ALPHA = 0.05
SUPPORTED, TIED, CONTRADICTED, UNKNOWN = (
    "supported", "not distinguishable", "contradicted", "not assessable")
# The answers to the questions of a study without a paper (the depth study on a user's
# data): the cells tied with the best, and whether two rows can be told apart.
ANSWERED, APART = "answered", "distinguishable"
# Whether the best row (a depth) is the same in every column (an augmentation policy).
SAME_BEST, BEST_CHANGES = "does not change", "changes"
# For type hints: a cell as (row label, column label); a pair's tests, [(seed, diff, p)].
CellKey = tuple[str, str]
SeedTests = list[tuple[int, float, float]]


class Evidence:
    """The finished runs of a table, by cell and seed, and their paired comparisons.

    ``values``: ``{(row, column): {seed: metric value}}`` of the runs with a number (a
    run that did not converge under Table 5's rule has none); ``runs``: ``{(row, column):
    {seed: run name}}`` of every finished run; ``split``: ``"test"`` or ``"validation"``,
    where the predictions compared are.
    """

    def __init__(self, study: Study, runs_dir: str | Path, values: dict, runs: dict,
                 split: str, converged: dict | None = None,
                 bootstrap: int | None = None) -> None:
        self.study = study
        self.bootstrap = bootstrap  # resamples of the paired bootstrap (multi-class runs)
        self.runs_dir = Path(runs_dir)
        self.values = values
        self.runs = runs
        self.split = split
        self.converged = converged or {}
        self.file = rundir.TEST_PREDICTIONS if split == "test" else rundir.VAL_PREDICTIONS
        self._predictions = {}
        self.problems = []
        self.class_names = None  # (by label index, for messages; set by the table)
        self._too_small = ...

    # --- numbers -----------------------------------------------------------------
    def mean(self, cell: CellKey) -> float:
        seeds = self.values.get(cell, {})
        return float(np.mean(list(seeds.values()))) if seeds else np.nan

    def cells(self) -> list[CellKey]:
        return [cell for cell in self.values if self.values[cell]]

    def best(self, cells: list[CellKey] | None = None) -> CellKey | None:
        """The cell with the highest mean among ``cells`` (default all); None if none."""
        scored = [c for c in (cells if cells is not None else self.cells()) if self.values.get(c)]
        return max(scored, key=self.mean) if scored else None

    def best_per_seed(self) -> dict[int, CellKey]:
        """``{seed: best cell of that seed}``."""
        seeds = sorted({s for values in self.values.values() for s in values})
        out = {}
        for seed in seeds:
            scored = {c: v[seed] for c, v in self.values.items() if seed in v}
            out[seed] = max(scored, key=scored.get)
        return out

    def split_problem(self) -> str | None:
        """Why no paired test of this table is assessable — the compared split holds
        fewer than :data:`~kandel_repro.core.assessable.MIN_PER_CLASS` images of a class (every
        run is scored on the same images) — or None."""
        if self._too_small is ...:
            self._too_small = None
            scored = ((cell, seed) for cell, seeds in self.runs.items() for seed in seeds)
            for cell, seed in scored:
                predictions = self._scores(cell, seed)
                if predictions is not None:
                    self._too_small = too_small(predictions[1], f"the {self.split} split",
                                                self.class_names)
                    break
        return self._too_small

    # --- predictions and tests ---------------------------------------------------
    def _scores(self, cell, seed):
        key = (cell, seed)
        if key not in self._predictions:
            name = self.runs.get(cell, {}).get(seed)
            path = self.runs_dir / name / self.file if name else None
            if path is None or not path.is_file():
                self._predictions[key] = None
            else:
                self._predictions[key] = rundir.read_predictions(path)
        return self._predictions[key]

    def compare(self, pairs: list[tuple[CellKey, CellKey]]
                ) -> dict[tuple[CellKey, CellKey], SeedTests]:
        """``{(a, b): [(seed, auc_a − auc_b, Holm-adjusted p), …]}`` for each pair, over
        the seeds where both cells have predictions; Holm across ``pairs`` per seed."""
        seeds = sorted({s for c in {x for pair in pairs for x in pair}
                        for s in self.values.get(c, {})})
        out = {pair: [] for pair in pairs}
        for seed in seeds:
            tests = []
            for a, b in pairs:
                sa, sb = self._scores(a, seed), self._scores(b, seed)
                if sa is None or sb is None or a not in self.values or b not in self.values \
                        or seed not in self.values[a] or seed not in self.values[b]:
                    continue
                if not np.array_equal(sa[0], sb[0]):
                    self.problems.append(f"seed {seed}: {self.runs[a][seed]} and "
                                         f"{self.runs[b][seed]} predicted other images")
                    continue
                diff, _, p = paired_of(sa[1], sa[2], sb[2], self.bootstrap, seed)
                tests.append(((a, b), diff, p))
            if tests:
                adjusted = holm([p for _, _, p in tests])
                for ((pair, diff, _), p) in zip(tests, adjusted):
                    out[pair].append((seed, diff, float(p)))
        return out

    def ties(self) -> tuple[CellKey | None, dict[CellKey, SeedTests], dict[CellKey, bool | None]]:
        """``(best cell, {cell: [(seed, diff, p)]}, {cell: tied? (None: not compared)})``."""
        best = self.best()
        if best is None:
            return None, {}, {}
        pairs = [(cell, best) for cell in self.cells() if cell != best]
        results = self.compare(pairs)
        per_cell = {cell: results[(cell, best)] for cell, _ in pairs}
        # NOTE: a cell without predictions to compare, or whose test is not assessable,
        # is not judged (None), not tied.
        return best, per_cell, {cell: (not below(r)) if assessable(r) else None
                                for cell, r in per_cell.items()}


def assessable(results: SeedTests) -> bool:
    """Whether a pair has tests and every one of them gave a p (none NaN)."""
    return bool(results) and all(np.isfinite(p) for _, _, p in results)


NO_TEST = ("the paired test is not assessable (the difference's variance is 0 while the "
           "AUCs differ)")


def below(results: SeedTests) -> bool:
    """Significantly below: lower with adjusted p < ALPHA in every compared seed."""
    return bool(results) and all(diff < 0 and p < ALPHA for _, diff, p in results)


def above(results: SeedTests) -> bool:
    return bool(results) and all(diff > 0 and p < ALPHA for _, diff, p in results)


def _p(results):
    """The largest adjusted p over the seeds (the weakest evidence), for the reader."""
    return max(p for _, _, p in results) if results else float("nan")


# --- the paper's findings --------------------------------------------------------------

def verdict(claim: tuple | None, evidence: Evidence,
            name: Callable[[CellKey], str]) -> tuple[str, str]:
    """``(verdict, reason)`` of a finding's claim; ``name(cell)`` says a cell in words.
    Its kind (``claim[0]``) is one of :data:`CLAIM_KINDS`, the protocol's list, which the
    registry checks every finding's claim against: each of them gets a verdict here."""
    if claim is None:
        return UNKNOWN, "not a claim this grid can check"
    kind = claim[0]
    problem = evidence.split_problem() if kind != "not_converged" else None
    if problem:
        return UNKNOWN, f"{problem}, so no paired test is made"
    if kind == "all":
        parts = [verdict(c, evidence, name) for c in claim[1]]
        kinds = [v for v, _ in parts]
        reason = "; ".join(r for _, r in parts)
        if CONTRADICTED in kinds:
            return CONTRADICTED, reason
        if UNKNOWN in kinds:
            return UNKNOWN, reason
        return (SUPPORTED if all(k == SUPPORTED for k in kinds) else TIED), reason
    if kind == "best":
        return _best_in(evidence, evidence.cells(), tuple(claim[1]), "the table", name)
    if kind == "best_in_column":
        column, row = claim[1], claim[2]
        cells = [c for c in evidence.cells() if c[1] == column]
        return _best_in(evidence, cells, (row, column), f"column {column}", name)
    if kind == "best_in_row":
        row, column = claim[1], claim[2]
        cells = [c for c in evidence.cells() if c[0] == row]
        return _best_in(evidence, cells, (row, column), f"row {row}", name)
    if kind == "worse":
        a, b = tuple(claim[1]), tuple(claim[2])
        if not (evidence.values.get(a) and evidence.values.get(b)):
            return UNKNOWN, f"{name(a) if not evidence.values.get(a) else name(b)} has no result"
        results = evidence.compare([(a, b)])[(a, b)]
        if not results:
            return UNKNOWN, f"no predictions to compare {name(a)} with {name(b)}"
        words = f"{name(a)} {evidence.mean(a):.4f} against {name(b)} {evidence.mean(b):.4f}"
        if not assessable(results):
            return UNKNOWN, f"{words}; {NO_TEST}"
        if below(results):
            return SUPPORTED, f"{words}, significantly lower (p ≤ {_p(results):.2g})"
        if above(results):
            return CONTRADICTED, f"{words}, significantly higher (p ≤ {_p(results):.2g})"
        return TIED, f"{words}, not significantly different (p up to {_p(results):.2g})"
    if kind == "similar_row":
        cells = [c for c in evidence.cells() if c[0] == claim[1]]
        if len(cells) < 2:
            return UNKNOWN, f"row {claim[1]} has fewer than two results"
        results = evidence.compare(list(combinations(cells, 2)))
        if not all(assessable(r) for r in results.values()):
            return UNKNOWN, f"for a pair of row {claim[1]}'s cells, {NO_TEST}"
        apart = [pair for pair, r in results.items() if below(r) or above(r)]
        sometimes = [pair for pair, r in results.items() if any(p < ALPHA for _, _, p in r)]
        if apart:
            a, b = apart[0]
            return CONTRADICTED, f"{name(a)} and {name(b)} differ significantly in every seed"
        if sometimes:
            return TIED, "some pairs differ in some seeds but not in all"
        spread = max(evidence.mean(c) for c in cells) - min(evidence.mean(c) for c in cells)
        return SUPPORTED, f"no two differ significantly (spread {spread:.4f})"
    if kind == "tied_with_best":
        return _tied_answer(evidence, name)
    if kind == "rows_apart":
        return _rows_apart(evidence, claim[1], claim[2], name)
    if kind == "columns_apart":
        return _rows_apart(evidence, claim[1], claim[2], name, columns=True)
    if kind == "best_row_by_column":
        return _best_row_by_column(evidence)
    if kind == "not_converged":
        flags = [f for cell in claim[1] for f in evidence.converged.get(tuple(cell), {}).values()]
        if not flags:
            return UNKNOWN, "those runs have not finished"
        if not any(flags):
            return SUPPORTED, f"every one of their {len(flags)} run(s) did not converge"
        if all(flags):
            return CONTRADICTED, f"all {len(flags)} run(s) converged"
        return TIED, f"{flags.count(False)} of {len(flags)} run(s) did not converge"
    raise ValueError(f"unknown claim {claim!r}: its kind is one of {', '.join(CLAIM_KINDS)}")


def _best_in(evidence, cells, claimed, where, name):
    if not evidence.values.get(claimed):
        return UNKNOWN, f"{name(claimed)} has no result"
    best = evidence.best(cells)
    others = [c for c in cells if c != best]
    if not others:
        return UNKNOWN, f"{where} has a single result"
    results = evidence.compare([(c, best) for c in others])
    if any(not r for r in results.values()):
        return UNKNOWN, "predictions are missing for some runs"
    if not all(assessable(r) for r in results.values()):
        return UNKNOWN, f"against {name(best)}, the best of {where}, {NO_TEST}"
    if claimed == best:
        tied = [c for c in others if not below(results[(c, best)])]
        if not tied:
            return SUPPORTED, (f"{name(best)} is best of {where} ({evidence.mean(best):.4f}), "
                               "every other cell significantly below it")
        return TIED, (f"{name(best)} is best of {where} ({evidence.mean(best):.4f}), but "
                      + ", ".join(name(c) for c in tied[:3])
                      + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
                      + " are not significantly below it")
    words = (f"the best of {where} is {name(best)} ({evidence.mean(best):.4f}); "
             f"{name(claimed)} {evidence.mean(claimed):.4f}")
    p = _p(results[(claimed, best)])
    if below(results[(claimed, best)]):
        return CONTRADICTED, f"{words}, significantly lower (p ≤ {p:.2g})"
    return TIED, f"{words}, not significantly lower (p up to {p:.2g})"


# --- questions (no paper to check) --------------------------------------------------------

def _tied_answer(evidence, name):
    """Which cells are tied with the best (not significantly below it in every seed)."""
    best, per_cell, tied = evidence.ties()
    if best is None:
        return UNKNOWN, "no run has finished"
    if not tied:
        return UNKNOWN, f"{name(best)} is the only result"
    if any(not r for r in per_cell.values()):
        return UNKNOWN, "predictions are missing for some runs"
    if any(value is None for value in tied.values()):
        return UNKNOWN, f"against {name(best)}, the best, {NO_TEST}"
    same = sorted((cell for cell, value in tied.items() if value), key=evidence.mean,
                  reverse=True)
    words = f"the best is {name(best)} ({evidence.mean(best):.4f})"
    if not same:
        return ANSWERED, f"{words}; every other cell is significantly below it"
    if len(same) == len(tied):
        return ANSWERED, (f"{words}; none of the {len(tied)} other cells is significantly "
                          "below it (more seeds or more test images would tell them apart)")
    return ANSWERED, (f"{words}; tied with it: "
                      + ", ".join(f"{name(c)} ({evidence.mean(c):.4f})" for c in same)
                      + f"; {len(tied) - len(same)} of {len(tied)} other cells are "
                      "significantly below it")


def _rows_apart(evidence, row_a, row_b, name, columns=False):
    """Whether rows ``row_a`` and ``row_b`` differ in each column where both have a
    result (Holm over the columns compared, per seed); with ``columns``, whether columns
    ``row_a`` and ``row_b`` differ in each row."""
    what, across = ("columns", "row") if columns else ("rows", "column")
    others = [level.label for level in (evidence.study.rows if columns
                                        else evidence.study.columns)]

    def at(line, other):
        return (other, line) if columns else (line, other)

    pairs = [(at(row_a, c), at(row_b, c)) for c in others
             if evidence.values.get(at(row_a, c)) and evidence.values.get(at(row_b, c))]
    if not pairs:
        return UNKNOWN, f"{what} {row_a} and {row_b} have no {across} where both have results"
    results = evidence.compare(pairs)
    if any(not r for r in results.values()):
        return UNKNOWN, "predictions are missing for some runs"
    if not all(assessable(r) for r in results.values()):
        return UNKNOWN, f"between {what} {row_a} and {row_b}, {NO_TEST}"
    parts, apart = [], 0
    for (a, b), r in results.items():
        words = f"{name(a)} {evidence.mean(a):.4f} against {name(b)} {evidence.mean(b):.4f}"
        if below(r) or above(r):
            apart += 1
            parts.append(f"{words}, significantly {'lower' if below(r) else 'higher'} "
                         f"(p ≤ {_p(r):.2g})")
        else:
            parts.append(f"{words}, not significantly different (p up to {_p(r):.2g})")
    verdict_word = (APART if apart == len(pairs)
                    else TIED if not apart else "partly distinguishable")
    return verdict_word, "; ".join(parts)


def _best_row_by_column(evidence):
    """Whether each column has the same best row: per column, its best row (highest mean)
    and the rows not significantly below it there (Holm within the column, per seed)."""
    rows = {level.label: level.phrase for level in evidence.study.rows}
    order = list(rows)
    best, tied, missing = {}, {}, []
    for column in (level.label for level in evidence.study.columns):
        cells = [c for c in evidence.cells() if c[1] == column]
        if len(cells) < 2:
            missing.append(column)
            continue
        top = evidence.best(cells)
        results = evidence.compare([(c, top) for c in cells if c != top])
        if any(not r for r in results.values()):
            return UNKNOWN, "predictions are missing for some runs"
        if not all(assessable(r) for r in results.values()):
            return UNKNOWN, f"in column {column}, {NO_TEST}"
        best[column] = top[0]
        tied[column] = [row for row in order if (row, column) in cells and (
            row == top[0] or not below(results[((row, column), top)]))]

    def said(column):
        others = [rows[r] for r in tied[column] if r != best[column]]
        return (f"{column}: {rows[best[column]]} ({evidence.mean((best[column], column)):.4f})"
                + (f", tied with {', '.join(others)}" if others else ""))

    if len(best) < 2:
        return UNKNOWN, "fewer than two columns have results for two rows or more"
    each = "; ".join(said(column) for column in best) + (
        f" (not judged, fewer than two results: {', '.join(missing)})" if missing else "")
    if len(set(best.values())) == 1:
        return SAME_BEST, f"the same best depth in every column — {each}"
    common = [row for row in order if all(row in t for t in tied.values())]
    if common:
        return TIED, (f"the best depth differs ({each}), but {', '.join(rows[r] for r in common)} "
                      f"{'is' if len(common) == 1 else 'are'} not significantly below the best "
                      "in any column")
    return BEST_CHANGES, f"no depth is tied with the best in every column — {each}"

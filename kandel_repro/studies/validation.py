"""The study registry checked when it is built: a figure name or a claim that does not
exist, or a claim naming a row or column a study lacks, fails at import (a programming
error in the registry, so a ValueError, not a user's ConfigError)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.protocol import CLAIM_KINDS

if TYPE_CHECKING:  # (for the hints only: validation works on any study-shaped object)
    from .types import Study

# The figures a study may ask for: the names of kandel_repro.report.figures.FIGURES (a
# test keeps the two alike; the runs layer cannot import the report layer).

# The figures a study can ask for (Study.figures): the names of
# kandel_repro.report.figures.FIGURES. NOTE: runs may not import report, so the names are
# repeated here; a test keeps the two alike.
FIGURE_NAMES = ("heatmap", "curves", "roc", "radar", "params", "datasize", "convergence",
                "small-nets", "confusion", "cost", "scales")


# The number of items of each kind of claim, its kind included (core.protocol.Finding).
_CLAIM_LENGTHS = {"all": 2, "best": 2, "best_in_column": 3, "best_in_row": 3, "worse": 3,
                  "similar_row": 2, "not_converged": 2, "tied_with_best": 1, "rows_apart": 3,
                  "columns_apart": 3, "best_row_by_column": 1}


def _claimed_labels(claim: tuple) -> list[tuple[str | None, str | None]]:
    """``[(row label, column label)]`` a claim names (None where it names no column),
    its sub-claims' included; ValueError (without the study's name) for a malformed one."""
    if not isinstance(claim, (tuple, list)) or not claim or claim[0] not in CLAIM_KINDS:
        kind = claim[0] if isinstance(claim, (tuple, list)) and claim else claim
        raise ValueError(f"claim {claim!r} is of unknown kind {kind!r}; known: "
                         f"{', '.join(CLAIM_KINDS)}")
    kind = claim[0]
    if len(claim) != _CLAIM_LENGTHS[kind]:
        raise ValueError(f"claim {claim!r}: a {kind!r} claim has {_CLAIM_LENGTHS[kind] - 1} "
                         "item(s) after its kind")

    def cell(value):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"claim {claim!r}: {value!r} is not a cell (row, column)")
        return tuple(value)

    if kind == "all":
        return [labels for sub in claim[1] for labels in _claimed_labels(sub)]
    if kind == "best":
        return [cell(claim[1])]
    if kind == "best_in_column":
        return [(claim[2], claim[1])]
    if kind == "best_in_row":
        return [(claim[1], claim[2])]
    if kind == "worse":
        return [cell(claim[1]), cell(claim[2])]
    if kind == "similar_row":
        return [(claim[1], None)]
    if kind in ("tied_with_best", "best_row_by_column"):
        return []
    if kind == "rows_apart":
        return [(claim[1], None), (claim[2], None)]
    if kind == "columns_apart":
        return [(None, claim[1]), (None, claim[2])]
    return [cell(c) for c in claim[1]]  # not_converged


def validate_study(study: Study) -> None:
    """Raise ValueError, naming the study and the bad name, when ``study`` asks for a
    figure not in :data:`FIGURE_NAMES`, or a finding's claim is of an unknown kind or
    names a row or column label the study does not have. A programming error (the
    registry is code), so not a ConfigError."""
    for figure in study.figures:
        if figure not in FIGURE_NAMES:
            raise ValueError(f"study {study.name!r}: unknown figure {figure!r}; known: "
                             f"{', '.join(FIGURE_NAMES)}")
    rows = [level.label for level in study.rows]
    columns = [level.label for level in study.columns]
    for finding in study.findings:
        if finding.claim is None:
            continue
        try:
            labels = _claimed_labels(finding.claim)
        except ValueError as error:
            raise ValueError(f"study {study.name!r}: {error}") from None
        for row, column in labels:
            if row is not None and row not in rows:
                raise ValueError(f"study {study.name!r}: claim {finding.claim!r} names row "
                                 f"{row!r}; its rows are {', '.join(rows)}")
            if column is not None and column not in columns:
                raise ValueError(f"study {study.name!r}: claim {finding.claim!r} names column "
                                 f"{column!r}; its columns are {', '.join(columns)}")

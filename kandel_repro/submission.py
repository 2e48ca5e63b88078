"""Kaggle submission files, checked before anything leaves the machine.

A PCam run writes ``submission.csv`` (``id,label``: one probability per test id, in
``sample_submission.csv`` order). :func:`validate_submission` refuses a file that
Kaggle would reject or score wrongly, and names every problem it finds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import KandelError

SHOW = 3  # offending ids quoted per problem


class SubmissionError(KandelError):
    """A submission file that must not be uploaded."""


def _some(values):
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:SHOW])
    return shown + (f", … ({len(values)} in all)" if len(values) > SHOW else "")


def validate_submission(path, sample_submission):
    """Check ``path`` against ``sample_submission``; return the submission as a DataFrame.

    Checks: header exactly ``id,label``; exactly the sample's id set, with no duplicate
    and none missing; every label a finite probability in [0, 1]. Raises
    :class:`SubmissionError` listing every problem found.
    """
    import pandas as pd

    path, sample_submission = Path(path), Path(sample_submission)
    for file in (path, sample_submission):
        if not file.is_file():
            raise SubmissionError(f"missing {file}")
    try:
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
        raise SubmissionError(f"{path} is not a readable CSV: {exc}") from None
    if list(frame.columns) != ["id", "label"]:
        raise SubmissionError(f"{path}: the header must be exactly 'id,label', found "
                              f"{','.join(map(str, frame.columns))!r}")
    expected = pd.read_csv(sample_submission, dtype={"id": str})["id"]
    problems = []
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        problems.append(f"duplicate ids: {_some(duplicated.unique())}")
    missing = set(expected) - set(frame["id"])
    if missing:
        problems.append(f"ids of {sample_submission.name} missing: {_some(sorted(missing))}")
    extra = set(frame["id"]) - set(expected)
    if extra:
        problems.append(f"ids not in {sample_submission.name}: {_some(sorted(extra))}")
    labels = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(labels) | (labels < 0) | (labels > 1)
    if bad.any():
        shown = [f"{frame['id'].iloc[i]}={frame['label'].iloc[i]}" for i in np.flatnonzero(bad)]
        problems.append(f"labels that are not probabilities in [0, 1]: {_some(shown)}")
    if problems:
        raise SubmissionError(f"{path} must not be submitted:\n  - " + "\n  - ".join(problems))
    return frame


def run_submission(run_dir):
    """``(submission.csv, sample_submission.csv)`` of a finished PCam run folder."""
    from .runio import read_json

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise SubmissionError(f"{run_dir} is not a run folder (no config.json)")
    config = read_json(run_dir / "config.json")
    if config.get("protocol", "pcam") != "pcam":
        raise SubmissionError(f"{run_dir} is a {config['protocol']} run; only PCam runs "
                              "make Kaggle submissions")
    if not (run_dir / "metrics.json").is_file():
        raise SubmissionError(f"{run_dir} has not finished (no metrics.json)")
    return run_dir / "submission.csv", Path(config["data_dir"]) / "sample_submission.csv"

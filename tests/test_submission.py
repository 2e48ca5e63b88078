"""Submission files are checked before upload (kandel_repro.submission)."""

import numpy as np
import pandas as pd
import pytest

from kandel_repro.cli import main
from kandel_repro.submission import SubmissionError, validate_submission


@pytest.fixture
def sample(tiny_pcam):
    return tiny_pcam / "sample_submission.csv"


def _write(tmp_path, frame, name="submission.csv", **kwargs):
    path = tmp_path / name
    frame.to_csv(path, index=False, **kwargs)
    return path


def _good(sample):
    ids = pd.read_csv(sample, dtype={"id": str})["id"]
    return pd.DataFrame({"id": ids, "label": np.linspace(0, 1, len(ids))})


def test_a_valid_submission_passes(sample, tmp_path):
    frame = validate_submission(_write(tmp_path, _good(sample)), sample)
    assert len(frame) == 20


@pytest.mark.parametrize("change, message", [
    (lambda f: f.rename(columns={"label": "prob"}), "header must be exactly 'id,label'.*'id,prob'"),
    (lambda f: f.iloc[1:], r"missing: '"),
    (lambda f: pd.concat([f, f.iloc[:2]]), "duplicate ids"),
    (lambda f: f.assign(id=f["id"].where(f.index != 3, "stranger")), "not in sample_submission.csv: 'stranger'"),
    (lambda f: f.assign(label=f["label"].where(f.index != 4, 1.5)), r"not probabilities in \[0, 1\]: '.*=1.5'"),
    (lambda f: f.assign(label=f["label"].where(f.index != 5, np.nan)), "not probabilities"),
    (lambda f: f.assign(label=f["label"].astype(object).where(f.index != 6, "high")), "=high'"),
])
def test_invalid_submissions_are_refused_naming_the_problem(sample, tmp_path, change, message):
    path = _write(tmp_path, change(_good(sample)))
    with pytest.raises(SubmissionError, match=message):
        validate_submission(path, sample)


def test_every_problem_is_listed_at_once(sample, tmp_path):
    frame = _good(sample).iloc[1:]
    frame.loc[frame.index[0], "label"] = -0.1
    with pytest.raises(SubmissionError) as info:
        validate_submission(_write(tmp_path, frame), sample)
    assert "missing" in str(info.value) and "not probabilities" in str(info.value)


def test_cli_validates_a_file(sample, tmp_path, capsys):
    assert main(["validate-submission", str(_write(tmp_path, _good(sample))),
                 "--sample", str(sample)]) == 0
    assert "valid (20 test ids" in capsys.readouterr().out
    bad = _write(tmp_path, _good(sample).iloc[2:], name="bad.csv")
    assert main(["validate-submission", str(bad), "--sample", str(sample)]) == 2
    assert "must not be submitted" in capsys.readouterr().err

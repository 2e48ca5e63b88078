"""Submission files are checked before upload (kandel_repro.kaggle.submission)."""

import numpy as np
import pandas as pd
import pytest

from kandel_repro.cli.main import main
from kandel_repro.kaggle.submission import SubmissionError, validate_submission


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


def _kernel_run(tmp_path, sample, recorded=True):
    """A finished run as a Kaggle kernel leaves it: trained on /kaggle/input/…"""
    import json

    from kandel_repro.readers.pcam_layout import ids_fingerprint

    run = tmp_path / "runs" / "vgg16_blocks5-5_lr1e-04"
    run.mkdir(parents=True)
    config = {"protocol": "pcam", "dataset": "pcam", "synthetic": False,
              "data_dir": "/kaggle/input/histopathologic-cancer-detection"}
    if recorded:
        ids = pd.read_csv(sample, dtype={"id": str})["id"]
        config["sample_ids_sha1"] = ids_fingerprint(ids)
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps({"status": "ok", "val_auc": 0.9}))
    _write(run, _good(sample))
    return run


def test_a_run_trained_elsewhere_is_validated_with_data_or_sample(sample, tmp_path, capsys):
    run = _kernel_run(tmp_path, sample)
    assert main(["validate-submission", str(run)]) == 2
    err = capsys.readouterr().err
    assert "/kaggle/input/histopathologic-cancer-detection" in err and "--data FOLDER" in err
    assert main(["validate-submission", str(run), "--data", str(sample.parent)]) == 0
    assert "valid (20 test ids" in capsys.readouterr().out
    assert main(["validate-submission", str(run), "--sample", str(sample)]) == 0
    other = _write(tmp_path, _good(sample).iloc[:-1][["id"]].assign(label=0), name="other.csv")
    assert main(["validate-submission", str(run), "--sample", str(other)]) == 2
    assert "is not the sample file of the data" in capsys.readouterr().err
    # a run from before the fingerprint was recorded is checked against the file itself
    old = _kernel_run(tmp_path / "old", sample, recorded=False)
    assert main(["validate-submission", str(old), "--sample", str(sample)]) == 0

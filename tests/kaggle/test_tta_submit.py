"""Submitting a run scored with test-time augmentation: its submission_tta.csv, said so,
scored under its own keys (the loopback stand-in for Kaggle)."""
import json

import numpy as np
import pandas as pd
import pytest
from fake_kaggle import score
from helpers import make_run

from kandel_repro.data.layouts import HIDDEN_LABELS
from kandel_repro.kaggle.submission import (RECORD, submission_file, submission_state, submit_run,
                                            submit_runs, validate_path)
from kandel_repro.runs import rundir

FAST = dict(poll=0.01, timeout=30)


@pytest.fixture
def hidden(tiny_pcam):
    frame = pd.read_csv(tiny_pcam / HIDDEN_LABELS, dtype={"id": str})
    return dict(zip(frame["id"], frame["label"]))


def give_tta(run, hidden, views=8):
    """A TTA submission (scores closer to the labels than the plain ones) and its metrics."""
    frame = pd.read_csv(run / rundir.SUBMISSION, dtype={"id": str})
    labels = np.array([hidden[i] for i in frame["id"]])
    frame["label"] = np.clip(0.8 * labels + 0.1 + np.linspace(0, 0.05, len(frame)), 0, 1)
    frame.to_csv(run / rundir.SUBMISSION_TTA, index=False)
    rundir.update_metrics(run, tta_views=views, val_auc_tta=0.95)


def test_a_tta_run_submits_its_tta_file_says_so_and_records_its_own_scores(
        tiny_pcam, hidden, kaggle_env, tmp_path):
    run = make_run(tmp_path / "runs", "cbr_small_blocks1-4_lr1e-03", tiny_pcam, hidden)
    give_tta(run, hidden)
    assert submission_file(run) == run / rundir.SUBMISSION_TTA
    assert "submission_tta.csv: valid" in validate_path(run)
    logs = []
    with kaggle_env(hidden_labels=hidden) as server:
        metrics = submit_run(run, log=logs.append, **FAST)
    assert server.calls[0][1]["fileName"] == "submission_tta.csv"
    description = server.calls[2][1]["submissionDescription"]
    assert description.endswith("(test-time augmentation, 8 views)")
    public, private = score((run / rundir.SUBMISSION_TTA).read_bytes(), hidden)
    assert metrics["kaggle_private_auc_tta"] == pytest.approx(private, abs=1e-5)
    assert metrics["kaggle_public_auc_tta"] == pytest.approx(public, abs=1e-5)
    assert "kaggle_private_auc" not in metrics  # the plain file was not scored
    assert json.loads((run / rundir.METRICS).read_text()) == metrics
    record = json.loads((run / RECORD).read_text())
    assert record["file"] == "submission_tta.csv" and record["tta_views"] == 8
    assert record["ref"] == metrics["kaggle_submission_ref_tta"]
    assert any("submitting" in line and "test-time augmentation, 8 views" in line for line in logs)
    assert any("Kaggle AUC private" in line and "test-time augmentation" in line for line in logs)
    assert submission_state(run) == "scored"


def test_a_run_scored_before_it_had_tta_submits_the_tta_file_and_keeps_both_scores(
        tiny_pcam, hidden, kaggle_env, tmp_path):
    run = make_run(tmp_path / "runs", "plain_then_tta", tiny_pcam, hidden)
    with kaggle_env(hidden_labels=hidden) as server:
        plain = submit_run(run, log=lambda *a: None, **FAST)
        assert submission_state(run) == "scored"
        give_tta(run, hidden, views=4)
        assert submission_state(run) == "new"  # the file it submits now was not scored
        outcomes = submit_runs([run], log=lambda *a: None, **FAST)
        assert outcomes == {run.name: "scored"}
        assert submit_runs([run], log=lambda *a: None, **FAST) == {run.name: "scored before"}
    files = [body["fileName"] for op, body in server.calls if op == "StartSubmissionUpload"]
    assert files == ["submission.csv", "submission_tta.csv"]
    metrics = rundir.read_metrics(run)
    assert metrics["kaggle_private_auc"] == plain["kaggle_private_auc"]
    assert metrics["kaggle_private_auc_tta"] == pytest.approx(
        score((run / rundir.SUBMISSION_TTA).read_bytes(), hidden)[1], abs=1e-5)
    assert metrics["kaggle_submission_ref_tta"] != metrics["kaggle_submission_ref"]

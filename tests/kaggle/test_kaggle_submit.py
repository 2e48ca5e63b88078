"""Submit → poll → record, through the real kaggle client and the loopback stand-in."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import KAGGLE_KEY as KEY, KAGGLE_USER as USER
from fake_kaggle import score
from helpers import make_run

from kandel_repro.cli.main import main
from kandel_repro.data.layouts import HIDDEN_LABELS
from kandel_repro.kaggle.api import COMPETITION
from kandel_repro.kaggle.submission import (RECORD, ScoreTimeout, ScoringFailed, SubmissionError,
                                            submit_run, submit_runs)

FAST = dict(poll=0.01, timeout=30)


@pytest.fixture
def hidden(tiny_pcam):
    frame = pd.read_csv(tiny_pcam / HIDDEN_LABELS, dtype={"id": str})
    return dict(zip(frame["id"], frame["label"]))


def operations(server):
    return [op for op, _ in server.calls]


def test_submit_polls_and_records_both_scores(tiny_pcam, hidden, kaggle_env, tmp_path):
    run = make_run(tmp_path / "runs", "vgg16_blocks5-5_lr1e-04", tiny_pcam, hidden)
    with kaggle_env(hidden_labels=hidden, score_after=2) as server:
        metrics = submit_run(run, message="first try", log=lambda *a: None, **FAST)
    expected = score((run / "submission.csv").read_bytes(), hidden)
    assert metrics["kaggle_public_auc"] == pytest.approx(expected[0], abs=1e-5)
    assert metrics["kaggle_private_auc"] == pytest.approx(expected[1], abs=1e-5)
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == metrics and on_disk["val_auc"] == 0.9  # the run's own facts kept
    assert operations(server) == ["StartSubmissionUpload", "PUT upload", "CreateSubmission",
                                  "ListSubmissions", "ListSubmissions", "ListSubmissions"]
    start = server.calls[0][1]
    assert start["fileName"] == "submission.csv"
    assert start["contentLength"] == (run / "submission.csv").stat().st_size
    assert server.calls[2][1]["submissionDescription"] == "first try"
    record = json.loads((run / RECORD).read_text())
    assert record["status"] == "scored" and record["ref"] == metrics["kaggle_submission_ref"]
    for path in run.iterdir():  # no credential is written into the run folder
        assert KEY not in path.read_text(errors="ignore") and USER not in path.read_text(errors="ignore")
    assert not list(tmp_path.rglob("kaggle.json"))


def test_an_invalid_csv_is_refused_before_upload(tiny_pcam, hidden, kaggle_env, tmp_path, capsys):
    run = make_run(tmp_path / "runs", "bad", tiny_pcam, hidden)
    frame = pd.read_csv(run / "submission.csv", dtype={"id": str})
    frame.loc[3, "label"] = 1.7
    frame.drop(index=5).to_csv(run / "submission.csv", index=False)
    with kaggle_env(hidden_labels=hidden) as server:
        assert main(["submit", str(run), "--poll", "0.01"]) == 1
    out = capsys.readouterr().out
    assert "must not be submitted" in out and "missing" in out and "1.7" in out
    assert server.calls == []  # nothing left the machine
    assert not (run / RECORD).exists()
    assert "kaggle_public_auc" not in json.loads((run / "metrics.json").read_text())


def test_a_scoring_timeout_is_clear_and_the_next_call_only_polls(tiny_pcam, hidden, kaggle_env,
                                                                 tmp_path):
    run = make_run(tmp_path / "runs", "slow", tiny_pcam, hidden)
    with kaggle_env(hidden_labels=hidden, score_after=None) as server:
        with pytest.raises(ScoreTimeout, match=r"not scored within 0.2 s.*kandel-repro submit"):
            submit_run(run, log=lambda *a: None, poll=0.05, timeout=0.2)
        assert json.loads((run / RECORD).read_text())["status"] == "pending"
        assert "kaggle_public_auc" not in json.loads((run / "metrics.json").read_text())
        server.score_after = 0  # Kaggle gets to it
        metrics = submit_run(run, log=lambda *a: None, **FAST)
    assert operations(server).count("CreateSubmission") == 1  # polled again, not resubmitted
    assert metrics["kaggle_private_auc"] is not None


def test_a_timeout_through_the_cli_exits_non_zero(tiny_pcam, hidden, kaggle_env, tmp_path, capsys):
    run = make_run(tmp_path / "runs", "slow", tiny_pcam, hidden)
    with kaggle_env(hidden_labels=hidden, score_after=None):
        assert main(["submit", str(run), "--poll", "0.05", "--timeout", "0.2", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "not scored within 0.2 s" in out and "1 pending" in out


def test_the_daily_limit_queues_the_rest(tiny_pcam, hidden, kaggle_env, tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in range(3):
        make_run(runs, f"run{seed}", tiny_pcam, hidden, seed=seed)
    with kaggle_env(hidden_labels=hidden, daily_limit=2) as server:
        assert main(["submit", str(runs), "--poll", "0.01", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "1 run(s) queued" in out and "2 scored" in out and "1 queued" in out
        queue = json.loads((runs / "kaggle-queue.json").read_text())
        assert queue["queued"] == ["run2"]
        assert operations(server).count("CreateSubmission") == 2
        server.daily_limit = 3  # the next day
        assert main(["submit", str(runs), "--poll", "0.01", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 scored" in out and "2 scored before" in out
    assert operations(server).count("CreateSubmission") == 3
    assert not (runs / "kaggle-queue.json").exists()
    for seed in range(3):
        assert json.loads((runs / f"run{seed}" / "metrics.json").read_text())["kaggle_private_auc"] > 0.5


def test_a_submission_kaggle_cannot_score_is_reported(tiny_pcam, hidden, kaggle_env, tmp_path):
    run = make_run(tmp_path / "runs", "unscorable", tiny_pcam, hidden)
    wrong = dict(list(hidden.items())[1:])  # Kaggle's answer key differs from the sample
    with kaggle_env(hidden_labels=wrong):
        with pytest.raises(ScoringFailed, match="could not score.*every test id"):
            submit_run(run, log=lambda *a: None, **FAST)
        assert json.loads((run / RECORD).read_text())["status"] == "error"
        logged = []
        outcomes = submit_runs([run], log=logged.append, **FAST)  # a batch goes on
    assert outcomes == {"unscorable": "error"}


def test_a_401_and_a_404_on_submit_are_explained(tiny_pcam, hidden, kaggle_env, tmp_path, capsys):
    run = make_run(tmp_path / "runs", "r", tiny_pcam, hidden)
    with kaggle_env(hidden_labels=hidden, key="expired-key"):
        assert main(["submit", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials (401)" in err and "expired-key" not in err
    with kaggle_env(hidden_labels=hidden):
        assert main(["submit", str(run), "--quiet", "--competition", "no-such-thing"]) == 2
    assert "no competition 'no-such-thing' (404)" in capsys.readouterr().err
    assert not (run / RECORD).exists()


def test_the_kaggle_command_line_submits_to_the_stand_in_too(tiny_pcam, hidden, kaggle_env,
                                                             tmp_path):
    run = make_run(tmp_path / "runs", "r", tiny_pcam, hidden)
    with kaggle_env(hidden_labels=hidden, score_after=0):
        submitted = subprocess.run(
            [sys.executable, "-m", "kaggle", "competitions", "submit", "-c", COMPETITION,
             "-f", str(run / "submission.csv"), "-m", "by hand"],
            capture_output=True, text=True, timeout=120)
        listed = subprocess.run(
            [sys.executable, "-m", "kaggle", "competitions", "submissions", "-c", COMPETITION,
             "--csv"], capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "Successfully submitted" in submitted.stdout
    assert listed.returncode == 0, listed.stdout + listed.stderr
    public, private = score((run / "submission.csv").read_bytes(), hidden)
    assert f"{public:.5f}" in listed.stdout and f"{private:.5f}" in listed.stdout


@pytest.mark.slow
def test_grid_submit_scores_each_finished_run_and_the_table_shows_it(tiny_pcam, hidden,
                                                                     kaggle_env, tmp_path, capsys):
    runs = tmp_path / "runs" / "table2"
    with kaggle_env(hidden_labels=hidden) as server:
        status = main(["grid", "table2", "--data", str(tiny_pcam), "--runs", str(runs),
                       "--shard", "1/8", "--weights", "none", "--epochs", "1",
                       "--batch-size", "16", "--submit", "--poll", "0.01"])
    assert status == 0, capsys.readouterr()
    assert operations(server).count("CreateSubmission") == 2  # shard 1/8: 2 of 15 runs
    assert main(["table", "table2", "--runs", str(runs), "--out", str(tmp_path / "tables")]) == 0
    table = (tmp_path / "tables" / "table2.md").read_text()
    assert "Kaggle private-leaderboard test ROC AUC" in table
    frame = pd.read_csv(tmp_path / "tables" / "table2.csv")
    done = frame[frame["status"] == "ok"]
    assert len(done) == 2 and done["kaggle_public_auc"].notna().all()
    for run in done["run"]:
        private = json.loads((runs / run / "metrics.json").read_text())["kaggle_private_auc"]
        assert f"{private:.4f}" in table


def test_grid_submit_refuses_breakhis_tables(tmp_path, capsys):
    assert main(["grid", "table6", "--data", str(tmp_path), "--runs", str(tmp_path / "r"),
                 "--submit"]) == 2
    assert "only PCam runs are scored by Kaggle" in capsys.readouterr().err


def test_ctrl_c_while_waiting_keeps_the_submission_recorded(tiny_pcam, hidden, kaggle_env, tmp_path):
    run = make_run(tmp_path / "runs", "impatient", tiny_pcam, hidden)
    logged = []

    def interrupt(seconds):
        raise KeyboardInterrupt

    with kaggle_env(hidden_labels=hidden, score_after=5) as server:
        with pytest.raises(KeyboardInterrupt):
            submit_run(run, log=logged.append, sleep=interrupt, **FAST)
        assert json.loads((run / RECORD).read_text())["status"] == "pending"
        assert any("stopped waiting" in line and "without submitting again" in line for line in logged)
        metrics = submit_run(run, log=logged.append, **FAST)
    assert operations(server).count("CreateSubmission") == 1
    assert metrics["kaggle_public_auc"] is not None


def test_a_run_on_synthetic_data_is_not_submitted(tiny_pcam, hidden, kaggle_env, tmp_path,
                                                  monkeypatch, capsys):
    run = make_run(tmp_path / "runs", "vgg16_blocks5-5_lr1e-04", tiny_pcam, hidden)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, synthetic=True)))
    with kaggle_env(hidden_labels=hidden) as server:
        monkeypatch.delenv("KANDEL_REPRO_SUBMIT_SYNTHETIC")  # what a user's shell has
        assert main(["submit", str(run)]) == 1
        assert operations(server) == []  # Kaggle never asked
    out = capsys.readouterr().out
    assert "was trained on synthetic data" in out and "Kaggle: 1 invalid" in out
    with pytest.raises(SubmissionError, match="trained on synthetic data"):
        submit_run(run, log=lambda *a: None, **FAST)

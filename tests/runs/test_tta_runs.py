"""Runs with test-time augmentation (--tta): what a run records, and finished runs scored
with TTA later by a grid, without training them again."""
import json

import numpy as np
import pandas as pd
import pytest

from kandel_repro.grid import grid as grid_mod
from kandel_repro.grid.grid import GridOptions
from kandel_repro.runs import rundir, single
from kandel_repro.runs.settings import UserSettings

SETTINGS = dict(weights="none", max_epochs=1, batch_size=16, workers=1, verbose=0)


@pytest.fixture(scope="module")
def tta_run(tiny_pcam, tmp_path_factory):
    """A cbr_small run on the tiny set with --tta 8, 1 epoch (read-only)."""
    run = tmp_path_factory.mktemp("tta") / "cbr_small_blocks1-4_lr1e-03"
    metrics = single.train_single(run, tiny_pcam, "cbr_small", 1, 1e-3, tta=8, **SETTINGS)
    return run, metrics


def best_predictor(run):
    import keras

    from kandel_repro.runs.train import predictor_of

    config = rundir.read_config(run)
    model = keras.saving.load_model(run / rundir.BEST_MODEL)
    return predictor_of(model, config, (config["image_size"],) * 2 + (3,))


def test_a_run_with_tta_records_both_aucs_and_writes_the_tta_files(tta_run, tiny_pcam):
    from sklearn.metrics import roc_auc_score

    from kandel_repro.readers.registry import get_reader
    from kandel_repro.training.pipeline import predict_uint8
    from kandel_repro.training.tta import VIEW_SETS, apply_view

    run, metrics = tta_run
    assert json.loads((run / rundir.METRICS).read_text()) == metrics
    assert metrics["tta_views"] == 8 and rundir.tta_views(run) == 8
    assert rundir.read_config(run)["tta"] == 8
    ids, labels, scores = rundir.read_tta_predictions(run, "val")
    plain = rundir.read_predictions(run / rundir.VAL_PREDICTIONS)
    np.testing.assert_array_equal(ids, plain[0])
    np.testing.assert_array_equal(labels, plain[1])
    assert metrics["val_auc_tta"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["val_auc"] == pytest.approx(roc_auc_score(plain[1], plain[2]))
    # the tiny set's 12 validation images: too few of a class for an interval, said so
    assert metrics["val_auc_tta_ci"] == [None, None]
    assert "the validation split holds" in \
        metrics["intervals_not_assessable_tta"]["val_auc_tta"]
    # The best model's mean over the eight views, image by image (the rows of the ids).
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    rows = pd.Index(data.ids).get_indexer(ids)
    predictor = best_predictor(run)
    by_hand = np.mean([predict_uint8(predictor, np.ascontiguousarray(apply_view(data.x[rows], v)), 8)
                       for v in VIEW_SETS[8]], axis=0)
    np.testing.assert_allclose(scores, by_hand, atol=1e-5)
    # PCam: the Kaggle test set as a second submission file (its labels are known only
    # for the synthetic set: an AUC of it too).
    submission = pd.read_csv(run / rundir.SUBMISSION_TTA, dtype={"id": str})
    assert list(submission.columns) == ["id", "label"]
    assert list(submission["id"]) == list(
        pd.read_csv(run / rundir.SUBMISSION, dtype={"id": str})["id"])
    assert "synthetic_test_auc_tta" in metrics and "synthetic_test_auc_tta_ci" in metrics
    assert rundir.read_tta_predictions(run, "test") is None  # no labelled test split


def test_a_labelled_test_split_gets_its_tta_predictions_and_auc(tta_run, tiny_pcam, tmp_path):
    from kandel_repro.data.packed import TestSet
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.config import resolve_config
    from kandel_repro.runs.train import score_tta
    from kandel_repro.training.runtime import make_strategy

    run, _ = tta_run
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    test = TestSet(data.x, data.ids, indices=np.arange(20, 40), labels=data.y[20:40])
    config = resolve_config("cbr_small", 1, 1e-3, tta=4, eval_batch_size=8)
    metrics = score_tta(tmp_path, data, best_predictor(run), config, np.arange(20),
                        test, make_strategy("none"))
    assert metrics["tta_views"] == 4 and set(metrics) == {
        "tta_views", "val_auc_tta", "val_auc_tta_ci", "test_auc_tta", "test_auc_tta_ci",
        "intervals_not_assessable_tta"}
    # 20 images each: fewer than 10 of a class, so neither interval is assessable
    assert set(metrics["intervals_not_assessable_tta"]) == {"val_auc_tta", "test_auc_tta"}
    assert all(np.isnan(metrics["test_auc_tta_ci"]))
    ids, labels, scores = rundir.read_tta_predictions(tmp_path, "test")
    assert list(ids) == list(data.ids[20:40]) and list(labels) == list(data.y[20:40])
    from sklearn.metrics import roc_auc_score

    assert metrics["test_auc_tta"] == pytest.approx(roc_auc_score(labels, scores))
    assert not (tmp_path / rundir.SUBMISSION_TTA).exists()


def test_a_finished_run_is_scored_with_tta_by_the_grid_without_training_again(tiny_pcam,
                                                                              tmp_path):
    runs, logs = tmp_path / "runs", []
    grid = GridOptions(backbone="cbr_small", dataset="pcam", learning_rates="1e-3", shard="1/4",
                       workers=1, verbose=0)
    settings = dict(weights="none", max_epochs=1, batch_size=16)
    statuses = grid_mod.run_grid("depth", tiny_pcam, runs, grid, UserSettings(**settings),
                                 log=logs.append)
    (name,) = statuses
    run = runs / name
    assert statuses[name] == "ok" and "tta_views" not in rundir.read_metrics(run)
    before = {f: (run / f).read_bytes() for f in (rundir.HISTORY, rundir.BEST_MODEL,
                                                  rundir.VAL_PREDICTIONS, rundir.SUBMISSION)}
    plain = rundir.read_metrics(run)

    logs.clear()
    statuses = grid_mod.run_grid("depth", tiny_pcam, runs, grid,
                                 UserSettings(tta=8, **settings), log=logs.append)
    assert statuses == {name: "skipped"}
    assert any("scored with test-time augmentation (8 views)" in line for line in logs)
    assert {f: (run / f).read_bytes() for f in before} == before  # not trained again
    metrics = rundir.read_metrics(run)
    assert {k: metrics[k] for k in plain} == plain  # the plain figures kept
    assert metrics["tta_views"] == 8 and 0 <= metrics["val_auc_tta"] <= 1
    assert (run / rundir.VAL_PREDICTIONS_TTA).is_file() and (run / rundir.SUBMISSION_TTA).is_file()
    assert rundir.read_config(run)["tta"] == 8

    logs.clear()  # scored already: left alone
    tta_file = (run / rundir.VAL_PREDICTIONS_TTA).read_bytes()
    assert grid_mod.run_grid("depth", tiny_pcam, runs, grid, UserSettings(tta=8, **settings),
                             log=logs.append) == {name: "skipped"}
    assert not any("test-time" in line for line in logs)
    assert (run / rundir.VAL_PREDICTIONS_TTA).read_bytes() == tta_file

    # Other views: scored again with them; Kaggle's score of the old TTA file dropped.
    rundir.update_metrics(run, kaggle_private_auc_tta=0.9, kaggle_submission_ref_tta=7)
    assert grid_mod.run_grid("depth", tiny_pcam, runs, grid, UserSettings(tta=4, **settings),
                             log=logs.append) == {name: "skipped"}
    metrics = rundir.read_metrics(run)
    assert metrics["tta_views"] == 4 and rundir.read_config(run)["tta"] == 4
    assert "kaggle_private_auc_tta" not in metrics and "kaggle_submission_ref_tta" not in metrics
    assert (run / rundir.VAL_PREDICTIONS_TTA).read_bytes() != tta_file

    (run / rundir.BEST_MODEL).unlink()  # a run it cannot score: failed, the grid goes on
    logs.clear()
    assert grid_mod.run_grid("depth", tiny_pcam, runs, grid, UserSettings(tta=8, **settings),
                             log=logs.append) == {name: "failed"}
    assert any("FAILED" in line and "best_model.keras" in line for line in logs)

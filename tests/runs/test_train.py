"""One training run and the folder it leaves (kandel_repro.runs.train)."""
import json
import time

import numpy as np
import pandas as pd
import pytest

from kandel_repro.readers.registry import get_reader
from kandel_repro.runs.config import resolve_config
from kandel_repro.runs.train import TimeBudgetExceeded, train_run

ARTEFACTS = {"config.json", "val_ids.csv", "history.csv", "best_model.keras",
             "val_predictions.csv", "submission.csv", "metrics.json"}


@pytest.fixture(scope="module")
def finished_run(tiny_pcam, tmp_path_factory):
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4, weights="none", max_epochs=2, batch_size=16)
    config = config.updated(data_dir=str(tiny_pcam), data_fingerprint=data.fingerprint)
    run_dir = tmp_path_factory.mktemp("runs") / "one"
    metrics = train_run(run_dir, data, config, verbose=0)
    return run_dir, data, metrics


def test_run_folder_holds_every_artefact(finished_run):
    run_dir, data, metrics = finished_run
    assert ARTEFACTS <= {p.name for p in run_dir.iterdir()}
    assert not list(run_dir.glob(".*tmp*"))  # no temporary files left behind
    assert metrics["status"] == "ok"
    assert metrics["epochs_run"] == 2 and 1 <= metrics["best_epoch"] <= 2
    assert 0.0 <= metrics["val_auc"] <= 1.0
    assert metrics["train_images_per_second"] > 0 and metrics["wall_seconds"] > 0
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_config_is_fully_resolved(finished_run):
    run_dir, data, _ = finished_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["backbone"] == "vgg16" and config["first_trainable_block"] == 5
    assert config["learning_rate"] == 1e-4 and config["batch_size"] == 16
    assert config["augmentation"]["rotation_range"] == 180.0
    assert config["image_size"] == 32 and config["dataset"] == "pcam" and config["synthetic"]
    assert config["n_train"] + config["n_val"] == 60 and config["n_val"] == 12
    assert config["weights"] == "none" and config["blocks"] == "5"


def test_history_has_one_row_per_epoch(finished_run):
    history = pd.read_csv(finished_run[0] / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"loss", "val_auc", "learning_rate", "train_seconds"} <= set(history.columns)


def test_tensorboard_logs_hold_each_epoch_as_the_history_does(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = finished_run[0]
    history = pd.read_csv(run_dir / "history.csv")
    assert history["learning_rate"].tolist() == pytest.approx([1e-4, 1e-4])

    def scalars(part):
        events = EventAccumulator(str(run_dir / "tensorboard" / part)).Reload()
        tags = events.Tags()["scalars"] + events.Tags()["tensors"]
        return {tag: [float(np.asarray(tf_value(e))) for e in
                      (events.Scalars(tag) if tag in events.Tags()["scalars"] else events.Tensors(tag))]
                for tag in tags}

    def tf_value(event):
        import tensorflow as tf

        return event.value if hasattr(event, "value") else tf.make_ndarray(event.tensor_proto)

    train, validation = scalars("train"), scalars("validation")
    assert train["epoch_loss"] == pytest.approx(history["loss"].tolist(), rel=1e-6)
    assert train["epoch_learning_rate"] == pytest.approx(history["learning_rate"].tolist())
    assert validation["epoch_auc"] == pytest.approx(history["val_auc"].tolist(), rel=1e-6)


def test_validation_ids_and_predictions_match_the_split(finished_run):
    run_dir, data, metrics = finished_run
    val = pd.read_csv(run_dir / "val_ids.csv", dtype={"id": str})
    preds = pd.read_csv(run_dir / "val_predictions.csv", dtype={"id": str})
    assert list(val["id"]) == list(preds["id"]) and len(val) == 12
    assert set(val["id"]) <= set(data.ids)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(preds["label"], preds["prediction"]) == pytest.approx(metrics["val_auc"])


def test_submission_follows_sample_submission_order(finished_run, tiny_pcam):
    run_dir, _, _ = finished_run
    sub = pd.read_csv(run_dir / "submission.csv", dtype={"id": str})
    sample = pd.read_csv(tiny_pcam / "sample_submission.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", "label"]
    assert list(sub["id"]) == list(sample["id"])
    assert sub["label"].between(0, 1).all() and np.isfinite(sub["label"]).all()


def test_best_model_reproduces_validation_predictions(finished_run):
    """The saved model is the paper's (preprocessed float input); preprocessing it on the
    host must give the predictions the device-side input stage gave during training."""
    import keras

    from kandel_repro.models.backbones import get_backbone

    run_dir, data, _ = finished_run
    model = keras.saving.load_model(run_dir / "best_model.keras")
    assert "input_stage" not in [layer.name for layer in model.layers]
    val = pd.read_csv(run_dir / "val_predictions.csv", dtype={"id": str})
    rows = [list(data.ids).index(i) for i in val["id"]]
    images = get_backbone("vgg16").preprocess_input()(data.x[rows].astype(np.float32))
    scores = model.predict(images, verbose=0).reshape(-1)
    np.testing.assert_allclose(scores, val["prediction"], rtol=1e-4, atol=1e-5)


def test_run_records_how_it_computed(finished_run):
    run_dir, _, metrics = finished_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["augmenter"] == "fast" and config["distribute"] == "none"
    # this suite runs on CPUs: auto precision is float32, Keras' auto jit is off
    assert config["precision"] == "float32" and config["jit"] == "off"
    assert config["replicas"] == 1 and config["eval_batch_size"] == 64
    assert config["device"].startswith("CPU")
    assert metrics["steady_images_per_second"] > 0


@pytest.mark.slow
def test_breakhis_run_predicts_the_held_out_test_split(tiny_breakhis, tmp_path):

    root = tiny_breakhis
    data = get_reader("breakhis").load(root, tmp_path / "cache", image_size=32, workers=1,
                                       progress=False)
    config = resolve_config("vgg16", 5, 1e-4, protocol="breakhis", weights="none",
                            max_epochs=1, batch_size=32, image_size=32)
    assert config["patience"] == 50 and config["test_fraction"] == 0.1
    config = config.updated(data_dir=str(root), data_fingerprint=data.fingerprint)
    metrics = train_run(tmp_path / "run", data, config, verbose=0)
    preds = pd.read_csv(tmp_path / "run" / "test_predictions.csv", dtype={"id": str})
    test_ids = pd.read_csv(tmp_path / "run" / "test_ids.csv", dtype={"id": str})
    val_ids = pd.read_csv(tmp_path / "run" / "val_ids.csv", dtype={"id": str})
    assert len(preds) == 13 and list(preds["id"]) == list(test_ids["id"])
    assert not set(preds["id"]) & set(val_ids["id"])
    assert not (tmp_path / "run" / "submission.csv").exists()
    from sklearn.metrics import roc_auc_score

    assert metrics["test_auc"] == pytest.approx(roc_auc_score(preds["label"], preds["prediction"]))


class FrozenClock:
    """``time`` for kandel_repro.runs.train with the wall clock stopped at ``now``: a deadline
    just after it has not passed when training starts, and any epoch (timed by the real
    ``perf_counter``) would end after it."""

    perf_counter = staticmethod(time.perf_counter)

    def __init__(self, now):
        self.now = now

    def time(self):
        return self.now


@pytest.fixture
def frozen_clock(monkeypatch):
    import kandel_repro.runs.epochs as epochs_mod
    import kandel_repro.runs.train as train_mod

    clock = FrozenClock(time.time())
    monkeypatch.setattr(train_mod, "time", clock)
    monkeypatch.setattr(epochs_mod, "time", clock)  # (each epoch's deadline check)
    return clock


def test_a_run_stops_at_the_epoch_that_would_pass_the_deadline(tiny_pcam, tmp_path, frozen_clock):
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4, weights="none", max_epochs=4, batch_size=16)
    with pytest.raises(TimeBudgetExceeded, match="stopped after epoch 1"):
        train_run(tmp_path / "run", data, config, verbose=0, deadline=frozen_clock.now + 1e-3)
    assert not (tmp_path / "run" / "metrics.json").exists()  # unfinished
    assert len((tmp_path / "run" / "history.csv").read_text().strip().splitlines()) == 2
    # its state saved at epoch 1: the next attempt resumes from there
    # (tests/runs/test_resume.py: equal to an uninterrupted run)
    from kandel_repro.runs.epochs import paused_epochs

    assert paused_epochs(tmp_path / "run") == 1


def test_a_run_whose_last_epoch_ends_within_the_budget_is_finished(tiny_pcam, tmp_path,
                                                                    frozen_clock):
    """The budget stops a run before an epoch that would not fit; after the last epoch
    there is none, so the run is finished, not thrown away and trained again."""
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4, weights="none", max_epochs=1, batch_size=16)
    metrics = train_run(tmp_path / "run", data, config, verbose=0,
                        deadline=frozen_clock.now + 1e-3)
    assert metrics["epochs_run"] == 1 and (tmp_path / "run" / "metrics.json").is_file()


def test_a_spent_budget_starts_no_epoch_and_leaves_no_folder(tiny_pcam, tmp_path, frozen_clock):
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4, weights="none", max_epochs=1, batch_size=16)
    with pytest.raises(TimeBudgetExceeded, match="not started"):
        train_run(tmp_path / "run", data, config, verbose=0, deadline=frozen_clock.now)
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_before_its_first_epoch_leaves_nothing(tiny_pcam, tmp_path, monkeypatch,
                                                                capsys):
    """An error found while building the model (after the split's ids were written)
    leaves no half-made run folder: `train` leaves none at all, a grid its error.json."""
    import kandel_repro.runs.train as train_mod
    from kandel_repro.cli.main import main
    from kandel_repro.grid.grid import GridOptions, run_grid
    from kandel_repro.runs.settings import UserSettings

    def broken(*args, **kwargs):
        raise RuntimeError("the model cannot be built")

    monkeypatch.setattr(train_mod, "build_run_models", broken)
    with pytest.raises(RuntimeError, match="cannot be built"):
        main(["train", "--run-dir", str(tmp_path / "one"), "--data", str(tiny_pcam),
              "--first-block", "5", "--lr", "1e-4", "--weights", "none"])
    assert not (tmp_path / "one").exists()
    statuses = run_grid("table2", tiny_pcam, tmp_path / "runs", GridOptions(shard="1/15"),
                        UserSettings(weights="none"), log=lambda message: None)
    (name,) = statuses
    assert statuses[name] == "failed"
    assert {p.name for p in (tmp_path / "runs" / name).iterdir()} == {"error.json"}


def test_a_run_records_its_intervals_and_threshold_measures(finished_run):
    from kandel_repro.core import stats
    from kandel_repro.core.assessable import too_small

    run_dir, _, metrics = finished_run
    predictions = pd.read_csv(run_dir / "val_predictions.csv")
    # the tiny set's 12 validation images hold fewer than 10 of a class: no interval, and
    # the reason recorded (a zero-width or made-up interval would be worse)
    assert too_small(predictions["label"])
    assert metrics["val_auc_ci"] == [None, None]
    assert "the validation split holds" in metrics["intervals_not_assessable"]["val_auc"]
    # synthetic PCam has hidden test labels: the measures are those of the test split
    assert metrics["measures_split"] == "test" and len(metrics["synthetic_test_auc_ci"]) == 2
    for name in stats.MEASURES:  # (precision is None, undefined, if nothing is positive)
        for rule in ("youden", "t05"):
            value = metrics[f"{name}_{rule}"]
            assert (value is None and name == "precision") or 0 <= value <= 1
    assert metrics["youden_threshold"] == pytest.approx(
        stats.youden_threshold(predictions["label"], predictions["prediction"]))


def test_the_split_does_not_move_with_the_seed(tiny_pcam):
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    first = data.split(resolve_config("vgg16", 5, 1e-4, seed=0))
    other = data.split(resolve_config("vgg16", 5, 1e-4, seed=3))
    moved = data.split(resolve_config("vgg16", 5, 1e-4, seed=0, split_seed=1))
    np.testing.assert_array_equal(first.val, other.val)
    assert not np.array_equal(first.val, moved.val)


def test_a_run_can_train_on_a_reduced_or_balanced_training_split(tiny_pcam):
    from kandel_repro.runs.train import reduce_training

    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    train, val, _ = data.split(resolve_config("vgg16", 5, 1e-4))
    quarter = reduce_training(train, data.y, resolve_config("vgg16", 5, 1e-4, train_fraction=0.25))
    assert set(quarter) <= set(train) and len(quarter) == pytest.approx(len(train) / 4, abs=2)
    balanced = reduce_training(train, data.y, resolve_config("vgg16", 5, 1e-4, balance="downsample"))
    assert data.y[balanced].mean() == 0.5
    assert reduce_training(train, data.y, resolve_config("vgg16", 5, 1e-4)) is train

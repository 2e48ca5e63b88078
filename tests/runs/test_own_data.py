"""Runs on a user's own data (``--dataset folder|csv``): k ≥ 3 classes get a softmax head,
sparse categorical cross-entropy and the macro one-vs-rest AUC with bootstrap intervals;
two classes keep the paper's sigmoid head and DeLong's intervals. Tiny synthetic sets
(the generator of ``kandel-repro data synthetic-folder``), 32×32, one epoch."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from kandel_repro.core.errors import ConfigError
from kandel_repro.readers.synthetic.folder import write_synthetic_folder
from kandel_repro.runs import rundir, single
from kandel_repro.runs.config import resolve_config

QUICK = dict(weights="none", max_epochs=1, image_size=32, batch_size=16, verbose=0, workers=1)


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    return write_synthetic_folder(tmp_path_factory.mktemp("own") / "tiles", classes=3,
                                  images=24, patients=12, size=32, seed=0, progress=False)


@pytest.fixture(scope="module")
def multiclass_run(three_classes, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vgg16_blocks5-5_lr1e-03"
    metrics = single.train_single(run, three_classes / "manifest.csv", "vgg16", 5, 1e-3,
                                dataset="csv", bootstrap=200, **QUICK)
    return run, metrics


def test_a_multiclass_run_has_a_softmax_head_and_records_its_classes(multiclass_run,
                                                                     three_classes):
    import keras

    run, _ = multiclass_run
    config = rundir.read_config(run)
    assert config["protocol"] == "own" and config["dataset"] == "csv"
    folders = sorted(p.name for p in three_classes.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    assert config["num_classes"] == 3 and config["classes"] == folders
    assert config["loss"] == "auto" and config["split_used"] == "group"
    head = keras.saving.load_model(run / rundir.BEST_MODEL).get_layer("head_dense")
    assert head.units == 3 and head.activation.__name__ == "softmax"
    assert np.isfinite(pd.read_csv(run / rundir.HISTORY)["loss"]).all()
    assert len(config["train_class_fractions"]) == 3


def test_its_auc_is_the_macro_one_vs_rest_auc_of_its_predictions(multiclass_run):
    run, metrics = multiclass_run
    _, labels, scores = rundir.read_predictions(run / rundir.TEST_PREDICTIONS)
    assert scores.shape == (len(labels), 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    assert metrics["test_auc"] == pytest.approx(
        roc_auc_score(labels, scores, multi_class="ovr", average="macro"))
    _, val_labels, val_scores = rundir.read_predictions(run / rundir.VAL_PREDICTIONS)
    history = pd.read_csv(run / rundir.HISTORY)
    assert metrics["val_auc"] == pytest.approx(history["val_auc"].max())
    assert metrics["val_auc"] == pytest.approx(
        roc_auc_score(val_labels, val_scores, multi_class="ovr", average="macro"))
    assert len(metrics["class_aucs"]) == 3 and metrics["measures_split"] == "test"
    assert metrics["ci_method"] == "stratified bootstrap, 200 resamples"
    # its validation split holds fewer than 10 images of a class: no interval, and why,
    # in the class's name
    counts = np.bincount(val_labels, minlength=3)
    assert counts.min() < 10
    assert all(end is None or np.isnan(end) for end in metrics["val_auc_ci"])
    config = json.loads((run / "config.json").read_text())
    smallest = config["classes"][int(np.argmin(counts))]
    assert (f"the validation split holds {counts.min()} image{'s' if counts.min() > 1 else ''} "
            f"of class {smallest!r}") in metrics["intervals_not_assessable"]["val_auc"]
    assert metrics["confusion"] == confusion_matrix(labels, scores.argmax(axis=1),
                                                    labels=[0, 1, 2]).tolist()


def test_no_patient_is_on_two_sides_of_its_split(multiclass_run, three_classes):
    run, _ = multiclass_run
    groups = pd.read_csv(three_classes / "manifest.csv").set_index("path")["group"]
    val = set(groups[pd.read_csv(run / rundir.VAL_IDS)["id"]])
    test = set(groups[pd.read_csv(run / rundir.TEST_IDS)["id"]])
    assert val and test and not val & test
    assert json.loads((run / rundir.CONFIG).read_text())["n_test"] == len(
        pd.read_csv(run / rundir.TEST_IDS))


def test_two_classes_keep_the_sigmoid_head_and_delongs_interval(tmp_path):
    import keras

    data = write_synthetic_folder(tmp_path / "two", classes=2, images=30, patients=10, size=32,
                                  seed=1, progress=False)
    run = tmp_path / "run"
    metrics = single.train_single(run, data, "vgg16", 5, 1e-3, dataset="folder", **QUICK)
    head = keras.saving.load_model(run / rundir.BEST_MODEL).get_layer("head_dense")
    assert head.units == 1 and head.activation.__name__ == "sigmoid"
    frame = pd.read_csv(run / rundir.TEST_PREDICTIONS)
    assert list(frame.columns) == ["id", "label", "prediction"]
    assert "youden_threshold" in metrics and "ci_method" not in metrics
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(frame["label"], frame["prediction"]))
    assert rundir.read_config(run)["split_used"] == "image"  # the folder layout has no groups


def test_downsampling_is_refused_for_more_than_two_classes(three_classes, tmp_path):
    with pytest.raises(ConfigError, match="--balance downsample cuts the negatives of two "
                                          "classes; these data have 3 classes"):
        single.train_single(tmp_path / "run", three_classes, "vgg16", 5, 1e-3, dataset="folder",
                          balance="downsample", **QUICK)
    assert not (tmp_path / "run" / rundir.CONFIG).exists()


def test_the_own_data_protocol_and_its_options():
    config = resolve_config("vgg16", 3, 1e-4, protocol="own", window="40,400")
    assert (config["validation_fraction"], config["test_fraction"], config["image_size"],
            config["split"], config["window"]) == (0.1, 0.1, 224, "auto", [40.0, 400.0])
    with pytest.raises(ConfigError, match="--window takes CENTER,WIDTH"):
        resolve_config("vgg16", 3, 1e-4, protocol="own", window="40")
    with pytest.raises(ConfigError, match="--split slide does not apply to own"):
        resolve_config("vgg16", 3, 1e-4, protocol="own", split="slide")
    with pytest.raises(ConfigError, match="--image-size 16"):
        resolve_config("vgg16", 3, 1e-4, protocol="own", image_size=16)
    with pytest.raises(ConfigError, match="--group-column does not apply to the pcam "
                                          r"protocol's data \(it applies to --dataset csv\)"):
        resolve_config("vgg16", 3, 1e-4, protocol="pcam", group_column="patient")
    with pytest.raises(ConfigError, match=r"--positive-class .* --dataset folder, csv\)"):
        resolve_config("vgg16", 3, 1e-4, protocol="pcam", positive_class="1")


def test_a_ray_task_reads_own_data_with_the_grids_reader_options(three_classes, tmp_path):
    """What a Ray worker does with a run (cluster._run_task, called here without Ray):
    it loads the data with the run's reader options — here a manifest whose label
    column is not called "label" — and trains the run."""
    from kandel_repro.grid.attempt import Attempt
    from kandel_repro.grid.cluster import RayJob, _run_task
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.config import with_data
    from kandel_repro.studies.cells import study_configs
    from kandel_repro.studies.registry import get_study

    manifest = pd.read_csv(three_classes / "manifest.csv").rename(columns={"label": "tissue"})
    csv = three_classes / "renamed.csv"
    manifest.to_csv(csv, index=False)
    study = get_study("depth", backbone="vgg16", dataset="csv")
    settings = {k: v for k, v in QUICK.items() if k not in ("verbose", "workers")}
    name, config = next(iter(study_configs(study, label_column="tissue", **settings).items()))
    reader = get_reader("csv")
    data = reader.load(csv, progress=False, workers=1, image_size=32, **reader.options_of(config))
    job = RayJob(str(tmp_path), str(csv), "csv", None, Attempt(verbose=0))
    status, lines = _run_task(tmp_path / name, with_data(config, data, csv), job, name)
    assert status == "ok", lines
    assert rundir.read_config(tmp_path / name)["label_column"] == "tissue"

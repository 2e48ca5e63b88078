import json

import numpy as np
import pandas as pd
import pytest

from kandel_repro import grid as grid_mod
from kandel_repro import train as train_mod
from kandel_repro.data import pcam
from kandel_repro.errors import ConfigError
from kandel_repro.train import resolve_config, train_run

ARTEFACTS = {"config.json", "val_ids.csv", "history.csv", "best_model.keras",
             "val_predictions.csv", "submission.csv", "metrics.json"}


@pytest.fixture(scope="module")
def finished_run(tiny_pcam, tmp_path_factory):
    data = pcam.load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4, weights="none", max_epochs=2, batch_size=16)
    config.update(data_dir=str(tiny_pcam), data_fingerprint=data.fingerprint)
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
    assert config["image_size"] == 32 and config["dataset"] == "synthetic"
    assert config["n_train"] + config["n_val"] == 60 and config["n_val"] == 12
    assert config["weights"] == "none" and config["blocks"] == "5"


def test_history_has_one_row_per_epoch(finished_run):
    history = pd.read_csv(finished_run[0] / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"loss", "val_auc", "train_seconds"} <= set(history.columns)


def test_validation_ids_and_predictions_match_the_split(finished_run):
    run_dir, data, metrics = finished_run
    val = pd.read_csv(run_dir / "val_ids.csv", dtype={"id": str})
    preds = pd.read_csv(run_dir / "val_predictions.csv", dtype={"id": str})
    assert list(val["id"]) == list(preds["id"]) and len(val) == 12
    assert set(val["id"]) <= set(data.train_ids)
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

    from kandel_repro.backbones import get_backbone

    run_dir, data, _ = finished_run
    model = keras.saving.load_model(run_dir / "best_model.keras")
    assert "input_stage" not in [layer.name for layer in model.layers]
    val = pd.read_csv(run_dir / "val_predictions.csv", dtype={"id": str})
    rows = [list(data.train_ids).index(i) for i in val["id"]]
    images = get_backbone("vgg16").preprocess_input()(data.train_x[rows].astype(np.float32))
    scores = model.predict(images, verbose=0).reshape(-1)
    np.testing.assert_allclose(scores, val["prediction"], rtol=1e-4, atol=1e-5)


def test_run_records_how_it_computed(finished_run):
    run_dir, _, metrics = finished_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["augment"] == "fast" and config["distribute"] == "none"
    # this suite runs on CPUs: auto precision is float32, Keras' auto jit is off
    assert config["precision"] == "float32" and config["jit"] == "off"
    assert config["replicas"] == 1 and config["eval_batch_size"] == 128
    assert config["device"].startswith("CPU")
    assert metrics["steady_images_per_second"] > 0


def test_resolve_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="from 1 to 5.*got 6"):
        resolve_config("vgg16", 6, 1e-4)
    with pytest.raises(ConfigError, match="learning rate must be positive"):
        resolve_config("vgg16", 5, 0)
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve_config("vgg16", 5, 1e-4, colour="red")
    with pytest.raises(ConfigError, match="unknown backbone 'resnet'"):
        resolve_config("resnet", 5, 1e-4)
    assert resolve_config("vgg16", 5, 1e-4, weights="random")["weights"] == "none"
    assert resolve_config("vgg16", 5, 1e-4, weights="ImageNet")["weights"] == "imagenet"
    from kandel_repro.errors import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="nowhere.h5"):
        resolve_config("vgg16", 5, 1e-4, weights="nowhere.h5")
    with pytest.raises(ConfigError, match="precision must be one of auto, float32, mixed_float16"):
        resolve_config("vgg16", 5, 1e-4, precision="float16")
    with pytest.raises(ConfigError, match="distribute must be one of"):
        resolve_config("vgg16", 5, 1e-4, distribute="tpu")
    with pytest.raises(ConfigError, match="eval_batch_size must be a positive integer"):
        resolve_config("vgg16", 5, 1e-4, eval_batch_size=0)


# --- the grid, with a fast stand-in for training ------------------------------------

def _fake_train(fail_on=(), interrupt_on=None, calls=None):
    def fake(run_dir, data, config, verbose="auto", deadline=None):
        name = run_dir.name
        calls.append(name)
        if name == interrupt_on:
            raise KeyboardInterrupt
        run_dir.mkdir(parents=True, exist_ok=True)
        train_mod.write_json(run_dir / "config.json", config)
        if name in fail_on:
            raise RuntimeError(f"boom in {name}")
        metrics = {"status": "ok", "val_auc": 0.5 + config["first_trainable_block"] / 100,
                   "best_epoch": 1, "epochs_run": 1}
        train_mod.write_json(run_dir / "metrics.json", metrics)
        return metrics
    return fake


def test_grid_runs_15_cells_records_failures_and_resumes(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    names = [c.name for c in grid_mod.get_sweep("table2").cells()]
    assert len(names) == 15 and names[0] == "vgg16_blocks5-5_lr1e-03"

    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(fail_on={names[4]}, calls=calls))
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", log=lambda m: None)
    assert calls == names
    assert statuses[names[4]] == "failed" and list(statuses.values()).count("ok") == 14
    error = json.loads((runs / names[4] / "error.json").read_text())
    assert "boom in" in error["error"]

    calls.clear()
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", log=lambda m: None)
    assert calls == [names[4]]  # finished runs skipped, the failed one retried
    assert list(statuses.values()).count("skipped") == 14


def test_interrupted_grid_loses_only_the_run_in_progress(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    names = [c.name for c in grid_mod.get_sweep("table2").cells()]
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(interrupt_on=names[6], calls=calls))
    with pytest.raises(KeyboardInterrupt):
        grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", log=lambda m: None)
    assert sum((runs / n / "metrics.json").exists() for n in names) == 6
    calls.clear()
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", log=lambda m: None)
    assert calls == names[6:]


def test_shards_are_disjoint_cover_the_table_and_assemble(tiny_pcam, tmp_path, monkeypatch):
    from kandel_repro.tables import collect

    cells = grid_mod.get_sweep("table4").cells()
    for count in (1, 2, 3, 4, 39, 40):
        shares = [[c.name for _, c in grid_mod.shard_cells(cells, (i, count))]
                  for i in range(1, count + 1)]
        flat = [name for share in shares for name in share]
        assert sorted(flat) == sorted(c.name for c in cells) and len(set(flat)) == len(cells)
    for bad in ("3", "0/2", "3/2", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            grid_mod.parse_shard(bad)

    runs = tmp_path / "runs"
    names = [c.name for c in grid_mod.get_sweep("table2").cells()]
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    for i in (1, 2, 3):  # three machines, one share each, into one folder
        grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", shard=f"{i}/3",
                          log=lambda m: None)
        assert (runs / f"grid-shard-{i}of3.json").exists()
    assert calls == names[0::3] + names[1::3] + names[2::3]
    frame, _ = collect("table2", runs)
    assert (frame["status"] == "ok").all()


def test_grid_refuses_to_mix_settings(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=[]))
    grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", max_epochs=3, log=lambda m: None)
    with pytest.raises(ConfigError, match="max_epochs: 3 there, 4 now"):
        grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", max_epochs=4,
                          log=lambda m: None)


def test_real_grid_trains_and_skips(tiny_pcam, tmp_path, monkeypatch):
    """Two real cells (the sweep cut to one depth × two LRs) train, then are skipped."""
    sweep = grid_mod.Sweep("table2", "Table 2 — VGG16 fine-tuned on PCam", ("vgg16",),
                           learning_rates=(1e-3, 1e-4))
    monkeypatch.setattr(grid_mod.Sweep, "rows", lambda self: [("5", "vgg16", 5)])
    monkeypatch.setitem(grid_mod.SWEEPS, "table2", sweep)
    runs = tmp_path / "runs"
    logs = []
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", max_epochs=1,
                                 batch_size=16, verbose=0, log=logs.append)
    assert list(statuses.values()) == ["ok", "ok"]
    assert any("[1/2]" in line and "training" in line for line in logs)
    stamp = (runs / "vgg16_blocks5-5_lr1e-03" / "metrics.json").stat().st_mtime_ns
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", max_epochs=1,
                                 batch_size=16, verbose=0, log=logs.append)
    assert list(statuses.values()) == ["skipped", "skipped"]
    assert (runs / "vgg16_blocks5-5_lr1e-03" / "metrics.json").stat().st_mtime_ns == stamp


def test_breakhis_run_predicts_the_held_out_test_split(tmp_path):
    from kandel_repro.data import breakhis
    from kandel_repro.data.synthetic_breakhis import write_synthetic_breakhis

    root = write_synthetic_breakhis(tmp_path / "bh", 2, 2, seed=2, progress=False)
    data = breakhis.load(root, 32, workers=1, progress=False)
    config = resolve_config("vgg16", 5, 1e-4, protocol="breakhis", weights="none",
                            max_epochs=1, batch_size=32, image_size=32)
    assert config["patience"] == 50 and config["test_fraction"] == 0.1
    config.update(data_dir=str(root), data_fingerprint=data.fingerprint)
    metrics = train_run(tmp_path / "run", data, config, verbose=0)
    preds = pd.read_csv(tmp_path / "run" / "test_predictions.csv", dtype={"id": str})
    test_ids = pd.read_csv(tmp_path / "run" / "test_ids.csv", dtype={"id": str})
    val_ids = pd.read_csv(tmp_path / "run" / "val_ids.csv", dtype={"id": str})
    assert len(preds) == 13 and list(preds["id"]) == list(test_ids["id"])
    assert not set(preds["id"]) & set(val_ids["id"])
    assert not (tmp_path / "run" / "submission.csv").exists()
    from sklearn.metrics import roc_auc_score

    assert metrics["test_auc"] == pytest.approx(roc_auc_score(preds["label"], preds["prediction"]))


def test_scratch_table_fixes_random_weights():
    configs = grid_mod.sweep_configs(grid_mod.get_sweep("table5"))
    assert {c["weights"] for c in configs.values()} == {"none"}
    assert {c["first_trainable_block"] for c in configs.values()} == {1}
    with pytest.raises(ConfigError, match="table5 fixes weights='none'"):
        grid_mod.sweep_configs(grid_mod.get_sweep("table5"), weights="imagenet")
    with pytest.raises(ConfigError, match="BreakHis only"):
        grid_mod.sweep_configs(grid_mod.get_sweep("table2"), image_size=64)
    with pytest.raises(ConfigError, match="unknown setting.*pcam protocol: split"):
        resolve_config("vgg16", 5, 1e-4, split="patient")


def test_grid_refuses_images_too_small_for_the_backbone(tiny_pcam, tmp_path):
    with pytest.raises(ConfigError, match="inception_v3, which needs images of at least 75×75"):
        grid_mod.run_grid("table4", tiny_pcam, tmp_path / "runs", weights="none", log=lambda m: None)


def test_runs_made_before_data_identities_are_still_reused(tiny_pcam, tmp_path, monkeypatch):
    """Run folders that recorded the old path-and-time fingerprint of the same data are
    skipped, not refused; another data fingerprint still is refused."""
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    runs = tmp_path / "runs"
    grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", shard="1/15", log=lambda m: None)
    (name,) = calls
    data = pcam.load(tiny_pcam, progress=False, workers=1)
    assert data.legacy_fingerprint and data.legacy_fingerprint != data.fingerprint
    config = json.loads((runs / name / "config.json").read_text())
    (runs / name / "config.json").write_text(json.dumps({**config, "data_fingerprint": data.legacy_fingerprint}))
    calls.clear()
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", shard="1/15",
                                 log=lambda m: None)
    assert statuses == {name: "skipped"} and calls == []
    (runs / name / "config.json").write_text(json.dumps({**config, "data_fingerprint": "other"}))
    with pytest.raises(ConfigError, match="data_fingerprint: 'other' there"):
        grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", shard="1/15", log=lambda m: None)


def test_result_files_get_the_usual_permissions_not_mkstemps(tmp_path):
    import os
    import stat

    from kandel_repro.runio import FILE_MODE, write_json

    mask = os.umask(0)
    os.umask(mask)
    write_json(tmp_path / "x.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == FILE_MODE == 0o666 & ~mask

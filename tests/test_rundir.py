"""The run-folder format (kandel_repro.rundir), including folders written by earlier
versions of the package (tests/golden/legacy_runs, see its README)."""
import json
import shutil
from pathlib import Path

import pytest

from kandel_repro import grid as grid_mod
from kandel_repro import rundir, studies, tables
from kandel_repro import train as train_mod
from kandel_repro.errors import ConfigError
from kandel_repro.studies import Study, depth_rows, lr_columns

LEGACY = Path(__file__).parent / "golden" / "legacy_runs"
NAME = "vgg16_blocks5-5_lr1e-04"


def test_a_run_folder_is_read_through_one_type(tmp_path):
    run = tmp_path / "run"
    assert rundir.read_run(run) == (None, None, None) and rundir.read_run(run).status == "missing"
    rundir.start(run)
    rundir.write_config(run, {"protocol": "pcam", "augmenter": "fast"})
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        rundir.record_failure(run, exc)
    assert rundir.read_run(run).status == "failed"
    assert "RuntimeError: boom" in rundir.read_run(run).error["error"]
    rundir.write_metrics(run, {"status": "ok", "val_auc": 0.7})
    assert rundir.is_finished(run) and rundir.read_run(run).status == "ok"
    assert rundir.update_metrics(run, kaggle_private_auc=0.8) == {
        "status": "ok", "val_auc": 0.7, "kaggle_private_auc": 0.8}
    rundir.start(run)  # a new attempt clears what the last one left
    assert not any(run.iterdir())


def test_a_finished_run_with_other_settings_is_refused(tmp_path):
    rundir.write_config(tmp_path, {"max_epochs": 3, "weights": "none"})
    rundir.check_same_experiment(tmp_path, {"max_epochs": 3, "weights": "none"})
    with pytest.raises(ConfigError, match="max_epochs: 3 there, 4 now"):
        rundir.check_same_experiment(tmp_path, {"max_epochs": 4, "weights": "none"})


def _cut(monkeypatch, name, dataset, title):
    """The study ``name`` cut to the one cell the legacy folders hold."""
    monkeypatch.setitem(studies.STUDIES, name, Study(
        name, title, dataset, depth_rows("vgg16")[:1], lr_columns((1e-4,)), "Fine-tuned blocks"))


def _no_training(run_dir, *args, **kwargs):
    raise AssertionError(f"{run_dir.name} was finished and must not be trained again")


def test_a_pcam_run_folder_of_an_earlier_version_resumes_and_renders(tiny_pcam, tmp_path,
                                                                     monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(LEGACY / "table2", runs)
    old = json.loads((runs / NAME / "config.json").read_text())
    assert "augment" in old and "augmenter" not in old  # written by the earlier version
    _cut(monkeypatch, "table2", "pcam", "Table 2 — VGG16 fine-tuned on PCam")
    monkeypatch.setattr(train_mod, "train_run", _no_training)
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", max_epochs=1,
                                 batch_size=16, log=lambda m: None)
    assert statuses == {NAME: "skipped"}
    # another setting is still told apart from it
    with pytest.raises(ConfigError, match="max_epochs: 1 there, 2 now"):
        grid_mod.run_grid("table2", tiny_pcam, runs, weights="none", max_epochs=2,
                          batch_size=16, log=lambda m: None)
    md, csv, *figures = tables.write_table("table2", runs, tmp_path / "out")
    text = md.read_text()
    auc = json.loads((runs / NAME / "metrics.json").read_text())["val_auc"]
    assert f"| 5 | **{auc:.4f}** |" in text
    assert "synthetic PCam-like set" in text and "fused in-graph transform" in text
    assert [p.name for p in figures] == ["table2_heatmap.png", "table2_curves.png", "table2_roc.png"]


def test_a_breakhis_run_folder_of_an_earlier_version_resumes_and_renders(tiny_breakhis, tmp_path,
                                                                         monkeypatch):
    root = tiny_breakhis
    runs = tmp_path / "runs"
    shutil.copytree(LEGACY / "table6", runs)
    _cut(monkeypatch, "table6", "breakhis", "Table 6 — VGG16 fine-tuned on BreakHis")
    monkeypatch.setattr(train_mod, "train_run", _no_training)
    statuses = grid_mod.run_grid("table6", root, runs, weights="none", max_epochs=1,
                                 batch_size=32, image_size=32, workers=1,
                                 cache_dir=tmp_path / "cache", log=lambda m: None)
    assert statuses == {NAME: "skipped"}
    md, *_ = tables.write_table("table6", runs, tmp_path / "out")
    test_auc = json.loads((runs / NAME / "metrics.json").read_text())["test_auc"]
    assert f"| 5 | **{test_auc:.4f}** |" in md.read_text()
    assert "synthetic BreakHis-like set" in md.read_text()

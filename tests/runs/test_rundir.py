"""The run-folder format (kandel_repro.runs.rundir), including folders written by earlier
versions of the package (tests/golden/legacy_runs, see its README)."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from helpers import LEGACY

from kandel_repro.core.errors import ConfigError
from kandel_repro.grid import grid as grid_mod
from kandel_repro.grid.grid import GridOptions
from kandel_repro.report import tables
from kandel_repro.runs import rundir, train as train_mod
from kandel_repro.runs.settings import UserSettings
from kandel_repro.studies.levels import depth_rows, lr_columns
from kandel_repro.studies.registry import STUDIES, get_study
from kandel_repro.studies.types import Study

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
    monkeypatch.setitem(STUDIES, name, Study(
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
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(
        weights="none", max_epochs=1, batch_size=16), log=lambda m: None)
    assert statuses == {NAME: "skipped"}
    # another setting is still told apart from it
    with pytest.raises(ConfigError, match="max_epochs: 1 there, 2 now"):
        grid_mod.run_grid("table2", tiny_pcam, runs,
                          settings=UserSettings(weights="none", max_epochs=2, batch_size=16),
                          log=lambda m: None)
    md, csv, cells, *figures = tables.write_table("table2", runs, tmp_path / "out")
    text = md.read_text()
    auc = json.loads((runs / NAME / "metrics.json").read_text())["val_auc"]
    assert f"| 5 | **{auc:.4f} [" in text  # its DeLong interval, from its predictions
    assert "synthetic PCam-like set" in text and "fused in-graph transform" in text
    assert [p.name for p in figures] == ["table2_heatmap.png", "table2_curves.png", "table2_roc.png",
                                         "table2_radar.png"]


def test_a_breakhis_run_folder_of_an_earlier_version_resumes_and_renders(tiny_breakhis, tmp_path,
                                                                         monkeypatch):
    root = tiny_breakhis
    runs = tmp_path / "runs"
    shutil.copytree(LEGACY / "table6", runs)
    _cut(monkeypatch, "table6", "breakhis", "Table 6 — VGG16 fine-tuned on BreakHis")
    monkeypatch.setattr(train_mod, "train_run", _no_training)
    statuses = grid_mod.run_grid("table6", root, runs,
                                 GridOptions(workers=1, cache_dir=tmp_path / "cache"),
                                 UserSettings(weights="none", max_epochs=1, batch_size=32,
                                              image_size=32),
                                 log=lambda m: None)
    assert statuses == {NAME: "skipped"}
    md, *_ = tables.write_table("table6", runs, tmp_path / "out")
    test_auc = json.loads((runs / NAME / "metrics.json").read_text())["test_auc"]
    assert f"| 5 | **{test_auc:.4f} [" in md.read_text()
    assert "synthetic BreakHis-like set" in md.read_text()


def test_a_damaged_metrics_file_is_named_and_the_run_trained_again(tiny_pcam, tmp_path,
                                                                   monkeypatch, capsys):
    runs = tmp_path / "runs"
    calls = []

    def fake_train(run_dir, data, config, verbose="auto", deadline=None, pause_after=None,
                   resume=True):
        calls.append(run_dir.name)
        rundir.start(run_dir)
        rundir.write_config(run_dir, config)
        metrics = {"status": "ok", "val_auc": 0.7, "best_epoch": 1, "epochs_run": 1}
        rundir.write_metrics(run_dir, metrics)
        return metrics

    _cut(monkeypatch, "table2", "pcam", "Table 2 — VGG16 fine-tuned on PCam")
    monkeypatch.setattr(train_mod, "train_run", fake_train)
    grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(weights="none"),
                      log=lambda m: None)
    (runs / NAME / "metrics.json").write_text('{"status": "ok", "val_au')  # a full disk
    run = rundir.read_run(runs / NAME)
    assert run.status == "failed" and not rundir.is_finished(runs / NAME)
    assert f"{runs / NAME / 'metrics.json'} is not valid JSON" in run.error["error"]
    md, *_ = tables.write_table("table2", runs, tmp_path / "out")
    assert "| 5 | failed |" in md.read_text()
    assert f"{NAME}: failed ({runs / NAME / 'metrics.json'} is not valid JSON" in capsys.readouterr().out
    logs = []
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(weights="none"),
                                 log=logs.append)
    assert statuses == {NAME: "ok"} and calls == [NAME, NAME]
    assert any("is not valid JSON" in line and "retrying" in line for line in logs)


HOLD = """
import sys, time
from kandel_repro.runs import rundir
with rundir.claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(run_dir):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_run_held_by_a_live_process_is_skipped_and_left_alone(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    run_dir = runs / NAME
    run_dir.mkdir(parents=True)
    (run_dir / "history.csv").write_text("epoch,loss\n1,0.7\n")  # the other process's work
    holder = _hold(run_dir)
    try:
        with pytest.raises(rundir.RunBusy, match=rf"pid {holder.pid} on {socket.gethostname()}"):
            with rundir.claim(run_dir):
                pass
        _cut(monkeypatch, "table2", "pcam", "Table 2 — VGG16 fine-tuned on PCam")
        monkeypatch.setattr(train_mod, "train_run", _no_training)
        logs = []
        statuses = grid_mod.run_grid("table2", tiny_pcam, runs,
                                     settings=UserSettings(weights="none"), log=logs.append)
        assert statuses == {NAME: "busy"}
        assert any("being trained by another process" in line for line in logs)
        assert (run_dir / "history.csv").exists()  # not cleared
        assert not (run_dir / "error.json").exists()  # not recorded as a failure
    finally:
        holder.kill()  # as kill -9: the lock it leaves behind is stale
        holder.wait()
    assert (run_dir / rundir.LOCK).exists()
    with rundir.claim(run_dir):
        assert json.loads((run_dir / rundir.LOCK).read_text())["pid"] == os.getpid()
    assert not (run_dir / rundir.LOCK).exists()


@pytest.mark.slow
def test_two_grids_on_one_folder_train_each_run_once(tiny_pcam, tmp_path):
    """Two processes run the same grid at once: every run is trained by exactly one."""
    runs = tmp_path / "runs"
    script = TWO_GRIDS.format(data=str(tiny_pcam), runs=str(runs))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    trained = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        trained += json.loads(out.strip().splitlines()[-1])
    assert sorted(trained) == sorted(c.folder for c in get_study("table2").cells())


TWO_GRIDS = """
import json, time
from kandel_repro.grid import grid
from kandel_repro.runs import rundir, train
from kandel_repro.runs.settings import UserSettings

def slow_fake(run_dir, data, config, verbose="auto", deadline=None, pause_after=None,
              resume=True):
    rundir.start(run_dir)
    rundir.write_config(run_dir, config)
    time.sleep(0.3)
    metrics = {{"status": "ok", "val_auc": 0.6, "best_epoch": 1, "epochs_run": 1}}
    rundir.write_metrics(run_dir, metrics)
    return metrics

train.train_run = slow_fake
statuses = grid.run_grid("table2", {data!r}, {runs!r}, settings=UserSettings(weights="none"),
                         log=lambda m: None)
print(json.dumps([name for name, status in statuses.items() if status == "ok"]))
"""


def test_clearing_a_run_removes_its_files_and_explanations_but_nothing_else(tmp_path):
    run = tmp_path / "run"
    (run / rundir.TENSORBOARD).mkdir(parents=True)
    written = [rundir.CONFIG, rundir.METRICS, rundir.VAL_PREDICTIONS_TTA, "gradcam.png",
               "gradcam_block2_relu_test.json", "filters.png", "filters.json"]
    for name in written + ["notes.txt", "my_gradcam.png"]:
        (run / name).write_text("x")
    rundir.clear(run)
    assert sorted(p.name for p in run.iterdir()) == ["my_gradcam.png", "notes.txt"]

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from kandel_repro import tables
from kandel_repro.config import resolve_config
from kandel_repro.errors import ConfigError
from kandel_repro.runio import write_json
from kandel_repro.studies import get_study

GOLDEN = Path(__file__).parent / "golden"


def make_runs(root, kaggle=False):
    """Fake finished runs: AUC grows with depth and peaks at blocks 3–5, lr 1e-4."""
    for i, cell in enumerate(get_study("table2").cells()):
        name, first, lr = cell.name, cell.first_trainable_block, cell.learning_rate
        run = root / name
        run.mkdir(parents=True)
        config = resolve_config("vgg16", first, lr, weights="none", max_epochs=3)
        config.update(dataset="pcam", synthetic=True, image_size=32, n_train=1200, n_val=300, n_test=300)
        write_json(run / "config.json", config)
        if name == "vgg16_blocks2-5_lr1e-03":
            write_json(run / "error.json", {"status": "failed", "error": "RuntimeError: boom"})
            continue
        if name == "vgg16_blocks1-5_lr1e-05":
            continue  # not finished
        auc = 0.80 + 0.01 * i - (0.2 if (first, lr) == (1, 1e-3) else 0)
        if (first, lr) == (3, 1e-4):
            auc = 0.99
        metrics = {"status": "ok", "val_auc": auc, "best_epoch": 2, "epochs_run": 3,
                   "wall_seconds": 10.0 + i, "train_images_per_second": 100.0}
        if kaggle:
            metrics.update(kaggle_private_auc=auc - 0.01, kaggle_public_auc=auc - 0.02)
        write_json(run / "metrics.json", metrics)


def test_table_matches_golden(tmp_path):
    make_runs(tmp_path / "runs")
    frame, configs = tables.collect("table2", tmp_path / "runs")
    text = tables.render_markdown("table2", frame, configs,
                                  "kandel-repro table table2 --runs RUNS --out OUT")
    golden = GOLDEN / "table2.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_table_files_and_metric_choice(tmp_path):
    make_runs(tmp_path / "runs", kaggle=True)
    md, csv, png, *figures = tables.write_table("table2", tmp_path / "runs", tmp_path / "out")
    text = md.read_text()
    assert "Kaggle private-leaderboard test ROC AUC" in text and "**0.9800**" in text
    frame = pd.read_csv(csv)
    assert len(frame) == 15 and set(frame["status"]) == {"ok", "failed", "missing"}
    assert frame["kaggle_public_auc"].notna().sum() == 13
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures == []  # no history.csv in these runs: no curves to draw


def test_curves_and_roc_figures_of_a_table(tmp_path):
    import numpy as np

    make_runs(tmp_path / "runs")
    rng = np.random.default_rng(0)
    frame, _ = tables.collect("table2", tmp_path / "runs")
    for _, row in frame[frame["status"] == "ok"].iterrows():
        run = tmp_path / "runs" / row["run"]
        pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.7, 0.5, 0.4],
                      "val_auc": [0.6, row["val_auc"], row["val_auc"] - 0.01]}).to_csv(
            run / "history.csv", index=False)
        labels = rng.integers(0, 2, 50)
        pd.DataFrame({"id": range(50), "label": labels,
                      "prediction": labels * row["val_auc"] + rng.uniform(0, 0.5, 50)}).to_csv(
            run / "val_predictions.csv", index=False)
    histories, colors, styles = tables.run_histories("table2", tmp_path / "runs")
    assert len(histories) == 13  # the finished runs
    assert colors["blocks 3–5, lr 1e-4"] == 2 and styles["blocks 3–5, lr 1e-4"] == 1
    curves = tables.best_cell_predictions("table2", tmp_path / "runs")
    assert list(curves) == ["lr 1e-3: blocks 3–5", "lr 1e-4: blocks 3–5",
                           "lr 1e-5: blocks 2–5"]  # best per column
    paths = tables.write_table("table2", tmp_path / "runs", tmp_path / "out")
    assert [p.name for p in paths[3:]] == ["table2_curves.png", "table2_roc.png"]
    for path in paths[2:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_partial_kaggle_scores_fall_back_to_validation_auc(tmp_path):
    make_runs(tmp_path / "runs", kaggle=True)
    (tmp_path / "runs" / "vgg16_blocks5-5_lr1e-03" / "metrics.json").write_text(
        '{"status": "ok", "val_auc": 0.7}')
    frame, configs = tables.collect("table2", tmp_path / "runs")
    assert tables.choose_metric(frame, get_study("table2")) == "val_auc"


def test_paper_settings_give_no_deviation():
    config = resolve_config("vgg16", 3, 1e-4)
    config.update(image_size=96)
    assert tables._deviations([config]) == []
    config = resolve_config("vgg16", 3, 1e-4, augmentation=None, max_epochs=3)
    config.update(image_size=96)
    assert tables._deviations([config]) == [
        "augmentation: off (paper: on, training split only)", "max_epochs: 3 (our default: 50)"]


def test_table5_marks_runs_that_did_not_converge(tmp_path):
    for i, cell in enumerate(get_study("table5").cells()):
        run = tmp_path / cell.name
        run.mkdir()
        config = resolve_config(cell.backbone, 1, cell.learning_rate, weights="none")
        config.update(dataset="pcam", image_size=96, n_train=100, n_val=25, n_test=10)
        write_json(run / "config.json", config)
        metrics = {"status": "ok", "val_auc": 0.6 + i / 100, "best_epoch": 1, "epochs_run": 3}
        if cell.name == "vgg16_scratch_lr1e-03":
            metrics["val_auc"] = 0.51  # below the rule's 0.55
        if cell.name == "vgg19_scratch_lr1e-03":
            metrics.update(val_auc=0.7, stopped_reason="non-finite loss")
        write_json(run / "metrics.json", metrics)
    md, csv, png, *_ = tables.write_table("table5", tmp_path, tmp_path / "out")
    text = md.read_text()
    assert "| VGG16 | did not converge | 0.6100 | 0.6200 |" in text
    assert "| VGG19 | did not converge |" in text
    assert "| InceptionV3 | 0.6600 | 0.6700 | **0.6800** |" in text
    assert "below 0.55 or a non-finite loss" in text
    assert "weights: none (paper" not in text  # random weights are Table 5's experiment
    assert "random weights" not in text.split("\n")[2]  # from scratch is the experiment itself
    frame = pd.read_csv(csv)
    assert frame["converged"].tolist().count(False) == 2


def test_breakhis_tables_show_test_auc(tmp_path):
    for cell in get_study("table6").cells():
        run = tmp_path / cell.name
        run.mkdir()
        config = resolve_config("vgg16", cell.first_trainable_block, cell.learning_rate,
                                protocol="breakhis", image_size=64, split="patient")
        config.update(dataset="breakhis", synthetic=True, n_train=100, n_val=12, n_test=12)
        write_json(run / "config.json", config)
        write_json(run / "metrics.json", {"status": "ok", "val_auc": 0.9, "best_epoch": 1,
                                          "test_auc": 0.5 + cell.first_trainable_block / 10})
    md, *_ = tables.write_table("table6", tmp_path, tmp_path / "out")
    text = md.read_text()
    assert "held-out 10 % test split" in text and "| 5 | **1.0000** | 1.0000 | 1.0000 |" in text
    assert "synthetic BreakHis-like set" in text and "patient-level split" in text
    assert "split: patient (paper: image)" in text and "image_size: 64 (our default: 224)" in text
    assert "patience" not in text  # 50 on BreakHis is the paper's value


def test_a_folder_mixing_experiments_is_refused_naming_the_runs(tmp_path, capsys):
    from kandel_repro.cli import main

    make_runs(tmp_path / "runs")
    odd = tmp_path / "runs" / "vgg16_blocks4-5_lr1e-04" / "config.json"
    config = json.loads(odd.read_text())
    odd.write_text(json.dumps(dict(config, max_epochs=1, data_fingerprint="other-data")))
    with pytest.raises(ConfigError, match="mixes runs made with different settings") as caught:
        tables.write_table("table2", tmp_path / "runs", tmp_path / "out")
    message = str(caught.value)
    assert "max_epochs: 3 in vgg16_blocks5-5_lr1e-03" in message
    assert "and 9 more; 1 in vgg16_blocks4-5_lr1e-04" in message
    assert "data_fingerprint" in message and "own --runs folder" in message
    assert not (tmp_path / "out").exists()  # nothing written
    assert main(["table", "table2", "--runs", str(tmp_path / "runs"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "1 in vgg16_blocks4-5_lr1e-04" in capsys.readouterr().err
    # how a run computed is not part of the experiment: such runs share a table
    odd.write_text(json.dumps(dict(config, augmenter="imagedatagenerator", precision="float32")))
    tables.write_table("table2", tmp_path / "runs", tmp_path / "out")


def test_a_wrong_runs_folder_is_an_error_not_an_empty_table(tmp_path, capsys):
    from kandel_repro.cli import main

    assert main(["table", "table2", "--runs", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err
    (tmp_path / "runs3" / "vgg19_blocks5-5_lr1e-03").mkdir(parents=True)  # Table 3's runs
    assert main(["table", "table2", "--runs", str(tmp_path / "runs3"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "holds no run of table2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

"""The strategies study (``grid strategies --backbone B --dataset D``): block-wise depths and
the adaptation strategies as rows, its cost section, cost figure and cheapest tied cell."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kandel_repro.core.bootstrap import macro_auc, multiclass_summary
from kandel_repro.core.files import write_csv, write_json
from kandel_repro.readers.registry import get_reader
from kandel_repro.readers.synthetic.folder import write_synthetic_folder
from kandel_repro.report.tables import write_table
from kandel_repro.runs import rundir
from kandel_repro.runs.config import with_data
from kandel_repro.studies.cells import study_configs
from kandel_repro.studies.registry import get_study

# (quality, training seconds per epoch) of each row: llrd as good as the best depths and
# cheapest of them; lp-ft as good but dearer; the top block alone poor and cheap
ROWS = {"blocks 5": (0.3, 1.0), "blocks 4–5": (0.5, 2.0), "blocks 3–5": (3.0, 4.0),
        "blocks 2–5": (3.0, 5.0), "blocks 1–5": (3.0, 6.0), "llrd": (3.0, 3.0),
        "auto-rgn": (0.6, 7.0), "lp-ft": (3.0, 9.0), "gradual": (0.5, 4.5),
        "lora": (0.4, 2.5)}


def test_the_strategies_study_has_the_depths_then_the_strategies():
    study = get_study("strategies", backbone="resnet50", dataset="folder")
    assert [r.label for r in study.rows] == list(ROWS)
    assert [c.label for c in study.columns] == ["1e-3", "1e-4", "1e-5"]
    assert dict(study.rows[5].settings) == {"backbone": "resnet50", "first_trainable_block": 1,
                                            "strategy": "llrd"}
    assert study.rows[0].settings["strategy"] == "blocks"
    assert {"cost", "scales"} <= set(study.figures)


@pytest.fixture(scope="module")
def strategy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategies")
    data_dir = write_synthetic_folder(root / "tiles", classes=3, images=200, patients=12,
                                      size=8, seed=0, progress=False)
    data = get_reader("folder").load(data_dir, progress=False, workers=1, image_size=32)
    study = get_study("strategies", backbone="vgg16", dataset="folder")
    configs = study_configs(study, weights="none", image_size=32)
    train, val, test = data.split(next(iter(configs.values())))
    rng = np.random.default_rng(0)
    base = rng.normal(size=(test.size, 3))
    runs = root / "runs"
    for name, config in configs.items():
        cell = next(c for c in study.cells() if c.folder == name)
        quality, seconds = ROWS[cell.row.label]
        strength = quality * (1.0 if cell.column.label == "1e-4" else 0.3)
        labels = test.labels
        scores = np.exp(np.eye(3)[labels] * strength + base + rng.normal(0, 0.05, base.shape))
        scores /= scores.sum(axis=1, keepdims=True)
        run = runs / name
        run.mkdir(parents=True)
        write_json(run / rundir.CONFIG, dict(with_data(config, data, data_dir), n_train=len(train),
                                              n_val=len(val), n_test=test.size,
                                              precision="float32", device="CPU (written by a test)"))
        for file in (rundir.TEST_PREDICTIONS, rundir.VAL_PREDICTIONS):
            write_csv(run / file, rundir.prediction_frame(test.selected_ids(), labels, scores))
        auc = macro_auc(labels, scores)
        scales = ({f"scale_block{b}": [0.1 * b, 0.2 * b] for b in range(1, 6)}
                  if cell.row.label == "auto-rgn" else {})
        write_csv(run / rundir.HISTORY, pd.DataFrame({
            "epoch": [1, 2], "loss": [1.0, 0.9], "val_auc": [auc - 0.05, auc],
            "train_seconds": [seconds, seconds], "trainable_parameters": [1000.0, 3000.0],
            **scales}))
        write_json(run / rundir.METRICS, {"status": "ok", "val_auc": auc, "test_auc": auc,
                                          "best_epoch": 2, "epochs_run": 2, "wall_seconds": 9.0,
                                          "train_images_per_second": 10.0,
                                          "trainable_parameters": 3000,
                                          **multiclass_summary(labels, scores, labels, scores,
                                                               n=200)})
    return runs


def test_the_table_says_what_each_cell_cost_and_the_cheapest_tied(strategy_runs, tmp_path):
    written = {p.name for p in write_table("strategies", strategy_runs, tmp_path, bootstrap=300)}
    assert {"strategies_cost.png", "strategies_scales.png"} <= written
    md = (tmp_path / "strategies.md").read_text()
    assert "## What each cell cost" in md
    assert "| llrd | 1e-4 | 2 | 6 | 0.50 | 2,000 |" in md  # 2 × 3 s against 2 × 6 s
    assert "| blocks 1–5 | 1e-4 | 2 | 12 | 1.00 | 2,000 |" in md
    cheapest = md.split("Cheapest of the cells tied with the best: ")[1].split("\n")[0]
    assert "the cheapest is llrd at 1e-4 (6 s of training, 0.50× the whole network's " \
           "block-wise run)" in cheapest

"""The strategies study (``grid strategies --backbone B --dataset D``): block-wise depths and
the adaptation strategies as rows, its cost section, cost figure and cheapest tied cell."""
from __future__ import annotations

import pytest
from helpers import three_class_set, write_study_runs

from kandel_repro.report.tables import write_table
from kandel_repro.studies.cells import study_configs
from kandel_repro.studies.registry import get_study

# (quality, training seconds per epoch) of each row: llrd as good as the best depths and
# cheapest of them; lp-ft as good but dearer; the top block alone and the linear probe
# poor and cheap
ROWS = {"blocks 5": (0.3, 1.0), "blocks 4–5": (0.5, 2.0), "blocks 3–5": (3.0, 4.0),
        "blocks 2–5": (3.0, 5.0), "blocks 1–5": (3.0, 6.0), "probe": (0.4, 0.5),
        "llrd": (3.0, 3.0),
        "auto-rgn": (0.6, 7.0), "lp-ft": (3.0, 9.0), "gradual": (0.5, 4.5),
        "lora": (0.4, 2.5)}


def test_the_strategies_study_has_the_depths_then_the_strategies():
    study = get_study("strategies", backbone="resnet50", dataset="folder")
    assert [r.label for r in study.rows] == list(ROWS)
    assert [c.label for c in study.columns] == ["1e-3", "1e-4", "1e-5"]
    assert dict(study.rows[6].settings) == {"backbone": "resnet50", "first_trainable_block": 1,
                                            "strategy": "llrd"}
    assert study.rows[5].settings["strategy"] == "probe"
    assert study.rows[5].phrase == "the head alone (a linear probe)"
    assert study.rows[0].settings["strategy"] == "blocks"
    assert {"cost", "scales"} <= set(study.figures)


@pytest.fixture(scope="module")
def strategy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategies")
    data_dir, data = three_class_set(root)
    study = get_study("strategies", backbone="vgg16", dataset="folder")

    def history(cell, auc):
        seconds = ROWS[cell.row.label][1]
        scales = ({f"scale_block{b}": [0.1 * b, 0.2 * b] for b in range(1, 6)}
                  if cell.row.label == "auto-rgn" else {})
        return {"train_seconds": [seconds, seconds], "trainable_parameters": [1000.0, 3000.0],
                **scales}

    return write_study_runs(
        root / "runs", study, study_configs(study, weights="none", image_size=32), data,
        data_dir,
        lambda cell: ROWS[cell.row.label][0] * (1.0 if cell.column.label == "1e-4" else 0.3),
        history=history,
        metrics=lambda cell: {"wall_seconds": 9.0, "trainable_parameters": 3000})


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

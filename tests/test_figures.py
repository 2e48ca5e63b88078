"""The plotting module and `kandel-repro cost`."""
import numpy as np
import pandas as pd
import pytest

from kandel_repro import plots
from kandel_repro.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_learning_curves_draw_every_run_and_mark_best_epochs(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.7, 0.5, 0.6], "val_auc": [0.6, 0.9, 0.8]})
    runs = {"a": history, "b": history.assign(val_auc=[0.5, 0.6, 0.7])}
    fig = plots.learning_curves(runs, tmp_path / "c.png", colors={"a": 0, "b": 1},
                                styles={"a": 0, "b": 1}, color_names={0: "deep", 1: "shallow"},
                                style_names={0: "lr 1e-3", 1: "lr 1e-4"})
    loss, auc = fig.axes
    assert len(loss.lines) == 2 and len(auc.lines) == 4  # a line and a best-epoch dot per run
    dots = [line for line in auc.lines if line.get_marker() == "o"]
    assert sorted((d.get_xdata()[0], d.get_ydata()[0]) for d in dots) == [(2, 0.9), (3, 0.7)]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["deep", "shallow", "lr 1e-3", "lr 1e-4"]
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG


def test_roc_curves_report_each_auc(tmp_path):
    y = np.array([0, 0, 1, 1])
    fig = plots.roc_curves({"perfect": (y, [0.1, 0.2, 0.8, 0.9]), "inverted": (y, [0.9, 0.8, 0.2, 0.1])},
                           tmp_path / "r.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["perfect (AUC 1.0000)", "inverted (AUC 0.0000)", "chance"]


def test_cost_command_measures_each_depth(tmp_path, capsys):
    assert main(["cost", "vgg16", "--image-size", "32", "--batch-size", "4", "--steps", "1",
                 "--warm", "1", "--first-blocks", "5", "3", "1", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "cost_vs_depth.csv")
    assert frame["blocks"].tolist() == ["5", "3–5", "1–5"]
    assert frame["trainable_parameters"].is_monotonic_increasing
    assert frame["trainable_parameters"].nunique() == 3
    # The whole network trains every parameter; the top block only, block 5 + the head.
    assert frame["trainable_parameters"].iloc[-1] == frame["total_parameters"].iloc[-1]
    assert frame["trainable_parameters"].iloc[0] == 3 * (3 * 3 * 512 * 512 + 512) + 512 + 1
    assert (frame["seconds_per_step"] > 0).all()
    assert (tmp_path / "cost_vs_depth.png").read_bytes()[:8] == PNG
    fig = plots.cost_vs_depth(pd.concat([frame, frame.assign(backbone="copy")]))
    assert len(fig.axes) == 4  # two panels, each with its twin axis


def test_cost_refuses_images_too_small_for_the_backbone():
    from kandel_repro.cost import depth_costs

    with pytest.raises(ValueError, match="at least 75×75"):
        depth_costs("inception_v3", image_size=32)

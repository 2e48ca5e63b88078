"""The plotting module (kandel_repro.report.plots)."""
import numpy as np
import pandas as pd

from kandel_repro.report import plots

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

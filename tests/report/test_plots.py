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


def test_the_cross_backbone_figure_names_every_depth_readably():
    """Each point is named by its depth, points of nearly the same size (a ResNet's depths
    3–5, 2–5 and 1–5) get labels that do not overlap, and the best depth is named in the
    legend, inside the figure."""
    from kandel_repro.report.plots import depth_lines

    depths = ["5", "4–5", "3–5", "2–5", "1–5"]
    series = {
        "ResNet50": {"x": [14.97e6, 22.07e6, 23.29e6, 23.51e6, 23.53e6],
                     "mean": [0.81, 0.86, 0.88, 0.87, 0.875], "depths": depths, "best": 2},
        "VGG16": {"x": [7.08e6, 14.16e6, 15.63e6, 15.85e6, 15.89e6],
                  "mean": [0.80, 0.85, 0.89, 0.884, 0.88], "depths": depths, "best": 2},
    }
    for name, line in series.items():
        line.update(low=np.array(line["mean"]) - 0.01, high=np.array(line["mean"]) + 0.01,
                    legend=f"{name} — best: blocks 3–5 at 1e-4")
    fig = depth_lines(series, None, title="t", xlabel="x", ylabel="y")
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts]
    assert sorted(t.get_text() for t in labels) == sorted(depths * 2)
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ResNet50 — best: blocks 3–5 at 1e-4" in legend
    assert "best depth of each backbone" in legend
    import matplotlib.pyplot as plt

    plt.close(fig)

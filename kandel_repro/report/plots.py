"""Figures, shared by the tables, the command line and the notebooks.

- :func:`heatmap` — a table's depth × learning-rate grid;
- :func:`learning_curves` — training loss and validation AUC per epoch;
- :func:`roc_curves` — ROC curves with their AUC;
- :func:`radar` — several profiles on a few measures;
- :func:`cost_vs_depth` — trainable parameters and time per step at each depth;
- :func:`confusion_matrix_figure` — counts of true × predicted classes.

Each returns its matplotlib Figure and, given ``path``, saves it as PNG (atomically).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..core.files import atomic_path

if TYPE_CHECKING:  # NOTE: annotations only; matplotlib and pandas load when a figure is drawn
    import pandas as pd
    from matplotlib.figure import Figure


def load_pyplot():
    """pyplot; headless (Agg) unless a backend was chosen (Jupyter's inline one, or
    ``MPLBACKEND``), so figures show in notebooks and save anywhere."""
    import os
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(values: ArrayLike, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
            metric: str, path: str | Path | None = None, best: tuple[int, int] | None = None,
            texts: np.ndarray | None = None, row_title: str = "fine-tuned blocks",
            column_title: str = "learning rate",
            tied: Sequence[tuple[int, int]] = ()) -> Figure:
    """Draw a grid of AUCs (NaN = nothing to show), annotate each cell, mark the best
    (red frame) and the cells tied with it (``tied``: ``(row, column)`` positions,
    hatched, with a legend).

    ``texts`` overrides the annotation of each cell (e.g. "failed", "did not converge").

    Returns the matplotlib Figure; saves it as PNG when ``path`` is given.
    """
    plt = load_pyplot()
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 + 1.3 * len(col_labels)),
                                    1.2 + 0.55 * len(row_labels)))
    finite = values[np.isfinite(values)]
    vmin = float(finite.min()) if finite.size else 0.5
    vmax = float(finite.max()) if finite.size else 1.0
    if vmax - vmin < 1e-3:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax,
                      aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel(column_title.lower())
    ax.set_ylabel(row_title.lower())
    ax.set_title(title, fontsize=10)
    for (r, c), v in np.ndenumerate(values):
        text = f"{v:.3f}" if np.isfinite(v) else (texts[r, c] if texts is not None else "—")
        text = text.replace("did not converge", "did not\nconverge")
        colour = "dimgrey" if not np.isfinite(v) else "white" if v < (vmin + vmax) / 2 else "black"
        weight = "bold" if best == (r, c) else "normal"
        ax.text(c, r, text, ha="center", va="center", color=colour, fontweight=weight)
    if best is not None:
        ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False,
                                   edgecolor="red", linewidth=2, label="best"))
    for r, c in tied:
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="///",
                                   edgecolor="white", linewidth=0))
    if best is not None:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor="none", edgecolor="red", linewidth=2, label="best")]
        if tied:
            handles.append(Patch(facecolor="lightgrey", edgecolor="black", hatch="///",
                                 linewidth=0.5, label="tied with the best"))
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False,
                   handleheight=1.4)
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout(rect=(0, 0.07 if best is not None else 0, 1, 1))
    return save_figure(fig, path)


def save_figure(fig, path, tight=False):
    """Save ``fig`` as PNG atomically when ``path`` is given; return the figure.
    ``tight``: crop to what is drawn (labels outside the axes included)."""
    if path is not None:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight" if tight else None)
        load_pyplot().close(fig)
    return fig


STYLES = ["-", "--", ":", "-."]


def learning_curves(histories: dict[str, pd.DataFrame], path: str | Path | None = None,
                    title: str | None = None, colors: dict[str, int] | None = None,
                    styles: dict[str, int] | None = None,
                    color_names: dict[int, str] | None = None,
                    style_names: dict[int, str] | None = None) -> Figure:
    """Training loss and validation AUC per epoch, one line per run.

    ``histories``: ``{label: DataFrame}`` with columns ``epoch``, ``loss``, ``val_auc``
    (a run's ``history.csv``). ``colors``/``styles``: optional ``{label: index}`` — e.g.
    colour by depth, line style by learning rate — with ``color_names``/``style_names``
    (index → name) for a compact legend of colours and styles instead of one entry per
    run. The best epoch of each run is marked with a dot.
    """
    plt = load_pyplot()
    from matplotlib.lines import Line2D

    cmap = plt.get_cmap("viridis")
    colors = colors or {label: i for i, label in enumerate(histories)}
    styles = styles or {}
    n_colors = max(colors.values(), default=0) + 1

    def colour(index):
        return cmap(index / max(n_colors - 1, 1) * 0.9)

    compact = color_names is not None and style_names is not None
    fig, (left, right) = plt.subplots(1, 2, figsize=(13 if compact else 11, 4.4))
    for label, frame in histories.items():
        c, style = colour(colors[label]), STYLES[styles.get(label, 0) % len(STYLES)]
        left.plot(frame["epoch"], frame["loss"], style, color=c, label=label)
        right.plot(frame["epoch"], frame["val_auc"], style, color=c, label=label)
        auc = frame["val_auc"].to_numpy(dtype=float)
        if np.isfinite(auc).any():
            best = int(np.nanargmax(auc))
            right.plot(frame["epoch"].iloc[best], auc[best], "o", color=c, markersize=4)
    left.set(xlabel="epoch", ylabel="training loss (binary cross-entropy)", title="training loss")
    losses = np.concatenate([f["loss"].to_numpy(dtype=float) for f in histories.values()] or [[1.0]])
    losses = losses[np.isfinite(losses) & (losses > 0)]
    if losses.size and losses.max() / losses.min() > 20:  # one diverging run hides the rest
        left.set_yscale("log")
        left.set_title("training loss (log scale)")
    right.set(xlabel="epoch", ylabel="validation ROC AUC", title="validation AUC (dot: best epoch)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=10)
    if compact:
        handles = [Line2D([], [], color=colour(i), label=name) for i, name in color_names.items()]
        handles += [Line2D([], [], color="black", linestyle=STYLES[i % len(STYLES)], label=name)
                    for i, name in style_names.items()]
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 0.88, 1))
    else:
        right.legend(fontsize=7, loc="best")
        fig.tight_layout()
    return save_figure(fig, path)


def roc_curves(curves: dict[str, tuple[ArrayLike, ArrayLike]], path: str | Path | None = None,
               title: str | None = None) -> Figure:
    """ROC curves with their AUC: ``{label: (true labels, scores)}``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = load_pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for label, (y, scores) in curves.items():
        y, scores = np.asarray(y), np.asarray(scores, dtype=float)
        if len(np.unique(y)) < 2 or not np.isfinite(scores).all():
            continue
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y, scores):.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=title or "ROC")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def lines_with_bands(series: dict[str, tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]],
                     path: str | Path | None = None, title: str | None = None, xlabel: str = "",
                     ylabel: str = "", logx: bool = False,
                     marks: dict[str, list[tuple[float, float, str]]] | None = None,
                     hlines: dict[str, tuple[float, float, float]] | None = None,
                     target: tuple[float, str] | None = None) -> Figure:
    """One line per series with its band: ``series`` ``{label: (x, mean, low, high)}``
    (arrays; low/high may equal the mean when there is one run). ``marks``: ``{label:
    [(x, y, text)]}`` points to annotate; ``hlines``: ``{label: (y, low, high)}``
    horizontal references (e.g. a model trained from scratch)."""
    plt = load_pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    cmap = plt.get_cmap("viridis")
    for i, (label, (x, mean, low, high)) in enumerate(series.items()):
        colour = cmap(i / max(len(series) - 1, 1) * 0.85)
        ax.plot(x, mean, "o-", color=colour, label=label, markersize=4)
        if np.any(np.asarray(high) > np.asarray(low)):
            ax.fill_between(x, low, high, color=colour, alpha=0.2)
        # labels below and left of their points, one line lower each from the right, with
        # a leader line: neighbouring points' labels do not overlap
        points = sorted((marks or {}).get(label, []), key=lambda m: m[0], reverse=True)
        for k, (px, py, text) in enumerate(points):
            ax.annotate(text, (px, py), textcoords="offset points", xytext=(-8, -16 - 11 * k),
                        ha="right", fontsize=7,
                        arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5})
    for label, (y, low, high) in (hlines or {}).items():
        ax.axhline(y, color="grey", linestyle="--", label=label)
        if high > low:
            ax.axhspan(low, high, color="grey", alpha=0.12)
    if target is not None:
        ax.axhline(target[0], color="red", linestyle=":", label=target[1])
    if logx:
        _log_axis(ax)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def depth_lines(series: dict[str, dict], path: str | Path | None = None,
                title: str | None = None, xlabel: str = "", ylabel: str = "") -> Figure:
    """How deep, across backbones: one line per backbone, ``series`` ``{label: {"x",
    "mean", "low", "high": arrays; "depths": the depth of each point; "best": the index
    of the best point; "legend": the legend's text}}``, x on a log scale.

    Every point is named by its depth, above and left of it (where a line that rises to
    the right leaves room). Points of one line closer than 8 % in x — a ResNet's lower
    stages hold few parameters, so its depths 3–5, 2–5 and 1–5 fall within 1 % of each
    other — are named in a column to their right, one label per point in the order of
    their values, each with a leader line to its point. The best depth is a star and is
    named in the legend (which no axis cuts and no line crosses), not on the plot."""
    plt = load_pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 5.0))
    cmap = plt.get_cmap("viridis")
    lines = []
    for i, (label, line) in enumerate(series.items()):
        colour = cmap(i / max(len(series) - 1, 1) * 0.85)
        x, mean = np.asarray(line["x"], float), np.asarray(line["mean"], float)
        low, high = np.asarray(line["low"], float), np.asarray(line["high"], float)
        order = np.argsort(x, kind="stable")
        x, mean, low, high = x[order], mean[order], low[order], high[order]
        depths = [str(line["depths"][k]) for k in order]
        best = int(np.flatnonzero(order == line["best"])[0])
        ax.plot(x, mean, "o-", color=colour, markersize=4, label=line.get("legend", label))
        ax.plot([x[best]], [mean[best]], "*", color=colour, markersize=14,
                markeredgecolor="black", markeredgewidth=0.6, zorder=5)
        if np.any(high > low):
            ax.fill_between(x, low, high, color=colour, alpha=0.2)
        lines.append((colour, x, mean, depths))
    _log_axis(ax)
    ax.margins(x=0.12, y=0.15)
    bottom, top = ax.get_ylim()
    step = (top - bottom) * 0.045  # a label's height, in the axis' units
    for colour, x, mean, depths in lines:
        groups, start = [], 0
        for k in range(1, len(x) + 1):
            if k == len(x) or x[k] > x[start] * 1.08:
                groups.append(list(range(start, k)))
                start = k
        for members in groups:
            if len(members) == 1:
                k = members[0]
                ax.annotate(depths[k], (x[k], mean[k]), textcoords="offset points",
                            xytext=(-5, 5), ha="right", va="bottom", fontsize=7, color=colour)
                continue
            ranked = sorted(members, key=lambda k: -mean[k])
            centre = float(np.mean(mean[members]))
            column_x = float(x[members].max()) * 1.18
            for rank, k in enumerate(ranked):
                y = centre + ((len(ranked) - 1) / 2 - rank) * step
                ax.annotate(depths[k], (x[k], mean[k]), xytext=(column_x, y),
                            textcoords="data", ha="left", va="center", fontsize=7,
                            color=colour, arrowprops={"arrowstyle": "-", "color": colour,
                                                      "lw": 0.4, "alpha": 0.7,
                                                      "shrinkA": 1, "shrinkB": 2})
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.plot([], [], "*", color="grey", markersize=11, markeredgecolor="black",
            markeredgewidth=0.6, label="best depth of each backbone")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1,
              frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, tight=True)


def _log_axis(ax):
    """A log x axis labelled 1, 2, 5 × 10^k in short numbers (20k, 2M), not 2×10^6."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    low, high = (max(v, 1e-12) for v in ax.get_xlim())
    decades = np.log10(high / low)  # 1, 2, 5 × 10^k on a short axis, powers of ten on a long
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 3 else (1.0,)))
    ax.xaxis.set_major_formatter(EngFormatter(sep="", places=None))
    ax.xaxis.set_minor_formatter(NullFormatter())


def scatter_panels(points: dict[str, tuple[Sequence[float], float, float, float]],
                   xlabels: Sequence[str], ylabel: str, path: str | Path | None = None,
                   title: str | None = None, logx: Sequence[bool] = (True, True)) -> Figure:
    """Side-by-side scatter plots of the same labelled points against different x:
    ``points`` ``{label: ([x per panel], y, low, high)}`` (low/high: the y range)."""
    plt = load_pyplot()
    fig, axes = plt.subplots(1, len(xlabels), figsize=(6 * len(xlabels), 4.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for p, (ax, xlabel) in enumerate(zip(axes[0], xlabels)):
        for i, (label, (xs, y, low, high)) in enumerate(points.items()):
            colour = cmap(i / max(len(points) - 1, 1) * 0.9)
            ax.errorbar([xs[p]], [y], yerr=[[y - low], [high - y]], fmt="o", color=colour,
                        capsize=3, label=label)
            ax.annotate(label, (xs[p], y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if logx[p]:
            _log_axis(ax)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def radar(profiles: dict[str, ArrayLike], axes: Sequence[str], path: str | Path | None = None,
          title: str | None = None) -> Figure:
    """A radar (spider) chart: ``profiles`` ``{label: [value per axis]}`` on ``axes``
    (names), each in [0, 1]; one closed outline per profile."""
    plt = load_pyplot()
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False)
    fig, ax = plt.subplots(figsize=(7.2, 7.4), subplot_kw={"projection": "polar"})
    cmap = plt.get_cmap("viridis")
    for i, (label, values) in enumerate(profiles.items()):
        values = np.asarray(values, dtype=float)
        colour = cmap(i / max(len(profiles) - 1, 1) * 0.9)
        ax.plot(np.r_[angles, angles[:1]], np.r_[values, values[:1]], color=colour, label=label)
        ax.fill(np.r_[angles, angles[:1]], np.r_[values, values[:1]], color=colour, alpha=0.08)
    ax.set_theta_offset(np.pi / 2)  # the first axis at the top, then clockwise
    ax.set_theta_direction(-1)
    ax.set_xticks(angles, axes)
    for label, angle in zip(ax.get_xticklabels(), angles):
        side = np.sin(angle)  # right of the centre > 0 (clockwise from the top)
        label.set_horizontalalignment("left" if side > 0.1 else "right" if side < -0.1 else "center")
    ax.tick_params(axis="x", pad=8)
    ax.set_rlabel_position(np.degrees(angles[1]) / 2)  # between the first two axes
    finite = np.concatenate([np.asarray(v, dtype=float) for v in profiles.values()])
    finite = finite[np.isfinite(finite)]
    low = max(0.0, np.floor((finite.min() if finite.size else 0.0) * 10) / 10 - 0.1)
    ax.set_ylim(low, 1.0)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(3, len(profiles)),
              fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, tight=True)


def cost_vs_depth(frame: pd.DataFrame, path: str | Path | None = None,
                  title: str | None = None) -> Figure:
    """Trainable parameters (bars) and time per training step (line) at each depth.

    ``frame``: rows of :func:`kandel_repro.measure.cost.depth_costs` — ``backbone``, ``blocks``
    (depth label), ``trainable_parameters``, ``seconds_per_step``; one panel per
    backbone, depths from the top block only (left) to the whole network (right).
    """
    plt = load_pyplot()
    backbones = list(dict.fromkeys(frame["backbone"]))
    fig, axes = plt.subplots(1, len(backbones), figsize=(4.6 * len(backbones), 4), squeeze=False)
    for ax, name in zip(axes[0], backbones):
        rows = frame[frame["backbone"] == name]
        x = np.arange(len(rows))
        ax.bar(x, rows["trainable_parameters"] / 1e6, color="tab:blue", alpha=0.6)
        ax.set_xticks(x, rows["blocks"], rotation=45 if len(rows) > 6 else 0, fontsize=8)
        ax.set(xlabel="fine-tuned blocks", title=name)
        ax.set_ylabel("trainable parameters (millions)", color="tab:blue")
        twin = ax.twinx()
        twin.plot(x, rows["seconds_per_step"] * 1e3, "o-", color="tab:red")
        twin.set_ylabel("ms per training step", color="tab:red")
        twin.set_ylim(bottom=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_matrix_figure(counts: ArrayLike, classes: Sequence[str], title: str,
                            path: str | Path | None = None) -> Figure:
    """A confusion matrix: rows the true class, columns the predicted one; each cell its
    count and its share of the true class (the colour), so rare classes read as well as
    common ones."""
    plt = load_pyplot()
    counts = np.asarray(counts, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 1.2 + 0.6 * len(classes))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    for (r, c), share in np.ndenumerate(shares):
        ax.text(c, r, f"{int(counts[r, c])}\n{share:.0%}", ha="center", va="center",
                fontsize=8, color="white" if share > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="share of the true class")
    return save_figure(fig, path, tight=True)

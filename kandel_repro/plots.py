"""Figures: the depth × learning-rate heatmap of a table."""
from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def heatmap(values, row_labels, col_labels, title, metric, path=None, best=None, texts=None,
            row_title="fine-tuned blocks"):
    """Draw a grid of AUCs (NaN = nothing to show), annotate each cell, mark the best.

    ``texts`` overrides the annotation of each cell (e.g. "failed", "did not converge").

    Returns the matplotlib Figure; saves it as PNG when ``path`` is given.
    """
    plt = _pyplot()
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(col_labels), 1.2 + 0.55 * len(row_labels)))
    finite = values[np.isfinite(values)]
    vmin = float(finite.min()) if finite.size else 0.5
    vmax = float(finite.max()) if finite.size else 1.0
    if vmax - vmin < 1e-3:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax,
                      aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(row_title.lower())
    ax.set_title(title, fontsize=10)
    for (r, c), v in np.ndenumerate(values):
        text = f"{v:.3f}" if np.isfinite(v) else (texts[r, c] if texts is not None else "—")
        text = text.replace("did not converge", "did not\nconverge")
        colour = "white" if not np.isfinite(v) or v < (vmin + vmax) / 2 else "black"
        weight = "bold" if best == (r, c) else "normal"
        ax.text(c, r, text, ha="center", va="center", color=colour, fontweight=weight)
    if best is not None:
        ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False,
                                   edgecolor="red", linewidth=2))
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    if path is not None:
        from .runio import atomic_path

        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
    return fig

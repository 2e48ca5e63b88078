"""What each cell of a table cost to train, and the cheapest of the cells tied with the best.

A cell's cost comes from its runs' own records: the epochs run (``metrics.json``), the
seconds spent training (``history.csv``'s ``train_seconds``, evaluation left out) and the
trainable parameters (per epoch where a strategy changes them, else the run's). Seconds
and epochs are given relative to the whole network fine-tuned block-wise at the same
learning rate (the paper's deepest cell: the reference a strategy must beat on cost),
measured on the same machine as the table's other runs. ``<study>_cost.png`` draws the
metric against that relative cost: each strategy a point with its interval, the
block-wise cells as the reference cloud.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runs import rundir

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

# NOTE: a table is report.collect's Table, not imported here (the import chain's length)
Table = Any


def cell_costs(table: Table) -> pd.DataFrame:
    """One row per cell with a finished run: ``row``, ``column``, ``epochs``,
    ``train_seconds``, ``trainable_parameters`` (mean over its seeds; per-epoch counts
    averaged over the epochs), ``block_wise`` (a depth of the blocks strategy) and, where
    the whole network's block-wise cell of that column has run, ``relative_seconds`` and
    ``relative_epochs``."""
    import pandas as pd

    rows = []
    for level in table.study.rows:
        for column in table.study.columns:
            cell = (level.label, column.label)
            epochs, seconds, parameters = [], [], []
            for name in table.evidence.runs.get(cell, {}).values():
                metrics = rundir.read_metrics(table.runs_dir / name) or {}
                history = _history(table.runs_dir / name)
                if history is None or metrics.get("status") != "ok":
                    continue
                epochs.append(float(metrics.get("epochs_run", len(history))))
                seconds.append(float(history["train_seconds"].sum()))
                per_epoch = history.get("trainable_parameters")
                parameters.append(float(per_epoch.mean()) if per_epoch is not None
                                  else float(metrics.get("trainable_parameters", np.nan)))
            if epochs:
                rows.append({"row": level.label, "column": column.label,
                             "block_wise": level.settings.get("strategy", "blocks") == "blocks",
                             "first_trainable_block": level.settings.get("first_trainable_block"),
                             "epochs": np.mean(epochs), "train_seconds": np.mean(seconds),
                             "trainable_parameters": np.mean(parameters)})
    frame = pd.DataFrame(rows, columns=["row", "column", "block_wise", "first_trainable_block",
                                        "epochs", "train_seconds", "trainable_parameters"])
    whole = frame[frame["block_wise"] & (frame["first_trainable_block"] == 1)]
    reference = dict(zip(whole["column"], zip(whole["train_seconds"], whole["epochs"])))
    frame["relative_seconds"] = [s / reference[c][0] if c in reference else np.nan
                                 for s, c in zip(frame["train_seconds"], frame["column"])]
    frame["relative_epochs"] = [e / reference[c][1] if c in reference else np.nan
                                for e, c in zip(frame["epochs"], frame["column"])]
    return frame


def _history(run: Path):
    import pandas as pd

    path = run / rundir.HISTORY
    if not path.is_file():
        return None
    history = pd.read_csv(path)
    return history if "train_seconds" in history else None


def search_cost(table: Table) -> dict | None:
    """What a grid searched by successive halving spent against the full grid, or None
    where no run was stopped by a search: ``epochs`` and ``seconds`` spent (training
    only), the full grid's ``full_epochs`` and ``full_seconds``, ``stopped``, ``finished``
    and ``unfinished`` runs (paused, or not run: the search is not over), ``mean_epochs`` of
    the finished. A stopped run's share of the full grid is estimated: the finished runs'
    mean epochs (at least the epochs it ran), each at its own epoch time — its epochs after
    the first where it ran more than one (the first includes tracing)."""
    frame = table.frame
    if not (frame["status"] == "stopped").any():
        return None
    spent, finished, stopped = [0.0, 0.0], [], []
    for _, run in frame.iterrows():
        history = _history(table.runs_dir / run["run"])
        if history is None or run["status"] not in ("ok", "stopped"):
            continue
        if run["status"] == "stopped":
            history = history.head(int(run["stopped_at_epoch"]))
        seconds = history["train_seconds"]
        epochs = len(history)
        spent[0] += epochs
        spent[1] += float(seconds.sum())
        steady = float(seconds.iloc[1:].mean() if epochs > 1 else seconds.mean())
        (finished if run["status"] == "ok" else stopped).append(
            (epochs, float(seconds.sum()), steady))
    if not finished:
        return None
    mean_epochs = float(np.mean([e for e, _, _ in finished]))
    full_epochs = sum(e for e, _, _ in finished) + sum(max(e, mean_epochs) for e, _, _ in stopped)
    full_seconds = sum(s for _, s, _ in finished) + sum(
        s + epoch_seconds * max(mean_epochs - e, 0) for e, s, epoch_seconds in stopped)
    return {"epochs": spent[0], "seconds": spent[1], "full_epochs": full_epochs,
            "full_seconds": full_seconds, "stopped": len(stopped), "finished": len(finished),
            "unfinished": int(frame["status"].isin(("missing", "failed")).sum()),
            "mean_epochs": mean_epochs}


def cheapest_tied(table: Table, costs: pd.DataFrame) -> tuple[tuple[str, str] | None, str]:
    """The cheapest (fewest training seconds) of the best cell and the cells tied with it,
    and a sentence saying so; ``(None, why)`` where ties cannot be told."""
    best, _, tied = table.evidence.ties()
    if best is None:
        return None, "no run has finished"
    if any(value is None for value in tied.values()):
        return None, "the ties with the best cell are not assessable"
    candidates = [best] + [cell for cell, value in tied.items() if value]
    seconds = {(r, c): s for r, c, s in zip(costs["row"], costs["column"], costs["train_seconds"])}
    known = [cell for cell in candidates if cell in seconds]
    if not known:
        return None, "no cost is recorded for the best cell or its ties"
    cheapest = min(known, key=seconds.get)
    relative = dict(zip(zip(costs["row"], costs["column"]), costs["relative_seconds"]))
    share = relative.get(cheapest)
    cost = (f"{seconds[cheapest]:.0f} s of training"
            + (f", {share:.2f}× the whole network's block-wise run" if share == share else ""))
    return cheapest, (f"of the {len(candidates)} cell(s) tied with the best "
                      f"({best[0]} at {best[1]}), the cheapest is {cheapest[0]} at "
                      f"{cheapest[1]} ({cost})")


def cost_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_cost.png``: the metric (with its interval) against the training seconds
    relative to the whole network's block-wise run; strategies labelled, block-wise cells
    grey; only for studies whose rows mix strategies with block-wise depths."""
    costs = cell_costs(table)
    if costs.empty or costs["block_wise"].all() or costs["relative_seconds"].isna().all():
        return None
    import matplotlib.pyplot as plt

    cells = table.cells.set_index(["row", "column"])
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for _, cost in costs.iterrows():
        key = (cost["row"], cost["column"])
        if key not in cells.index or not np.isfinite(cost["relative_seconds"]):
            continue
        cell = cells.loc[key]
        low, high = cell.get("ci_low", np.nan), cell.get("ci_high", np.nan)
        error = None if not (np.isfinite(low) and np.isfinite(high)) else \
            [[cell["mean"] - low], [high - cell["mean"]]]
        style = dict(color="0.6", marker="s", ms=4) if cost["block_wise"] else \
            dict(color="tab:blue", marker="o", ms=6)
        ax.errorbar(cost["relative_seconds"], cell["mean"], yerr=error, capsize=2,
                    lw=0.8, **style)
        ax.annotate(f"{cost['row']} @ {cost['column']}", (cost["relative_seconds"], cell["mean"]),
                    fontsize=6 if cost["block_wise"] else 7, xytext=(4, 3),
                    textcoords="offset points", color="0.45" if cost["block_wise"] else "black")
    ax.set_xlabel("training seconds ÷ the whole network's block-wise run (same learning rate)")
    ax.set_ylabel(table.metric.replace("_auc", " ROC AUC").replace("_", " "))
    title = textwrap.fill(table.study.title, 80)
    ax.set_title(f"{title}\nquality against cost (grey: the block-wise depths)", fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
        plt.close(figure)
    return figure


def scales_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_scales.png``: which blocks a per-tensor strategy (Auto-RGN) chose to
    move — the mean rate scale of each block's tensors at each epoch, one panel per cell
    whose runs logged them (seed 0's run)."""
    panels = []
    for level in table.study.rows:
        if level.settings.get("strategy") != "auto-rgn":
            continue
        for column in table.study.columns:
            runs = table.evidence.runs.get((level.label, column.label), {})
            history = _history(table.runs_dir / runs[min(runs)]) if runs else None
            if history is None:
                continue
            blocks = sorted((c for c in history.columns if c.startswith("scale_block")),
                            key=lambda c: int(c.removeprefix("scale_block")))
            if blocks:
                panels.append((f"{level.label} @ {column.label}", history, blocks))
    if not panels:
        return None
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, history, blocks) in zip(axes[0], panels):
        values = history[blocks].to_numpy(float).T  # blocks × epochs
        image = ax.imshow(values, aspect="auto", cmap="viridis", origin="lower",
                          extent=(0.5, len(history) + 0.5, 0.5, len(blocks) + 0.5))
        ax.set_xlabel("epoch")
        ax.set_ylabel("block (1: nearest the input)")
        ax.set_title(f"{title}: mean rate scale per block", fontsize=8)
        figure.colorbar(image, ax=ax, fraction=0.046)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
        plt.close(figure)
    return figure

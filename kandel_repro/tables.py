"""Tables: aggregate a sweep's run folders into Markdown, CSV and a heatmap.

Tables are generated, never edited by hand. A cell shows the Kaggle private test AUC
when every finished run of the table has been scored by Kaggle, otherwise the
validation ROC AUC of the best epoch; the header says which. The header also states the
data set, the weights and every setting that differs from the paper, and the paper's
own findings (its text, no invented numbers) stand below the grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .backbones import depth_label, get_backbone
from .grid import get_sweep
from .protocol import FINDINGS, deviations
from .runio import write_csv, write_text
from .train import read_run

METRICS = {
    "kaggle_private_auc": "Kaggle private test ROC AUC",
    "val_auc": "validation ROC AUC of the best epoch (80/20 split; the Kaggle test AUC is not recorded)",
}


def collect(sweep_name, runs_dir):
    """One row per cell of the sweep: status, AUCs and run facts, as a DataFrame."""
    import pandas as pd

    sweep = get_sweep(sweep_name)
    num_blocks = get_backbone(sweep.backbone).num_blocks
    rows, configs = [], []
    for name, first, lr in sweep.cells():
        config, metrics, error = read_run(Path(runs_dir) / name)
        status = "ok" if metrics else ("failed" if error else "missing")
        metrics = metrics or {}
        rows.append({
            "table": sweep.name, "run": name, "blocks": depth_label(first, num_blocks),
            "first_trainable_block": first, "learning_rate": lr, "status": status,
            "val_auc": metrics.get("val_auc"),
            "synthetic_test_auc": metrics.get("synthetic_test_auc"),
            "kaggle_public_auc": metrics.get("kaggle_public_auc"),
            "kaggle_private_auc": metrics.get("kaggle_private_auc"),
            "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
            "wall_seconds": metrics.get("wall_seconds"),
            "train_images_per_second": metrics.get("train_images_per_second"),
            "error": (error or {}).get("error"),
        })
        if config and status == "ok":
            configs.append(config)
    frame = pd.DataFrame(rows)
    return frame, configs


def choose_metric(frame):
    done = frame[frame["status"] == "ok"]
    if len(done) and done["kaggle_private_auc"].notna().all():
        return "kaggle_private_auc"
    return "val_auc"


def _fmt_lr(lr):
    return f"{lr:.0e}".replace("e-0", "e-")


def _describe_data(configs):
    if not configs:
        return "no finished run yet"
    c = configs[0]
    kind = ("synthetic PCam-like set made by `kandel-repro data synthetic` — not the Kaggle data"
            if c.get("dataset") == "synthetic" else
            "Kaggle Histopathologic Cancer Detection (PCam)")
    return (f"{kind}; {c['n_train']:,} training / {c['n_val']:,} validation / "
            f"{c['n_test']:,} test images, {c['image_size']}×{c['image_size']} pixels")


def _deviations(configs):
    seen = []
    for config in configs:
        seen += [line for line in deviations(config) if line not in seen]
    return seen


def _caveat(configs):
    """``"synthetic data and random weights (no ImageNet)"`` or ``""`` for the paper's setup."""
    flags = (("synthetic data", any(c.get("dataset") == "synthetic" for c in configs)),
             ("random weights (no ImageNet)", any(c.get("weights") == "none" for c in configs)))
    return " and ".join(text for text, flag in flags if flag)


def grid_values(frame, sweep, metric):
    num_blocks = get_backbone(sweep.backbone).num_blocks
    rows = [depth_label(d, num_blocks) for d in sweep.depths]
    values = np.full((len(rows), len(sweep.learning_rates)), np.nan)
    for _, row in frame.iterrows():
        if row["status"] == "ok" and row[metric] is not None and np.isfinite(row[metric]):
            r = sweep.depths.index(row["first_trainable_block"])
            c = sweep.learning_rates.index(row["learning_rate"])
            values[r, c] = row[metric]
    return rows, values


def render_markdown(sweep_name, frame, configs, command):
    sweep = get_sweep(sweep_name)
    metric = choose_metric(frame)
    rows, values = grid_values(frame, sweep, metric)
    best = np.unravel_index(np.nanargmax(values), values.shape) if np.isfinite(values).any() else None
    lines = [f"# {sweep.title}: fine-tuned blocks × learning rate", ""]
    caveat = _caveat(configs)
    if caveat:
        lines += [f"> **Made from {caveat}: not comparable to the paper.**", ""]
    weights = sorted({c.get("weights") for c in configs}) or ["—"]
    devs = _deviations(configs)
    done = int((frame["status"] == "ok").sum())
    lines += [
        f"- Data: {_describe_data(configs)}",
        f"- Backbone: {sweep.backbone}; weights: {', '.join(weights)}",
        f"- Metric: {METRICS[metric]}",
        f"- Runs finished: {done} of {len(frame)}",
        "- Settings that differ from the paper:" + ("" if devs else " none"),
    ]
    lines += [f"  - {d}" for d in devs]
    lines += [f"- Made by: `{command}`", ""]
    header = ["Fine-tuned blocks"] + [_fmt_lr(lr) for lr in sweep.learning_rates]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    statuses = {(r["first_trainable_block"], r["learning_rate"]): r["status"]
                for _, r in frame.iterrows()}
    for r, label in enumerate(rows):
        cells = [label]
        for c, lr in enumerate(sweep.learning_rates):
            status = statuses[(sweep.depths[r], lr)]
            if status == "ok" and np.isfinite(values[r, c]):
                text = f"{values[r, c]:.4f}"
                cells.append(f"**{text}**" if best == (r, c) else text)
            else:
                cells.append({"failed": "failed", "missing": "—"}.get(status, "n/a"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if best is not None:
        lines.append(f"Best cell in bold: blocks {rows[best[0]]} at learning rate "
                     f"{_fmt_lr(sweep.learning_rates[best[1]])}.")
    lines.append("`—`: not run yet; `failed`: the run raised (its error is in the CSV).")
    lines += ["", "## The paper's findings for this table (its text)", ""]
    lines += [f"- {f}" for f in FINDINGS.get(sweep.name, [])]
    lines.append("")
    return "\n".join(lines)


def write_table(sweep_name, runs_dir, out_dir="tables", command=None):
    """Write ``<table>.md``, ``<table>.csv`` and ``<table>_heatmap.png``; return their paths."""
    from .plots import heatmap

    sweep = get_sweep(sweep_name)
    frame, configs = collect(sweep_name, runs_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = command or f"kandel-repro table {sweep_name} --runs {runs_dir} --out {out_dir}"
    md = out_dir / f"{sweep.name}.md"
    csv = out_dir / f"{sweep.name}.csv"
    png = out_dir / f"{sweep.name}_heatmap.png"
    write_text(md, render_markdown(sweep_name, frame, configs, command))
    metric = choose_metric(frame)
    write_csv(csv, frame.assign(metric=metric))
    rows, values = grid_values(frame, sweep, metric)
    best = np.unravel_index(np.nanargmax(values), values.shape) if np.isfinite(values).any() else None
    caveat = _caveat(configs)
    title = sweep.title + (f"\n{caveat}" if caveat else "")
    heatmap(values, rows, [_fmt_lr(lr) for lr in sweep.learning_rates], title,
            "validation AUC" if metric == "val_auc" else "Kaggle private AUC", png,
            best=tuple(int(i) for i in best) if best is not None else None)
    return md, csv, png

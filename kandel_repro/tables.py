"""Tables: aggregate a sweep's run folders into Markdown, CSV and a heatmap.

Tables are generated, never edited by hand. On PCam a cell shows the Kaggle private
test AUC when every finished run of the table has been scored by Kaggle, otherwise the
validation ROC AUC of the best epoch; on BreakHis it shows the AUC on the held-out
10 % test split, as the paper does. The header says which, and states the data set,
the weights and every setting that differs from the paper; the paper's own findings
(its text, no invented numbers) stand below the grid. In Table 5 a run that did not
converge (rule in :data:`kandel_repro.protocol.NOT_CONVERGED_BELOW_AUC`) is shown as
such, not as a number.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .grid import get_sweep
from .protocol import FINDINGS, NOT_CONVERGED_BELOW_AUC, deviations
from .runio import write_csv, write_text
from .train import read_run

METRICS = {
    "kaggle_private_auc": ("Kaggle private-leaderboard test ROC AUC, scored by Kaggle "
                           "(`kandel-repro submit`; the public score is in the CSV)"),
    "val_auc": ("validation ROC AUC of the best epoch (80/20 split; the Kaggle test AUC is "
                "shown once every run is scored: `kandel-repro submit`)"),
    "test_auc": "ROC AUC on the held-out 10 % test split, model of the best validation epoch",
}
SHORT = {"kaggle_private_auc": "Kaggle private AUC", "val_auc": "validation AUC",
         "test_auc": "test AUC"}


def _converged(metrics):
    auc = metrics.get("val_auc")
    return (auc is not None and np.isfinite(auc) and auc >= NOT_CONVERGED_BELOW_AUC
            and metrics.get("stopped_reason") != "non-finite loss")


def collect(sweep_name, runs_dir):
    """One row per cell of the sweep: status, AUCs and run facts, as a DataFrame."""
    import pandas as pd

    sweep = get_sweep(sweep_name)
    rows, configs = [], []
    for cell in sweep.cells():
        config, metrics, error = read_run(Path(runs_dir) / cell.name)
        status = "ok" if metrics else ("failed" if error else "missing")
        metrics = metrics or {}
        rows.append({
            "table": sweep.name, "run": cell.name, "row": cell.row, "backbone": cell.backbone,
            "first_trainable_block": cell.first_trainable_block,
            "learning_rate": cell.learning_rate, "status": status,
            "converged": _converged(metrics) if status == "ok" else None,
            **{key: metrics.get(key) for key in (
                "val_auc", "test_auc", "synthetic_test_auc", "kaggle_public_auc",
                "kaggle_private_auc", "best_epoch", "epochs_run", "stopped_reason",
                "wall_seconds", "train_images_per_second")},
            "error": (error or {}).get("error"),
        })
        if config and status == "ok":
            configs.append(config)
    return pd.DataFrame(rows), configs


def choose_metric(frame, sweep):
    if sweep.dataset == "breakhis":
        return "test_auc"
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
    synthetic = str(c.get("dataset", "")).startswith("synthetic")
    if c.get("protocol") == "breakhis":
        kind = ("synthetic BreakHis-like set made by `kandel-repro data synthetic-breakhis` — "
                "not BreakHis" if synthetic else "BreakHis")
        extra = (f"; magnification {c.get('magnification')}, {c.get('split')}-level split, "
                 f"resized to")
    else:
        kind = ("synthetic PCam-like set made by `kandel-repro data synthetic` — not the "
                "Kaggle data" if synthetic else "Kaggle Histopathologic Cancer Detection (PCam)")
        extra = ","
    return (f"{kind}; {c['n_train']:,} training / {c['n_val']:,} validation / "
            f"{c['n_test']:,} test images{extra} {c['image_size']}×{c['image_size']} pixels")


def _deviations(configs, sweep=None):
    """Differences from the paper's protocol; a table's own fixed settings (Table 5's
    random weights) are the paper's experiment, not a deviation."""
    fixed = sweep.fixed_settings() if sweep is not None else {}
    seen = []
    for config in configs:
        lines = deviations(config)
        seen += [line for line in lines if line.split(":")[0] not in fixed and line not in seen]
    return seen


def _caveat(configs, sweep=None):
    """``"synthetic data and random weights (no ImageNet)"`` or ``""`` for the paper's setup."""
    scratch = sweep is not None and sweep.scratch
    flags = (("synthetic data", any(str(c.get("dataset", "")).startswith("synthetic") for c in configs)),
             ("random weights (no ImageNet)",
              not scratch and any(c.get("weights") == "none" for c in configs)))
    return " and ".join(text for text, flag in flags if flag)


AUGMENT_NAMES = {
    "fast": "fused in-graph transform (ImageDataGenerator's distributions, parity-tested)",
    "imagedatagenerator": "Keras ImageDataGenerator (the paper's pipeline)",
}


def _computed_with(configs):
    """How the runs were computed: augmentation implementation, precision, device."""
    def values(key, default):
        return sorted({str(c.get(key, default)) for c in configs})

    # NOTE: runs made before --augment existed used ImageDataGenerator.
    augment = [AUGMENT_NAMES.get(v, v) for v in values("augment", "imagedatagenerator")]
    return (f"augmentation by {' and '.join(augment)}; precision "
            f"{', '.join(values('precision', 'float32'))}; device: "
            f"{'; '.join(values('device', 'not recorded'))}")


def grid_values(frame, sweep, metric):
    """``(row labels, values, cell texts)``; NaN where there is no number to show."""
    labels = [row for row, _, _ in sweep.rows()]
    values = np.full((len(labels), len(sweep.learning_rates)), np.nan)
    texts = np.full(values.shape, "—", dtype=object)
    for _, row in frame.iterrows():
        r = labels.index(row["row"])
        c = sweep.learning_rates.index(row["learning_rate"])
        value = row[metric]
        if row["status"] == "failed":
            texts[r, c] = "failed"
        elif row["status"] != "ok":
            continue
        elif sweep.scratch and not row["converged"]:
            texts[r, c] = "did not converge"
        elif value is None or not np.isfinite(value):
            texts[r, c] = "n/a"
        else:
            values[r, c] = value
            texts[r, c] = f"{value:.4f}"
    return labels, values, texts


def best_cell(values):
    """``(row, column)`` of the highest value, or None when nothing is finite."""
    if not np.isfinite(values).any():
        return None
    return tuple(int(i) for i in np.unravel_index(np.nanargmax(values), values.shape))


def render_markdown(sweep_name, frame, configs, command):
    sweep = get_sweep(sweep_name)
    metric = choose_metric(frame, sweep)
    rows, values, texts = grid_values(frame, sweep, metric)
    best = best_cell(values)
    lines = [f"# {sweep.title}: {sweep.row_header.lower()} × learning rate", ""]
    caveat = _caveat(configs, sweep)
    if caveat:
        lines += [f"> **Made from {caveat}: not comparable to the paper.**", ""]
    weights = sorted({c.get("weights") for c in configs}) or ["—"]
    devs = _deviations(configs, sweep)
    done = int((frame["status"] == "ok").sum())
    lines += [
        f"- Data: {_describe_data(configs)}",
        f"- Backbone: {', '.join(sweep.backbones)}; weights: {', '.join(weights)}",
        f"- Metric: {METRICS[metric]}",
        f"- Runs finished: {done} of {len(frame)}",
    ]
    if sweep.scratch:
        lines.append(f"- \"did not converge\": best validation AUC below "
                     f"{NOT_CONVERGED_BELOW_AUC} or a non-finite loss")
    lines.append("- Settings that differ from the paper:" + ("" if devs else " none"))
    lines += [f"  - {d}" for d in devs]
    if configs:
        lines.append(f"- Computed with: {_computed_with(configs)}")
    lines += [f"- Made by: `{command}`", ""]
    header = [sweep.row_header] + [_fmt_lr(lr) for lr in sweep.learning_rates]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r, label in enumerate(rows):
        cells = [f"**{t}**" if best == (r, c) else str(t) for c, t in enumerate(texts[r])]
        lines.append("| " + " | ".join([label] + cells) + " |")
    lines.append("")
    if best is not None:
        what = rows[best[0]] if sweep.scratch else f"blocks {rows[best[0]]}"
        lines.append(f"Best cell in bold: {what} at learning rate "
                     f"{_fmt_lr(sweep.learning_rates[best[1]])}.")
    lines.append("`—`: not run yet; `failed`: the run raised (its error is in the CSV).")
    lines += ["", "## The paper's findings for this table (its text)", ""]
    lines += [f"- {f}" for f in FINDINGS.get(sweep.name, [])]
    lines.append("")
    return "\n".join(lines)


def _row_name(sweep, row):
    return row if sweep.scratch else f"blocks {row}"


def run_histories(sweep_name, runs_dir):
    """``({label: history DataFrame}, {label: colour index}, {label: style index})`` of
    the finished runs: colour by row (depth or architecture), line style by learning
    rate (see :func:`curve_legend` for the names)."""
    import pandas as pd

    sweep = get_sweep(sweep_name)
    rows = [row for row, _, _ in sweep.rows()]
    histories, colors, styles = {}, {}, {}
    for cell in sweep.cells():
        path = Path(runs_dir) / cell.name / "history.csv"
        if not (Path(runs_dir) / cell.name / "metrics.json").exists() or not path.exists():
            continue
        label = f"{_row_name(sweep, cell.row)}, lr {_fmt_lr(cell.learning_rate)}"
        histories[label] = pd.read_csv(path)
        colors[label] = rows.index(cell.row)
        styles[label] = sweep.learning_rates.index(cell.learning_rate)
    return histories, colors, styles


def curve_legend(sweep_name):
    """``(colour index → row name, style index → learning rate)`` for learning_curves."""
    sweep = get_sweep(sweep_name)
    rows = {i: _row_name(sweep, row) for i, (row, _, _) in enumerate(sweep.rows())}
    return rows, {i: f"lr {_fmt_lr(lr)}" for i, lr in enumerate(sweep.learning_rates)}


def best_cell_predictions(sweep_name, runs_dir, frame=None):
    """``{label: (labels, scores)}``: per learning rate, the predictions of the cell with
    the best validation AUC — on the validation split (PCam, whose test labels are
    hidden) or the held-out test split (BreakHis). ``frame``: :func:`collect`'s, when
    the caller has it already."""
    import pandas as pd

    sweep = get_sweep(sweep_name)
    if frame is None:
        frame, _ = collect(sweep_name, runs_dir)
    done = frame[frame["status"] == "ok"].dropna(subset=["val_auc"])
    name = "test_predictions.csv" if sweep.dataset == "breakhis" else "val_predictions.csv"
    curves = {}
    for lr in sweep.learning_rates:
        cells = done[done["learning_rate"] == lr]
        if cells.empty:
            continue
        best = cells.loc[cells["val_auc"].idxmax()]
        predictions = pd.read_csv(Path(runs_dir) / best["run"] / name)
        curves[f"lr {_fmt_lr(lr)}: {_row_name(sweep, best['row'])}"] = (predictions["label"], predictions["prediction"])
    return curves


def write_figures(sweep_name, runs_dir, out_dir, frame, caveat=""):
    """``<table>_curves.png`` and ``<table>_roc.png`` (when a run has finished)."""
    from .plots import learning_curves, roc_curves

    sweep = get_sweep(sweep_name)
    out_dir = Path(out_dir)
    histories, colors, styles = run_histories(sweep_name, runs_dir)
    if not histories:
        return []
    suffix = f"\n{caveat}" if caveat else ""
    curves_png = out_dir / f"{sweep.name}_curves.png"
    color_names, style_names = curve_legend(sweep_name)
    learning_curves(histories, curves_png, title=f"{sweep.title}: every finished run{suffix}",
                    colors=colors, styles=styles, color_names=color_names,
                    style_names=style_names)
    split = "held-out test split" if sweep.dataset == "breakhis" else "validation split"
    roc_png = out_dir / f"{sweep.name}_roc.png"
    roc_curves(best_cell_predictions(sweep_name, runs_dir, frame), roc_png,
               title=f"{sweep.name}: best cell per learning rate (by validation AUC),\n"
                     f"ROC on the {split}{suffix}")
    return [curves_png, roc_png]


def table_heatmap(sweep_name, frame, configs, path=None):
    """The table's grid as a heatmap (best cell framed; caveats in the title)."""
    from .plots import heatmap

    sweep = get_sweep(sweep_name)
    metric = choose_metric(frame, sweep)
    rows, values, texts = grid_values(frame, sweep, metric)
    caveat = _caveat(configs, sweep)
    return heatmap(values, rows, [_fmt_lr(lr) for lr in sweep.learning_rates],
                   sweep.title + (f"\n{caveat}" if caveat else ""), SHORT[metric], path,
                   best=best_cell(values), texts=texts, row_title=sweep.row_header)


def write_table(sweep_name, runs_dir, out_dir="tables", command=None):
    """Write ``<table>.md``, ``<table>.csv``, ``<table>_heatmap.png`` and, once a run has
    finished, ``<table>_curves.png`` and ``<table>_roc.png``; return their paths."""
    sweep = get_sweep(sweep_name)
    frame, configs = collect(sweep_name, runs_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = command or f"kandel-repro table {sweep_name} --runs {runs_dir} --out {out_dir}"
    md = out_dir / f"{sweep.name}.md"
    csv = out_dir / f"{sweep.name}.csv"
    png = out_dir / f"{sweep.name}_heatmap.png"
    write_text(md, render_markdown(sweep_name, frame, configs, command))
    write_csv(csv, frame.assign(metric=choose_metric(frame, sweep)))
    table_heatmap(sweep_name, frame, configs, png)
    return [md, csv, png,
            *write_figures(sweep_name, runs_dir, out_dir, frame, _caveat(configs, sweep))]

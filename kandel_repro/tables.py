"""Tables: a study's run folders aggregated into Markdown, CSV and figures.

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

from . import rundir
from .data.readers import get_reader
from .plots import heatmap, learning_curves, roc_curves
from .protocol import NOT_CONVERGED_BELOW_AUC, deviations
from .errors import ConfigError
from .runio import check_writable, write_csv, write_text
from .studies import get_study

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


def collect(study_name, runs_dir):
    """One row per run of the study: status, AUCs and run facts, as a DataFrame; and
    the configs of the finished runs.

    Refuses (:class:`~kandel_repro.errors.ConfigError`) a folder whose finished runs
    were made with different experiment settings (other data, epochs, seed…): one table
    is one experiment, as :func:`kandel_repro.grid.run_grid` keeps it.
    """
    import pandas as pd

    study = get_study(study_name)
    rows, configs, named = [], [], {}
    for cell in study.cells():
        run = rundir.read_run(Path(runs_dir) / cell.name)
        metrics = run.metrics or {}
        rows.append({
            "table": study.name, "run": cell.name, "row": cell.row.label,
            "column": cell.column.label, "backbone": cell.backbone,
            "first_trainable_block": cell.first_trainable_block,
            "learning_rate": cell.learning_rate, "status": run.status,
            "converged": _converged(metrics) if run.status == "ok" else None,
            **{key: metrics.get(key) for key in (
                "val_auc", "test_auc", "synthetic_test_auc", "kaggle_public_auc",
                "kaggle_private_auc", "best_epoch", "epochs_run", "stopped_reason",
                "wall_seconds", "train_images_per_second")},
            "error": (run.error or {}).get("error"),
        })
        if run.config and run.status == "ok":
            configs.append(run.config)
            named[cell.name] = run.config
    _refuse_mixed(study, runs_dir, named)
    return pd.DataFrame(rows), configs


def _refuse_mixed(study, runs_dir, configs):
    mixed = rundir.mixed_settings(configs, varied=study.varied_keys)
    if not mixed:
        return

    def runs(names):
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    lines = [f"  - {key}: " + "; ".join(f"{value} in {runs(names)}" for value, names in values.items())
             for key, values in mixed.items()]
    raise ConfigError(f"{runs_dir} mixes runs made with different settings, which one table "
                      "must not show together:\n" + "\n".join(lines) + "\nKeep each experiment "
                      "in its own --runs folder (or retrain the odd runs: grid … --rerun).")


def choose_metric(frame, study):
    """The column a table shows: the test AUC where the data set's test split is
    labelled; on Kaggle's PCam the private-leaderboard AUC once every finished run is
    scored, else the validation AUC."""
    if get_reader(study.dataset).labelled_test:
        return "test_auc"
    done = frame[frame["status"] == "ok"]
    if len(done) and done["kaggle_private_auc"].notna().all():
        return "kaggle_private_auc"
    return "val_auc"


def _describe_data(configs):
    if not configs:
        return "no finished run yet"
    c = configs[0]
    synthetic = c.get("synthetic", False)
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


def _deviations(configs, study=None):
    """Differences from the paper's protocol; a study's own fixed settings (Table 5's
    random weights) are the experiment, not a deviation."""
    fixed = study.fixed if study is not None else {}
    seen = []
    for config in configs:
        lines = deviations(config)
        seen += [line for line in lines if line.split(":")[0] not in fixed and line not in seen]
    return seen


def _caveat(configs, study=None):
    """``"synthetic data and random weights (no ImageNet)"`` or ``""`` for the paper's setup."""
    random_by_design = study is not None and study.fixed.get("weights") == "none"
    flags = (("synthetic data", any(c.get("synthetic", False) for c in configs)),
             ("random weights (no ImageNet)",
              not random_by_design and any(c.get("weights") == "none" for c in configs)))
    return " and ".join(text for text, flag in flags if flag)


AUGMENTER_NAMES = {
    "fast": "fused in-graph transform (ImageDataGenerator's distributions, parity-tested)",
    "imagedatagenerator": "Keras ImageDataGenerator (the paper's pipeline)",
}


def _computed_with(configs):
    """How the runs were computed: augmentation implementation, precision, device."""
    def values(key, default):
        return sorted({str(c.get(key, default)) for c in configs})

    # NOTE: runs made before the augmenter was recorded used ImageDataGenerator.
    augment = [AUGMENTER_NAMES.get(v, v) for v in values("augmenter", "imagedatagenerator")]
    return (f"augmentation by {' and '.join(augment)}; precision "
            f"{', '.join(values('precision', 'float32'))}; device: "
            f"{'; '.join(values('device', 'not recorded'))}")


def grid_values(frame, study, metric):
    """``(row labels, values, cell texts)``; NaN where there is no number to show."""
    rows = [level.label for level in study.rows]
    columns = [level.label for level in study.columns]
    values = np.full((len(rows), len(columns)), np.nan)
    texts = np.full(values.shape, "—", dtype=object)
    for _, row in frame.iterrows():
        r, c = rows.index(row["row"]), columns.index(row["column"])
        value = row[metric]
        if row["status"] == "failed":
            texts[r, c] = "failed"
        elif row["status"] != "ok":
            continue
        elif study.marks_non_convergence and not row["converged"]:
            texts[r, c] = "did not converge"
        elif value is None or not np.isfinite(value):
            texts[r, c] = "n/a"
        else:
            values[r, c] = value
            texts[r, c] = f"{value:.4f}"
    return rows, values, texts


def best_cell(values):
    """``(row, column)`` of the highest value, or None when nothing is finite."""
    if not np.isfinite(values).any():
        return None
    return tuple(int(i) for i in np.unravel_index(np.nanargmax(values), values.shape))


def render_markdown(study_name, frame, configs, command):
    study = get_study(study_name)
    metric = choose_metric(frame, study)
    rows, values, texts = grid_values(frame, study, metric)
    best = best_cell(values)
    lines = [f"# {study.title}: {study.row_header.lower()} × {study.column_header.lower()}", ""]
    caveat = _caveat(configs, study)
    if caveat:
        lines += [f"> **Made from {caveat}: not comparable to the paper.**", ""]
    weights = sorted({c.get("weights") for c in configs}) or ["—"]
    devs = _deviations(configs, study)
    done = int((frame["status"] == "ok").sum())
    lines += [
        f"- Data: {_describe_data(configs)}",
        f"- Backbone: {', '.join(study.backbones)}; weights: {', '.join(weights)}",
        f"- Metric: {METRICS[metric]}",
        f"- Runs finished: {done} of {len(frame)}",
    ]
    if study.marks_non_convergence:
        lines.append(f"- \"did not converge\": best validation AUC below "
                     f"{NOT_CONVERGED_BELOW_AUC} or a non-finite loss")
    lines.append("- Settings that differ from the paper:" + ("" if devs else " none"))
    lines += [f"  - {d}" for d in devs]
    if configs:
        lines.append(f"- Computed with: {_computed_with(configs)}")
    lines += [f"- Made by: `{command}`", ""]
    header = [study.row_header] + [level.label for level in study.columns]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r, label in enumerate(rows):
        cells = [f"**{t}**" if best == (r, c) else str(t) for c, t in enumerate(texts[r])]
        lines.append("| " + " | ".join([label] + cells) + " |")
    lines.append("")
    if best is not None:
        lines.append(f"Best cell in bold: {study.rows[best[0]].name} at "
                     f"{study.column_header.lower()} {study.columns[best[1]].label}.")
    lines.append("`—`: not run yet; `failed`: the run raised (its error is in the CSV).")
    lines += ["", "## The paper's findings for this table (its text)", ""]
    lines += [f"- {f}" for f in study.findings]
    lines.append("")
    return "\n".join(lines)


def run_histories(study_name, runs_dir):
    """``({label: history DataFrame}, {label: colour index}, {label: style index})`` of
    the finished runs: colour by row (depth or architecture), line style by column
    (learning rate; see :func:`curve_legend` for the names)."""
    import pandas as pd

    study = get_study(study_name)
    histories, colors, styles = {}, {}, {}
    for cell in study.cells():
        run_dir = Path(runs_dir) / cell.name
        if not rundir.is_finished(run_dir) or not (run_dir / rundir.HISTORY).exists():
            continue
        histories[cell.description] = pd.read_csv(run_dir / rundir.HISTORY)
        colors[cell.description] = study.rows.index(cell.row)
        styles[cell.description] = study.columns.index(cell.column)
    return histories, colors, styles


def curve_legend(study_name):
    """``(colour index → row name, style index → column name)`` for learning_curves."""
    study = get_study(study_name)
    return ({i: level.name for i, level in enumerate(study.rows)},
            {i: level.name for i, level in enumerate(study.columns)})


def best_cell_predictions(study_name, runs_dir, frame=None):
    """``{label: (labels, scores)}``: per column (learning rate), the predictions of the
    cell with the best validation AUC — on the held-out test split where the data set's
    test split is labelled (BreakHis), else on the validation split (Kaggle's PCam, whose
    test labels are hidden). ``frame``: :func:`collect`'s, when the caller has it."""
    import pandas as pd

    study = get_study(study_name)
    if frame is None:
        frame, _ = collect(study_name, runs_dir)
    name = (rundir.TEST_PREDICTIONS if get_reader(study.dataset).labelled_test
            else rundir.VAL_PREDICTIONS)
    done = frame[frame["status"] == "ok"].dropna(subset=["val_auc"])
    done = done[done["run"].map(lambda run: (Path(runs_dir) / run / name).is_file()).astype(bool)]
    rows = {level.label: level for level in study.rows}
    curves = {}
    for column in study.columns:
        cells = done[done["column"] == column.label]
        if cells.empty:
            continue
        best = cells.loc[cells["val_auc"].idxmax()]
        predictions = pd.read_csv(Path(runs_dir) / best["run"] / name)
        curves[f"{column.name}: {rows[best['row']].name}"] = (predictions["label"],
                                                             predictions["prediction"])
    return curves


def table_heatmap(study_name, frame, configs, path=None):
    """The study's grid as a heatmap (best cell framed; caveats in the title)."""
    study = get_study(study_name)
    metric = choose_metric(frame, study)
    rows, values, texts = grid_values(frame, study, metric)
    caveat = _caveat(configs, study)
    return heatmap(values, rows, [level.label for level in study.columns],
                   study.title + (f"\n{caveat}" if caveat else ""), SHORT[metric], path,
                   best=best_cell(values), texts=texts, row_title=study.row_header,
                   column_title=study.column_header)


def curves_figure(study_name, runs_dir, frame, configs, path):
    """``<study>_curves.png``: training loss and validation AUC of every finished run."""
    study = get_study(study_name)
    histories, colors, styles = run_histories(study_name, runs_dir)
    if not histories:
        return None
    color_names, style_names = curve_legend(study_name)
    caveat = _caveat(configs, study)
    return learning_curves(histories, path, title=f"{study.title}: every finished run"
                           + (f"\n{caveat}" if caveat else ""), colors=colors, styles=styles,
                           color_names=color_names, style_names=style_names)


def roc_figure(study_name, runs_dir, frame, configs, path):
    """``<study>_roc.png``: ROC curves of the best cell of each column."""
    study = get_study(study_name)
    curves = best_cell_predictions(study_name, runs_dir, frame)
    if not curves:
        return None
    split = ("held-out test split" if get_reader(study.dataset).labelled_test
             else "validation split")
    caveat = _caveat(configs, study)
    return roc_curves(curves, path, title=f"{study.name}: best cell per "
                      f"{study.column_header.lower()} (by validation AUC),\nROC on the {split}"
                      + (f"\n{caveat}" if caveat else ""))


# The figures a study can ask for (Study.figures): name → function(study name, runs
# folder, collect()'s frame and configs, path) returning the figure, or None when there
# is nothing to draw yet.
FIGURES = {
    "heatmap": lambda name, runs_dir, frame, configs, path: table_heatmap(name, frame, configs, path),
    "curves": curves_figure,
    "roc": roc_figure,
}


def write_table(study_name, runs_dir, out_dir="tables", command=None, log=print):
    """Write ``<study>.md``, ``<study>.csv`` and the study's figures
    (``<study>_<figure>.png``: a figure with nothing to draw yet is left out); return
    the paths written."""
    study = get_study(study_name)
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ConfigError(f"{runs_dir} is not a folder: give --runs the folder of "
                          f"{study.name}'s run folders (e.g. runs/{study.name})")
    names = [cell.name for cell in study.cells()]
    if not any((runs_dir / name).is_dir() for name in names):
        raise ConfigError(f"{runs_dir} holds no run of {study.name} (its run folders are named "
                          f"like {names[0]}); is it another study's folder?")
    frame, configs = collect(study_name, runs_dir)
    for _, row in frame[frame["status"] == "failed"].iterrows():
        log(f"{row['run']}: failed ({row['error']}); shown as failed")
    out_dir = check_writable(out_dir, "--out")
    command = command or f"kandel-repro table {study_name} --runs {runs_dir} --out {out_dir}"
    md = out_dir / f"{study.name}.md"
    csv = out_dir / f"{study.name}.csv"
    write_text(md, render_markdown(study_name, frame, configs, command))
    write_csv(csv, frame.assign(metric=choose_metric(frame, study)))
    written = [md, csv]
    for figure in study.figures:
        path = out_dir / f"{study.name}_{figure}.png"
        if FIGURES[figure](study_name, runs_dir, frame, configs, path) is not None:
            written.append(path)
    return written

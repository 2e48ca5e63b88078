"""The figures of a :class:`~kandel_repro.report.collect.Table`, one function each, named in
:data:`FIGURES` (the names a study's ``figures`` lists), and what the figures of curves read
from the run folders (:func:`run_histories`, :func:`best_cell_predictions`)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.stats import MEASURES, TABLE_RULE
from ..models.backbones import get_backbone
from ..readers.registry import get_reader
from ..runs import rundir
from ..studies.types import Study
from .collect import SHORT, TARGET_SHARE, TIED_MARK, Table
from .costs import cost_figure, scales_figure
from .plots import (confusion_matrix_figure, depth_lines, heatmap, learning_curves,
                    lines_with_bands, radar, roc_curves, scatter_panels)

if TYPE_CHECKING:  # NOTE: annotations only; matplotlib loads when a figure is drawn
    import pandas as pd
    from matplotlib.figure import Figure


def run_histories(table: Table
                  ) -> tuple[dict[str, pd.DataFrame], dict[str, int], dict[str, int]]:
    """``({label: history DataFrame}, {label: colour index}, {label: style index})`` of
    the finished runs: colour by row (depth or architecture), line style by column
    (learning rate; see :func:`curve_legend` for the names)."""
    import pandas as pd

    study = table.study
    rows = [level.label for level in study.rows]
    columns = [level.label for level in study.columns]
    histories, colors, styles = {}, {}, {}
    for _, run in table.frame[table.frame["status"] == "ok"].iterrows():
        path = table.runs_dir / run["run"] / rundir.HISTORY
        if not path.exists():
            continue
        label = (f"{study.rows[rows.index(run['row'])].phrase}, "
                 f"{study.columns[columns.index(run['column'])].phrase}"
                 + (f", seed {run['seed']}" if len(table.seeds) > 1 else ""))
        histories[label] = pd.read_csv(path)
        colors[label] = rows.index(run["row"])
        styles[label] = columns.index(run["column"])
    return histories, colors, styles


def best_cell_predictions(table: Table) -> dict[str, tuple[pd.Series, pd.Series]]:
    """``{label: (labels, scores)}``: per column (learning rate), the predictions of the
    cell with the best mean, of its first seed — on the held-out test split where the
    data set's test split is labelled (BreakHis), else on the validation split (Kaggle's
    PCam, whose test labels are hidden)."""
    import pandas as pd

    name = (rundir.TEST_PREDICTIONS if get_reader(table.dataset).labelled_test
            else rundir.VAL_PREDICTIONS)
    curves = {}
    for column in table.study.columns:
        cells = [c for c in table.evidence.cells() if c[1] == column.label]
        ranked = sorted(cells, key=table.evidence.mean, reverse=True)
        for cell in ranked:
            run = table.evidence.runs[cell][min(table.evidence.values[cell])]
            path = table.runs_dir / run / name
            if path.is_file():
                predictions = pd.read_csv(path)
                label = f"{column.phrase}: {table.study.rows[table.position(cell)[0]].phrase}"
                curves[label] = (predictions["label"], predictions["prediction"])
                break
    return curves


def curve_legend(study: Study) -> tuple[dict[int, str], dict[int, str]]:
    """``(colour index → row name, style index → column name)`` for learning_curves."""
    return ({i: level.phrase for i, level in enumerate(study.rows)},
            {i: level.phrase for i, level in enumerate(study.columns)})


def table_heatmap(table: Table, path: str | Path | None = None) -> Figure:
    """The study's grid as a heatmap (best cell framed, tied cells hatched; caveats in
    the title)."""
    study = table.study
    values, texts = table.texts
    tied = [table.position((c["row"], c["column"])) for _, c in table.cells.iterrows()
            if c["tied_with_best"]]
    seeds = f" (mean of {len(table.seeds)} seeds)" if len(table.seeds) > 1 else ""
    return heatmap(values, [level.label for level in study.rows],
                   [level.label for level in study.columns],
                   study.title + seeds + table.caveat,
                   SHORT[table.metric], path,
                   best=None if table.best is None else table.position(table.best),
                   texts=np.vectorize(_short_text)(texts), row_title=study.row_header,
                   column_title=study.column_header, tied=tied)


def _short_text(text):
    """A heatmap cell without the CI or spread (the colour shows the mean)."""
    return re.sub(r"\s*[\[(].*$", "", str(text).replace("**", "")).replace(f" {TIED_MARK}", "")


def curves_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_curves.png``: training loss and validation AUC of every finished run."""
    histories, colors, styles = run_histories(table)
    if not histories:
        return None
    color_names, style_names = curve_legend(table.study)
    return learning_curves(histories, path, title=f"{table.study.title}: every finished run"
                           + table.caveat, colors=colors, styles=styles,
                           color_names=color_names, style_names=style_names)


def roc_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_roc.png``: ROC curves of the best cell of each column (binary runs; a
    multi-class table shows its best cell's confusion matrix instead)."""
    if table.multiclass:
        return None
    curves = best_cell_predictions(table)
    if not curves:
        return None
    split = ("held-out test split" if get_reader(table.dataset).labelled_test
             else "validation split")
    return roc_curves(curves, path, title=f"{table.study.name}: best cell per "
                      f"{table.study.column_header.lower()} (by mean {SHORT[table.metric]}),"
                      f"\nROC on the {split}" + table.caveat)


def radar_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_radar.png``: the best cell of each row (each depth, or each backbone)
    on six measures — AUC, and accuracy, sensitivity, specificity, precision and F1 at
    the threshold of Youden's J chosen on the validation split (means over seeds)."""
    frame = table.frame[table.frame["status"] == "ok"]
    if table.multiclass:
        keys, names = list(MULTICLASS_MEASURES), list(MULTICLASS_MEASURES.values())
        rule = "prediction: the most probable class"
    else:
        keys = [f"{m}_{TABLE_RULE}" for m in MEASURES]
        names = [m.capitalize() if m != "f1" else "F1" for m in MEASURES]
        rule = "threshold: Youden's J on the validation split"
    if frame.empty or not set(keys) <= set(frame.columns):
        return None
    profiles = {}
    for level in table.study.rows:
        cells = [c for c in table.evidence.cells() if c[0] == level.label]
        best = table.evidence.best(cells)
        if best is None:
            continue
        runs = frame[(frame["row"] == best[0]) & (frame["column"] == best[1])]
        numbers = runs[keys].astype(float)
        if numbers.isna().all().all():
            continue
        profiles[table.describe(best)] = [table.evidence.mean(best)] + list(numbers.mean())
    if not profiles:
        return None
    split = frame["measures_split"].dropna().iloc[0] if "measures_split" in frame else "validation"
    return radar(profiles, [SHORT[table.metric]] + names, path,
                 title=f"{table.study.title}: the best cell of each row\n{split} split; "
                       f"{rule}" + table.caveat)


# The measures a multi-class radar shows (core.bootstrap.multiclass_summary's keys).
MULTICLASS_MEASURES = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
                       "macro_f1": "Macro F1"}


def confusion_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_confusion.png``: the confusion matrix of the best cell (its first seed)
    on the split its measures are taken on (the labelled test split where there is
    one): the most probable class for k ≥ 3 classes; for two, the threshold of Youden's
    J chosen on the validation split."""
    import numpy as np

    if table.best is None:
        return None
    seed = min(table.evidence.values[table.best])
    run = table.runs_dir / table.evidence.runs[table.best][seed]
    name = (rundir.TEST_PREDICTIONS if get_reader(table.dataset).labelled_test
            else rundir.VAL_PREDICTIONS)
    if not (run / name).is_file():
        return None
    _, labels, scores = rundir.read_predictions(run / name)
    classes = table.classes
    if scores.ndim == 2:
        predicted = np.argmax(scores, axis=1)
        rule = "the most probable class"
    else:
        cut = (rundir.read_metrics(run) or {}).get("youden_threshold", 0.5)
        predicted = (scores >= cut).astype(int)
        rule = f"threshold {cut:.3g} (Youden's J on the validation split)"
    k = max(len(classes), int(np.max(labels)) + 1, int(np.max(predicted)) + 1)
    classes = classes + [str(i) for i in range(len(classes), k)]
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (np.asarray(labels, dtype=int), predicted), 1)
    split = "test" if name == rundir.TEST_PREDICTIONS else "validation"
    return confusion_matrix_figure(
        counts, classes, path=path,
        title=f"{table.study.title}\nbest cell: {table.describe(table.best)}"
              f"{f', seed {seed}' if len(table.seeds) > 1 else ''}; {split} split; "
              f"prediction: {rule}" + table.caveat)


def depth_comparison(tables: Sequence[Table]) -> pd.DataFrame:
    """The depth study of several backbones side by side: per backbone and depth, the
    trainable parameters (as its runs record them) and the metric of the depth's best
    learning rate (mean, min and max over its seeds); ``best_depth`` marks each
    backbone's best depth."""
    import pandas as pd

    rows = []
    for table in tables:
        backbone = table.study.backbones[0]
        for level in table.study.rows:
            cells = [c for c in table.evidence.cells() if c[0] == level.label]
            best = table.evidence.best(cells)
            if best is None:
                continue
            runs = table.evidence.runs[best]
            parameters = [(rundir.read_metrics(table.runs_dir / run) or {}).get(
                "trainable_parameters") for run in runs.values()]
            parameters = [p for p in parameters if p]
            values = list(table.evidence.values[best].values())
            rows.append({"backbone": backbone, "depth": level.label,
                         "first_trainable_block": level.settings.get("first_trainable_block"),
                         "trainable_parameters": parameters[0] if parameters else np.nan,
                         "learning_rate": best[1], "metric": table.metric,
                         "mean": float(np.mean(values)), "min": float(np.min(values)),
                         "max": float(np.max(values)), "n": len(values)})
    frame = pd.DataFrame(rows, columns=["backbone", "depth", "first_trainable_block",
                                        "trainable_parameters", "learning_rate", "metric",
                                        "mean", "min", "max", "n"])
    frame["best_depth"] = (frame["mean"] == frame.groupby("backbone")["mean"].transform("max")
                           if len(frame) else [])
    return frame


def backbones_figure(frame: pd.DataFrame, path: str | Path | None,
                     tables: Sequence[Table]) -> Figure | None:
    """``<study>_backbones.png``: how deep, across backbones — the metric of each depth's
    best learning rate against the depth's trainable parameters (log scale), one line
    per backbone (min–max over seeds as a band), each backbone's best depth marked."""
    frame = frame.dropna(subset=["trainable_parameters"])
    if frame.empty:
        return None
    series = {}
    for backbone, rows in frame.groupby("backbone", sort=False):
        rows = rows.reset_index(drop=True)
        label = get_backbone(backbone).application
        best = int(np.flatnonzero(rows["best_depth"].to_numpy(bool))[0])
        series[label] = {
            "x": rows["trainable_parameters"].to_numpy(float), "mean": rows["mean"].to_numpy(),
            "low": rows["min"].to_numpy(), "high": rows["max"].to_numpy(),
            "depths": [str(d) for d in rows["depth"]], "best": best,
            "legend": f"{label} — best: blocks {rows['depth'][best]} at "
                      f"{rows['learning_rate'][best]} ({rows['mean'][best]:.4f})"}
    table = tables[0]
    return depth_lines(series, path,
                       xlabel="trainable parameters (fine-tuning from block k to the top; "
                              "points named by their blocks)",
                       ylabel=f"{SHORT[table.metric]} (best learning rate per depth)",
                       title=f"How deeply to fine-tune, across backbones — "
                             f"{table.dataset} data" + table.caveat)


def _band(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), values.min(), values.max()


def params_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_params.png`` (layer-wise depth): the metric against the trainable
    parameters of each depth, block-wise depths marked, from scratch as a reference."""
    frame = table.frame[table.frame["status"] == "ok"]
    if "first_trainable_layer" not in table.study.varied_keys or frame.empty:
        return None
    params = {}
    for cell in table.study.cells():
        runs = table.runs_dir
        for seed, name in table.evidence.runs.get((cell.row.label, cell.column.label), {}).items():
            metrics = rundir.read_metrics(runs / name) or {}
            if metrics.get("trainable_parameters"):
                params[(cell.row.label, cell.column.label)] = metrics["trainable_parameters"]
    series, marks, hlines = {}, {}, {}
    for column in table.study.columns:
        points = []
        for level in table.study.rows:
            cell = (level.label, column.label)
            values = list(table.evidence.values.get(cell, {}).values())
            if not values or cell not in params:
                continue
            if "weights" in level.settings:  # from scratch: a reference, not a depth
                hlines[f"{level.phrase}, {column.phrase}"] = _band(values)
                continue
            mean, low, high = _band(values)
            points.append((params[cell], mean, low, high, level.phrase))
        if points:
            points.sort()
            x, mean, low, high, names = (list(v) for v in zip(*points))
            label = column.phrase
            series[label] = (x, mean, low, high)
            marks[label] = [(px, py, n.split("= ")[1]) for px, py, n in zip(x, mean, names)
                            if "= " in n]
    if not series:
        return None
    return lines_with_bands(series, path, title=f"{table.study.title}\n{SHORT[table.metric]} "
                            "against trainable parameters (block-wise depths named)"
                            + table.caveat,
                            xlabel="trainable parameters", ylabel=SHORT[table.metric],
                            logx=True, marks=marks, hlines=hlines)


def datasize_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_datasize.png``: the metric against the training images, one line per
    model (fine-tuned, from scratch), the band spanning the seeds."""
    frame = table.frame[table.frame["status"] == "ok"]
    if "train_fraction" not in table.study.varied_keys or frame.empty:
        return None
    sizes = {}
    for config in table.configs:
        sizes.setdefault(config.get("train_fraction", 1.0), config.get("n_train"))
    series = {}
    for column in table.study.columns:
        points = []
        for level in table.study.rows:
            values = list(table.evidence.values.get((level.label, column.label), {}).values())
            images = sizes.get(level.settings["train_fraction"])
            if values and images:
                points.append((images, *_band(values)))
        if points:
            points.sort()
            series[column.phrase] = tuple(list(v) for v in zip(*points))
    if not series:
        return None
    seeds = f", band: min–max of {len(table.seeds)} seeds" if len(table.seeds) > 1 else ""
    return lines_with_bands(series, path, title=f"{table.study.title}\n{SHORT[table.metric]} "
                            f"against training images (validation split unchanged{seeds})"
                            + table.caveat,
                            xlabel="training images", ylabel=SHORT[table.metric], logx=True)


def smallnets_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_small-nets.png``: each network's metric (mean, min–max over seeds)
    against its trainable parameters and against its training time per epoch."""
    points = {}
    for level in table.study.rows:
        for column in table.study.columns:
            cell = (level.label, column.label)
            values = list(table.evidence.values.get(cell, {}).values())
            names = list(table.evidence.runs.get(cell, {}).values())
            if not values:
                continue
            params, seconds = [], []
            for name in names:
                metrics = rundir.read_metrics(table.runs_dir / name) or {}
                config = rundir.read_config(table.runs_dir / name) or {}
                if metrics.get("trainable_parameters") and metrics.get("train_images_per_second"):
                    params.append(metrics["trainable_parameters"])
                    seconds.append(config.get("n_train", 0) / metrics["train_images_per_second"])
            if params:
                points[level.label] = ([np.mean(params), np.mean(seconds)], *_band(values))
    if not points:
        return None
    return scatter_panels(points, ["trainable parameters", "seconds per training epoch"],
                          SHORT[table.metric], path,
                          title=f"{table.study.title}: {SHORT[table.metric]} against size and "
                                "time (bars: min–max over seeds)"
                                + table.caveat)


def convergence_figure(table: Table, path: str | Path | None) -> Figure | None:
    """``<study>_convergence.png``: validation AUC per epoch, one line per row (e.g. an
    initialisation), the band spanning the seeds."""
    import pandas as pd

    series = {}
    for level in table.study.rows:
        curves = []
        for column in table.study.columns:
            for name in table.evidence.runs.get((level.label, column.label), {}).values():
                path_ = table.runs_dir / name / rundir.HISTORY
                if path_.exists():
                    curves.append(pd.read_csv(path_)["val_auc"].to_numpy(dtype=float))
        if not curves:
            continue
        epochs = min(len(c) for c in curves)
        stacked = np.stack([c[:epochs] for c in curves])
        series[level.phrase] = (np.arange(1, epochs + 1), stacked.mean(0), stacked.min(0),
                              stacked.max(0))
    if not series:
        return None
    seeds = f" (band: min–max of {len(table.seeds)} seeds)" if len(table.seeds) > 1 else ""
    target, _ = table.to_target
    return lines_with_bands(series, path, title=f"{table.study.title}\nvalidation AUC per "
                            f"epoch{seeds}" + table.caveat,
                            xlabel="epoch", ylabel="validation AUC",
                            target=None if target is None else (
                                target, f"target: {TARGET_SHARE:g} × the full transfer's best"))


# The figures a study can ask for (Study.figures): name → function(table, path) returning
# the figure, or None when there is nothing to draw yet.
FIGURES = {"heatmap": table_heatmap, "curves": curves_figure, "roc": roc_figure,
           "radar": radar_figure, "params": params_figure, "datasize": datasize_figure,
           "convergence": convergence_figure, "small-nets": smallnets_figure,
           "confusion": confusion_figure, "cost": cost_figure, "scales": scales_figure}

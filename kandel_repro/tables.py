"""Tables: a study's run folders aggregated into Markdown, CSV and figures.

Tables are generated, never edited by hand. A table is assembled once from the run
folders (:func:`assemble`): one row per run (cell × seed), one summary per cell over its
seeds, the best cell and the cells tied with it (:mod:`kandel_repro.compare`), and the
paper's findings with this grid's verdict. On PCam a cell shows the Kaggle private test
AUC when every finished run has been scored by Kaggle, otherwise the validation ROC AUC
of the best epoch; on BreakHis the AUC on the held-out 10 % test split, as the paper
does. The header says which, and states the data set, the weights, the seeds and every
setting that differs from the paper; the paper's own findings (its text, no invented
numbers) stand below the grid. In Table 5 a run that did not converge (rule in
:data:`kandel_repro.protocol.NOT_CONVERGED_BELOW_AUC`) is shown as such, not as a
number.

Files: ``<study>.md``; ``<study>.csv`` (one row per run, unrounded); ``<study>_cells.csv``
(one row per cell: n, mean, sd, min, max, CI, best, tied, p-values against the best per
seed); the figures of :data:`FIGURES`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rundir
from .backbones import get_backbone
from .compare import Evidence, verdict
from .data.readers import get_reader
from .errors import ConfigError
from .plots import heatmap, learning_curves, lines_with_bands, radar, roc_curves, scatter_panels
from .protocol import NOT_CONVERGED_BELOW_AUC, deviations
from .runio import check_writable, write_csv, write_text
from .stats import MEASURES, TABLE_RULE, run_summary
from .studies import get_study, parse_seeds, run_name, seed_of

METRICS = {
    "kaggle_private_auc": ("Kaggle private-leaderboard test ROC AUC, scored by Kaggle "
                           "(`kandel-repro submit`; the public score is in the CSV)"),
    "val_auc": ("validation ROC AUC of the best epoch (80/20 split; the Kaggle test AUC is "
                "shown once every run is scored: `kandel-repro submit`)"),
    "test_auc": "ROC AUC on the held-out test split, model of the best validation epoch",
}
SHORT = {"kaggle_private_auc": "Kaggle private AUC", "val_auc": "validation AUC",
         "test_auc": "test AUC"}
FACTS = ("val_auc", "test_auc", "synthetic_test_auc", "kaggle_public_auc", "kaggle_private_auc",
         "best_epoch", "epochs_run", "stopped_reason", "wall_seconds", "train_images_per_second")
TIED_MARK = "≈"


def _converged(metrics):
    auc = metrics.get("val_auc")
    return (auc is not None and np.isfinite(auc) and auc >= NOT_CONVERGED_BELOW_AUC
            and metrics.get("stopped_reason") != "non-finite loss")


def _summary(run_dir, metrics, labelled_test):
    """The run's CIs and threshold measures: as recorded, or (runs made before they were)
    computed from its prediction files; {} when those are missing."""
    if "val_auc_ci" in metrics:
        return {k: v for k, v in metrics.items()
                if k.endswith("_ci") or k.endswith(("_t05", "_youden")) or k in (
                    "youden_threshold", "measures_split")}
    import pandas as pd

    try:
        val = pd.read_csv(run_dir / rundir.VAL_PREDICTIONS)
        test = pd.read_csv(run_dir / rundir.TEST_PREDICTIONS) if labelled_test else None
        return run_summary(val["label"], val["prediction"],
                           None if test is None else test["label"],
                           None if test is None else test["prediction"])
    except (OSError, ValueError, KeyError):
        return {}


def _flat(summary):
    """CI pairs as two columns each, for the CSV."""
    out = {}
    for key, value in summary.items():
        if key.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
            out[f"{key}_low"], out[f"{key}_high"] = value
        else:
            out[key] = value
    return out


def collect(study_name, runs_dir, seeds=None):
    """One row per run of the study (cell × seed; the seeds found in ``runs_dir``, or
    ``seeds``): status, AUCs, CIs, measures and run facts, as a DataFrame; and the
    configs of the finished runs.

    Refuses (:class:`~kandel_repro.errors.ConfigError`) a folder whose finished runs
    were made with different experiment settings (other data, epochs, split…): one
    table is one experiment, as :func:`kandel_repro.grid.run_grid` keeps it.
    """
    import pandas as pd

    study = get_study(study_name)
    runs_dir = Path(runs_dir)
    seeds = _seeds(study, runs_dir, seeds)
    rows, configs, named = [], [], {}
    for seed in seeds:
        for cell in study.cells():
            name = run_name(cell, seed)
            run = rundir.read_run(runs_dir / name)
            metrics = run.metrics or {}
            labelled = get_reader((run.config or {}).get("dataset") or study.dataset).labelled_test
            summary = _summary(runs_dir / name, metrics, labelled) if run.metrics else {}
            rows.append({
                "table": study.name, "run": name, "row": cell.row.label,
                "column": cell.column.label, "seed": seed, "backbone": cell.backbone,
                "first_trainable_block": cell.first_trainable_block, **_layer(study, cell),
                "learning_rate": cell.learning_rate, "status": run.status,
                "converged": _converged(metrics) if run.status == "ok" else None,
                **{key: metrics.get(key) for key in FACTS}, **_flat(summary),
                "error": (run.error or {}).get("error"),
            })
            if run.config and run.status == "ok":
                # NOTE: what the study sets for this run (its cell's settings) is the
                # experiment, not a deviation from the paper; tables read it from here.
                configs.append(dict(run.config, _set_by_study=frozenset(cell.settings)))
                named[name] = run.config
    _refuse_mixed(study, runs_dir, named)
    return pd.DataFrame(rows), configs


def _layer(study, cell):
    """A layer-wise study's column: the first trainable layer of the cell's runs (one
    more than the backbone's layers: the head only; a row fine-tuned by blocks gives its
    first block's first layer)."""
    if "first_trainable_layer" not in study.varied_keys:
        return {}
    layer = cell.settings.get("first_trainable_layer")
    if layer is None:
        layer = 1 + sum(get_backbone(cell.backbone).block_layers[:cell.first_trainable_block - 1])
    return {"first_trainable_layer": layer}


def _seeds(study, runs_dir, seeds):
    if seeds is not None:
        return parse_seeds(seeds)
    return found_seeds(study, runs_dir) or (0,)


def found_seeds(study, runs_dir):
    """The seeds of which ``runs_dir`` holds a run folder of ``study`` (sorted)."""
    found = set()
    runs_dir = Path(runs_dir)
    if runs_dir.is_dir():
        names = [entry.name for entry in runs_dir.iterdir() if entry.is_dir()]
        for cell in study.cells():
            found |= {s for s in (seed_of(cell, n) for n in names) if s is not None}
    return tuple(sorted(found))


def _present_seeds(study, runs_dir, seeds, log):
    """``--seeds`` less the seeds with no run folder in ``runs_dir`` (named in a line);
    refused when none of them has one."""
    if seeds is None:
        return None
    asked = parse_seeds(seeds)
    found = found_seeds(study, runs_dir)
    absent = [s for s in asked if s not in found]
    if len(absent) == len(asked):
        raise ConfigError(f"--seeds {_listed(seeds)}: {runs_dir} holds no run of {study.name} "
                          f"with seed {', '.join(map(str, absent))}; its runs have seed "
                          f"{', '.join(map(str, found))}")
    if absent:
        log(f"--seeds {_listed(seeds)}: no run of seed {', '.join(map(str, absent))} in "
            f"{runs_dir}; the table shows seed {', '.join(str(s) for s in asked if s in found)}")
    return tuple(s for s in asked if s in found)


def _listed(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _refuse_mixed(study, runs_dir, configs):
    mixed = rundir.mixed_settings(configs, varied=study.varied_keys | {"seed"})
    if not mixed:
        return

    def runs(names):
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    lines = [f"  - {key}: " + "; ".join(f"{value} in {runs(names)}" for value, names in values.items())
             for key, values in mixed.items()]
    raise ConfigError(f"{runs_dir} mixes runs made with different settings, which one table "
                      "must not show together:\n" + "\n".join(lines) + "\nKeep each experiment "
                      "in its own --runs folder (or retrain the odd runs: grid … --rerun).")


def dataset_of(study, configs):
    """The data set the runs read (the study's when no run has finished)."""
    return configs[0].get("dataset") or study.dataset if configs else study.dataset


def choose_metric(frame, study, configs=()):
    """The column a table shows: the test AUC where the data set's test split is
    labelled (BreakHis, the PCam HDF5 release); on Kaggle's PCam the private-leaderboard
    AUC once every finished run is scored, else the validation AUC."""
    if get_reader(dataset_of(study, configs)).labelled_test:
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
    split = c.get("split", "image")
    size = f"{c['image_size']}×{c['image_size']} pixels"
    if c.get("protocol") == "breakhis":
        kind = ("synthetic BreakHis-like set made by `kandel-repro data synthetic-breakhis` — "
                "not BreakHis" if synthetic else "BreakHis")
        parts = [f"resized to {size}", f"magnification {c.get('magnification')}",
                 f"{split}-level split"]
    elif c.get("dataset") == "pcam-h5":
        kind = ("synthetic PCam-like set in the HDF5 release's layout, made by `kandel-repro "
                "data synthetic-h5` — not PCam" if synthetic
                else "PatchCamelyon, the original HDF5 release")
        parts = [size, "the release's own train / valid / test splits (slide-disjoint)"]
    else:
        kind = ("synthetic PCam-like set made by `kandel-repro data synthetic` — not the "
                "Kaggle data" if synthetic else "Kaggle Histopathologic Cancer Detection (PCam)")
        parts = [size, "80/20 split by slide (no slide on both sides; "
                 f"{Path(c.get('wsi_map') or 'patch_id_wsi.csv').name})" if split == "slide"
                 else "random 80/20 split"]
    shares = [f"{c[f'{part}_positive_fraction']:.1%} {part}" for part in ("train", "val", "test")
              if c.get(f"{part}_positive_fraction") is not None]
    if shares:
        parts.append(f"positives: {', '.join(shares)}")
    return (f"{kind}; {c['n_train']:,} training / {c['n_val']:,} validation / "
            f"{c['n_test']:,} test images; " + "; ".join(parts))


def _deviations(configs, study=None):
    """Differences from the paper's protocol; a study's own fixed settings (Table 5's
    random weights) are the experiment, not a deviation, and the seeds of the runs are
    listed on their own line."""
    skip = set(study.fixed if study is not None else ()) | {"seed"}
    seen = []
    for config in configs:
        mine = skip | set(config.get("_set_by_study", ()))
        lines = deviations(config)
        seen += [line for line in lines if line.split(":")[0] not in mine and line not in seen]
    return seen


def _caveat(configs, study=None):
    """``"synthetic data and random weights (no ImageNet)"`` or ``""`` for the paper's setup."""
    def chosen(c):  # the weights the user chose (not those a study's row sets)
        return None if "weights" in c.get("_set_by_study", ()) else c.get("weights")

    sources = sorted({source for c in configs
                      for source in (chosen(c), c.get("weights_from") if chosen(c) == "meanvar"
                                     else None)
                      if source not in (None, "none", "imagenet", "meanvar")})
    flags = (("synthetic data", any(c.get("synthetic", False) for c in configs)),
             ("random weights (no ImageNet)", any(chosen(c) == "none" for c in configs)),
             (f"pretrained weights trained here, not ImageNet's ({', '.join(sources)})",
              bool(sources)))
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


@dataclass
class Table:
    """A study's runs, assembled: ``frame`` (one row per run), ``configs`` (of the
    finished runs), ``cells`` (one row per cell, see :func:`assemble`), the ``metric``
    shown, the ``seeds``, the ``evidence`` the comparisons come from, the ``best``
    cell (row, column) and the verdicts on the paper's ``findings``."""

    study: object
    runs_dir: Path
    frame: object
    configs: list
    cells: object
    metric: str
    seeds: tuple
    evidence: Evidence
    best: tuple
    findings: list

    @property
    def texts(self):
        """``(values, texts)`` arrays in the study's row × column layout."""
        rows = [level.label for level in self.study.rows]
        columns = [level.label for level in self.study.columns]
        values = np.full((len(rows), len(columns)), np.nan)
        texts = np.full(values.shape, "—", dtype=object)
        for _, cell in self.cells.iterrows():
            r, c = rows.index(cell["row"]), columns.index(cell["column"])
            values[r, c] = cell["mean"]
            texts[r, c] = cell["text"]
        return values, texts

    def position(self, cell):
        rows = [level.label for level in self.study.rows]
        columns = [level.label for level in self.study.columns]
        return rows.index(cell[0]), columns.index(cell[1])

    @property
    def dataset(self):
        return dataset_of(self.study, self.configs)

    def name(self, cell):
        """A cell in words: ``blocks 3–5 at 1e-4`` (``1/4, from scratch`` where the
        columns are not learning rates)."""
        rows = {level.label: level for level in self.study.rows}
        if self.study.column_header == "Learning rate":
            return f"{rows[cell[0]].name} at {cell[1]}"
        columns = {level.label: level for level in self.study.columns}
        return f"{rows[cell[0]].name}, {columns[cell[1]].name}"


def assemble(study_name, runs_dir, seeds=None):
    """Read a study's run folders once into a :class:`Table`."""
    import pandas as pd

    study = get_study(study_name)
    frame, configs = collect(study_name, runs_dir, seeds)
    metric = choose_metric(frame, study, configs)
    seeds = tuple(sorted(frame["seed"].unique()))
    values, runs, converged = {}, {}, {}
    for _, run in frame.iterrows():
        cell = (run["row"], run["column"])
        if run["status"] != "ok":
            continue
        runs.setdefault(cell, {})[run["seed"]] = run["run"]
        converged.setdefault(cell, {})[run["seed"]] = bool(run["converged"])
        value = run[metric]
        usable = value is not None and np.isfinite(value)
        if usable and not (study.marks_non_convergence and not run["converged"]):
            values.setdefault(cell, {})[run["seed"]] = float(value)
    split = "test" if metric == "test_auc" else "validation"
    evidence = Evidence(study, runs_dir, values, runs, split, converged)
    best, per_cell, tied = evidence.ties()
    per_seed = evidence.best_per_seed()
    rows = []
    for cell in study.cells():
        key = (cell.row.label, cell.column.label)
        mine = frame[(frame["row"] == key[0]) & (frame["column"] == key[1])]
        numbers = np.array(list(values.get(key, {}).values()), dtype=float)
        ci = [np.nan, np.nan]
        if len(numbers) == 1:
            ci_key = f"{metric}_ci"
            seed = next(iter(values[key]))
            run = mine[mine["seed"] == seed].iloc[0]
            if f"{ci_key}_low" in run and np.isfinite(run.get(f"{ci_key}_low", np.nan)):
                ci = [run[f"{ci_key}_low"], run[f"{ci_key}_high"]]
        row = {
            "table": study.name, "row": key[0], "column": key[1], "backbone": cell.backbone,
            "first_trainable_block": cell.first_trainable_block,
            **_layer(study, cell),
            "learning_rate": cell.learning_rate, "metric": metric,
            "runs_finished": int((mine["status"] == "ok").sum()),
            "runs_failed": int((mine["status"] == "failed").sum()),
            "n": len(numbers),
            "mean": float(numbers.mean()) if len(numbers) else np.nan,
            "sd": float(numbers.std(ddof=1)) if len(numbers) > 1 else np.nan,
            "min": float(numbers.min()) if len(numbers) else np.nan,
            "max": float(numbers.max()) if len(numbers) else np.nan,
            "ci_low": ci[0], "ci_high": ci[1],
            "best": key == best,
            "tied_with_best": (None if key == best or key not in tied else tied[key]),
            "best_in_seeds": sum(1 for c in per_seed.values() if c == key),
            **{f"p_vs_best_seed{s}": p for s, _, p in per_cell.get(key, [])},
            **{f"diff_vs_best_seed{s}": d for s, d, _ in per_cell.get(key, [])},
        }
        row["text"] = _cell_text(row, mine, study, ci)
        rows.append(row)
    cells = pd.DataFrame(rows)
    table = Table(study, Path(runs_dir), frame, configs, cells, metric, seeds, evidence, best, [])
    target, epochs = epochs_to_target(table)
    if target is not None:
        reached = {row: [e for e in values if e is not None] for row, values in epochs.items()}
        cells["epochs_to_target"] = [np.mean(reached[r]) if reached.get(r) else np.nan
                                     for r in cells["row"]]
        cells["target_val_auc"] = target
    table.findings = [(f.text, *verdict(f.claim, evidence, table.name)) for f in study.findings]
    return table


def _cell_text(row, runs, study, ci):
    """What the Markdown table shows in a cell."""
    if row["n"] == 0:
        if (runs["status"] == "ok").any() and study.marks_non_convergence:
            return "did not converge"
        if (runs["status"] == "ok").any():
            return "n/a"
        return "failed" if (runs["status"] == "failed").any() else "—"
    if row["n"] == 1:
        text = f"{row['mean']:.4f}"
        if np.isfinite(ci[0]):
            text += f" [{ci[0]:.4f}, {ci[1]:.4f}]"
    else:
        text = f"{row['mean']:.4f} ({row['min']:.4f}–{row['max']:.4f}, n={row['n']})"
    if row["best"]:
        return f"**{text}**"
    return text + (f" {TIED_MARK}" if row["tied_with_best"] else "")


def _metric_text(metric, configs):
    """The header's metric; a test AUC says the test split's share of the images, as the
    runs' ``n_train``/``n_val``/``n_test`` have it (BreakHis: about the protocol's 10 %;
    the HDF5 release: its own split) — of a run that trained on the whole training
    split (no ``--train-fraction``, no downsampling), else no share."""
    text = METRICS[metric]
    whole = [c for c in configs if metric == "test_auc" and c.get("train_fraction", 1.0) == 1.0
             and c.get("balance", "none") == "none"
             and all(c.get(f"n_{part}") for part in ("train", "val", "test"))]
    if not whole:
        return text
    c = whole[0]
    share = 100 * c["n_test"] / (c["n_train"] + c["n_val"] + c["n_test"])
    return text.replace("held-out test split",
                        f"held-out {share:.{0 if share >= 1 else 1}f} % test split")


def render_markdown(table, command):
    """The Markdown of a :class:`Table`."""
    study, metric, configs = table.study, table.metric, table.configs
    lines = [f"# {study.title}: {study.row_header.lower()} × {study.column_header.lower()}", ""]
    caveat = _caveat(configs, study)
    if caveat:
        lines += [f"> **Made from {caveat}: not comparable to the paper.**", ""]
    weights = sorted({c.get("weights") for c in configs}) or ["—"]
    devs = _deviations(configs, study)
    done = int((table.frame["status"] == "ok").sum())
    split_seeds = sorted({c.get("split_seed", 0) for c in configs}) or [0]
    lines += [
        f"- Data: {_describe_data(configs)}",
        f"- Backbone: {', '.join(study.backbones)}; weights: {', '.join(weights)}",
        f"- Metric: {_metric_text(metric, configs)}",
        f"- Runs finished: {done} of {len(table.frame)}",
        _seeds_line(table, split_seeds),
        _ties_line(table),
    ]
    if metric == "test_auc":
        lines.append(_selection_line(table))
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
    _, texts = table.texts
    for r, level in enumerate(study.rows):
        lines.append("| " + " | ".join([level.label] + [str(t) for t in texts[r]]) + " |")
    lines.append("")
    if table.best is not None:
        lines.append(f"Best cell in bold{' (highest mean over the seeds)' if len(table.seeds) > 1 else ''}: "
                     + (f"{study.rows[table.position(table.best)[0]].name} at learning rate "
                        f"{table.best[1]}." if study.column_header == "Learning rate"
                        else f"{table.name(table.best)}."))
        counts = table.cells[table.cells["best_in_seeds"] > 0].sort_values(
            "best_in_seeds", ascending=False)
        if len(table.seeds) > 1 and len(counts):
            lines.append("Best cell per seed: " + "; ".join(
                f"{table.name((c['row'], c['column']))} in {c['best_in_seeds']} of "
                f"{len(table.seeds)} seeds" for _, c in counts.iterrows()) + ".")
    lines.append("`—`: not run yet; `failed`: the run raised (its error is in the CSV).")
    lines += _target_lines(table)
    lines += ["", "## The paper's findings for this table (its text), and this grid's answer", ""]
    lines += [f"- {text} — **{v}**: {reason}." for text, v, reason in table.findings]
    if table.findings:
        lines += ["", "Answers are computed from the runs (`kandel_repro/compare.py`): "
                  "*supported* or *contradicted* when DeLong's paired test separates the cells "
                  "named at 5 % (Holm-adjusted) in every seed, *not distinguishable* otherwise."]
    lines.append("")
    return "\n".join(lines)


def _target_lines(table):
    """Partial transfer: how many epochs each row needed to reach the target AUC."""
    target, epochs = epochs_to_target(table)
    if target is None:
        return []

    def words(values):
        reached = [e for e in values if e is not None]
        text = ", ".join("not reached" if e is None else str(e) for e in values)
        return f"{text} (mean {np.mean(reached):.1f})" if reached else text or "no run"

    return ["", f"Epochs to reach a validation AUC of {target:.4f} ({TARGET_SHARE:g} × the "
            "mean best of the run that transfers every block; our choice of target), per run:",
            ""] + [f"- {label}: {words(values)}" for label, values in epochs.items()]


def _selection_line(table):
    """Where the test split is labelled: which cell the validation AUC would choose."""
    done = table.frame[(table.frame["status"] == "ok") & table.frame["val_auc"].notna()]
    if done.empty:
        return "- Model selection: the validation AUC (nothing finished yet)"
    means = done.groupby(["row", "column"])[["val_auc", "test_auc"]].mean()
    cell = means["val_auc"].idxmax()
    return (f"- Model selection: each run keeps the epoch of its best validation AUC; by "
            f"validation AUC the best cell is {table.name(cell)} (validation "
            f"{means.loc[cell, 'val_auc']:.4f}, test {means.loc[cell, 'test_auc']:.4f}) — the "
            "test split is not used to choose")


def _seeds_line(table, split_seeds):
    seeds = ", ".join(map(str, table.seeds))
    split = f"split seed {', '.join(map(str, split_seeds))}"
    if len(table.seeds) == 1:
        return (f"- Seed {seeds} ({split}); a cell shows its AUC and DeLong's 95 % confidence "
                "interval [low, high]")
    return (f"- Seeds {seeds} ({split}: every run scored on the same images); a cell shows "
            "the mean over its seeds (min–max, n = runs)")


def _ties_line(table):
    compared = sum(1 for _, c in table.cells.iterrows() if c["tied_with_best"] is not None)
    if table.best is None:
        return "- Tied with the best: nothing to compare yet"
    if not compared:
        return ("- Tied with the best: not judged (no prediction files to compare; runs made "
                "before predictions were kept, or a single cell)")
    split = f"{table.evidence.split} split"
    if table.metric == "kaggle_private_auc":
        split += " (Kaggle keeps the test labels)"
    return (f"- {TIED_MARK}: tied with the best — not significantly below it by DeLong's paired "
            f"test on the same {split} images, Holm-adjusted over the table's {compared} "
            f"comparison{'s' if compared != 1 else ''}, 5 %" + (", in at least one seed (a cell counts as below the best "
                                  "only if it is in every seed)" if len(table.seeds) > 1 else ""))


def run_histories(table):
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
        label = (f"{study.rows[rows.index(run['row'])].name}, "
                 f"{study.columns[columns.index(run['column'])].name}"
                 + (f", seed {run['seed']}" if len(table.seeds) > 1 else ""))
        histories[label] = pd.read_csv(path)
        colors[label] = rows.index(run["row"])
        styles[label] = columns.index(run["column"])
    return histories, colors, styles


def curve_legend(study):
    """``(colour index → row name, style index → column name)`` for learning_curves."""
    return ({i: level.name for i, level in enumerate(study.rows)},
            {i: level.name for i, level in enumerate(study.columns)})


def best_cell_predictions(table):
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
                label = f"{column.name}: {table.study.rows[table.position(cell)[0]].name}"
                curves[label] = (predictions["label"], predictions["prediction"])
                break
    return curves


def table_heatmap(table, path=None):
    """The study's grid as a heatmap (best cell framed, tied cells hatched; caveats in
    the title)."""
    study = table.study
    values, texts = table.texts
    tied = [table.position((c["row"], c["column"])) for _, c in table.cells.iterrows()
            if c["tied_with_best"]]
    caveat = _caveat(table.configs, study)
    seeds = f" (mean of {len(table.seeds)} seeds)" if len(table.seeds) > 1 else ""
    return heatmap(values, [level.label for level in study.rows],
                   [level.label for level in study.columns],
                   study.title + seeds + (f"\n{caveat}" if caveat else ""),
                   SHORT[table.metric], path,
                   best=None if table.best is None else table.position(table.best),
                   texts=np.vectorize(_short_text)(texts), row_title=study.row_header,
                   column_title=study.column_header, tied=tied)


def _short_text(text):
    """A heatmap cell without the CI or spread (the colour shows the mean)."""
    return re.sub(r"\s*[\[(].*$", "", str(text).replace("**", "")).replace(f" {TIED_MARK}", "")


def curves_figure(table, path):
    """``<study>_curves.png``: training loss and validation AUC of every finished run."""
    histories, colors, styles = run_histories(table)
    if not histories:
        return None
    color_names, style_names = curve_legend(table.study)
    caveat = _caveat(table.configs, table.study)
    return learning_curves(histories, path, title=f"{table.study.title}: every finished run"
                           + (f"\n{caveat}" if caveat else ""), colors=colors, styles=styles,
                           color_names=color_names, style_names=style_names)


def roc_figure(table, path):
    """``<study>_roc.png``: ROC curves of the best cell of each column."""
    curves = best_cell_predictions(table)
    if not curves:
        return None
    split = ("held-out test split" if get_reader(table.dataset).labelled_test
             else "validation split")
    caveat = _caveat(table.configs, table.study)
    return roc_curves(curves, path, title=f"{table.study.name}: best cell per "
                      f"{table.study.column_header.lower()} (by mean {SHORT[table.metric]}),"
                      f"\nROC on the {split}" + (f"\n{caveat}" if caveat else ""))


def radar_figure(table, path):
    """``<study>_radar.png``: the best cell of each row (each depth, or each backbone)
    on six measures — AUC, and accuracy, sensitivity, specificity, precision and F1 at
    the threshold of Youden's J chosen on the validation split (means over seeds)."""
    frame = table.frame[table.frame["status"] == "ok"]
    keys = [f"{m}_{TABLE_RULE}" for m in MEASURES]
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
        profiles[table.name(best)] = [table.evidence.mean(best)] + list(numbers.mean())
    if not profiles:
        return None
    split = frame["measures_split"].dropna().iloc[0] if "measures_split" in frame else "validation"
    caveat = _caveat(table.configs, table.study)
    return radar(profiles, [SHORT[table.metric]] + [m.capitalize() if m != "f1" else "F1"
                                                   for m in MEASURES], path,
                 title=f"{table.study.title}: the best cell of each row\n{split} split; "
                       "threshold: Youden's J on the validation split"
                       + (f"\n{caveat}" if caveat else ""))


def _band(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), values.min(), values.max()


def params_figure(table, path):
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
                hlines[f"{level.name}, {column.name}"] = _band(values)
                continue
            mean, low, high = _band(values)
            points.append((params[cell], mean, low, high, level.name))
        if points:
            points.sort()
            x, mean, low, high, names = (list(v) for v in zip(*points))
            label = column.name
            series[label] = (x, mean, low, high)
            marks[label] = [(px, py, n.split("= ")[1]) for px, py, n in zip(x, mean, names)
                            if "= " in n]
    if not series:
        return None
    caveat = _caveat(table.configs, table.study)
    return lines_with_bands(series, path, title=f"{table.study.title}\n{SHORT[table.metric]} "
                            "against trainable parameters (block-wise depths named)"
                            + (f"\n{caveat}" if caveat else ""),
                            xlabel="trainable parameters", ylabel=SHORT[table.metric],
                            logx=True, marks=marks, hlines=hlines)


def datasize_figure(table, path):
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
            series[column.name] = tuple(list(v) for v in zip(*points))
    if not series:
        return None
    caveat = _caveat(table.configs, table.study)
    seeds = f", band: min–max of {len(table.seeds)} seeds" if len(table.seeds) > 1 else ""
    return lines_with_bands(series, path, title=f"{table.study.title}\n{SHORT[table.metric]} "
                            f"against training images (validation split unchanged{seeds})"
                            + (f"\n{caveat}" if caveat else ""),
                            xlabel="training images", ylabel=SHORT[table.metric], logx=True)


def smallnets_figure(table, path):
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
    caveat = _caveat(table.configs, table.study)
    return scatter_panels(points, ["trainable parameters", "seconds per training epoch"],
                          SHORT[table.metric], path,
                          title=f"{table.study.title}: {SHORT[table.metric]} against size and "
                                "time (bars: min–max over seeds)"
                                + (f"\n{caveat}" if caveat else ""))


TARGET_SHARE = 0.9  # partial transfer: the target is this share of the full transfer's AUC


def epochs_to_target(table):
    """Partial transfer's speed: ``(target, {row label: [epochs per run, None where the
    target was not reached]})``, the target being TARGET_SHARE × the mean best
    validation AUC of the row that transfers every block (None when it has no run)."""
    import pandas as pd

    rows = [level for level in table.study.rows if "transfer_blocks" in level.settings]
    if not rows:
        return None, {}
    full = max(rows, key=lambda level: level.settings["transfer_blocks"])
    reference = [v for (row, _), seeds in table.evidence.values.items() if row == full.label
                 for v in seeds.values()]
    done = table.frame[table.frame["status"] == "ok"]
    best = done[done["row"] == full.label]["val_auc"].dropna()
    if best.empty or not reference:
        return None, {}
    target = TARGET_SHARE * float(best.mean())
    out = {}
    for level in rows:
        epochs = []
        for name in done[done["row"] == level.label]["run"]:
            history = table.runs_dir / name / rundir.HISTORY
            if not history.exists():
                continue
            auc = pd.read_csv(history)["val_auc"].to_numpy(dtype=float)
            reached = np.flatnonzero(auc >= target)
            epochs.append(int(reached[0]) + 1 if len(reached) else None)
        out[level.label] = epochs
    return target, out


def convergence_figure(table, path):
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
        series[level.name] = (np.arange(1, epochs + 1), stacked.mean(0), stacked.min(0),
                              stacked.max(0))
    if not series:
        return None
    caveat = _caveat(table.configs, table.study)
    seeds = f" (band: min–max of {len(table.seeds)} seeds)" if len(table.seeds) > 1 else ""
    target, _ = epochs_to_target(table)
    return lines_with_bands(series, path, title=f"{table.study.title}\nvalidation AUC per "
                            f"epoch{seeds}" + (f"\n{caveat}" if caveat else ""),
                            xlabel="epoch", ylabel="validation AUC",
                            target=None if target is None else (
                                target, f"target: {TARGET_SHARE:g} × the full transfer's best"))


# The figures a study can ask for (Study.figures): name → function(table, path) returning
# the figure, or None when there is nothing to draw yet.
FIGURES = {"heatmap": table_heatmap, "curves": curves_figure, "roc": roc_figure,
           "radar": radar_figure, "params": params_figure, "datasize": datasize_figure,
           "convergence": convergence_figure, "small-nets": smallnets_figure}


def write_table(study_name, runs_dir, out_dir="tables", command=None, log=print, seeds=None,
                fractions=None):
    """Write ``<study>.md``, ``<study>.csv``, ``<study>_cells.csv`` and the study's
    figures (``<study>_<figure>.png``: a figure with nothing to draw yet is left out);
    return the paths written. ``fractions``: the datasize study's other fractions."""
    study = get_study(study_name, fractions)
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ConfigError(f"{runs_dir} is not a folder: give --runs the folder of "
                          f"{study.name}'s run folders (e.g. runs/{study.name})")
    names = [cell.name for cell in study.cells()]
    if not any((runs_dir / name).is_dir() for name in names) and not any(
            seed_of(cell, entry.name) is not None for cell in study.cells()
            for entry in runs_dir.iterdir()):
        raise ConfigError(f"{runs_dir} holds no run of {study.name} (its run folders are named "
                          f"like {names[0]}); is it another study's folder?")
    table = assemble(study, runs_dir, _present_seeds(study, runs_dir, seeds, log))
    for _, row in table.frame[table.frame["status"] == "failed"].iterrows():
        log(f"{row['run']}: failed ({row['error']}); shown as failed")
    for problem in table.evidence.problems:
        log(f"not compared: {problem}")
    out_dir = check_writable(out_dir, "--out")
    if command is None:  # the command that makes this table again, options included
        command = f"kandel-repro table {study_name} --runs {runs_dir} --out {out_dir}"
        for option, value in (("seeds", seeds), ("fractions", fractions)):
            if value is not None:
                command += f" --{option} {_listed(value)}"
    md = out_dir / f"{study.name}.md"
    csv = out_dir / f"{study.name}.csv"
    cells = out_dir / f"{study.name}_cells.csv"
    write_text(md, render_markdown(table, command))
    write_csv(csv, table.frame.assign(metric=table.metric))
    write_csv(cells, table.cells.drop(columns=["text"]))
    written = [md, csv, cells]
    for figure in study.figures:
        path = out_dir / f"{study.name}_{figure}.png"
        if FIGURES[figure](table, path) is not None:
            written.append(path)
    return written

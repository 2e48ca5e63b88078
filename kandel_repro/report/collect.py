"""A study's run folders read once into a :class:`Table`: one row per run (cell ×
seed), one summary per cell over its seeds, the best cell and the cells tied with it
(:mod:`kandel_repro.report.compare`), the paper's findings with this grid's verdict, and what
the header says of the data and the settings. Where runs were scored with test-time
augmentation (``--tta``), :attr:`Table.tta` holds the same grid of their TTA AUCs
(:func:`tta_table`). Markdown (:mod:`kandel_repro.report.markdown`)
and figures (:mod:`kandel_repro.report.figures`) are drawn from a Table, never from the
folders again.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError
from ..core.protocol import NOT_CONVERGED_BELOW_AUC
from ..core.stats import summary_of
from ..models.backbones import get_backbone
from ..readers.registry import get_reader
from ..runs import rundir
from ..runs.settings import RunSettings
from ..studies.cells import parse_seeds, run_name, seed_of
from ..studies.registry import get_study
from ..studies.types import Study
from .compare import CellKey, Evidence, assessable, verdict
from .header import caveat_of

if TYPE_CHECKING:  # NOTE: annotations only; pandas loads when a table is read
    import pandas as pd

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

# Test-time augmentation (--tta): the facts a run's row gains where its metrics have them
# (a folder without TTA runs gives the same CSV as before TTA existed).
TTA_FACTS = ("tta_views", "val_auc_tta", "test_auc_tta", "synthetic_test_auc_tta",
             "kaggle_public_auc_tta", "kaggle_private_auc_tta")


TIED_MARK = "≈"


def _converged(metrics):
    auc = metrics.get("val_auc")
    return (auc is not None and np.isfinite(auc) and auc >= NOT_CONVERGED_BELOW_AUC
            and metrics.get("stopped_reason") != "non-finite loss")


# Why a run's intervals are not assessable ({AUC key: reason}; core.stats.run_summary,
# training.tta.tta_metrics), where they are not.
NOTES = ("intervals_not_assessable", "intervals_not_assessable_tta")

# What a multi-class run records beside its intervals (core.bootstrap.multiclass_summary).
MULTICLASS_KEYS = ("class_aucs", "accuracy", "balanced_accuracy", "macro_f1", "confusion",
                   "ci_method")


def _summary(run_dir, metrics, labelled_test):
    """The run's CIs and threshold measures: as recorded, or (runs made before they were)
    computed from its prediction files; {} when those are missing."""
    if "val_auc_ci" in metrics:
        return {k: v for k, v in metrics.items()
                if k.endswith("_ci") or k.endswith(("_t05", "_youden")) or k in (
                    "youden_threshold", "measures_split", *NOTES, *MULTICLASS_KEYS)}
    try:
        _, val_labels, val_scores = rundir.read_predictions(run_dir / rundir.VAL_PREDICTIONS)
        test = (rundir.read_predictions(run_dir / rundir.TEST_PREDICTIONS) if labelled_test
                else None)
        return summary_of(val_labels, val_scores, None if test is None else test[1],
                          None if test is None else test[2])
    except (OSError, ValueError, KeyError):
        return {}


def _flat(summary):
    """CI pairs as two columns each, for the CSV."""
    out = {}
    for key, value in summary.items():
        if key.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
            # (an interval not assessable is [None, None] in metrics.json: NaN here)
            out[f"{key}_low"], out[f"{key}_high"] = (np.nan if v is None else v for v in value)
        else:
            out[key] = value
    return out


def collect(study_name: str | Study, runs_dir: str | Path,
            seeds: int | str | Sequence[int] | None = None
            ) -> tuple[pd.DataFrame, list[RunSettings]]:
    """One row per run of the study (cell × seed; the seeds found in ``runs_dir``, or
    ``seeds``): status, AUCs, CIs, measures and run facts, as a DataFrame; and the
    settings of the finished runs, each knowing what its study set for it
    (:attr:`~kandel_repro.runs.settings.RunSettings.set_by_study`: its cell's settings).

    Refuses (:class:`~kandel_repro.core.errors.ConfigError`) a folder whose finished runs
    were made with different experiment settings (other data, epochs, split…): one
    table is one experiment, as :func:`kandel_repro.grid.grid.run_grid` keeps it.
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
            stopped = rundir.read_search(runs_dir / name) or {}
            rows.append({
                "table": study.name, "run": name, "row": cell.row.label,
                "column": cell.column.label, "seed": seed, "backbone": cell.backbone,
                "first_trainable_block": cell.first_trainable_block, **_layer(study, cell),
                "learning_rate": cell.learning_rate,
                "status": "stopped" if stopped and run.status == "missing" else run.status,
                "stopped_at_epoch": stopped.get("stopped_at_epoch"),
                "stopped_val_auc": stopped.get("val_auc"),
                "converged": _converged(metrics) if run.status == "ok" else None,
                **{key: metrics.get(key) for key in FACTS},
                **{key: metrics[key] for key in TTA_FACTS if key in metrics}, **_flat(summary),
                "error": (run.error or {}).get("error"),
            })
            if run.config and run.status == "ok":
                # NOTE: what the study sets for this run (its cell's settings) is the
                # experiment, not a deviation from the paper; tables read it from here.
                configs.append(RunSettings.from_config(run.config, frozenset(cell.settings)))
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
    block_layers = get_backbone(cell.backbone).block_layers
    if layer is None and block_layers:  # (blocks that are not runs of convolutions: none)
        layer = 1 + sum(block_layers[:cell.first_trainable_block - 1])
    return {"first_trainable_layer": layer}


def _seeds(study, runs_dir, seeds):
    if seeds is not None:
        return parse_seeds(seeds)
    return found_seeds(study, runs_dir) or (0,)


def found_seeds(study: Study, runs_dir: str | Path) -> tuple[int, ...]:
    """The seeds of which ``runs_dir`` holds a run folder of ``study`` (sorted)."""
    found = set()
    runs_dir = Path(runs_dir)
    if runs_dir.is_dir():
        names = [entry.name for entry in runs_dir.iterdir() if entry.is_dir()]
        for cell in study.cells():
            found |= {s for s in (seed_of(cell, n) for n in names) if s is not None}
    return tuple(sorted(found))


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


def dataset_of(study: Study, configs: Sequence[RunSettings]) -> str:
    """The data set the runs read (the study's when no run has finished)."""
    return configs[0].get("dataset") or study.dataset if configs else study.dataset


def choose_metric(frame: pd.DataFrame, study: Study,
                  configs: Sequence[RunSettings] = ()) -> str:
    """The column a table shows: the test AUC where the data set's test split is
    labelled (BreakHis, the PCam HDF5 release); on Kaggle's PCam the private-leaderboard
    AUC once every finished run is scored, else the validation AUC."""
    if get_reader(dataset_of(study, configs)).labelled_test:
        return "test_auc"
    done = frame[frame["status"] == "ok"]
    if len(done) and done["kaggle_private_auc"].notna().all():
        return "kaggle_private_auc"
    return "val_auc"


def tta_views_of(frame: pd.DataFrame) -> list[int]:
    """The view counts of the finished runs' test-time augmentation (sorted; [] when no
    run of ``frame`` has TTA scores)."""
    if "tta_views" not in frame.columns:
        return []
    views = frame[frame["status"] == "ok"]["tta_views"].dropna()
    return sorted({int(v) for v in views})


def choose_tta_metric(frame: pd.DataFrame, study: Study,
                      configs: Sequence[RunSettings] = ()) -> str:
    """The column of a table's TTA grid: the TTA counterpart of :func:`choose_metric`'s —
    on Kaggle's PCam the Kaggle private AUC of the TTA submissions once every finished
    TTA run is scored, else the validation AUC with TTA."""
    if get_reader(dataset_of(study, configs)).labelled_test:
        return "test_auc_tta"
    done = frame[(frame["status"] == "ok") & frame["tta_views"].notna()]
    if len(done) and "kaggle_private_auc_tta" in done and \
            done["kaggle_private_auc_tta"].notna().all():
        return "kaggle_private_auc_tta"
    return "val_auc_tta"


@dataclass
class Table:
    """A study's runs, assembled: ``frame`` (one row per run), ``configs`` (of the
    finished runs), ``cells`` (one row per cell, see :func:`assemble`), the ``metric``
    shown, the ``seeds``, the ``evidence`` the comparisons come from, the ``best``
    cell (row, column) and the verdicts on the paper's ``findings``."""

    study: object
    runs_dir: Path
    frame: object
    configs: list[RunSettings]
    cells: object
    metric: str
    seeds: tuple
    evidence: Evidence
    best: tuple
    findings: list
    # partial transfer's speed, computed once (epochs_to_target): (target AUC or None,
    # {row label: [epochs per run, None where not reached]})
    to_target: tuple = (None, {})
    # the same grid of the runs' test-time-augmented AUCs (tta_table), where runs have them
    tta: Table | None = None

    @property
    def texts(self) -> tuple[np.ndarray, np.ndarray]:
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

    def position(self, cell: CellKey) -> tuple[int, int]:
        rows = [level.label for level in self.study.rows]
        columns = [level.label for level in self.study.columns]
        return rows.index(cell[0]), columns.index(cell[1])

    @property
    def dataset(self) -> str:
        return dataset_of(self.study, self.configs)

    @property
    def classes(self) -> list[str]:
        """The class names of the runs' data (``["0", "1"]`` where none are recorded)."""
        for config in self.configs:
            if config.get("classes"):
                return [str(c) for c in config["classes"]]
        return ["0", "1"]

    @property
    def multiclass(self) -> bool:
        """Whether the runs classify k ≥ 3 classes (macro AUC, bootstrap statistics)."""
        return any(c.num_classes > 2 for c in self.configs)

    @property
    def caveat(self) -> str:
        """What a figure's title adds below itself: a new line and :func:`caveat_of` the
        runs (synthetic data, deviations from the paper), or nothing."""
        text = caveat_of(self.configs, self.study)
        return f"\n{text}" if text else ""

    def describe(self, cell: CellKey) -> str:
        """A cell in words: ``blocks 3–5 at 1e-4`` (``1/4, from scratch`` where the
        columns are not learning rates)."""
        rows = {level.label: level for level in self.study.rows}
        if self.study.columns_are_learning_rates:
            return f"{rows[cell[0]].phrase} at {cell[1]}"
        columns = {level.label: level for level in self.study.columns}
        return f"{rows[cell[0]].phrase}, {columns[cell[1]].phrase}"


def assemble(study_name: str | Study, runs_dir: str | Path,
             seeds: int | str | Sequence[int] | None = None,
             bootstrap: int | None = None) -> Table:
    """Read a study's run folders once into a :class:`Table`; ``bootstrap``: resamples
    of the paired bootstrap that compares multi-class runs (default 2,000)."""
    study = get_study(study_name)
    frame, configs = collect(study_name, runs_dir, seeds)
    metric = choose_metric(frame, study, configs)
    table = _grid(study, runs_dir, frame, configs, metric, bootstrap)
    table.to_target = target, epochs = epochs_to_target(table)
    if target is not None:
        cells = table.cells
        reached = {row: [e for e in values if e is not None] for row, values in epochs.items()}
        cells["epochs_to_target"] = [np.mean(reached[r]) if reached.get(r) else np.nan
                                     for r in cells["row"]]
        cells["target_val_auc"] = target
    table.findings = [(f.text, *verdict(f.claim, table.evidence, table.describe))
                      for f in study.findings]
    table.tta = tta_table(table, bootstrap)
    return table


def tta_table(table: Table, bootstrap: int | None = None) -> Table | None:
    """The grid of ``table``'s runs scored with test-time augmentation (None when none
    was): the TTA counterpart of its metric (:func:`choose_tta_metric`), its best cell and
    the cells tied with it, compared on the runs' TTA prediction files; a cell whose runs
    finished without TTA reads ``no TTA``. Model selection stays the plain one: each run
    is its best epoch by the plain validation AUC."""
    if not tta_views_of(table.frame):
        return None
    metric = choose_tta_metric(table.frame, table.study, table.configs)
    return _grid(table.study, table.runs_dir, table.frame, table.configs, metric, bootstrap,
                 tta=True)


def _grid(study, runs_dir, frame, configs, metric, bootstrap, tta=False):
    """The :class:`Table` of ``metric`` (its cells, best and ties; no findings yet)."""
    import pandas as pd

    seeds = tuple(sorted(frame["seed"].unique()))
    values, runs, converged = {}, {}, {}
    for _, run in frame.iterrows():
        cell = (run["row"], run["column"])
        if run["status"] != "ok":
            continue
        runs.setdefault(cell, {})[run["seed"]] = run["run"]
        converged.setdefault(cell, {})[run["seed"]] = bool(run["converged"])
        value = run.get(metric)  # (a TTA column some runs lack)
        usable = value is not None and np.isfinite(value)
        if usable and not (study.marks_non_convergence and not run["converged"]):
            values.setdefault(cell, {})[run["seed"]] = float(value)
    split = "test" if metric in ("test_auc", "test_auc_tta") else "validation"
    evidence = Evidence(study, runs_dir, values, runs, split, converged, bootstrap=bootstrap)
    evidence.class_names = next((list(map(str, c["classes"])) for c in configs
                                 if c.get("classes")), None)
    if tta:  # NOTE: the same comparisons, on the runs' TTA prediction files
        evidence.file = rundir.prediction_files(tta=True)[2 if split == "test" else 0]
    best, per_cell, tied = evidence.ties()
    per_seed = evidence.best_per_seed()
    rows = []
    for cell in study.cells():
        key = (cell.row.label, cell.column.label)
        mine = frame[(frame["row"] == key[0]) & (frame["column"] == key[1])]
        numbers = np.array(list(values.get(key, {}).values()), dtype=float)
        ci, note = [np.nan, np.nan], None
        if len(numbers) == 1:
            ci_key = f"{metric}_ci"
            seed = next(iter(values[key]))
            run = mine[mine["seed"] == seed].iloc[0]
            ends = [pd.to_numeric(run.get(f"{ci_key}_{end}", np.nan), errors="coerce")
                    for end in ("low", "high")]
            # NOTE: runs made before the small-split rule may hold an interval of zero
            # width, or one from a split too small: shown as not assessable all the same
            note = interval_note(run, metric) or evidence.split_problem() or (
                "an interval of zero width (the method's spread was 0)"
                if all(np.isfinite(ends)) and ends[0] == ends[1] else None)
            if all(np.isfinite(ends)) and note is None:
                ci = [float(end) for end in ends]
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
            "ci_low": ci[0], "ci_high": ci[1], "ci_not_assessable": note,
            "best": key == best,
            "tied_with_best": (None if key == best or key not in tied else tied[key]),
            # compared with the best, but a paired test was not assessable (p NaN)
            "test_not_assessable": bool(per_cell.get(key)) and not assessable(per_cell[key]),
            "best_in_seeds": sum(1 for c in per_seed.values() if c == key),
            **{f"p_vs_best_seed{s}": p for s, _, p in per_cell.get(key, [])},
            **{f"diff_vs_best_seed{s}": d for s, d, _ in per_cell.get(key, [])},
        }
        no_tta = tta and not mine[mine["status"] == "ok"]["tta_views"].notna().any()
        row["text"] = _cell_text(row, mine, study, ci, no_tta, note)
        rows.append(row)
    cells = pd.DataFrame(rows)
    return Table(study, Path(runs_dir), frame, configs, cells, metric, seeds, evidence, best, [])


def interval_note(run: pd.Series, metric: str) -> str | None:
    """Why the run's interval of ``metric`` is not assessable (a split too small: the
    run's ``intervals_not_assessable``), or None (it has one, or was made before runs
    recorded intervals)."""
    for key in NOTES:
        notes = run.get(key)
        if isinstance(notes, dict) and notes.get(metric):
            return str(notes[metric])
    return None


def _cell_text(row, runs, study, ci, no_tta=False, note=None):
    """What the Markdown table shows in a cell (``no_tta``: of a TTA grid, whose runs have
    no TTA scores; ``note``: why its one run's interval is not assessable)."""
    if row["n"] == 0:
        stopped = runs[runs["status"] == "stopped"]
        if len(stopped) and not (runs["status"] == "ok").any():
            auc = stopped["stopped_val_auc"].dropna()
            return (f"stopped at epoch {stopped['stopped_at_epoch'].max():.0f} (validation "
                    f"AUC {auc.mean():.4f})" if len(auc) else
                    f"stopped at epoch {stopped['stopped_at_epoch'].max():.0f}")
        if (runs["status"] == "ok").any() and no_tta:
            return "no TTA"
        if (runs["status"] == "ok").any() and study.marks_non_convergence:
            return "did not converge"
        if (runs["status"] == "ok").any():
            return "n/a"
        return "failed" if (runs["status"] == "failed").any() else "—"
    if row["n"] == 1:
        text = f"{row['mean']:.4f}"
        if np.isfinite(ci[0]):
            text += f" [{ci[0]:.4f}, {ci[1]:.4f}]"
        elif note:
            text += " [not assessable]"
    else:
        text = f"{row['mean']:.4f} ({row['min']:.4f}–{row['max']:.4f}, n={row['n']})"
    if row["best"]:
        return f"**{text}**"
    return text + (f" {TIED_MARK}" if row["tied_with_best"] else "")


TARGET_SHARE = 0.9  # partial transfer: the target is this share of the full transfer's AUC


def epochs_to_target(table: Table) -> tuple[float | None, dict[str, list[int | None]]]:
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

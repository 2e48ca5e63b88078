"""``kandel-repro table``: a study's run folders as Markdown, CSV and figures.

Tables are generated, never edited by hand. A table is assembled once from the run
folders (:func:`kandel_repro.report.collect.assemble`: one row per run, one summary per
cell over its seeds, the best cell and the cells tied with it, the paper's findings with
this grid's verdict), then rendered (:mod:`kandel_repro.report.markdown`) and drawn
(:mod:`kandel_repro.report.figures`). On PCam a cell shows the Kaggle private test AUC
when every finished run has been scored by Kaggle, otherwise the validation ROC AUC of
the best epoch; on BreakHis and the HDF5 release the AUC on the held-out test split, as
the paper does. The header says which, and states the data set, the weights, the seeds
and every setting that differs from the paper; the paper's own findings (its text, no
invented numbers) stand below the grid. In Table 5 a run that did not converge (rule in
:data:`kandel_repro.core.protocol.NOT_CONVERGED_BELOW_AUC`) is shown as such, not as a
number.

Files: ``<study>.md``; ``<study>.csv`` (one row per run, unrounded); ``<study>_cells.csv``
(one row per cell: n, mean, sd, min, max, CI, best, tied, p-values against the best per
seed); the study's figures (``<study>_<figure>.png``). Where runs were scored with
test-time augmentation (``--tta``) the Markdown adds the grid of their TTA AUCs, the CSV
their TTA columns (``tta_views``, ``val_auc_tta``, …), and ``<study>_tta_cells.csv`` holds
that grid's cells.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.errors import ConfigError
from ..core.files import check_writable, write_csv, write_text
from ..models.backbones import get_backbone
from ..studies.cells import parse_seeds, seed_of
from ..studies.registry import get_study, parse_backbones
from ..studies.types import Study
from .collect import assemble, found_seeds
from .run_studies import recorded_settings, study_of_runs
from .figures import FIGURES, backbones_figure, depth_comparison
from .markdown import render_markdown


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


def backbones_asked(study_name: str | Study, runs_dir: str | Path,
                    backbone: str | None) -> list[str | None]:
    """The backbones a parametric study's table is asked for: ``--backbone a,b``, or
    every backbone whose runs ``runs_dir`` holds; ``[backbone]`` for other studies."""
    study = get_study(study_name)
    if not study.parametric:
        return [backbone]
    if backbone is not None:
        return [get_backbone(b).name for b in parse_backbones(backbone)]
    found = sorted({b for b, _, _ in recorded_settings(runs_dir) if b})
    return found or [None]


def write_table(study_name: str | Study, runs_dir: str | Path, out_dir: str | Path = "tables",
                command: str | None = None, log: Callable[[str], None] = print,
                seeds: int | str | Sequence[int] | None = None,
                fractions: str | None = None, backbone: str | None = None,
                dataset: str | None = None, bootstrap: int | None = None) -> list[Path]:
    """Write ``<study>.md``, ``<study>.csv``, ``<study>_cells.csv`` and the study's
    figures (``<study>_<figure>.png``: a figure with nothing to draw yet is left out);
    return the paths written. ``fractions``: the datasize study's other fractions;
    ``backbone``/``dataset``: the depth study's (default: what its runs record);
    ``bootstrap``: resamples of the paired bootstrap comparing multi-class runs.

    The depth study of several backbones (``backbone="a,b"``, or runs of several in
    ``runs_dir``) writes each backbone's table into ``out_dir/<backbone>/`` and the
    comparison of their depths (:func:`~kandel_repro.report.figures.backbones_figure`:
    AUC against trainable parameters) as ``out_dir/<study>_backbones.png`` and ``.csv``."""
    backbones = backbones_asked(study_name, runs_dir, backbone)
    if len(backbones) > 1:
        tables, written = [], []
        for name in backbones:
            table, paths = _write_one(study_name, runs_dir, Path(out_dir) / name, command, log,
                                      seeds, fractions, name, dataset, bootstrap)
            tables.append(table)
            written += paths
        stem = Path(out_dir) / f"{tables[0].study.name}_backbones"
        frame = depth_comparison(tables)
        write_csv(stem.with_suffix(".csv"), frame)
        written.append(stem.with_suffix(".csv"))
        if backbones_figure(frame, stem.with_suffix(".png"), tables) is not None:
            written.append(stem.with_suffix(".png"))
        return written
    return _write_one(study_name, runs_dir, out_dir, command, log, seeds, fractions,
                      backbones[0], dataset, bootstrap)[1]


def _write_one(study_name, runs_dir, out_dir, command, log, seeds, fractions, backbone,
               dataset, bootstrap):
    """``(Table, paths written)`` of one study (one backbone of the depth study)."""
    study = study_of_runs(study_name, runs_dir, backbone, dataset, fractions)
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ConfigError(f"{runs_dir} is not a folder: give --runs the folder of "
                          f"{study.name}'s run folders (e.g. runs/{study.name})")
    names = [cell.folder for cell in study.cells()]
    if not any((runs_dir / name).is_dir() for name in names) and not any(
            seed_of(cell, entry.name) is not None for cell in study.cells()
            for entry in runs_dir.iterdir()):
        raise ConfigError(f"{runs_dir} holds no run of {study.name} (its run folders are named "
                          f"like {names[0]}); is it another study's folder?")
    table = assemble(study, runs_dir, _present_seeds(study, runs_dir, seeds, log),
                     bootstrap=bootstrap)
    for _, row in table.frame[table.frame["status"] == "failed"].iterrows():
        log(f"{row['run']}: failed ({row['error']}); shown as failed")
    for problem in table.evidence.problems + (table.tta.evidence.problems if table.tta else []):
        log(f"not compared: {problem}")
    out_dir = check_writable(out_dir, "--out")
    if command is None:  # the command that makes this table again, options included
        command = f"kandel-repro table {study_name} --runs {runs_dir} --out {out_dir}"
        for option, value in (("seeds", seeds), ("fractions", fractions),
                              ("backbone", backbone), ("dataset", dataset),
                              ("bootstrap", bootstrap)):
            if value is not None:
                command += f" --{option} {_listed(value)}"
    md = out_dir / f"{study.name}.md"
    csv = out_dir / f"{study.name}.csv"
    cells = out_dir / f"{study.name}_cells.csv"
    write_text(md, render_markdown(table, command))
    write_csv(csv, table.frame.assign(metric=table.metric))
    write_csv(cells, table.cells.drop(columns=["text"]))
    written = [md, csv, cells]
    if table.tta is not None:
        written.append(out_dir / f"{study.name}_tta_cells.csv")
        write_csv(written[-1], table.tta.cells.drop(columns=["text"]))
    for figure in study.figures:
        path = out_dir / f"{study.name}_{figure}.png"
        if FIGURES[figure](table, path) is not None:
            written.append(path)
    return table, written

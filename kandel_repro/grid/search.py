"""Successive halving over a study's cells, trained as it searches (``grid STUDY --search
halving [--eta 3] [--min-epochs R]``; Jamieson & Talwalkar 2016, Li et al. 2018).

Every cell trains R epochs and pauses there (its state saved: :mod:`kandel_repro.runs.
epochs`); the best ⌈n/η⌉ by validation AUC go on to R·η epochs, and so on
(:func:`~kandel_repro.grid.halving.rung_epochs`), until the survivors of the last rung
train to the protocol's end, early stopping included. A cell's score at a rung is its
best validation AUC up to that epoch (the mean over its seeds' runs): the rule
:func:`~kandel_repro.grid.halving.replay` replays on a finished grid, so that what
``evaluate-search`` measures is what this trains. A run that ends by itself before a rung
(early stopping) is finished and keeps its best.

A cell the search drops keeps its run folder, paused, with ``search.json`` saying "stopped
by the search at epoch k" and its validation AUC there
(:func:`~kandel_repro.runs.rundir.read_search`); a later plain ``grid`` resumes and
finishes it. The search itself resumes: every decision is made again from what the run
folders hold (each run's history up to the rung's epoch), so a search killed at any point
— between rungs or inside one — goes on where it stopped and decides as it would have.

The runs of a rung train one after another in this process, or, with ``--executor ray``,
as Ray tasks on the cluster, in parallel, the next rung starting when the last run of this
one is in: the same synchronous rule on either executor. Ray Tune's ASHA scheduler (Li et
al. 2020) is the asynchronous form, and is not used: it promotes a trial as soon as it is
in the top 1/η of those that reached its rung *so far*, so which cells survive depends on
which runs the cluster happened to finish first — the search would no longer be the rule
``evaluate-search`` measures on a finished grid, nor give the same answer twice; and its
trials would live in Tune's folders, not in the run folders, locks and resumption the
grid keeps. Every seed of a cell trains at each rung, within the time budget; a shard of
a grid cannot rank the cells it does not hold, so ``--shard`` is refused
(:func:`check_search`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from ..core.files import write_json
from ..runs import rundir
from .attempt import Attempt, train_grid_run
from .halving import best_up_to, rung_epochs

if TYPE_CHECKING:
    from ..data.packed import PackedData
    from ..runs.settings import RunSettings
    from ..studies.types import Cell

SEARCHES = ("halving",)


ETA, MIN_EPOCHS = 3, 1  # the defaults of --eta and --min-epochs


def check_search(search: str | None, eta: int | None, min_epochs: int | None, shard: object,
                 max_epochs: int) -> tuple[int, int]:
    """``(η, R)`` of a search that can run as asked (the defaults where not given);
    refused before the data are loaded where it cannot."""
    if search is None:
        if eta is not None or min_epochs is not None:
            raise ConfigError("--eta and --min-epochs apply to --search halving; give it, or "
                              "leave them out")
        return ETA, MIN_EPOCHS
    eta = ETA if eta is None else eta
    min_epochs = MIN_EPOCHS if min_epochs is None else min_epochs
    if search not in SEARCHES:
        raise ConfigError(f"--search must be one of {', '.join(SEARCHES)}, got {search!r}")
    rungs = rung_epochs(min_epochs, eta, max_epochs)
    if not rungs:
        raise ConfigError(f"--min-epochs {min_epochs} leaves no rung below the runs' "
                          f"{max_epochs} epochs: the search would be the full grid")
    if shard is not None:
        raise ConfigError("--search halving ranks every cell at each rung, which a shard of "
                          "the grid cannot: run the search without --shard, on one machine")
    return eta, min_epochs


def score_at(run_dir: Path, epoch: int) -> float:
    """A run's best validation AUC over its first ``epoch`` epochs (−inf: none yet), as
    the replay scores it (:func:`~kandel_repro.grid.halving.best_up_to`)."""
    import pandas as pd

    path = run_dir / rundir.HISTORY
    if not path.is_file():
        return -math.inf
    return best_up_to(pd.read_csv(path)["val_auc"].tolist(), epoch)


def epochs_done(run_dir: Path) -> int:
    """The epochs a run has behind it that count: all of a finished run's, a paused one's
    up to its pause (a killed attempt's later epochs are trained again), else none."""
    from ..runs.epochs import paused_epochs

    if rundir.is_finished(run_dir):
        return int(rundir.read_metrics(run_dir).get("epochs_run") or 0)
    return paused_epochs(run_dir) or 0


TrainRung = Callable[[list, "int | None"], dict]


def in_process(runs_dir: Path, data: PackedData, configs: dict[str, RunSettings],
               how: Attempt, log: Callable[[str], None] = print) -> TrainRung:
    """The ``train`` of :func:`run_halving` that trains a rung's runs here, one after
    another, within the time budget: a run is not started when the epochs it has to go, at
    the mean epoch time of the search's runs so far, would not fit in what is left; once
    the budget stops one, the rest are ``out of time``."""

    def train(todo, epoch):
        statuses = {}
        for index, (label, name) in enumerate(todo):
            if how.deadline is not None:
                to_go = (epoch or configs[name]["max_epochs"]) - epochs_done(runs_dir / name)
                expected = to_go * mean_epoch_seconds(runs_dir, [n for _, n in todo])
                if time.time() + expected > how.deadline:
                    log(f"{label}: not started: {to_go} epoch(s) of about "
                        f"{expected / max(to_go, 1):.0f} s would not fit in the "
                        f"{max(how.deadline - time.time(), 0):.0f} s the time budget has left")
                    statuses.update({n: "out of time" for _, n in todo[index:]})
                    break
            statuses[name] = train_grid_run(runs_dir / name, data, configs[name], label, how,
                                            log, pause_after=epoch)
            if statuses[name] == "out of time":
                statuses.update({n: "out of time" for _, n in todo[index + 1:]})
                break
        return statuses

    return train


def mean_epoch_seconds(runs_dir: Path, names: list[str]) -> float:
    """The mean training seconds of an epoch over the histories of ``names`` so far (0:
    none yet): the search's estimate of what an epoch will take."""
    import pandas as pd

    seconds = []
    for name in names:
        path = runs_dir / name / rundir.HISTORY
        if path.is_file():
            history = pd.read_csv(path)
            if "train_seconds" in history:
                seconds += history["train_seconds"].dropna().tolist()
    return sum(seconds) / len(seconds) if seconds else 0.0


def run_halving(cells: list[tuple[Cell, list[tuple[str, str]]]], runs_dir: Path,
                max_epochs: int, train: TrainRung, eta: int, min_epochs: int,
                rerun: bool = False, log: Callable[[str], None] = print) -> dict:
    """Successive halving over ``cells`` (``[(cell, [(label, run name) of its seeds])]``,
    in the study's order), whose runs ``train(todo, epoch)`` trains to ``epoch`` (None: to
    their end; :func:`in_process`, or Ray tasks); ``{run name: status}``: ``ok``/
    ``skipped`` (finished), ``stopped`` (dropped by the search, resumable), ``out of time``,
    ``failed``, ``busy``. ``rerun``: every run of the search cleared first."""
    runs_dir = Path(runs_dir)
    if rerun:  # (from the start once: the rungs then resume what this search trains)
        for _, runs in cells:
            for _, name in runs:
                rundir.clear(runs_dir / name)
    statuses: dict[str, str] = {}
    alive = list(range(len(cells)))
    for rung, epoch in enumerate(rung_epochs(min_epochs, eta, max_epochs)):
        if len(alive) <= 1:
            break
        log(f"search: rung {rung + 1}: {len(alive)} cell(s) to epoch {epoch}")
        if not _train_to(cells, alive, runs_dir, train, epoch, statuses, log):
            return statuses
        scores = {i: _cell_score(runs_dir, cells[i][1], epoch) for i in alive}
        keep = max(1, math.ceil(len(alive) / eta))
        ranked = sorted(alive, key=lambda i: (-scores[i], i))
        for i in ranked[keep:]:
            _stop(cells[i], runs_dir, epoch, rung + 1, scores[i], statuses, log)
        alive = sorted(ranked[:keep])
    log(f"search: {len(alive)} cell(s) trained to the end")
    _train_to(cells, alive, runs_dir, train, None, statuses, log)
    return statuses


def _train_to(cells, alive, runs_dir, train, epoch, statuses, log):
    """Train the runs of the ``alive`` cells to ``epoch`` (None: to their end); False when
    the time budget ran out."""
    todo = []
    for i in alive:
        for label, name in cells[i][1]:
            folder = runs_dir / name
            if rundir.is_finished(folder):
                statuses[name] = "skipped"
            elif epoch is not None and epochs_done(folder) >= epoch:
                statuses[name] = "paused"
            else:
                todo.append((label, name))
    statuses.update(train(todo, epoch) if todo else {})
    left = [name for _, name in todo if statuses.get(name) == "out of time"]
    if left:
        log(f"search: stopped by the time budget with {len(left)} run(s) left at this "
            "rung; the same command resumes it")
        return False
    unranked = [name for _, name in todo if statuses.get(name) in ("failed", "busy")]
    if unranked:  # (a cell cannot be ranked, nor dropped, on a run that did not train)
        log(f"search: stopped at this rung: {len(unranked)} run(s) failed or were busy "
            f"({', '.join(unranked)}); see their error.json, then run the same command")
        return False
    return True


def _cell_score(runs_dir, runs, epoch):
    values = [score_at(runs_dir / name, epoch) for _, name in runs]
    return sum(values) / len(values) if all(v > -math.inf for v in values) else -math.inf


def _stop(cell, runs_dir, epoch, rung, score, statuses, log):
    _, runs = cell
    for _, name in runs:
        folder = runs_dir / name
        if rundir.is_finished(folder):
            continue  # (it stopped by itself before the rung: a finished cell)
        auc = score_at(folder, epoch)
        write_json(folder / rundir.SEARCH,
                   {"stopped_at_epoch": epochs_done(folder), "rung": rung,
                    "val_auc": auc if auc > -math.inf else None})
        statuses[name] = "stopped"
    shown = "n/a" if score == -math.inf else f"{score:.4f}"
    log(f"search: {cell[0].description} stopped at epoch {epoch} (validation AUC {shown})")

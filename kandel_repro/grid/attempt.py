"""How a grid trains one of its runs, in-process or as a Ray task: under the run's lock,
skipped when another process finished it meanwhile, a failure recorded in the run folder
and the grid going on (:func:`train_grid_run`)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..runs import rundir, train
from ..runs.settings import RunSettings
from ..runs.train import TimeBudgetExceeded

if TYPE_CHECKING:
    from ..data.packed import PackedData


@dataclass(frozen=True)
class Attempt:
    """How a grid trains each of its runs (in-process or as a Ray task): ``rerun``
    finished runs too; the ``deadline`` of its time budget (a ``time.time()`` value);
    Keras' ``verbose``; the ``legacy_fingerprint`` that runs made before data identities
    were recorded gave the same data (:func:`kandel_repro.runs.rundir.check_same_experiment`)."""

    rerun: bool = False
    deadline: float | None = None
    verbose: int | str = "auto"
    legacy_fingerprint: str | None = None


def train_grid_run(run_dir: Path, data: PackedData, config: RunSettings, label: str,
                   how: Attempt = Attempt(), log: Callable[[str], None] = print,
                   pause_after: int | None = None) -> str:
    """Train one run of a grid under its lock; its status: ``ok``, ``skipped`` (finished
    meanwhile by another process), ``busy`` (another process holds it), ``failed`` (it
    raised: recorded in ``error.json``, the grid goes on), ``out of time`` or, told to
    ``pause_after`` an epoch (a search's rung), ``paused``. A paused run is resumed from
    its state unless ``how.rerun``. Both executors, in-process and on Ray, train a run
    through this."""
    started = time.time()
    try:
        with rundir.claim(run_dir):
            if rundir.is_finished(run_dir) and not how.rerun:  # finished meanwhile, elsewhere
                rundir.check_same_experiment(run_dir, config, how.legacy_fingerprint)
                log(f"{label}: finished by another process, skipped")
                return "skipped"
            earlier = rundir.read_run(run_dir).error
            if earlier:
                log(f"{label}: failed before ({earlier['error']}), retrying")
            log(f"{label}: training" + (f" to epoch {pause_after}" if pause_after else ""))
            metrics = train.train_run(run_dir, data, config, verbose=how.verbose,
                                      deadline=how.deadline, pause_after=pause_after,
                                      resume=not how.rerun)
    except rundir.RunBusy as exc:
        log(f"{label}: skipped: {exc}")
        return "busy"
    except TimeBudgetExceeded as exc:
        log(f"{label}: {exc}")
        return "out of time"
    except KeyboardInterrupt:
        log(f"{label}: interrupted; rerun the same command to resume from this run")
        raise
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the grid
        unrecorded = rundir.record_failure(run_dir, exc)
        where = (f"not recorded: {unrecorded}" if unrecorded
                 else f"recorded in {run_dir / rundir.ERROR}")
        log(f"{label}: FAILED ({type(exc).__name__}: {exc}); {where}")
        return "failed"
    auc = metrics["val_auc"]
    if metrics.get("status") == "paused":
        log(f"{label}: paused after epoch {metrics['epochs_run']}, best val AUC so far "
            f"{'n/a' if auc is None else f'{auc:.4f}'}, {time.time() - started:.0f} s")
        return "paused"
    log(f"{label}: val AUC {'n/a' if auc is None else f'{auc:.4f}'} at epoch "
        f"{metrics['best_epoch']}, {time.time() - started:.0f} s")
    return "ok"

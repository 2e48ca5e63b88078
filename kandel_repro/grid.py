"""Sweeps: a paper table expanded into runs, run in order, resumable.

``run_grid("table2", data_dir, runs_dir)`` trains the 15 runs of Table 2 (5 depths ×
3 learning rates) into ``runs_dir/<run name>/``. A finished run (its ``metrics.json``
exists) is skipped, so a grid killed at any point resumes where it stopped and loses at
most the run in progress. A run that raises is recorded (``error.json``) and the grid
goes on; it is retried on the next invocation.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .backbones import depth_label, get_backbone
from .errors import ConfigError
from .protocol import LEARNING_RATES
from .runio import write_json


@dataclass(frozen=True)
class Sweep:
    name: str
    title: str
    backbone: str
    learning_rates: tuple = LEARNING_RATES
    dataset: str = "pcam"

    @property
    def depths(self):
        """First trainable block, from the top block only down to the whole network."""
        return tuple(range(get_backbone(self.backbone).num_blocks, 0, -1))

    def cells(self):
        """``(run name, first trainable block, learning rate)`` in the order they run."""
        return [(run_name(self.backbone, first, lr), first, lr)
                for first in self.depths for lr in self.learning_rates]


SWEEPS = {
    "table2": Sweep("table2", "Table 2 — VGG16 fine-tuned on PCam", "vgg16"),
}


def get_sweep(name):
    try:
        return SWEEPS[name]
    except KeyError:
        raise ConfigError(f"unknown table {name!r}; available: {', '.join(SWEEPS)}") from None


def run_name(backbone, first_trainable_block, learning_rate):
    num = get_backbone(backbone).num_blocks
    return f"{backbone}_blocks{first_trainable_block}-{num}_lr{learning_rate:.0e}"


def _check_same_experiment(run_dir, config):
    """Refuse to reuse a finished run made with other settings."""
    from .train import EXPERIMENT_KEYS, read_run

    old, _, _ = read_run(run_dir)
    if old is None:
        return
    diffs = [f"{k}: {old.get(k)!r} there, {config.get(k)!r} now"
             for k in EXPERIMENT_KEYS if old.get(k) != config.get(k)]
    if diffs:
        raise ConfigError(
            f"{run_dir} holds a finished run made with other settings ("
            + "; ".join(diffs) + "). Use another --runs folder, or --rerun to replace it."
        )


def preflight(sweep, data_dir, weights):
    """Check data and weights before any work, so a missing piece stops the grid at once."""
    from .data.pcam import read_index
    from .model import build_base, resolve_weights

    index = read_index(data_dir)
    if resolve_weights(weights) == "imagenet":
        size = get_backbone(sweep.backbone).min_input_size
        build_base(sweep.backbone, (size, size, 3), "imagenet")  # downloads or explains
    return index


def run_grid(sweep_name, data_dir, runs_dir, cache_dir=None, rerun=False, workers=None,
             verbose="auto", log=print, **overrides):
    """Run every cell of a sweep that is not finished; return ``{run name: status}``."""
    from .data import pcam
    from .train import FAILED, is_finished, record_failure, resolve_config, train_run

    sweep = get_sweep(sweep_name)
    runs_dir = Path(runs_dir)
    configs = {name: resolve_config(sweep.backbone, first, lr, **overrides)
               for name, first, lr in sweep.cells()}
    weights = next(iter(configs.values()))["weights"]
    preflight(sweep, data_dir, weights)
    data = pcam.load(data_dir, cache_dir, workers=workers)
    for config in configs.values():
        config.update(data_dir=str(data_dir), data_fingerprint=data.fingerprint)
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_json(runs_dir / "grid.json", {"table": sweep.name, "backbone": sweep.backbone,
                                        "data_dir": str(data_dir), "overrides": overrides})
    statuses = {}
    cells = sweep.cells()
    for position, (name, first, lr) in enumerate(cells, 1):
        run_dir = runs_dir / name
        label = (f"[{position}/{len(cells)}] {sweep.name}: {sweep.backbone} blocks "
                 f"{depth_label(first, get_backbone(sweep.backbone).num_blocks)}, lr {lr:.0e}")
        config = configs[name]
        if is_finished(run_dir) and not rerun:
            _check_same_experiment(run_dir, config)
            log(f"{label}: finished, skipped")
            statuses[name] = "skipped"
            continue
        if (run_dir / FAILED).exists():
            log(f"{label}: failed before, retrying")
        log(f"{label}: training")
        started = time.time()
        try:
            metrics = train_run(run_dir, data, config, verbose=verbose)
        except KeyboardInterrupt:
            log(f"{label}: interrupted; rerun the same command to resume from this run")
            raise
        except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the grid
            record_failure(run_dir, exc)
            log(f"{label}: FAILED ({type(exc).__name__}: {exc}); recorded in {run_dir / FAILED}")
            statuses[name] = "failed"
            continue
        statuses[name] = "ok"
        log(f"{label}: val AUC {metrics['val_auc']:.4f} at epoch {metrics['best_epoch']}, "
            f"{time.time() - started:.0f} s")
    failed = [n for n, s in statuses.items() if s == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    return statuses

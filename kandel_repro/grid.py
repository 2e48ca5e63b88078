"""Sweeps: a paper table expanded into runs, run in order, resumable.

``run_grid("table2", data_dir, runs_dir)`` trains the 15 runs of Table 2 (5 depths ×
3 learning rates) into ``runs_dir/<run name>/``. A finished run (its ``metrics.json``
exists) is skipped, so a grid killed at any point resumes where it stopped and loses at
most the run in progress. A run that raises is recorded (``error.json``) and the grid
goes on; it is retried on the next invocation.

Each paper table is a :class:`Sweep`: the rows are the fine-tuning depths of one
backbone (top block only … whole network), or for Table 5 the three backbones trained
from scratch; the columns are the three learning rates.
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
class Cell:
    name: str  # run folder name
    row: str  # row label in the table
    backbone: str
    first_trainable_block: int
    learning_rate: float


@dataclass(frozen=True)
class Sweep:
    name: str
    title: str
    backbones: tuple
    dataset: str = "pcam"  # protocol and reader: "pcam" or "breakhis"
    scratch: bool = False  # random weights, every layer trained (Table 5)
    learning_rates: tuple = LEARNING_RATES

    @property
    def row_header(self):
        return "Architecture (from scratch)" if self.scratch else "Fine-tuned blocks"

    def rows(self):
        """``(label, backbone, first trainable block)`` from the top block only down."""
        if self.scratch:
            return [(get_backbone(b).application, get_backbone(b).name, 1) for b in self.backbones]
        backbone = get_backbone(self.backbones[0])
        return [(depth_label(first, backbone.num_blocks), backbone.name, first)
                for first in range(backbone.num_blocks, 0, -1)]

    def cells(self):
        """Every run of the table, in the order the grid trains them."""
        return [Cell(run_name(backbone, first, lr, self.scratch), row, backbone, first, lr)
                for row, backbone, first in self.rows() for lr in self.learning_rates]

    def fixed_settings(self):
        return {"weights": "none"} if self.scratch else {}


SWEEPS = {s.name: s for s in (
    Sweep("table2", "Table 2 — VGG16 fine-tuned on PCam", ("vgg16",)),
    Sweep("table3", "Table 3 — VGG19 fine-tuned on PCam", ("vgg19",)),
    Sweep("table4", "Table 4 — InceptionV3 fine-tuned on PCam", ("inception_v3",)),
    Sweep("table5", "Table 5 — trained from scratch on PCam",
          ("vgg16", "vgg19", "inception_v3"), scratch=True),
    Sweep("table6", "Table 6 — VGG16 fine-tuned on BreakHis", ("vgg16",), dataset="breakhis"),
    Sweep("table7", "Table 7 — VGG19 fine-tuned on BreakHis", ("vgg19",), dataset="breakhis"),
    Sweep("table8", "Table 8 — InceptionV3 fine-tuned on BreakHis", ("inception_v3",),
          dataset="breakhis"),
)}


def get_sweep(name):
    try:
        return SWEEPS[name]
    except KeyError:
        raise ConfigError(f"unknown table {name!r}; available: {', '.join(SWEEPS)}") from None


def run_name(backbone, first_trainable_block, learning_rate, scratch=False):
    if scratch:
        return f"{backbone}_scratch_lr{learning_rate:.0e}"
    num = get_backbone(backbone).num_blocks
    return f"{backbone}_blocks{first_trainable_block}-{num}_lr{learning_rate:.0e}"


def sweep_configs(sweep, **overrides):
    """The resolved config of every cell: protocol ← the table's fixed settings ← overrides."""
    from .train import resolve_config

    fixed = sweep.fixed_settings()
    for key, value in fixed.items():
        if overrides.get(key) not in (None, value):
            raise ConfigError(f"{sweep.name} fixes {key}={value!r}; got {overrides[key]!r}")
    settings = {**overrides, **fixed}
    return {cell.name: resolve_config(cell.backbone, cell.first_trainable_block,
                                      cell.learning_rate, protocol=sweep.dataset, **settings)
            for cell in sweep.cells()}


def _data_module(dataset):
    """The reader module of a data set: ``kandel_repro.data.pcam`` or ``.breakhis``."""
    import importlib

    return importlib.import_module(f".data.{dataset}", __package__)


def load_data(dataset, data_dir, cache_dir=None, workers=None, image_size=None):
    """Read (packing first if needed) the data set a sweep trains on."""
    if dataset == "breakhis":
        return _data_module(dataset).load(data_dir, image_size, cache_dir, workers=workers)
    return _data_module(dataset).load(data_dir, cache_dir, workers=workers)


def parse_shard(text):
    """``"i/n"`` → ``(i, n)`` with 1 ≤ i ≤ n; None → None."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 2/3), got {text!r}") from None
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {text}: i must be from 1 to n")
    return index, count


def shard_cells(cells, shard):
    """The cells of shard ``(i, n)``: every n-th cell from the i-th, as ``(position, cell)``.

    Round robin, so each shard gets a similar mix of shallow (fast) and deep (slow) runs;
    the shards of one table are disjoint and together cover it.
    """
    numbered = list(enumerate(cells, 1))
    if shard is None:
        return numbered
    index, count = shard
    return [(position, cell) for position, cell in numbered if (position - 1) % count == index - 1]


def _check_same_experiment(run_dir, config, legacy_fingerprint=None):
    """Refuse to reuse a finished run made with other settings.

    ``legacy_fingerprint``: the same data as runs made before data identities were
    recorded fingerprinted them (absolute paths and modification times); such runs are
    accepted when it matches.
    """
    from .train import EXPERIMENT_KEYS, read_run

    old, _, _ = read_run(run_dir)
    if old is None:
        return
    def differs(key):
        if key == "data_fingerprint" and legacy_fingerprint:
            return old.get(key) not in (config.get(key), legacy_fingerprint)
        return old.get(key) != config.get(key)

    diffs = [f"{k}: {old.get(k)!r} there, {config.get(k)!r} now"
             for k in EXPERIMENT_KEYS if differs(k)]
    if diffs:
        raise ConfigError(
            f"{run_dir} holds a finished run made with other settings ("
            + "; ".join(diffs) + "). Use another --runs folder, or --rerun to replace it."
        )


def preflight(sweep, data_dir, weights):
    """Check data and weights before any work, so a missing piece stops the grid at once."""
    from .model import build_base, resolve_weights

    _data_module(sweep.dataset).read_index(data_dir)
    if resolve_weights(weights) == "imagenet":
        for name in sweep.backbones:
            size = get_backbone(name).min_input_size
            build_base(name, (size, size, 3), "imagenet")  # downloads or explains


def _check_input_size(sweep, data):
    side = min(data.image_shape[:2])
    for name in sweep.backbones:
        backbone = get_backbone(name)
        if side < backbone.min_input_size:
            raise ConfigError(
                f"{sweep.name} trains {backbone.name}, which needs images of at least "
                f"{backbone.min_input_size}×{backbone.min_input_size}; {data.root} has "
                f"{data.image_shape[0]}×{data.image_shape[1]}"
            )


def _longest_run_seconds(runs_dir, cells):
    """The wall time of the slowest finished run of these cells (None if none)."""
    from .train import read_run

    seconds = [(read_run(Path(runs_dir) / cell.name)[1] or {}).get("wall_seconds")
               for cell in cells]
    seconds = [s for s in seconds if s]
    return max(seconds) if seconds else None


def run_grid(sweep_name, data_dir, runs_dir, cache_dir=None, rerun=False, workers=None,
             verbose="auto", log=print, shard=None, time_budget=None, **overrides):
    """Run every cell of a sweep that is not finished; return ``{run name: status}``.

    ``shard="i/n"`` runs only the i-th of n disjoint shares of the cells (see
    :func:`shard_cells`): n machines or Kaggle kernels each run one share, and the table
    is rendered from all their run folders copied into one ``runs_dir``.

    ``time_budget`` (seconds from now): a run is not started when the slowest finished
    run of the table would not fit in what is left, and a run in progress stops at the
    epoch boundary that would pass the budget (it stays unfinished). Runs left over get
    the status ``"out of time"``; the same call later resumes with them.
    """
    from .train import FAILED, TimeBudgetExceeded, is_finished, record_failure, train_run

    sweep = get_sweep(sweep_name)
    shard = parse_shard(shard)
    runs_dir = Path(runs_dir)
    configs = sweep_configs(sweep, **overrides)
    first = next(iter(configs.values()))
    preflight(sweep, data_dir, first["weights"])
    data = load_data(sweep.dataset, data_dir, cache_dir, workers, first["image_size"])
    _check_input_size(sweep, data)
    for config in configs.values():
        config.update(data_dir=str(data_dir), data_fingerprint=data.fingerprint)
    runs_dir.mkdir(parents=True, exist_ok=True)
    # NOTE: one file per shard, so run folders of several shards merge without clashes.
    record = "grid.json" if shard is None else f"grid-shard-{shard[0]}of{shard[1]}.json"
    write_json(runs_dir / record, {"table": sweep.name, "backbones": list(sweep.backbones),
                                   "data_dir": str(data_dir), "overrides": overrides,
                                   "shard": None if shard is None else list(shard)})
    statuses = {}
    deadline = None if time_budget is None else time.time() + float(time_budget)
    cells = sweep.cells()
    mine = shard_cells(cells, shard)

    def out_of_time():
        """Mark this shard's unfinished runs "out of time"; return how many."""
        left = [c.name for _, c in mine if not is_finished(runs_dir / c.name)]
        statuses.update({name: "out of time" for name in left})
        return len(left)
    if shard is not None:
        log(f"{sweep.name}: shard {shard[0]}/{shard[1]} runs {len(mine)} of {len(cells)} runs")
    for position, cell in mine:
        run_dir = runs_dir / cell.name
        what = "from scratch" if sweep.scratch else f"blocks {cell.row}"
        label = (f"[{position}/{len(cells)}] {sweep.name}: {cell.backbone} {what}, "
                 f"lr {cell.learning_rate:.0e}")
        config = configs[cell.name]
        if is_finished(run_dir) and not rerun:
            _check_same_experiment(run_dir, config, data.legacy_fingerprint)
            log(f"{label}: finished, skipped")
            statuses[cell.name] = "skipped"
            continue
        if deadline is not None:
            expected = _longest_run_seconds(runs_dir, cells) or 0.0
            if time.time() + expected > deadline:
                left = out_of_time()
                log(f"{label}: not started: the time budget has "
                    f"{max(deadline - time.time(), 0):.0f} s left and the slowest run so far "
                    f"took {expected:.0f} s; {left} run(s) left for the next session")
                break
        if (run_dir / FAILED).exists():
            log(f"{label}: failed before, retrying")
        log(f"{label}: training")
        started = time.time()
        try:
            metrics = train_run(run_dir, data, config, verbose=verbose, deadline=deadline)
        except TimeBudgetExceeded as exc:
            log(f"{label}: {exc}; {out_of_time()} run(s) left for the next session")
            break
        except KeyboardInterrupt:
            log(f"{label}: interrupted; rerun the same command to resume from this run")
            raise
        except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the grid
            record_failure(run_dir, exc)
            log(f"{label}: FAILED ({type(exc).__name__}: {exc}); recorded in {run_dir / FAILED}")
            statuses[cell.name] = "failed"
            continue
        statuses[cell.name] = "ok"
        auc = metrics["val_auc"]
        log(f"{label}: val AUC {'n/a' if auc is None else f'{auc:.4f}'} at epoch "
            f"{metrics['best_epoch']}, {time.time() - started:.0f} s")
    failed = [n for n, s in statuses.items() if s == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    return statuses

"""The grid: a study's runs trained in order, resumable (a single run outside a study:
:mod:`kandel_repro.runs.single`).

``run_grid("table2", data_dir, runs_dir)`` trains the 15 runs of Table 2 (5 depths ×
3 learning rates; the study is in :mod:`kandel_repro.studies.registry`) into
``runs_dir/<run name>/``; how it runs them is its :class:`GridOptions`, what every run
computes beyond the study's own settings the user's
:class:`~kandel_repro.runs.settings.UserSettings`, two typed objects::

    run_grid("table2", data_dir, runs_dir, GridOptions(shard="1/3"),
             UserSettings(weights="none", max_epochs=3))

A finished run (its ``metrics.json`` exists) is skipped, so a grid killed at any point
resumes where it stopped and loses at most the run in progress. A run that raises is
recorded (``error.json``) and the grid goes on; it is retried on the next invocation. A
finished run made with other settings is never reused: the grid refuses it
(:func:`kandel_repro.runs.rundir.check_same_experiment`).
A finished run reused with ``tta`` N (``--tta``, an evaluation setting, not part of the
experiment) whose metrics lack N views' scores is scored with them then, from its best
model, not trained again (:func:`add_tta`).

The folder of a grid's runs holds ``grid.json`` (:func:`kandel_repro.runs.rundir.record_grid`):
its study, data and settings and every backbone it trains (the depth study of
``--backbone a,b``: each one, run one after the other into the same folder). The depth
study reads ``--dataset folder`` unless told otherwise; given a folder of one of the
paper's data sets in its own layout (Kaggle's PCam, the HDF5 release, BreakHis), it says
which ``--dataset`` reads it (:func:`_paper_layout`).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, DataError
from ..core.files import check_writable
from ..models.backbones import check_input_size
from ..readers.registry import get_reader
from ..runs import rundir, train
from ..runs.config import check_time_budget, resolve_runtime, with_data
from ..runs.settings import RunSettings, UserSettings
from ..runs.single import check_weights
from ..studies.cells import parse_seeds, parse_shard, shard_cells, study_configs, study_runs
from ..studies.registry import get_study, parse_backbones
from ..studies.types import Study
from ..studies.unlabelled import bind_pretrained, check_pretrain_data
from ..training.runtime import make_strategy
from .attempt import Attempt, train_grid_run
from .search import check_search, in_process, run_halving

if TYPE_CHECKING:
    from ..data.packed import PackedData


def preflight(study: Study, data_dir: str | Path, configs: Iterable[RunSettings],
              dataset: str | None = None) -> None:
    """Check data and weights before any work, so a missing piece stops the grid at once
    (:func:`~kandel_repro.runs.single.check_weights`), before any run folder is written."""
    configs = list(configs)
    reader = get_reader(dataset or study.dataset)
    first = configs[0] if configs else None
    reader.read_index(data_dir, first, **reader.options_of(first))
    check_weights(configs)


def _check_input_size(study, data):
    height, width = data.image_shape[:2]
    for name in study.backbones:
        check_input_size(name, height, width,
                         f"{study.name} on {data.root} ({height}×{width} images)")


def _describe(study, cell):
    """How progress lines name a run: ``vgg16 blocks 3–5, lr 1e-4``."""
    prefix = f"{cell.backbone} " if len(study.backbones) == 1 else ""
    return prefix + cell.description


def _label(study, cell, seed, seeds, position, total):
    """A run's progress lines' label: ``[3/15] table2: vgg16 blocks 3–5, lr 1e-4``, with
    its seed where the grid has others."""
    return (f"[{position}/{total}] {study.name}: {_describe(study, cell)}"
            + (f", seed {seed}" if seeds != (0,) else ""))


@dataclass(frozen=True)
class GridOptions:
    """How a grid runs its study, as opposed to the run settings (what each run computes,
    :class:`~kandel_repro.runs.settings.UserSettings`): which runs, where, within what time.

    ``seeds`` (``3``, ``"0,3,7"``; default seed 0 only, or the ``seed`` setting's value,
    ``--seed S`` alone):
    each cell is trained once per seed (the seed of the head's initialisation, the
    shuffling and the augmentation; the split stays ``split_seed``'s). ``shard="i/n"``:
    only the i-th of n disjoint shares of the runs (:func:`~kandel_repro.studies.cells.
    shard_cells`), e.g. on n machines or Kaggle kernels, whose run folders are then copied
    into one ``runs_dir``. ``dataset``: the data set ``data_dir`` holds when it is not the
    study's own (one of the same protocol: a PCam study reads ``pcam`` or ``pcam-h5``).
    ``fractions``: the datasize study's training-set fractions. ``backbone`` (and
    ``dataset``): those of the depth study (:func:`~kandel_repro.studies.registry.depth_study`).

    ``time_budget`` (seconds from now): a run is not started when the slowest finished
    run of the study would not fit in what is left, and a run in progress stops before an
    epoch that would pass the budget (it stays unfinished, its state saved at that epoch,
    and resumes from there; a run whose last epoch ends in time is finished); runs left over get the status ``"out of time"`` and the same call
    later resumes with them.

    ``executor="ray"``: each unfinished run becomes a Ray task asking for
    ``gpus_per_run``/``cpus_per_run`` on the cluster at ``address`` (default: a local
    Ray); see :mod:`kandel_repro.grid.cluster`. ``runs_dir`` must then be shared storage.
    """

    cache_dir: str | Path | None = None
    rerun: bool = False  # train finished runs again
    workers: int | None = None  # decoding processes when the data are packed
    verbose: int | str = "auto"  # Keras' progress output
    shard: str | tuple | None = None
    time_budget: float | None = None
    seeds: int | str | tuple | None = None
    dataset: str | None = None
    fractions: str | tuple | None = None
    backbone: str | None = None  # the depth study's backbone
    learning_rates: str | tuple | None = None  # the depth study's columns
    executor: str = "local"
    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: float | None = None
    # successive halving over the cells instead of every cell to its end
    # (kandel_repro.grid.search): None, or "halving" with its η and first rung's epochs
    search: str | None = None
    eta: int | None = None  # (3)
    min_epochs: int | None = None  # (1)

    def check_executor(self) -> None:
        """Refuse executor options that do not go together, before any packing."""
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"--executor must be local or ray, got {self.executor!r}")
        if self.executor == "ray":
            from .cluster import check_request, require_ray

            check_request(self.gpus_per_run, self.cpus_per_run)
            require_ray()
        elif (self.gpus_per_run, self.cpus_per_run, self.address) != (None, None, None):
            raise ConfigError("--address, --gpus-per-run and --cpus-per-run apply to "
                              "--executor ray; the in-process grid uses this machine as it is")


def run_grid(study_name: str, data_dir: str | Path, runs_dir: str | Path,
             options: GridOptions | None = None, settings: UserSettings | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Train every run of a study that is not finished; return ``{run name: status}``.

    ``options``: how the grid runs (:class:`GridOptions`: ``shard``, ``seeds``,
    ``time_budget``, …; default: all runs, here, one after another); ``settings``: the
    user's run settings applied to every run (:class:`~kandel_repro.runs.settings.
    UserSettings`: ``weights``, ``max_epochs``, …; default: the protocol's).
    """
    grid = GridOptions() if options is None else options
    settings = UserSettings() if settings is None else settings
    if not isinstance(grid, GridOptions) or not isinstance(settings, UserSettings):
        raise TypeError(f"run_grid takes GridOptions and UserSettings, got "
                        f"{type(grid).__name__} and {type(settings).__name__}")
    grid.check_executor()
    several = parse_backbones(grid.backbone) if get_study(study_name).parametric else []
    if len(several) > 1:
        return _each_backbone(study_name, data_dir, runs_dir, log, several, grid, settings)
    return _one_grid(study_name, data_dir, runs_dir, log, grid, settings)


def _one_grid(study_name, data_dir, runs_dir, log, grid, settings, backbones=None):
    """The grid of one study (of one backbone); ``backbones``: those of the whole grid
    this one is part of (``--backbone a,b``), which ``grid.json`` records."""
    study = get_study(study_name, grid.fractions, backbone=grid.backbone,
                      dataset=grid.dataset if get_study(study_name).parametric else None,
                      learning_rates=grid.learning_rates)
    study = bind_pretrained(study, runs_dir, log=log)  # (the unlabelled studies' pretrain runs)
    reader = _reader(study, grid.dataset)
    shard = parse_shard(grid.shard)
    time_budget = check_time_budget(grid.time_budget)
    seeds, settings = _seeds(grid.seeds, settings)
    configs = study_configs(study, seeds, **settings)
    first = next(iter(configs.values()))
    reader.check_config(first)  # before any packing
    try:
        preflight(study, data_dir, configs.values(), reader.name)
    except DataError:
        layout = None if grid.dataset or not study.parametric else _paper_layout(data_dir)
        if layout is None:
            raise
        what, dataset = layout
        raise DataError(f"{data_dir} holds {what}, and the {study.name} study reads --dataset "
                        f"{reader.name} (your own class folders) unless told otherwise: give "
                        f"--dataset {dataset}") from None
    eta, min_epochs = check_search(grid.search, grid.eta, grid.min_epochs, shard,
                                   first.max_epochs)
    grid = replace(grid, eta=eta, min_epochs=min_epochs)
    runs_dir = check_writable(runs_dir, "--runs")
    data = reader.load(data_dir, grid.cache_dir, workers=grid.workers,
                       image_size=first.image_size, **reader.options_of(first))
    _check_input_size(study, data)
    data.split(first)  # data a split cannot serve is refused before any run starts
    configs = {name: with_data(config, data, data_dir) for name, config in configs.items()}
    check_pretrain_data(study, next(iter(configs.values())), log)
    rundir.record_grid(runs_dir, {"study": study.name, "dataset": reader.name,
                                  "backbones": list(backbones or study.backbones),
                                  "data_dir": str(data_dir), "settings": dict(settings),
                                  "seeds": list(seeds),
                                  "search": None if not grid.search else {
                                      "method": grid.search, "eta": grid.eta,
                                      "min_epochs": grid.min_epochs}}, shard)
    how = Attempt(rerun=grid.rerun, verbose=grid.verbose,
                  deadline=None if time_budget is None else time.time() + time_budget,
                  legacy_fingerprint=data.legacy_fingerprint)
    runs = study_runs(study, seeds)
    if grid.search:
        statuses = _search(study, runs, seeds, runs_dir, data, configs, how, grid,
                           reader.name, data_dir, log)
        _summarise(statuses, log)
        return statuses
    statuses, todo = _finished_and_todo(study, runs, shard, seeds, runs_dir, configs, how, log)
    _score_finished_with_tta(statuses, runs_dir, data, configs, log)
    if grid.executor == "ray" and todo:  # (nothing to do: no cluster started or reached)
        from .cluster import run_on_ray

        job = _ray_job(grid, runs_dir, data_dir, reader.name, how)
        statuses.update(run_on_ray(todo, configs, job, log))
    elif grid.executor == "local":
        statuses.update(_train_in_process(todo, runs, runs_dir, data, configs, how, log))
    _summarise(statuses, log)
    return statuses


def _ray_job(grid, runs_dir, data_dir, dataset, how):
    from .cluster import RayJob

    return RayJob(str(Path(runs_dir).absolute()), str(Path(data_dir).absolute()), dataset,
                  None if grid.cache_dir is None else str(Path(grid.cache_dir).absolute()),
                  how, address=grid.address, gpus_per_run=grid.gpus_per_run,
                  cpus_per_run=grid.cpus_per_run)


def _search(study, runs, seeds, runs_dir, data, configs, how, grid, dataset, data_dir, log):
    """The study's cells searched by successive halving (:mod:`kandel_repro.grid.search`),
    each rung's runs trained here or as Ray tasks; ``{run name: status}``."""
    cells = {}
    for position, (cell, seed, name) in enumerate(runs, 1):
        label = _label(study, cell, seed, seeds, position, len(runs))
        cells.setdefault(cell.folder, (cell, []))[1].append((label, name))
    for _, names in cells.values():  # a finished or paused run of other settings is refused
        for _, name in names:
            if how.rerun:
                continue
            if rundir.is_finished(runs_dir / name):
                rundir.check_same_experiment(runs_dir / name, configs[name],
                                             how.legacy_fingerprint)
            elif (runs_dir / name / rundir.RESUME).is_file():
                rundir.check_same_experiment(runs_dir / name, configs[name],
                                             how.legacy_fingerprint, "a paused run")
    once = replace(how, rerun=False)  # (run_halving clears the runs once for --rerun)
    if grid.executor == "ray":
        from .cluster import run_on_ray

        job = _ray_job(grid, runs_dir, data_dir, dataset, once)

        def train(todo, epoch):
            return run_on_ray(todo, configs, replace(job, pause_after=epoch), log)
    else:
        train = in_process(runs_dir, data, configs, once, log)
    max_epochs = next(iter(configs.values()))["max_epochs"]
    log(f"{study.name}: successive halving over {len(cells)} cells (η = {grid.eta}, "
        f"first rung {grid.min_epochs} epoch(s) of {max_epochs})")
    return run_halving(list(cells.values()), runs_dir, max_epochs, train, grid.eta,
                       grid.min_epochs, rerun=how.rerun, log=log)


def _each_backbone(study_name, data_dir, runs_dir, log, backbones, grid, settings):
    """The depth study of several backbones (``--backbone a,b,c``): each backbone's grid
    in turn into the same ``runs_dir`` (its run folders are named after it), within one
    time budget; every backbone is checked before the first trains."""
    seeds, rest = _seeds(grid.seeds, settings)
    for name in backbones:  # refuse a setting any of them cannot take, before training
        study_configs(get_study(study_name, grid.fractions, backbone=name,
                                dataset=grid.dataset, learning_rates=grid.learning_rates),
                      seeds, **rest)
    started, statuses = time.time(), {}
    for name in backbones:
        left = None if grid.time_budget is None else grid.time_budget - (time.time() - started)
        if left is not None and left <= 0:
            log(f"{study_name} {name}: not started: the time budget is spent")
            continue
        one = replace(grid, backbone=name, time_budget=left)
        statuses.update(_one_grid(study_name, data_dir, runs_dir, log, one, settings, backbones))
    return statuses


def _paper_layout(data_dir):
    """``(what, reader)`` where ``data_dir`` holds one of the paper's data sets in its own
    layout — the Kaggle PCam (``train/`` of ``.tif`` files and ``train_labels.csv``), the
    PCam HDF5 release, BreakHis — else None. Read only when the folder reader refused the
    folder, and cheaply: a file name or two, no listing of a whole folder."""
    from ..data.layouts import PREFIX

    root = Path(data_dir)
    if not root.is_dir():
        return None
    if (root / "train_labels.csv").is_file() and next(root.glob("train/*.tif"), None):
        return ("PCam in the Kaggle layout (train/ of .tif files and train_labels.csv)",
                "pcam")
    if next(root.glob(f"{PREFIX}*.h5*"), None):
        return f"the PCam HDF5 release ({PREFIX}*.h5)", "pcam-h5"
    for breast in (root / "BreaKHis_v1" / "histology_slides" / "breast",
                   root / "histology_slides" / "breast", root):
        if (breast / "benign" / "SOB").is_dir() and (breast / "malignant" / "SOB").is_dir():
            return "BreakHis in its BreaKHis_v1 layout", "breakhis"
    return None


def _finished_and_todo(study, runs, shard, seeds, runs_dir, configs, how, log):
    """``({run: "skipped"} for the finished runs of this shard, [(label, run)] to train)``;
    a finished run made with other settings is refused."""
    mine = shard_cells(runs, shard)
    if shard is not None:
        log(f"{study.name}: shard {shard[0]}/{shard[1]} runs {len(mine)} of {len(runs)} runs")
    statuses, todo = {}, []
    for position, (cell, seed, name) in mine:
        label = _label(study, cell, seed, seeds, position, len(runs))
        if rundir.is_finished(runs_dir / name) and not how.rerun:
            rundir.check_same_experiment(runs_dir / name, configs[name], how.legacy_fingerprint)
            log(f"{label}: finished, skipped")
            statuses[name] = "skipped"
        else:
            todo.append((label, name))
    return statuses, todo


def _score_finished_with_tta(statuses, runs_dir, data, configs, log):
    """The finished runs reused (``skipped``) whose config asks for ``tta`` N views but
    whose metrics have no TTA scores of N views: their best models scored with them now,
    here, not retrained (:func:`add_tta`). One that cannot be is ``failed`` (the grid goes
    on); one another process holds is left as it is."""
    for name, status in statuses.items():
        views = int(configs[name].get("tta") or 1)
        if status != "skipped" or views == 1 or rundir.tta_views(runs_dir / name) == views:
            continue
        try:
            with rundir.claim(runs_dir / name):
                metrics = add_tta(runs_dir / name, data, configs[name])
        except rundir.RunBusy as exc:
            log(f"{name}: not scored with test-time augmentation: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one run's scoring must not stop the grid
            log(f"{name}: scoring with test-time augmentation FAILED ({type(exc).__name__}: "
                f"{exc})")
            statuses[name] = "failed"
            continue
        auc = metrics.get("val_auc_tta")
        log(f"{name}: finished before; scored with test-time augmentation ({views} views): "
            f"val AUC {'n/a' if auc is None else f'{auc:.4f}'}")


def add_tta(run_dir: str | Path, data: PackedData, config: RunSettings) -> dict:
    """Score a finished run's ``best_model.keras`` on ``config["tta"]`` views without
    training it again: the TTA prediction files written as a run writes them
    (:func:`~kandel_repro.runs.train.score_tta`, through the run's input stage,
    :func:`~kandel_repro.runs.train.predictor_of`), the TTA metrics put in its
    ``metrics.json`` (replacing those of other views, Kaggle's TTA scores with them) and
    its ``config.json`` recording ``tta``; return the metrics.
    ``config``: the run's config with the data's facts (the grid's), whose runtime
    settings (precision, prediction batch) this machine resolves now."""
    import keras

    run_dir = Path(run_dir)
    rundir.finished_config(run_dir, use="score with test-time augmentation")
    config = resolve_runtime(config)
    strategy = make_strategy(config.distribute)
    _, val_idx, test = data.split(config)
    with strategy.scope():
        predictor = train.predictor_of(keras.saving.load_model(run_dir / rundir.BEST_MODEL),
                                       config, data.image_shape)
    scores = train.score_tta(run_dir, data, predictor, config, val_idx, test, strategy)
    # NOTE: Kaggle's scores of an earlier TTA submission file (other views) are stale now.
    metrics = {k: v for k, v in rundir.read_metrics(run_dir).items()
               if not (k.startswith("kaggle_") and k.endswith("_tta"))}
    rundir.write_metrics(run_dir, {**metrics, **scores})
    rundir.update_config(run_dir, tta=scores["tta_views"])
    return {**metrics, **scores}


def _train_in_process(todo, runs, runs_dir, data, configs, how, log):
    """Train ``todo`` one after another here, within the time budget; their statuses."""
    statuses = {}
    for index, (label, name) in enumerate(todo):
        if how.deadline is not None:
            expected = rundir.longest_seconds(runs_dir / n for _, _, n in runs) or 0.0
            if time.time() + expected > how.deadline:
                log(f"{label}: not started: the time budget has "
                    f"{max(how.deadline - time.time(), 0):.0f} s left and the slowest run so "
                    f"far took {expected:.0f} s; {len(todo) - index} run(s) left for the "
                    "next session")
                statuses.update({n: "out of time" for _, n in todo[index:]})
                break
        statuses[name] = train_grid_run(runs_dir / name, data, configs[name], label, how, log)
        if statuses[name] == "out of time":
            log(f"{len(todo) - index} run(s) left for the next session")
            statuses.update({n: "out of time" for _, n in todo[index + 1:]})
            break
    return statuses


def _summarise(statuses, log):
    busy = [n for n, s in statuses.items() if s == "busy"]
    if busy:
        log(f"{len(busy)} run(s) were being trained by another process; the same command "
            "later picks up any they leave unfinished")
    failed = [n for n, s in statuses.items() if s == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)


def _reader(study, dataset):
    """The reader of the data a grid reads: the study's, or one of its protocol."""
    reader = get_reader(dataset or study.dataset)
    if reader.protocol != study.protocol:
        raise ConfigError(f"{study.name} follows the {study.protocol} protocol; --dataset "
                          f"{reader.name} is {reader.protocol} data")
    return reader


def _seeds(seeds, settings):
    """``(the seeds of a grid, the settings less seed)``: ``--seeds``, or ``--seed S``
    alone as the one seed S."""
    seed = settings.seed
    if seed is not None and seeds is not None:
        raise ConfigError("give --seeds (the seeds of a grid) or --seed (one seed), not both")
    return parse_seeds(seeds if seed is None else [seed]), settings.without("seed")

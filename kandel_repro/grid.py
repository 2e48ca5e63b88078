"""The grid: a study's runs trained in order, resumable; and single runs.

``run_grid("table2", data_dir, runs_dir)`` trains the 15 runs of Table 2 (5 depths ×
3 learning rates; the study is in :mod:`kandel_repro.studies`) into
``runs_dir/<run name>/``. A finished run (its ``metrics.json`` exists) is skipped, so a
grid killed at any point resumes where it stopped and loses at most the run in
progress. A run that raises is recorded (``error.json``) and the grid goes on; it is
retried on the next invocation. A finished run made with other settings is never
reused: the grid refuses it (:func:`kandel_repro.rundir.check_same_experiment`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from . import rundir, train
from .backbones import get_backbone
from .config import MEANVAR, check_time_budget, resolve_config, with_data
from .data.readers import get_reader
from .errors import ConfigError
from .model import build_base
from .runio import check_writable
from .studies import get_study, parse_seeds, study_configs, study_runs
from .submission import submit_runs, summarise


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
    """The items (cells, or runs) of shard ``(i, n)``: every n-th from the i-th, as
    ``(position, item)``.

    Round robin, so each shard gets a similar mix of shallow (fast) and deep (slow) runs;
    the shards of one table are disjoint and together cover it.
    """
    numbered = list(enumerate(cells, 1))
    if shard is None:
        return numbered
    index, count = shard
    return [(position, cell) for position, cell in numbered if (position - 1) % count == index - 1]


def preflight(study, data_dir, configs, dataset=None):
    """Check data and weights before any work, so a missing piece stops the grid at once
    (:func:`check_weights`), before any run folder is written."""
    get_reader(dataset or study.dataset).read_index(data_dir)
    check_weights(configs)


def check_weights(configs):
    """Load, once per backbone and weights, the weights the runs of ``configs`` start
    from (``--weights``, or Mean-Var's ``--weights-from``), into the backbone at its
    smallest input size (cheap): the ImageNet weights are downloaded now, or their absence
    explained; a file or folder that does not hold the backbone's weights (missing,
    truncated, another backbone's) is named in one line."""
    needed = {}
    for c in configs:
        if c["weights"] == MEANVAR:
            needed.setdefault((c["backbone"], c.get("weights_from") or "imagenet"),
                              "--weights-from")
        elif c["weights"] != "none":
            needed.setdefault((c["backbone"], c["weights"]), "--weights")
    for (name, weights), option in sorted(needed.items()):
        size = get_backbone(name).min_input_size
        build_base(name, (size, size, 3), weights, option=option)  # loads or explains


def _check_input_size(study, data):
    side = min(data.image_shape[:2])
    for name in study.backbones:
        backbone = get_backbone(name)
        if side < backbone.min_input_size:
            raise ConfigError(
                f"{study.name} trains {backbone.name}, which needs images of at least "
                f"{backbone.min_input_size}×{backbone.min_input_size}; {data.root} has "
                f"{data.image_shape[0]}×{data.image_shape[1]}"
            )


def _describe(study, cell):
    """How progress lines name a run: ``vgg16 blocks 3–5, lr 1e-4``."""
    prefix = f"{cell.backbone} " if len(study.backbones) == 1 else ""
    return prefix + cell.description


def run_grid(study_name, data_dir, runs_dir, cache_dir=None, rerun=False, workers=None,
             verbose="auto", log=print, shard=None, time_budget=None, seeds=None, dataset=None,
             fractions=None, executor="local", address=None, gpus_per_run=None,
             cpus_per_run=None, **settings):
    """Train every run of a study that is not finished; return ``{run name: status}``.

    ``settings`` are run settings (:func:`kandel_repro.config.resolve_config`) applied
    to every run. ``seeds`` (``3``, ``"0,3,7"``; default seed 0 only, or ``seed``'s
    value when that setting is given): each cell is trained once per seed (the seed of
    the head's initialisation, the shuffling and the augmentation; the split stays
    ``split_seed``'s). ``shard="i/n"`` runs only the i-th of n disjoint shares of the
    runs (see :func:`shard_cells`): n machines or Kaggle kernels each run one share, and
    the table is rendered from all their run folders copied into one ``runs_dir``.
    ``dataset``: the data set ``data_dir`` holds when it is not the study's own (one of
    the same protocol: a PCam study reads ``pcam`` or ``pcam-h5``).

    ``time_budget`` (seconds from now): a run is not started when the slowest finished
    run of the study would not fit in what is left, and a run in progress stops before an
    epoch that would pass the budget (it stays unfinished; a run whose last epoch ends in
    time is finished). Runs left over get
    the status ``"out of time"``; the same call later resumes with them.

    ``executor="ray"``: each unfinished run becomes a Ray task asking for
    ``gpus_per_run``/``cpus_per_run`` on the cluster at ``address`` (default: a local
    Ray); see :mod:`kandel_repro.cluster`. ``runs_dir`` must then be shared storage.
    """
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor must be local or ray, got {executor!r}")
    if executor == "ray":
        from .cluster import check_request, require_ray

        check_request(gpus_per_run, cpus_per_run)  # before any packing
        require_ray()
    elif gpus_per_run is not None or cpus_per_run is not None or address is not None:
        raise ConfigError("--address, --gpus-per-run and --cpus-per-run apply to --executor "
                          "ray; the in-process grid uses this machine as it is")
    study = get_study(study_name, fractions)
    reader = _reader(study, dataset)
    shard = parse_shard(shard)
    time_budget = check_time_budget(time_budget)
    seeds = _seeds(seeds, settings)
    configs = study_configs(study, seeds, **settings)
    first = next(iter(configs.values()))
    reader.check_config(first)  # before any packing
    preflight(study, data_dir, configs.values(), reader.name)
    runs_dir = check_writable(runs_dir, "--runs")
    data = reader.load(data_dir, cache_dir, workers=workers, image_size=first["image_size"])
    _check_input_size(study, data)
    data.split(first)  # data a split cannot serve is refused before any run starts
    configs = {name: with_data(config, data, data_dir) for name, config in configs.items()}
    rundir.record_grid(runs_dir, {"study": study.name, "backbones": list(study.backbones),
                                  "data_dir": str(data_dir), "settings": settings,
                                  "seeds": list(seeds)}, shard)
    statuses = {}
    deadline = None if time_budget is None else time.time() + time_budget
    runs = study_runs(study, seeds)
    mine = shard_cells(runs, shard)
    if shard is not None:
        log(f"{study.name}: shard {shard[0]}/{shard[1]} runs {len(mine)} of {len(runs)} runs")
    todo = []
    for position, (cell, seed, name) in mine:
        label = (f"[{position}/{len(runs)}] {study.name}: {_describe(study, cell)}"
                 + (f", seed {seed}" if seeds != (0,) else ""))
        if rundir.is_finished(runs_dir / name) and not rerun:
            rundir.check_same_experiment(runs_dir / name, configs[name], data.legacy_fingerprint)
            log(f"{label}: finished, skipped")
            statuses[name] = "skipped"
        else:
            todo.append((label, name))
    if executor == "ray" and todo:  # (nothing to do: no cluster started or reached)
        from .cluster import run_on_ray

        statuses.update(run_on_ray(
            todo, configs, runs_dir, data_dir, reader.name, cache_dir, rerun,
            data.legacy_fingerprint, deadline, log, address=address, gpus_per_run=gpus_per_run,
            cpus_per_run=cpus_per_run))
    elif executor == "local":
        for index, (label, name) in enumerate(todo):
            if deadline is not None:
                expected = rundir.longest_seconds(runs_dir / n for _, _, n in runs) or 0.0
                if time.time() + expected > deadline:
                    log(f"{label}: not started: the time budget has "
                        f"{max(deadline - time.time(), 0):.0f} s left and the slowest run so "
                        f"far took {expected:.0f} s; {len(todo) - index} run(s) left for the "
                        "next session")
                    statuses.update({n: "out of time" for _, n in todo[index:]})
                    break
            statuses[name] = train.attempt(runs_dir / name, data, configs[name], label, rerun,
                                     deadline, verbose, log, data.legacy_fingerprint)
            if statuses[name] == "out of time":
                log(f"{len(todo) - index} run(s) left for the next session")
                statuses.update({n: "out of time" for _, n in todo[index + 1:]})
                break
    busy = [n for n, s in statuses.items() if s == "busy"]
    if busy:
        log(f"{len(busy)} run(s) were being trained by another process; the same command "
            "later picks up any they leave unfinished")
    failed = [n for n, s in statuses.items() if s == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    return statuses


def _reader(study, dataset):
    """The reader of the data a grid reads: the study's, or one of its protocol."""
    reader = get_reader(dataset or study.dataset)
    if reader.protocol != study.protocol:
        raise ConfigError(f"{study.name} follows the {study.protocol} protocol; --dataset "
                          f"{reader.name} is {reader.protocol} data")
    return reader


def _seeds(seeds, settings):
    """The seeds of a grid: ``--seeds``, or ``--seed S`` alone as the one seed S."""
    seed = settings.pop("seed", None)
    if seed is not None and seeds is not None:
        raise ConfigError("give --seeds (the seeds of a grid) or --seed (one seed), not both")
    return parse_seeds(seeds if seed is None else [seed])


def train_single(run_dir, data_dir, backbone, first_trainable_block, learning_rate,
                 dataset="pcam", cache_dir=None, workers=None, verbose="auto", **settings):
    """What ``kandel-repro train`` does: one run outside any study, into ``run_dir``.

    Resolves the settings under the data set's protocol, loads the data (packing it
    first if needed) and trains; returns the run's metrics.
    """
    reader = get_reader(dataset)
    config = resolve_config(backbone, first_trainable_block, learning_rate,
                            protocol=reader.protocol, **settings)
    reader.check_config(config)
    reader.read_index(data_dir)
    check_weights([config])
    run_dir = check_writable(run_dir, "--run-dir")
    data = reader.load(data_dir, cache_dir, workers=workers, image_size=config["image_size"])
    with rundir.claim(run_dir):
        return train.train_run(run_dir, data, with_data(config, data, data_dir), verbose=verbose)


def grid_command(study_name, data_dir, runs_dir, submit=None, log=print, **options):
    """What ``kandel-repro grid`` does; returns its exit status.

    Runs the grid (:func:`run_grid` with ``options``), then, with ``submit`` (the
    options of :func:`kandel_repro.submission.submit_runs`), submits every finished run
    to Kaggle. Status 1 when a run failed or a submission was invalid or unscorable.
    """
    study = get_study(study_name, options.get("fractions"))
    dataset = options.get("dataset") or study.dataset
    if submit is not None and dataset != "pcam":
        raise ConfigError(f"--submit: {study.name} trains on {dataset}, not the Kaggle "
                          "data; only PCam runs are scored by Kaggle")
    statuses = run_grid(study_name, data_dir, runs_dir, log=log, **options)
    status = 1 if "failed" in statuses.values() else 0
    if submit is not None:
        runs = [Path(runs_dir) / name for name, s in statuses.items() if s in ("ok", "skipped")]
        outcomes = submit_runs(runs, queue_file=Path(runs_dir) / "kaggle-queue.json", **submit)
        log(summarise(outcomes))
        if {"invalid", "error"} & set(outcomes.values()):
            status = 1
    return status

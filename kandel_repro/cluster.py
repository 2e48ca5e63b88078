"""Grids on a Ray cluster: each unfinished run is one Ray task.

``kandel-repro grid STUDY --executor ray`` (:func:`kandel_repro.grid.run_grid`) prepares
the grid on the driver as the in-process grid does — settings resolved, data checked and
packed once, finished runs skipped — and then submits every unfinished (cell, seed) run
as a task that asks for ``--gpus-per-run``/``--cpus-per-run``, so Ray places runs on free
GPUs across nodes. A task loads the packed data (the cache the driver packed: never two
packers at once) and trains its run through :func:`kandel_repro.train.attempt`, under the
run's lock, into the same run folder layout; the ``--runs`` folder must therefore be
storage every node sees, which a task checks first. A task whose worker or node dies is
retried (``max_retries``), then recorded as failed; a run that raises is recorded as
failed at once, as in-process. The driver prints the same ``[k/n]`` lines as tasks
finish; Ctrl-C cancels the tasks not started and leaves finished runs as they are.

Ray is an optional extra: ``pip install 'kandel_repro[ray]'``.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from . import rundir
from .errors import ConfigError

RETRIES = 2  # a task whose worker or node died is run again this many times
# A test hook: the path of a file whose presence makes the next task that sees it remove
# the file and kill its own worker once the run's first epoch is written, as a node lost
# mid-run would.
KILL_ONCE = "KANDEL_REPRO_RAY_KILL_ONCE"


def check_request(gpus_per_run, cpus_per_run):
    """Refuse resources no task could be given (before any data is packed)."""
    for option, value in (("--gpus-per-run", gpus_per_run), ("--cpus-per-run", cpus_per_run)):
        if value is not None and not 0 <= value < float("inf"):
            raise ConfigError(f"{option} must be a number ≥ 0, got {value}")
    if cpus_per_run == 0 and not gpus_per_run:
        raise ConfigError("--cpus-per-run 0 asks for nothing: a run needs a CPU or a GPU")


def _kill_after_first_epoch(run_dir, finished, marker):
    """Exit this worker process when ``run_dir`` has its first epoch in its history (and
    the task is still running), noting the run in ``MARKER.killed``: the test hook
    :data:`KILL_ONCE`."""
    def watch():
        while not finished.is_set():
            if (run_dir / rundir.HISTORY).exists():
                Path(marker + ".killed").write_text(run_dir.name)  # what the test checks
                os._exit(1)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'kandel_repro[ray]' "
                          "(or pip install ray)") from None
    return ray


def _run_task(run_dir, config, data_dir, dataset, cache_dir, rerun, legacy_fingerprint,
              deadline, label):
    """What one Ray task does, on its worker: ``(status, log lines)``."""
    lines = []
    host = socket.gethostname()
    run_dir = Path(run_dir)
    if not run_dir.parent.is_dir():
        return "failed", [f"{label}: FAILED: {run_dir.parent} is not visible from {host}: on "
                          "a cluster the --runs folder must be shared storage every node sees"]
    if deadline is not None and time.time() >= deadline:
        return "out of time", [f"{label}: not started: the time budget is spent"]
    from .data.readers import get_reader
    from .train import attempt

    data = get_reader(dataset).load(data_dir, cache_dir, workers=1, progress=False,
                                    image_size=config.get("image_size"))
    finished = threading.Event()
    marker = os.environ.get(KILL_ONCE)
    if marker and Path(marker).exists():
        Path(marker).unlink()
        _kill_after_first_epoch(run_dir, finished, marker)
    try:
        status = attempt(run_dir, data, config, f"{label} (on {host})", rerun, deadline,
                         verbose=0, log=lines.append, legacy_fingerprint=legacy_fingerprint)
    finally:
        finished.set()
    return status, lines


def run_on_ray(todo, configs, runs_dir, data_dir, dataset, cache_dir, rerun, legacy_fingerprint,
               deadline, log, address=None, gpus_per_run=None, cpus_per_run=None):
    """Train the runs ``todo`` (``[(label, run name)]``) as Ray tasks; their statuses."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False,
                 **({} if address else {"include_dashboard": False}))
    if gpus_per_run is None:  # one GPU per run where the cluster has GPUs, else none
        gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) else 0
    resources = {"num_cpus": 1 if cpus_per_run is None else cpus_per_run,
                 "num_gpus": gpus_per_run}
    task = ray.remote(_run_task).options(max_retries=RETRIES, retry_exceptions=False,
                                         **resources)
    # absolute paths: a worker's working folder is not the driver's
    runs_dir, data_dir = Path(runs_dir).absolute(), Path(data_dir).absolute()
    cache_dir = None if cache_dir is None else str(Path(cache_dir).absolute())
    pending = {}
    for label, name in todo:
        ref = task.remote(str(runs_dir / name), configs[name], str(data_dir), dataset,
                          cache_dir, rerun, legacy_fingerprint, deadline, label)
        pending[ref] = (label, name)
    log(f"{len(pending)} run(s) submitted to Ray ({resources['num_gpus']} GPU and "
        f"{resources['num_cpus']} CPU each)")
    statuses = {}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            label, name = pending.pop(done[0])
            try:
                status, lines = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # worker or node lost, retries spent
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                unrecorded = rundir.record_failure(runs_dir / name, RuntimeError(reason))
                status, lines = "failed", [
                    f"{label}: FAILED on Ray after {RETRIES} retries ({reason})"
                    + (f"; not recorded: {unrecorded}" if unrecorded else "")]
            for line in lines:
                log(line)
            statuses[name] = status
    except KeyboardInterrupt:
        log(f"interrupted: cancelling {len(pending)} run(s); finished runs are kept")
        for ref in pending:
            ray.cancel(ref)
        # the runs in progress stop at once and release their locks, so that the same
        # command, run again now, finds them free
        ray.wait(list(pending), num_returns=len(pending), timeout=60)
        log("cancelled; the same command resumes")
        raise
    return statuses

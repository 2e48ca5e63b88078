"""Grids on a Ray cluster: each unfinished run is one Ray task.

``kandel-repro grid STUDY --executor ray`` (:func:`kandel_repro.grid.grid.run_grid`) prepares
the grid on the driver as the in-process grid does — settings resolved, data checked and
packed once, finished runs skipped — and then submits every unfinished (cell, seed) run
as a task that asks for ``--gpus-per-run``/``--cpus-per-run``, so Ray places runs on free
GPUs across nodes. A task loads the packed data (the cache the driver packed: never two
packers at once) and trains its run through :func:`kandel_repro.grid.attempt.train_grid_run`, under the
run's lock, into the same run folder layout; the ``--runs`` folder must therefore be
storage every node sees, which a task checks first. A task whose worker or node dies is
retried (``max_retries``), then recorded as failed; a run that raises is recorded as
failed at once, as in-process. The driver prints the same ``[k/n]`` lines as tasks
finish; Ctrl-C cancels the tasks not started and leaves finished runs as they are.
Before submitting anything the driver refuses, in one line, a cluster that does not
answer within :data:`CONNECT_TIMEOUT` seconds (Ray would retry it for minutes) and a
request no node of the cluster can meet (Ray would keep such tasks waiting forever),
shutting down a Ray it started itself.

Ray is an optional extra: ``pip install 'kandel_repro[ray]'``.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from ..core.errors import ConfigError
from ..runs import rundir
from .attempt import Attempt, train_grid_run

RETRIES = 2  # a task whose worker or node died is run again this many times
CONNECT_TIMEOUT = 5  # seconds to wait for a cluster's port to answer
# how to get a cluster: the end of every message about one that does not answer
START_CLUSTER = ("start one with `ray start --head` on its head node, then give --address auto "
                 "on a machine of the cluster or --address ray://HEAD:10001 from elsewhere")
# A test hook: the path of a file whose presence makes the next task that sees it remove
# the file and kill its own worker once the run's first epoch is written, as a node lost
# mid-run would.
KILL_ONCE = "KANDEL_REPRO_RAY_KILL_ONCE"


def check_request(gpus_per_run: float | None, cpus_per_run: float | None) -> None:
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


def _claim(marker):
    """Whether this task took the kill marker: removing it is the claim, so that of two
    tasks starting together exactly one does (checking first, then removing, let both
    see it and the second fail on a file already gone)."""
    try:
        Path(marker).unlink()
    except FileNotFoundError:
        return False
    return True


def require_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'kandel_repro[ray]' "
                          "(or pip install ray)") from None
    return ray


def _host_port(address, named):
    """``(host, port)`` of a cluster address (``HOST:PORT``, ``ray://HOST:PORT``)."""
    inner = address.split("://", 1)[1] if "://" in address else address
    host, _, port = inner.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{named}: give HOST:PORT (the head node's GCS port, 6379 unless "
                          "`ray start --port` said otherwise), ray://HOST:10001 or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str, named: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address whose port does not answer
    (Ray itself retries such a one for minutes)."""
    host, port = _host_port(address, named)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                  else (exc.strerror or str(exc)).lower())
        raise ConfigError(f"{named}: no Ray cluster answers at {host}:{port} ({reason}); "
                          f"{START_CLUSTER}") from None


def connect(ray: ModuleType, address: str | None) -> str:
    """``ray.init`` as the grid needs it: the cluster at ``address`` (``HOST:PORT``,
    ``ray://HOST:PORT``, ``auto``) or ``RAY_ADDRESS`` (which Ray reads for None and
    ``auto``), or else a Ray started on this machine, refused in one line, within seconds,
    when the cluster does not answer. Returns how messages name the cluster."""
    named = "the Ray on this machine" if address is None else f"--address {address}"
    env = os.environ.get("RAY_ADDRESS")
    if env and address in (None, "auto"):
        named, address = f"RAY_ADDRESS={env}", env
    target = address
    if address in (None, "auto"):  # what Ray joins: the cluster `ray start` left on record
        try:
            from ray._private.services import get_ray_address_from_environment
        except ImportError:  # NOTE: Ray moved it; ray.init below still refuses, only slower
            target = None
        else:
            try:
                target = get_ray_address_from_environment(address, None)
            except ConnectionError:
                raise ConfigError(f"{named}: no Ray cluster runs on this machine; "
                                  f"{START_CLUSTER}") from None
            if address is None and target is not None:
                named = f"the Ray cluster `ray start` recorded on this machine ({target})"
    if target is not None:
        if address == "auto":
            named += f" (found at {target})"
        check_reachable(target, named)
    where = "the Ray on this machine" if target is None else f"the cluster at {target}"
    try:
        ray.init(address=address, log_to_driver=False,
                 **({} if address else {"include_dashboard": False}))
    except (ConnectionError, SystemExit) as exc:  # (Ray exits when the GCS never answers)
        if ray.is_initialized():
            ray.shutdown()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{named}: Ray could not connect ({reason}); {START_CLUSTER}") from None
    return where


def check_fits(ray: ModuleType, where: str, gpus_per_run: float, cpus_per_run: float,
               cpus_given: bool = True) -> None:
    """Refuse a request that no node of the cluster can meet: Ray would keep such tasks
    pending forever (its warning does not reach the driver, ``log_to_driver=False``)."""
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    except Exception:  # NOTE: a Ray that does not list its nodes: the totals, as one node
        nodes = []
    nodes = nodes or [ray.cluster_resources()]
    if any(node.get("GPU", 0) >= gpus_per_run and node.get("CPU", 0) >= cpus_per_run
           for node in nodes):
        return
    gpus = max(node.get("GPU", 0) for node in nodes)
    cpus = max(node.get("CPU", 0) for node in nodes)
    cpus_option = f"--cpus-per-run {cpus_per_run:g}" + ("" if cpus_given else " (the default)")
    has = (f"{where} has {cpus:g} CPU(s) and {gpus:g} GPU(s)" if len(nodes) == 1 else
           f"the {len(nodes)} nodes of {where} have at most {cpus:g} CPU(s) and {gpus:g} "
           "GPU(s) each")
    if gpus_per_run > gpus:
        fix = (f"--gpus-per-run {gpus:g} or less" if gpus else "--gpus-per-run 0 (CPU only)")
        asked = f"--gpus-per-run {gpus_per_run:g}"
    elif cpus_per_run > cpus:
        fix, asked = f"--cpus-per-run {cpus:g} or less", cpus_option
    else:  # each fits some node, not both the same one
        listed = ", ".join(f"{node.get('CPU', 0):g} CPU/{node.get('GPU', 0):g} GPU"
                           for node in nodes)
        raise ConfigError(f"--gpus-per-run {gpus_per_run:g} with {cpus_option}: no node of "
                          f"{where} has both (its nodes: {listed}); no run could start: give "
                          "fewer CPUs or GPUs per run")
    raise ConfigError(f"{asked}: {has}; no run could start: give {fix}, or a cluster "
                      "that has it (--address)")


@dataclass(frozen=True)
class RayJob:
    """What every task of a grid on Ray shares: the (absolute) runs, data and cache
    folders, the data set, how each run is attempted, and what each task asks of the
    cluster at ``address``."""

    runs_dir: str
    data_dir: str
    dataset: str
    cache_dir: str | None
    how: Attempt
    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: float | None = None
    pause_after: int | None = None  # a search's rung: each run pauses after that epoch


def _run_task(run_dir, config, job, label):
    """What one Ray task does, on its worker: ``(status, log lines)``."""
    lines = []
    host = socket.gethostname()
    run_dir = Path(run_dir)
    if not run_dir.parent.is_dir():
        return "failed", [f"{label}: FAILED: {run_dir.parent} is not visible from {host}: on "
                          "a cluster the --runs folder must be shared storage every node sees"]
    if job.how.deadline is not None and time.time() >= job.how.deadline:
        return "out of time", [f"{label}: not started: the time budget is spent"]
    from ..readers.registry import get_reader

    reader = get_reader(job.dataset)
    data = reader.load(job.data_dir, job.cache_dir, workers=1, progress=False,
                       image_size=config.image_size, **reader.options_of(config))
    finished = threading.Event()
    marker = os.environ.get(KILL_ONCE)
    if marker and _claim(marker):
        _kill_after_first_epoch(run_dir, finished, marker)
    try:
        status = train_grid_run(run_dir, data, config, f"{label} (on {host})",
                                replace(job.how, verbose=0), lines.append,
                                pause_after=job.pause_after)
    finally:
        finished.set()
    return status, lines


def run_on_ray(todo: list, configs: dict, job: RayJob,
               log: Callable[[str], None] = print) -> dict:
    """Train the runs ``todo`` (``[(label, run name)]``) as Ray tasks; their statuses."""
    ray = require_ray()
    address, gpus_per_run, cpus_per_run = job.address, job.gpus_per_run, job.cpus_per_run
    started = not ray.is_initialized()  # a Ray this call starts or joins, it leaves on refusal
    where = connect(ray, address) if started else "the Ray cluster this process is connected to"
    try:
        if gpus_per_run is None:  # one GPU per run where the cluster has GPUs, else none
            gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) else 0
        resources = {"num_cpus": 1 if cpus_per_run is None else cpus_per_run,
                     "num_gpus": gpus_per_run}
        check_fits(ray, where, resources["num_gpus"], resources["num_cpus"],
                   cpus_given=cpus_per_run is not None)
    except ConfigError:
        if started:
            ray.shutdown()
        raise
    task = ray.remote(_run_task).options(max_retries=RETRIES, retry_exceptions=False,
                                         **resources)
    # NOTE: absolute paths: a worker's working folder is not the driver's
    runs_dir = Path(job.runs_dir).absolute()
    job = replace(job, runs_dir=str(runs_dir), data_dir=str(Path(job.data_dir).absolute()),
                  cache_dir=None if job.cache_dir is None else str(Path(job.cache_dir).absolute()))
    pending = {}
    for label, name in todo:
        pending[task.remote(str(runs_dir / name), configs[name], job, label)] = (label, name)
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

"""The run folder: its files, and everything that reads or writes them.

One training run (one cell of a study, one seed) lives in one folder::

    config.json             the fully resolved config (kandel_repro.runs.config) + data facts
                            (read and written as kandel_repro.runs.settings.RunSettings)
    val_ids.csv             the validation ids and labels of the split
    history.csv             one row per epoch: loss, accuracy, val_auc, seconds
    best_model.keras        the model of the best epoch (by validation ROC AUC), on preprocessed
                            float input (its backbone's preprocess_input); `kandel-repro
                            predict` scores new images with it, `kandel-repro export`
                            builds from it a model on uint8 images (kandel_repro.runs.export)
    val_predictions.csv     id,label,prediction of the best model on the validation split
                            (k ≥ 3 classes: id,label,score_0 … score_<k-1>, see
                            :func:`prediction_frame`)
    submission.csv          PCam: id,label — test predictions in sample_submission.csv order
    test_ids.csv            BreakHis: the ids and labels of the held-out test split
    test_predictions.csv    BreakHis: id,label,prediction on the held-out test split
    metrics.json            written last: val_auc, best_epoch, epochs_run, wall time, ...
                            (+ kaggle_public_auc/kaggle_private_auc after `kandel-repro submit`;
                            kaggle_…_tta when it submitted submission_tta.csv)
    val_predictions_tta.csv   with --tta 4|8: the files above of the best model scored
    test_predictions_tta.csv  on the dihedral views, averaged (kandel_repro.training.tta);
    submission_tta.csv        same layouts; metrics.json then holds tta_views,
                              val_auc_tta, <test AUC>_tta and their intervals (…_tta_ci)
    error.json              instead of metrics.json when the run raised
    tensorboard/            TensorBoard's logs: loss, accuracy, validation AUC, learning rate
    kaggle-submission.json  PCam, once submitted: ref, description, file hash, status

A run is finished when ``metrics.json`` exists. Every file is written atomically
(:mod:`kandel_repro.core.files`). The folder of a study's runs also holds ``grid.json`` (or
``grid-shard-IofN.json``), what the last grid over it was asked to do. Tables, the
grid, submissions and Kaggle kernels read run folders only through this module; a
``config.json`` written by an earlier version is read in today's names
(:func:`upgrade`).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import traceback
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from ..core.errors import ConfigError, KandelError
from ..core.files import read_json, write_json
from .keys import EXPERIMENT_KEYS, upgrade
from .settings import RunSettings


CONFIG = "config.json"
METRICS = "metrics.json"
ERROR = "error.json"
HISTORY = "history.csv"
BEST_MODEL = "best_model.keras"
VAL_IDS = "val_ids.csv"
VAL_PREDICTIONS = "val_predictions.csv"
SUBMISSION = "submission.csv"
TEST_IDS = "test_ids.csv"
TEST_PREDICTIONS = "test_predictions.csv"
# The same files of test-time augmentation (--tta 4|8): the best model on the dihedral views.
VAL_PREDICTIONS_TTA = "val_predictions_tta.csv"
SUBMISSION_TTA = "submission_tta.csv"
TEST_PREDICTIONS_TTA = "test_predictions_tta.csv"
KAGGLE_RECORD = "kaggle-submission.json"
LOCK = ".lock"  # held while a process trains the run (see claim)
TENSORBOARD = "tensorboard"  # TensorBoard's logs of the run (a folder)
RESUME = "resume.npz"  # the state of a paused run (kandel_repro.runs.epochs)
SEARCH = "search.json"  # a run the search stopped: at which epoch, its validation AUC
GRID = "grid.json"  # in a folder of runs: what the (unsharded) grid over it was asked
# Everything a run writes: cleared when a run (re)starts, so an unfinished earlier
# attempt cannot leak into it.
ARTEFACTS = (CONFIG, VAL_IDS, TEST_IDS, HISTORY, BEST_MODEL, VAL_PREDICTIONS, SUBMISSION,
             TEST_PREDICTIONS, VAL_PREDICTIONS_TTA, SUBMISSION_TTA, TEST_PREDICTIONS_TTA,
             METRICS, ERROR, KAGGLE_RECORD, RESUME, SEARCH)
# What `explain` and `filters` write into a run folder: they describe its model, so a run
# trained again clears them too.
EXPLANATIONS = ("gradcam*.png", "gradcam*.json", "filters.png", "filters.json")


class Run(NamedTuple):
    """What a run folder says: its config (None if never started), its metrics (None
    unless finished) and its error (None unless it raised)."""

    config: dict | None
    metrics: dict | None
    error: dict | None

    @property
    def status(self) -> str:
        """``"ok"`` (finished), ``"failed"`` or ``"missing"`` (not run, or unfinished)."""
        return "ok" if self.metrics else ("failed" if self.error else "missing")


class CorruptFile(KandelError):
    """A run folder's JSON file that cannot be read (e.g. truncated by a full disk)."""


def _read(path):
    """The JSON object in ``path``; None if there is no file; :class:`CorruptFile`,
    naming the file, if it is not a JSON object."""
    if not path.is_file():
        return None
    try:
        value = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFile(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CorruptFile(f"{path} does not hold a JSON object")
    return value


def _read_or_none(path):
    try:
        return _read(path)
    except CorruptFile:
        return None


PRETRAIN_KINDS = ("vae", "dcgan")  # what a pretraining run's config.json says it is


def is_pretrain_run(path: str | Path) -> bool:
    """True when ``path`` is a pretraining run's folder (``kandel-repro pretrain``,
    finished or not)."""
    config = _read_or_none(Path(path) / CONFIG) if Path(path).is_dir() else None
    return bool(config) and config.get("pretrain") in PRETRAIN_KINDS


def is_finished(run_dir: str | Path) -> bool:
    """True when ``metrics.json`` exists and can be read (a damaged one is unfinished)."""
    return _read_or_none(Path(run_dir) / METRICS) is not None


def read_search(run_dir: str | Path) -> dict | None:
    """What ``search.json`` says of a run a search stopped (``stopped_at_epoch``, its
    ``val_auc`` there, ``rung``: :mod:`kandel_repro.grid.search`), or None: not stopped,
    or finished since."""
    return None if is_finished(run_dir) else _read_or_none(Path(run_dir) / SEARCH)


def read_config(run_dir: str | Path) -> dict | None:
    """The run's config in today's names, or None (no file, or a damaged one)."""
    return upgrade(_read_or_none(Path(run_dir) / CONFIG))


def read_metrics(run_dir: str | Path) -> dict | None:
    """The run's metrics, or None (not finished, or a damaged file)."""
    return _read_or_none(Path(run_dir) / METRICS)


def read_run(run_dir: str | Path) -> Run:
    """:class:`Run` ``(config, metrics, error)`` of a run folder.

    A damaged ``config.json`` or ``metrics.json`` makes the run a failed one whose
    error names the file: it is shown as failed in tables and trained again by a grid.
    """
    run_dir = Path(run_dir)
    parts, problems = {}, []
    for key, name in (("config", CONFIG), ("metrics", METRICS), ("error", ERROR)):
        try:
            parts[key] = _read(run_dir / name)
        except CorruptFile as exc:
            parts[key] = None
            problems.append(str(exc))
    if problems:
        return Run(upgrade(parts["config"]), None,
                   {"status": "failed", "error": "; ".join(problems)})
    return Run(upgrade(parts["config"]), parts["metrics"], parts["error"])


def finished_config(run_dir: str | Path, what: str = "", use: str = "use") -> RunSettings:
    """The settings of ``run_dir``, a finished run with a best model; a :class:`ConfigError`
    naming it (after ``what``, the argument the user gave it as) and what it lacks if not;
    ``use``: what the best model is wanted for (in the message)."""
    run_dir = Path(run_dir)
    named = f"{what} {run_dir}" if what else str(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{named}: no such run folder")
    config = read_config(run_dir)
    if config is None:
        raise ConfigError(f"{named} is not a run folder (no readable {CONFIG})")
    if not is_finished(run_dir):
        raise ConfigError(f"{named} is not a finished run (no readable {METRICS}): let its "
                          "training finish first")
    if not (run_dir / BEST_MODEL).is_file():
        raise ConfigError(f"{named} has no {BEST_MODEL} to {use}")
    return RunSettings.of(config)


def start(run_dir: str | Path) -> Path:
    """Create ``run_dir`` for a new attempt, removing what an earlier one left."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clear(run_dir)
    return run_dir


def clear(run_dir: str | Path) -> None:
    """Remove every file a run writes (:data:`ARTEFACTS`, its TensorBoard logs) from
    ``run_dir``."""
    import shutil

    run_dir = Path(run_dir)
    for name in ARTEFACTS:
        (run_dir / name).unlink(missing_ok=True)
    for pattern in EXPLANATIONS:
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)
    shutil.rmtree(run_dir / TENSORBOARD, ignore_errors=True)


def remove_if_empty(folder: str | Path) -> None:
    """Remove ``folder`` if it exists and holds nothing."""
    with contextlib.suppress(OSError):
        Path(folder).rmdir()


def write_config(run_dir: str | Path, config: RunSettings) -> None:
    """Write a run's ``config.json``: its settings as :meth:`RunSettings.to_config` gives them."""
    write_json(Path(run_dir) / CONFIG, RunSettings.of(config).to_config())


def update_config(run_dir: str | Path, **values: Any) -> None:
    """Set ``values`` in a run's ``config.json`` as written (atomically; the other keys in
    the names of the version that wrote them): e.g. the ``tta`` a finished run was
    scored with later."""
    write_json(Path(run_dir) / CONFIG, {**(_read(Path(run_dir) / CONFIG) or {}), **values})


def write_metrics(run_dir: str | Path, metrics: dict) -> None:
    """Write ``metrics.json``: the run is finished from this moment."""
    write_json(Path(run_dir) / METRICS, metrics)


def update_metrics(run_dir: str | Path, **values: Any) -> dict:
    """Add ``values`` to a finished run's metrics (atomically); return the result."""
    metrics = {**read_metrics(run_dir), **values}
    write_metrics(run_dir, metrics)
    return metrics


def record_failure(run_dir: str | Path, exc: BaseException) -> str | None:
    """Write ``error.json`` for a run that raised ``exc`` (call inside ``except``);
    return None, or the reason it could not be written (e.g. a read-only folder)."""
    try:
        write_json(Path(run_dir) / ERROR, {
            "status": "failed", "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        })
    except OSError as problem:
        return f"{type(problem).__name__}: {problem}"
    return None


class RunBusy(KandelError):
    """Another live process is training this run (it holds the run's lock)."""


@contextlib.contextmanager
def claim(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the body trains it; :class:`RunBusy` when another
    live process holds it.

    The lock is an OS lock (``fcntl.lockf``) on ``run_dir/.lock``, whose text says who
    holds it (pid, host, since when). The kernel releases it when its process ends,
    however it ends (``kill -9`` included), so a lock left by a dead process is stale
    by construction and simply taken over; POSIX locks also work on NFS, the usual
    shared storage of a cluster. The file is removed when the holder is done.
    """
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunBusy(f"{run_dir} is being trained by another process ({_holder(path)})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # the last holder removed it after we opened it
            same = False
        if same:
            break
        os.close(fd)
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
        remove_if_empty(run_dir)  # a run that wrote nothing leaves no folder


def _holder(path):
    try:
        holder = json.loads(Path(path).read_text())
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not recorded yet"


def mixed_settings(runs: dict[str, dict],
                   varied: Iterable[str] = ()) -> dict[str, dict[str, list[str]]]:
    """The experiment settings on which finished runs disagree, ``{key: {value as JSON
    text: [run names]}}``, leaving out the keys in ``varied`` (those a study varies on
    purpose). ``runs``: ``{run name: config}``."""
    out = {}
    for key in EXPERIMENT_KEYS:
        if key in varied:
            continue
        values = {}
        for name, config in runs.items():
            values.setdefault(json.dumps(config.get(key), sort_keys=True), []).append(name)
        if len(values) > 1:
            out[key] = values
    return out


def check_same_experiment(run_dir: str | Path, config: Mapping[str, Any],
                          legacy_fingerprint: str | None = None,
                          what: str = "a finished run",
                          remedy: str = "Use another --runs folder, or --rerun to replace "
                                        "it.") -> None:
    """Refuse to reuse a finished run made with other settings (every
    :data:`EXPERIMENT_KEYS` must match).

    ``legacy_fingerprint``: the fingerprint that runs made before data identities were
    recorded gave the same data (paths as spelled, modification times); such runs are
    accepted when it matches.
    """
    old = read_config(run_dir)
    if old is None:
        return

    def differs(key):
        if key == "data_fingerprint" and legacy_fingerprint:
            return old.get(key) not in (config.get(key), legacy_fingerprint)
        if key in ("weights", "weights_from") and \
                old.get(key) not in (None, "none", "imagenet", "meanvar"):
            # NOTE: runs made before weights paths were resolved recorded them as typed;
            # a relative one is read from this working folder, as it was then.
            resolved = str(Path(old[key]).expanduser().resolve())
            return config.get(key) not in (old[key], resolved)
        return old.get(key) != config.get(key)

    diffs = [f"{k}: {old.get(k)!r} there, {config.get(k)!r} now"
             for k in EXPERIMENT_KEYS if differs(k)]
    if diffs:
        raise ConfigError(
            f"{run_dir} holds {what} made with other settings ("
            + "; ".join(diffs) + f"). {remedy}"
        )


def longest_seconds(run_dirs: Iterable[str | Path]) -> float | None:
    """The wall time of the slowest finished run among ``run_dirs`` (None if none)."""
    seconds = [(read_metrics(run_dir) or {}).get("wall_seconds") for run_dir in run_dirs]
    seconds = [s for s in seconds if s]
    return max(seconds) if seconds else None


def record_grid(runs_dir: str | Path, request: dict,
                shard: tuple[int, int] | None = None) -> None:
    """Write what a grid over ``runs_dir`` was asked to do; one file per shard, so the
    run folders of several shards merge without clashes."""
    name = GRID if shard is None else f"grid-shard-{shard[0]}of{shard[1]}.json"
    write_json(Path(runs_dir) / name, dict(request, shard=None if shard is None else list(shard)))


def read_grid(runs_dir: str | Path) -> dict | None:
    """What the (unsharded) grid over ``runs_dir`` was asked to do (:func:`record_grid`),
    or None."""
    return _read_or_none(Path(runs_dir) / GRID)


def finished_runs(folder: str | Path, protocol: str | None = None) -> list[Path]:
    """Finished run folders: ``folder`` itself when it is one, else those inside it
    (only those of ``protocol`` when given)."""
    folder = Path(folder)
    if (folder / CONFIG).is_file():
        return [folder]
    found = []
    for run_dir in sorted(p for p in folder.iterdir() if (p / CONFIG).is_file()):
        config = read_config(run_dir)
        if is_finished(run_dir) and (protocol is None or config.get("protocol", "pcam") == protocol):
            found.append(run_dir)
    return found


# --- prediction files --------------------------------------------------------------------
SCORE_PREFIX = "score_"  # a multi-class prediction file's columns: score_0 … score_<k-1>


def prediction_frame(ids: Any, labels: Any, scores: Any) -> Any:
    """The rows of a prediction file: ``id,label,prediction`` for binary scores (the
    positive class's probability, the layout runs have always written); for an (n, k)
    array of class probabilities ``id,label,score_0 … score_<k-1>``."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"id": ids, "label": labels})
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 2 and scores.shape[1] > 1:
        for k in range(scores.shape[1]):
            frame[f"{SCORE_PREFIX}{k}"] = scores[:, k]
    else:
        frame["prediction"] = scores.reshape(-1)
    return frame


def prediction_files(tta: bool = False) -> tuple[str, str, str]:
    """``(validation, Kaggle submission, labelled test)`` prediction file names: the plain
    ones, or (``tta``) those of test-time augmentation."""
    if tta:
        return VAL_PREDICTIONS_TTA, SUBMISSION_TTA, TEST_PREDICTIONS_TTA
    return VAL_PREDICTIONS, SUBMISSION, TEST_PREDICTIONS


def tta_views(run_dir: str | Path) -> int:
    """The views a finished run's TTA scores averaged (its metrics' ``tta_views``); 1 when
    it has none."""
    return int((read_metrics(run_dir) or {}).get("tta_views") or 1)


def read_tta_predictions(run_dir: str | Path, split: str = "val") -> tuple[Any, Any, Any] | None:
    """``(ids, labels, scores)`` of a run's TTA predictions on ``split`` (``"val"`` or
    ``"test"``, the labelled test split), as :func:`read_predictions` reads them; None
    when the run has none (no ``--tta``, or a test split without labels)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    path = Path(run_dir) / (VAL_PREDICTIONS_TTA if split == "val" else TEST_PREDICTIONS_TTA)
    return read_predictions(path) if path.is_file() else None


def read_predictions(path: str | Path) -> tuple[Any, Any, Any]:
    """``(ids, labels, scores)`` of a prediction file (:func:`prediction_frame`): scores
    one column for binary runs, an (n, k) array for multi-class ones."""
    import pandas as pd

    frame = pd.read_csv(path, dtype={"id": str})
    columns = sorted((c for c in frame.columns if c.startswith(SCORE_PREFIX)),
                     key=lambda c: int(c[len(SCORE_PREFIX):]))
    scores = (frame[columns].to_numpy(dtype=float) if columns
              else frame["prediction"].to_numpy(dtype=float))
    return frame["id"].to_numpy(), frame["label"].to_numpy(), scores

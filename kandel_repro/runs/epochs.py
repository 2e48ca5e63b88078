"""What a run does at the end of each epoch, and how it pauses there and resumes.

:class:`EpochLog` holds what the epochs have shown; :func:`validation_callback` scores
the validation split each epoch, keeps the best model and writes ``history.csv``.

A run told to pause after epoch k (:func:`pause_callback`: successive halving's rungs,
:mod:`kandel_repro.grid.search`) writes ``resume.npz`` (:data:`~kandel_repro.runs.rundir.
RESUME`) there, one file written atomically: every variable of the training model
(weights, BatchNorm statistics, the dropout layers' seed states), every optimiser's
variables (step count, moments), the augmentation generator's state, the best model so
far, the epoch log and early stopping's counters. Resumed (:func:`restore`), the run goes
on from epoch k + 1 with the data in the order an uninterrupted run would have drawn at
that epoch (:func:`fast_forward`), so that it ends exactly as if it had never stopped
(tests/runs/test_resume.py checks the histories and weights are equal).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import ConfigError
from ..core.files import staging_path, write_csv
from ..core.stats import auc_of
from ..training.pipeline import predict_uint8
from . import rundir

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a run starts
    import keras


def auc_or_nan(labels, scores):
    """The validation AUC of ``scores``; NaN where a score is not finite."""
    return auc_of(labels, scores) if np.all(np.isfinite(scores)) else float("nan")


@dataclass
class EpochLog:
    """What the epochs of a run have shown so far (kept by :class:`ValidationAUC`)."""

    n_train: int  # training images per epoch
    deadline: float | None = None  # a time.time() value, or None
    history: list = field(default_factory=list)  # one row per epoch, as history.csv
    best_auc: float = -np.inf
    best_epoch: int = 0
    best_scores: np.ndarray | None = None  # validation predictions of the best epoch
    train_seconds: float = 0.0
    train_images: int = 0
    first_epoch_seconds: float | None = None
    stopped_reason: str | None = None
    out_of_time: bool = False
    paused: bool = False  # stopped after the epoch the run was told to pause at
    started: float | None = None  # time.time() when this attempt began
    earlier_seconds: float = 0.0  # wall seconds of the attempts before a resumption


def validation_callback(run_dir, model, predictor, x, val_idx, val_y, eval_batch_size, log):
    import keras

    class ValidationAUC(keras.callbacks.Callback):
        """Exact ROC AUC on the validation split each epoch; keeps the best model.

        ``model`` is the paper's model (saved as ``best_model.keras``), ``predictor`` the
        same model behind the uint8 input stage; ``log`` the :class:`EpochLog` it fills.
        NOTE: this callback must run before EarlyStopping in the callback list, which
        reads ``logs["val_auc"]`` added here.
        """

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            train_seconds = time.perf_counter() - self.started
            log.train_seconds += train_seconds
            log.train_images += log.n_train
            if epoch == 0:
                log.first_epoch_seconds = train_seconds
            scores = predict_uint8(predictor, x, eval_batch_size, indices=val_idx)
            auc = auc_or_nan(val_y, scores)
            logs["val_auc"] = auc
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
            log.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
                                "train_seconds": train_seconds})
            if np.isfinite(auc) and auc > log.best_auc:
                log.best_auc, log.best_epoch, log.best_scores = auc, epoch + 1, scores
                save_model(model, Path(run_dir) / rundir.BEST_MODEL)
            import pandas as pd

            write_csv(Path(run_dir) / rundir.HISTORY, pd.DataFrame(log.history))
            if not np.isfinite(logs.get("loss", 0.0)):
                log.stopped_reason = "non-finite loss"
                self.model.stop_training = True
            # NOTE: the budget stops a run only before an epoch that would not fit: the
            # last epoch, or one after which the run stops anyway, finishes it.
            epoch_seconds = time.perf_counter() - self.started
            if (log.deadline is not None and epoch + 1 < self.params["epochs"]
                    and not self.model.stop_training
                    and time.time() + epoch_seconds > log.deadline):
                log.out_of_time = True
                self.model.stop_training = True

    return ValidationAUC()


def save_model(model, path):
    # NOTE: staged under a name that still ends in .keras: Keras saves to no other.
    tmp = staging_path(path, suffix=".keras")
    model.save(tmp)
    os.replace(tmp, path)


# --- pausing and resuming ------------------------------------------------------------

_LOG_FIELDS = ("best_auc", "best_epoch", "train_seconds", "train_images",
               "first_epoch_seconds", "stopped_reason")
_STOPPING_FIELDS = ("wait", "best", "best_epoch")  # EarlyStopping's counters


def state_variables(trainer: keras.Model) -> list:
    """Every variable whose value the next epoch depends on, in a fixed order: the
    training model's (weights, statistics, seed states), then each optimiser's (built
    first where no step has built it yet), then the input stage's generator state."""
    import keras

    optimizers = [trainer.optimizer] + [o for o, _, _ in getattr(trainer, "optimizers_used", ())]
    out, seen = list(trainer.variables), {id(v) for v in trainer.variables}
    for optimizer in optimizers:
        if not optimizer.built:
            optimizer.build(trainer.trainable_variables)
        for variable in optimizer.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    for layer in trainer.layers:
        generator = getattr(layer, "generator", None)
        if generator is not None and not isinstance(generator, keras.Variable):
            out.append(generator.state)
    return out


def save_state(folder: Path, trainer: keras.Model, stopping: keras.callbacks.Callback,
               log: EpochLog, epochs: int) -> None:
    """Write ``resume.npz`` after epoch ``epochs``: staged, then moved into place."""
    import keras

    arrays = {f"v{i}": np.asarray(keras.ops.convert_to_numpy(v))
              for i, v in enumerate(state_variables(trainer))}
    if log.best_scores is not None:
        arrays["best_scores"] = np.asarray(log.best_scores)
    best = folder / rundir.BEST_MODEL
    if best.is_file():
        arrays["best_model"] = np.frombuffer(best.read_bytes(), dtype=np.uint8)
    wall = log.earlier_seconds + (time.time() - log.started if log.started else 0.0)
    facts = {"epochs": epochs, "variables": len(arrays) - ("best_scores" in arrays)
             - ("best_model" in arrays), "wall_seconds": wall,
             "log": {k: getattr(log, k) for k in _LOG_FIELDS},
             "stopping": {k: _plain(getattr(stopping, k, None)) for k in _STOPPING_FIELDS}}
    arrays["facts"] = np.frombuffer(json.dumps(facts).encode(), dtype=np.uint8)
    target = folder / rundir.RESUME
    tmp = staging_path(target, suffix=".npz")
    with open(tmp, "wb") as out:
        np.savez(out, **arrays)
    os.replace(tmp, target)


def _plain(value):
    if value is None or isinstance(value, (int, float)):
        return value
    return float(np.asarray(value))


def paused_epochs(folder: str | Path) -> int | None:
    """The epoch a paused run stopped after (its ``resume.npz``), or None (none, or the
    run is finished: a state left beside its metrics is not resumed)."""
    import zipfile

    path = Path(folder) / rundir.RESUME
    if not path.is_file() or rundir.is_finished(folder):
        return None
    try:
        with np.load(path) as state:
            return int(json.loads(state["facts"].tobytes())["epochs"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}); delete it to train the run from "
                          "its start") from None


def restore(folder: Path, trainer: keras.Model, log: EpochLog) -> tuple[int, dict]:
    """Put a paused run's state back into ``trainer`` (built as the run first built it)
    and ``log``; its ``history.csv`` and best model as they were at the pause. Returns
    ``(epochs done, early stopping's counters)``."""
    import pandas as pd

    path = folder / rundir.RESUME
    with np.load(path) as state:
        facts = json.loads(state["facts"].tobytes())
        variables = state_variables(trainer)
        if facts["variables"] != len(variables):
            raise ConfigError(f"{path} holds {facts['variables']} variables and the run's model "
                              f"has {len(variables)}: it was paused by another version of the "
                              "model; delete it to train the run from its start")
        for i, variable in enumerate(variables):
            value = state[f"v{i}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ConfigError(f"{path}: variable {i} has shape {value.shape}, the model's "
                                  f"{tuple(variable.shape)}; delete it to train the run anew")
            variable.assign(value)
        log.best_scores = state["best_scores"] if "best_scores" in state else None
        best = folder / rundir.BEST_MODEL
        if "best_model" in state:
            tmp = staging_path(best, suffix=".keras")
            tmp.write_bytes(state["best_model"].tobytes())
            os.replace(tmp, best)
        else:  # (no finite AUC before the pause: one a later, killed attempt left goes)
            best.unlink(missing_ok=True)
    for key, value in facts["log"].items():
        setattr(log, key, value)
    log.earlier_seconds = float(facts.get("wall_seconds") or 0.0)
    epochs = int(facts["epochs"])
    history = pd.read_csv(folder / rundir.HISTORY).head(epochs)
    log.history = history.to_dict("records")
    write_csv(folder / rundir.HISTORY, history)
    return epochs, facts["stopping"]


def fast_forward(batches: Any, epochs: int) -> None:
    """Bring a run's training batches to the order they have at epoch ``epochs`` + 1:
    a :func:`~kandel_repro.training.pipeline.idg_batches` sequence is told its epoch; a
    ``tf.data`` pipeline, whose seeded shuffle draws its next order each time ``fit``
    opens it, is passed through ``fit`` for ``epochs`` epochs by a model whose step does
    nothing, so that it is opened exactly as the uninterrupted run opened it. That reads the images of those epochs
    once more, and trains nothing."""
    if hasattr(batches, "start_at"):
        batches.start_at(epochs)
        return
    if not epochs:
        return
    import keras

    class Skip(keras.Model):
        def train_step(self, data):
            return {"skipped": keras.ops.zeros(())}

    # NOTE: built under the default strategy whatever the run's: a model of another
    # strategy opens the data once more to build itself symbolically (Keras' trainer),
    # which the run's own fit does too, so that the replay would run one order ahead
    images = keras.Input(tuple(batches.element_spec[0].shape[1:]),
                         dtype=batches.element_spec[0].dtype)
    skip = Skip(images, images, name="fast_forward")
    skip.compile(jit_compile=False)
    skip.fit(batches, epochs=epochs, verbose=0, shuffle=False)


def pause_callback(folder: Path, trainer: keras.Model, stopping: keras.callbacks.Callback,
                   log: EpochLog, pause_after: int | None,
                   counters: dict | None = None) -> keras.callbacks.Callback:
    """The callback (after ``EarlyStopping`` in the list) that writes the run's state where
    it stops unfinished — after epoch ``pause_after`` (a search's rung: the run then
    pauses) or where the time budget stops it — unless it ended there by itself (early
    stopping, a non-finite loss); and, on a resumed run, puts early stopping's
    ``counters`` back once ``fit`` has reset them."""
    import keras

    class Pause(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            for key, value in (counters or {}).items():
                if value is not None:
                    setattr(stopping, key, value)

        def on_epoch_end(self, epoch, logs=None):
            if log.stopped_reason or (self.model.stop_training
                                      and getattr(stopping, "stopped_epoch", 0) == epoch > 0):
                log.out_of_time = False  # (ended by itself: finished, not paused)
                return
            if pause_after is not None and epoch + 1 == pause_after:
                log.out_of_time = False
                save_state(folder, trainer, stopping, log, epoch + 1)
                log.paused = True
                self.model.stop_training = True
            elif log.out_of_time:  # (the budget stops it here: the next call resumes)
                save_state(folder, trainer, stopping, log, epoch + 1)

    return Pause()

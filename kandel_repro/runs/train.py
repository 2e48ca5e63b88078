"""One fine-tuning run: one backbone, one depth, one learning rate → one run folder.

:func:`train_run` trains the model a run's resolved settings
(:class:`~kandel_repro.runs.settings.RunSettings`, :mod:`kandel_repro.runs.config`) describe
on packed data (:class:`kandel_repro.data.packed.PackedData`) and writes the run
folder (:mod:`kandel_repro.runs.rundir` lists its files): the config, the split's ids, the
history of every epoch, the best model, its predictions (with ``tta`` > 1 its TTA ones
too, :func:`score_tta`), and ``metrics.json`` last (a warning where an interval of it is
not assessable). :func:`build_run_models` gives the models of a run as :class:`RunModels`,
:func:`build_network` the network it starts from as :class:`Network`."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..core.errors import ConfigError
from ..core.files import write_csv
from ..core.stats import summary_of
from ..data.split import downsample, nested_subset
from ..models.backbones import HEAD_LAYERS, assign_layers, get_backbone
from ..models.build import build_model
from ..models.freeze import set_trainable_blocks, set_trainable_layers, trainable_layer_names
from ..models.initialise import reinitialise
from ..training.augment import make_input_stage
from ..training.optim import build_optimizers, epoch_decay, grouped_trainer
from ..training.strategies import (check_strategy, enable_adapters, get_strategy,
                                   scaled_optimizer, strategy_callback)
from ..training.pipeline import idg_batches, in_memory_dataset, predict_uint8
from ..training.runtime import (jit_setting, make_strategy, memory_peak, precision_scope,
                                reset_memory_peak)
from ..training.tta import images_per_batch, tta_metrics, tta_predictor
from . import rundir
from .epochs import (EpochLog, auc_or_nan, fast_forward, pause_callback, paused_epochs,
                     restore, validation_callback)
from .config import colour_of, resolve_runtime, with_data
from .settings import RunSettings

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a run starts
    import keras
    import tensorflow as tf

    from ..data.packed import PackedData


def reduce_training(train_idx: np.ndarray, labels: np.ndarray,
                    config: Mapping[str, Any]) -> np.ndarray:
    """The training rows a run uses: a nested, stratified ``train_fraction`` of the
    split's (the same images at every seed; each fraction's rows hold the smaller
    fractions'), then, with ``balance="downsample"``, the negatives cut to as many as
    the positives. The validation split is never touched."""
    if config["balance"] == "downsample" and len(np.unique(labels)) > 2:
        raise ConfigError("--balance downsample cuts the negatives of two classes; these data "
                          f"have {len(np.unique(labels))} classes")
    if config["train_fraction"] < 1.0:
        train_idx = nested_subset(train_idx, labels, config["train_fraction"],
                                  config["split_seed"])
    if config["balance"] == "downsample":
        train_idx = downsample(train_idx, labels, config["split_seed"])
    return train_idx


def loss_of(config: RunSettings) -> str:
    """The Keras loss of a run: its ``loss``, where ``"auto"`` (own data) is binary
    cross-entropy for two classes and sparse categorical cross-entropy (integer labels,
    a softmax head) for more."""
    if config.loss != "auto":
        return config.loss
    return ("binary_crossentropy" if config.num_classes == 2
            else "sparse_categorical_crossentropy")


class TimeBudgetExceeded(Exception):
    """A run was stopped at an epoch boundary because the next epoch would pass the
    deadline; it is not finished (no metrics.json): its state is saved at that epoch
    (:mod:`kandel_repro.runs.epochs`) and the next attempt resumes from there."""


class Network(NamedTuple):
    """The paper's model (:func:`build_network`) and its backbone's block map."""

    model: keras.Model
    block_map: dict


class RunModels(NamedTuple):
    """The models of a run (:func:`build_run_models`); unpacking in this order reads well
    too: ``model, trainer, predictor, trainable = build_run_models(...)``."""

    model: keras.Model  # the paper's model on preprocessed float input (best_model.keras)
    trainer: keras.Model  # the compiled training model: input stage + model
    predictor: keras.Model  # uint8 input, augmentation off: what a run predicts with
    trainable: list  # the names of the layers the run fine-tunes


def build_network(config: RunSettings, image_shape: tuple) -> Network:
    """The paper's model of a run's settings and its block map, with the weights a
    run starts from (its ``weights``, then ``init``'s draw: the head only when the backbone
    is pretrained), drawn from Keras' global seed. The network a run started from is
    rebuilt by this too (:func:`kandel_repro.explain.similarity.initial_model`)."""
    model, block_map = build_model(config.backbone, image_shape, config.weights,
                                   head_pooling=config.head_pooling, dropout=config.dropout,
                                   weights_from=config.weights_from,
                                   transfer_blocks=config.transfer_blocks,
                                   classes=config.num_classes)
    if config.init:
        reinitialise(model, config.init, head_only=config.weights != "none")
    return Network(model, block_map)


def build_run_models(config: RunSettings, image_shape: tuple,
                     strategy: tf.distribute.Strategy | None = None) -> RunModels:
    """The :class:`RunModels` of a run's settings: ``(model, trainer, predictor,
    trainable layer names)``.

    ``model`` is the paper's model (backbone + head) on preprocessed float input — the
    one saved as ``best_model.keras``. ``trainer`` is the compiled training model: the
    input stage (cast, fused augmentation for ``augmenter="fast"``, ``preprocess_input``)
    followed by ``model``; it takes uint8 batches, or float32 ones already augmented by
    ``ImageDataGenerator``. ``predictor`` takes uint8 batches, augmentation off.
    ``config["precision"]`` must be resolved (not "auto"). The trainer's optimisers
    (:func:`kandel_repro.training.optim.build_optimizers`) are ``trainer.optimizers_used``.
    """
    import keras
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    preprocess = get_backbone(config["backbone"]).preprocess_input()
    colour = colour_of(config)  # refused with the imagedatagenerator augmenter
    fast = config["augmenter"] == "fast" and (config["augmentation"] is not None or colour)
    with strategy.scope(), precision_scope(config["precision"]):
        model, block_map = build_network(config, image_shape)
        if config["first_trainable_layer"] is not None:
            trainable = set_trainable_layers(model, assign_layers(model.layers),
                                             config["first_trainable_layer"])
        else:
            trainable = set_trainable_blocks(model, block_map, config["first_trainable_block"],
                                             config["num_blocks"])

        if get_strategy(config["strategy"]).adapters:  # (before the optimiser is built)
            enable_adapters(model, block_map, config["first_trainable_block"],
                            config["lora_rank"])
            trainable = trainable_layer_names(model)

        def wrap(augmentation, dtype, name, groups=None, colour=None):
            images = keras.Input(tuple(image_shape), dtype=dtype, name="images")
            stage = make_input_stage(augmentation, preprocess, seed=config["seed"],
                                     colour=colour)
            if groups is not None:
                return grouped_trainer(images, model(stage(images)), groups, name=name)
            return keras.Model(images, model(stage(images)), name=name)

        optimizers = build_optimizers(model, config)
        if config["strategy"] != "blocks":  # one optimiser, a rate scale per variable
            check_strategy(config)  # (precision "auto" is resolved by now)
            optimizers = [(scaled_optimizer(optimizers[0][0]), None, optimizers[0][2])]
        grouped = None if optimizers[0][1] is None else [(o, v) for o, v, _ in optimizers]
        trainer = wrap(config["augmentation"] if fast else None,
                       "uint8" if fast or config["augmentation"] is None else "float32",
                       "trainer", grouped, colour=colour if fast else None)
        trainer.optimizers_used = optimizers
        trainer.block_map = block_map  # (what a strategy's callback freezes by)
        predictor = predictor_of(model, config, image_shape)
        # NOTE: compiled under the policy, so mixed_float16 gets Keras' loss scaling.
        trainer.compile(optimizer=optimizers[0][0], loss=loss_of(config), metrics=["accuracy"],
                        jit_compile=jit_setting(config["jit"]))
        if config["strategy"] != "blocks":  # NOTE: built on all it may ever train
            trainer.optimizer.build(trainer.trainable_variables)
    return RunModels(model, trainer, predictor, trainable)


def predictor_of(model: keras.Model, config: Mapping[str, Any],
                 image_shape: tuple) -> keras.Model:
    """``model`` (the paper's, on preprocessed float input) behind the uint8 input stage
    of a run of ``config``, augmentation off: what a run predicts with, compiled."""
    import keras

    images = keras.Input(tuple(image_shape), dtype="uint8", name="images")
    stage = make_input_stage(None, get_backbone(config["backbone"]).preprocess_input(),
                             seed=config["seed"])
    predictor = keras.Model(images, model(stage(images)), name="predictor")
    predictor.compile(jit_compile=jit_setting(config["jit"]))
    return predictor


def train_run(run_dir: str | Path, data: PackedData, config: RunSettings,
              verbose: int | str = "auto", deadline: float | None = None,
              pause_after: int | None = None, resume: bool = True) -> dict:
    """Train one run into ``run_dir``; return its metrics dict.

    ``data`` is a :class:`~kandel_repro.data.packed.PackedData`; ``config`` the settings
    :func:`~kandel_repro.runs.config.resolve_config` gives, with the data's facts
    (:func:`~kandel_repro.runs.config.with_data`) or without. ``deadline`` (a
    ``time.time()`` value): stop before an epoch that would end after it and raise
    :class:`TimeBudgetExceeded`, leaving the run unfinished.

    The steps, each a function below: :func:`_prepare` (the split, the config's facts,
    the split's ids written), :func:`_build` (the models, the config written), :func:`_fit`
    (the epochs), :func:`_predict` (the best epoch's predictions written) and
    :func:`_record` (``metrics.json``, last).

    ``pause_after`` k: stop after epoch k, unless the run ends there by itself, writing
    its state (:mod:`kandel_repro.runs.epochs`) and returning ``{"status": "paused",
    "epochs_run": k, "val_auc": best so far}`` without metrics. A paused run is resumed
    from that state by the next call (``resume``; False: trained from its start).
    """
    started = time.time()
    _check_deadline(deadline, run_dir)
    splits = data.split(config)  # refuses unusable data before any write
    config = with_data(config, data, config.get("data_dir") or data.root)
    paused = paused_epochs(run_dir) if resume else None
    if paused:  # (refused before anything in the folder changes)
        rundir.check_same_experiment(
            run_dir, config, data.legacy_fingerprint, "a paused run",
            remedy=f"Train it with those settings, or delete {Path(run_dir) / rundir.RESUME} "
                   "(in a grid: --rerun) to train it from its start.")
        run_dir = Path(run_dir)
        for stale in (rundir.SEARCH, rundir.ERROR):  # (a stopped or failed run, continued)
            (run_dir / stale).unlink(missing_ok=True)
    else:
        run_dir = rundir.start(run_dir)
    try:
        run = _prepare(run_dir, data, config, splits)
        models = _build(run, data)
        log = _fit(run, data, models, verbose, deadline, pause_after, paused, started)
        if log.paused:
            return {"status": "paused", "epochs_run": len(log.history),
                    "val_auc": log.best_auc if np.isfinite(log.best_auc) else None}
        scores = _predict(run, data, models, log)
        (run_dir / rundir.RESUME).unlink(missing_ok=True)  # (finished: nothing to resume)
        return _record(run, models, log, scores, started)
    except BaseException:
        # NOTE: a run that fails before its first epoch ends (bad weights, a setting the
        # model refuses, Ctrl-C while building) leaves nothing behind: the grid records
        # its error.json alone.
        if not (run_dir / rundir.HISTORY).exists():
            rundir.clear(run_dir)
            rundir.remove_if_empty(run_dir)
        raise


def _check_deadline(deadline, run_dir):
    if deadline is not None and time.time() >= deadline:
        raise TimeBudgetExceeded(f"{Path(run_dir).name}: not started: the time budget is spent")


@dataclass
class _Run:
    """A run being trained: its folder, its settings (with the data's facts), its rows."""
    folder: Path
    config: RunSettings
    train_idx: np.ndarray
    val_idx: np.ndarray
    test: object  # the split's TestSet
    strategy: object  # the tf.distribute strategy


def _prepare(run_dir, data, config, splits):
    """The run's rows and config facts; the split's ids written (val_ids, test_ids)."""
    import pandas as pd

    train_idx, val_idx, test = splits
    train_idx = reduce_training(train_idx, data.y, config)
    config = resolve_runtime(config)  # (with the data's facts: train_run)
    strategy = make_strategy(config.distribute)
    config = config.updated(n_train=len(train_idx), n_val=len(val_idx), n_test=test.size,
                            **_shares(data.y[train_idx], data.y[val_idx], test.labels,
                                      config.num_classes),
                            replicas=int(strategy.num_replicas_in_sync))
    write_csv(run_dir / rundir.VAL_IDS,
              pd.DataFrame({"id": data.ids[val_idx], "label": data.y[val_idx]}))
    if test.indices is not None:  # (a labelled test split)
        write_csv(run_dir / rundir.TEST_IDS, pd.DataFrame({"id": test.selected_ids(),
                                                           "label": test.labels}))
    return _Run(run_dir, config, train_idx, val_idx, test, strategy)


def _shares(train, val, test, classes):
    """The share of positives in each part (binary), or of every class (k ≥ 3:
    ``{part}_class_fractions``), as a run's config records them."""
    parts = {"train": train, "val": val, "test": test}
    if classes == 2:
        return {f"{part}_positive_fraction": None if labels is None else float(np.mean(labels))
                for part, labels in parts.items()}
    return {f"{part}_class_fractions": None if labels is None else
            [float(np.mean(np.asarray(labels) == k)) for k in range(classes)]
            for part, labels in parts.items()}


def _build(run, data):
    """The run's :class:`RunModels` (:func:`build_run_models`), seeded; the config, with
    Keras' XLA choice resolved, written."""
    import keras

    keras.utils.set_random_seed(run.config.seed)
    reset_memory_peak()  # (the run's own peak, on a GPU)
    models = build_run_models(run.config, data.image_shape, run.strategy)
    # (Keras' "auto", resolved)
    run.config = run.config.updated(jit="on" if models.trainer.jit_compile else "off")
    rundir.write_config(run.folder, run.config)
    return models


def _fit(run, data, models, verbose, deadline, pause_after=None, paused=None,
         started=None):
    """Train the epochs (a ``paused`` run's from where it stopped); their :class:`EpochLog`.
    :class:`TimeBudgetExceeded` when the budget stopped the run before its last epoch."""
    import keras

    model, trainer, predictor, _ = models
    config = run.config
    # NOTE: the splits index the packed array; no copy of the images is made.
    if config["augmenter"] == "imagedatagenerator" and config["augmentation"] is not None:
        batches = idg_batches(data.x, data.y, config["batch_size"], config["augmentation"],
                              seed=config["seed"], indices=run.train_idx)
    else:
        batches = in_memory_dataset(data.x, data.y, run.train_idx, config["batch_size"],
                                    seed=config["seed"])
    log = EpochLog(n_train=len(run.train_idx), deadline=deadline, started=started)
    stopping = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max",
                                             patience=config["patience"])
    callbacks = [validation_callback(run.folder, model, predictor, data.x, run.val_idx,
                                     data.y[run.val_idx], config["eval_batch_size"], log),
                 stopping]
    with run.strategy.scope():  # (the optimisers are built where the variables live)
        done, counters = restore(run.folder, trainer, log) if paused else (0, None)
    fast_forward(batches, done)
    # (after EarlyStopping: it reads its verdict)
    callbacks.append(pause_callback(run.folder, trainer, stopping, log, pause_after, counters))
    if config["lr_decay"] != 1.0:
        callbacks.insert(0, epoch_decay(trainer.optimizers_used, config["lr_decay"]))
    if config["strategy"] != "blocks":  # (first: it adds to the logs ValidationAUC writes)
        probe = run.train_idx[:config["batch_size"]]
        callbacks.insert(0, strategy_callback(
            trainer, model, trainer.block_map, HEAD_LAYERS, config,
            (data.x[probe].astype(trainer.inputs[0].dtype), data.y[probe].astype("float32"))))
    # NOTE: after the AUC callback, which adds val_auc and learning_rate to the epoch's logs.
    callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run.folder / rundir.TENSORBOARD),
                                                 write_graph=False, update_freq="epoch"))
    if verbose == "auto":
        verbose = 1 if os.isatty(1) else 2
    _check_deadline(deadline, run.folder)  # building the model took time too
    # NOTE: shuffle=False: both pipelines reshuffle every epoch themselves, from the seed.
    trainer.fit(batches, epochs=config["max_epochs"], callbacks=callbacks, verbose=verbose,
                shuffle=False, initial_epoch=done)
    if log.out_of_time and 0 < stopping.stopped_epoch == len(log.history) - 1:
        log.out_of_time = False  # early stopping ended the run at that epoch anyway
    if log.out_of_time:
        raise TimeBudgetExceeded(f"{run.folder.name}: stopped after epoch {len(log.history)} "
                                 "to stay within the time budget; not finished (it resumes "
                                 "from there)")
    return log


def _predict(run, data, models, log):
    """The best epoch's predictions, written: ``(validation labels, validation scores, test
    scores, TTA metrics)`` (TTA's, :func:`score_tta`, only with ``tta`` > 1)."""
    import keras

    model, _, predictor, _ = models
    eval_batch, val_idx, test = run.config["eval_batch_size"], run.val_idx, run.test
    if log.best_scores is None:
        log.stopped_reason = log.stopped_reason or "no finite validation AUC"
        best_scores = predict_uint8(predictor, data.x, eval_batch, indices=val_idx)
    else:
        best_scores = log.best_scores
        # The best epoch's weights, back into the model the predictor wraps.
        model.set_weights(keras.saving.load_model(run.folder / rundir.BEST_MODEL).get_weights())
    test_scores = predict_uint8(predictor, test.x, eval_batch, indices=test.indices)
    _write_scores(run.folder, data, val_idx, best_scores, test, test_scores)
    tta = (score_tta(run.folder, data, predictor, run.config, val_idx, test, run.strategy)
           if int(run.config.get("tta") or 1) > 1 else {})
    return data.y[val_idx], best_scores, test_scores, tta


def _write_scores(folder, data, val_idx, val_scores, test, test_scores, tta=False):
    """The prediction files of a run's validation and test scores (plain or TTA's)."""
    import pandas as pd

    val, submission, labelled = rundir.prediction_files(tta)
    write_csv(folder / val, rundir.prediction_frame(data.ids[val_idx], data.y[val_idx], val_scores))
    if test.submission:
        write_csv(folder / submission,
                  pd.DataFrame({"id": test.selected_ids(), "label": test_scores}))
    else:
        write_csv(folder / labelled,
                  rundir.prediction_frame(test.selected_ids(), test.labels, test_scores))


def score_tta(run_dir: Path, data: PackedData, predictor: keras.Model, config: Mapping[str, Any],
              val_idx: np.ndarray, test: object, strategy: tf.distribute.Strategy) -> dict:
    """Score the model behind ``predictor`` on ``config["tta"]`` dihedral views (a forward
    batch of ``eval_batch_size``) of the validation rows ``val_idx`` and the ``test`` set;
    write the TTA prediction files (:func:`~kandel_repro.runs.rundir.prediction_files`);
    return :func:`~kandel_repro.training.tta.tta_metrics` (``tta_views``, ``val_auc_tta``…)."""
    views = int(config["tta"])
    with strategy.scope():  # the predictor's: its batches spread over the same devices
        model = tta_predictor(predictor, views)
    batch = images_per_batch(config["eval_batch_size"], views)
    val_scores = predict_uint8(model, data.x, batch, indices=val_idx)
    test_scores = predict_uint8(model, test.x, batch, indices=test.indices)
    _write_scores(Path(run_dir), data, val_idx, val_scores, test, test_scores, tta=True)
    return tta_metrics(views, data.y[val_idx], val_scores, test.labels, test_scores,
                       test.auc_key, config.get("bootstrap"), config.get("classes"))


def _record(run, models, log, scores, started):
    """``metrics.json``, written last: the run is finished from then on."""
    model, _, _, trainable = models
    val_y, best_scores, test_scores, tta = scores
    test, config = run.test, run.config
    epochs_run = len(log.history)
    later = log.train_seconds - (log.first_epoch_seconds or 0.0)
    metrics = {
        "status": "ok",
        "val_auc": log.best_auc if np.isfinite(log.best_auc) else None,
        "best_epoch": log.best_epoch,
        "epochs_run": epochs_run,
        "stopped_early": epochs_run < config["max_epochs"],
        "stopped_reason": log.stopped_reason,
        "wall_seconds": round(time.time() - started + log.earlier_seconds, 2),
        "train_images_per_second": round(log.train_images / max(log.train_seconds, 1e-9), 2),
        # Epochs after the first exclude tracing and compilation.
        "steady_images_per_second": (round(log.n_train * (epochs_run - 1) / later, 2)
                                     if epochs_run > 1 and later > 0 else None),
        "train_seconds": round(log.train_seconds, 2),  # (evaluation left out)
        "peak_gpu_memory_bytes": memory_peak(),  # (None on a CPU: not measured)
        "trainable_layers": len(trainable),
        "trainable_parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
    }
    if test.labels is not None:
        metrics[test.auc_key] = auc_or_nan(test.labels, test_scores)
    if np.isfinite(best_scores).all() and (test.labels is None or np.isfinite(test_scores).all()):
        metrics.update(summary_of(val_y, best_scores, test.labels, test_scores, test.auc_key,
                                  config.get("bootstrap"), config.get("classes")))
    metrics.update(tta)  # (none without --tta: the plain figures stay the run's own)
    for key, note in dict(metrics.get("intervals_not_assessable", {}),
                          **metrics.get("intervals_not_assessable_tta", {})).items():
        print(f"kandel-repro: warning: {run.folder.name}: no interval for its {key}: {note}",
              file=sys.stderr, flush=True)
    rundir.write_metrics(run.folder, metrics)
    return rundir.read_metrics(run.folder)  # (as written: NaN is null in JSON, None here)

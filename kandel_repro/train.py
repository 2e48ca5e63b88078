"""One fine-tuning run: one backbone, one depth, one learning rate.

A run lives in a folder that holds everything needed to judge and reuse it::

    config.json           the fully resolved config (protocol + overrides + data facts)
    val_ids.csv           the validation ids and labels of the 80/20 split
    history.csv           one row per epoch: loss, accuracy, val_auc, seconds
    best_model.keras      the model of the best epoch (by validation ROC AUC)
    val_predictions.csv   id,label,prediction of the best model on the validation split
    submission.csv        PCam: id,label — test predictions in sample_submission.csv order
    test_ids.csv          BreakHis: the ids and labels of the held-out test split
    test_predictions.csv  BreakHis: id,label,prediction on the held-out test split
    metrics.json          written last: val_auc, best_epoch, epochs_run, wall time, ...
                          (+ kaggle_public_auc/kaggle_private_auc after `kandel-repro submit`)
    kaggle-submission.json  PCam, once submitted: ref, description, file hash, status

A run is finished when ``metrics.json`` exists; a run that raised leaves ``error.json``
instead. Every file is written atomically.
"""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
from pathlib import Path

import numpy as np

from .backbones import depth_label, get_backbone
from .errors import ConfigError
from .model import resolve_weights
from .protocol import PROTOCOLS
from .runio import read_json, write_csv, write_json

FINISHED = "metrics.json"
FAILED = "error.json"
ARTEFACTS = ("config.json", "val_ids.csv", "test_ids.csv", "history.csv", "best_model.keras",
             "val_predictions.csv", "submission.csv", "test_predictions.csv", FINISHED, FAILED,
             "kaggle-submission.json")

# Config keys that define the experiment: a finished run is reused only if these match.
EXPERIMENT_KEYS = (
    "backbone", "first_trainable_block", "learning_rate", "batch_size", "max_epochs",
    "patience", "weights", "head_pooling", "dropout", "augmentation",
    "validation_fraction", "stratified_split", "seed", "monitor", "preprocessing",
    "optimizer", "loss", "data_fingerprint", "protocol", "test_fraction", "split",
    "magnification",
)

# How a run is computed, not what it computes: recorded in config.json, free to differ
# between the runs of one table (see the README's performance section).
RUNTIME_DEFAULTS = {
    "augment": "fast",  # or "imagedatagenerator", the paper's own pipeline
    "precision": "auto",  # mixed_float16 on a GPU, float32 on a CPU
    "jit": "auto",  # XLA for the whole step: Keras' rule (on with one GPU, off on a CPU)
    "distribute": "none",  # or "mirrored": every GPU of this machine
    "eval_batch_size": None,  # validation/test batches: 1024 on a GPU, 128 on a CPU
}
RUNTIME_CHOICES = {
    "augment": ("fast", "imagedatagenerator"),
    "precision": ("auto", "float32", "mixed_float16"),
    "jit": ("auto", "on", "off"),
    "distribute": ("none", "mirrored"),
}


def resolve_config(backbone, first_trainable_block, learning_rate, protocol="pcam", **overrides):
    """The protocol's settings with the user's overrides applied, validated.

    ``protocol`` is "pcam" (paper §4.1) or "breakhis" (§4.3); overrides set to None
    keep the protocol's value.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    config = dict(dataclasses.asdict(PROTOCOLS[protocol]), protocol=protocol, **RUNTIME_DEFAULTS)
    given = {k: v for k, v in overrides.items() if v is not None or k == "augmentation"}
    if protocol == "pcam" and "image_size" in given:
        raise ConfigError("--image-size applies to BreakHis only: PCam patches are used at "
                          "their own size, not resized (paper §4.1)")
    unknown = set(given) - set(config) - {"data_dir", "data_fingerprint"}
    if unknown:
        raise ConfigError(f"unknown setting(s) for the {protocol} protocol: "
                          f"{', '.join(sorted(unknown))}")
    config.update(given)
    bb = get_backbone(backbone)
    config.update(backbone=bb.name, first_trainable_block=int(first_trainable_block),
                  learning_rate=float(learning_rate),
                  blocks=depth_label(int(first_trainable_block), bb.num_blocks),
                  num_blocks=bb.num_blocks)
    if not 1 <= config["first_trainable_block"] <= bb.num_blocks:
        raise ConfigError(
            f"first trainable block must be from 1 to {bb.num_blocks} for {bb.name}, "
            f"got {first_trainable_block!r}"
        )
    for key, choices in RUNTIME_CHOICES.items():
        if config[key] not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {config[key]!r}")
    if config["augment"] == "fast" and config["augmentation"] is not None:
        from .augment import check_fast

        check_fast(config["augmentation"])
    for key in ("batch_size", "max_epochs", "patience") + (
            ("eval_batch_size",) if config["eval_batch_size"] is not None else ()):
        if int(config[key]) < 1:
            raise ConfigError(f"{key} must be a positive integer, got {config[key]!r}")
    if not config["learning_rate"] > 0:
        raise ConfigError(f"learning rate must be positive, got {learning_rate!r}")
    # One spelling per choice ("none", "imagenet" or the file path), so tables and the
    # same-experiment check compare like with like; a missing file fails here, early.
    config["weights"] = resolve_weights(config["weights"]) or "none"
    return config


def is_finished(run_dir):
    return (Path(run_dir) / FINISHED).exists()


def _auc(labels, scores):
    from sklearn.metrics import roc_auc_score

    if not np.all(np.isfinite(scores)):
        return float("nan")
    return float(roc_auc_score(labels, scores))


class TimeBudgetExceeded(Exception):
    """A run was stopped at an epoch boundary because the next epoch would pass the
    deadline; it is not finished (no metrics.json) and is trained again next time."""


def _make_callback(run_dir, model, predictor, x, val_idx, val_y, eval_batch_size, state):
    import keras

    from .augment import predict_uint8

    class ValidationAUC(keras.callbacks.Callback):
        """Exact ROC AUC on the validation split each epoch; keeps the best model.

        ``model`` is the paper's model (saved as ``best_model.keras``), ``predictor`` the
        same model behind the uint8 input stage. NOTE: this callback must run before
        EarlyStopping in the callback list, which reads ``logs["val_auc"]`` added here.
        """

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            train_seconds = time.perf_counter() - self.started
            state["train_seconds"] += train_seconds
            state["train_images"] += state["n_train"]
            if epoch == 0:
                state["first_epoch_seconds"] = train_seconds
            scores = predict_uint8(predictor, x, eval_batch_size, indices=val_idx)
            auc = _auc(val_y, scores)
            logs["val_auc"] = auc
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
                   "train_seconds": train_seconds}
            state["history"].append(row)
            if np.isfinite(auc) and auc > state["best_auc"]:
                state.update(best_auc=auc, best_epoch=epoch + 1, best_scores=scores)
                _save_model(model, Path(run_dir) / "best_model.keras")
            import pandas as pd

            write_csv(Path(run_dir) / "history.csv", pd.DataFrame(state["history"]))
            if not np.isfinite(logs.get("loss", 0.0)):
                state["stopped_reason"] = "non-finite loss"
                self.model.stop_training = True
            deadline = state.get("deadline")
            epoch_seconds = time.perf_counter() - self.started
            if deadline is not None and time.time() + epoch_seconds > deadline:
                state["out_of_time"] = True
                self.model.stop_training = True

    return ValidationAUC()


def _save_model(model, path):
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)


def build_run_models(config, image_shape, strategy=None):
    """``(model, trainer, predictor, trainable layer names)`` of a resolved config.

    ``model`` is the paper's model (backbone + head) on preprocessed float input — the
    one saved as ``best_model.keras``. ``trainer`` is the compiled training model: the
    input stage (cast, fused augmentation for ``augment="fast"``, ``preprocess_input``)
    followed by ``model``; it takes uint8 batches, or float32 ones already augmented by
    ``ImageDataGenerator``. ``predictor`` takes uint8 batches, augmentation off.
    ``config["precision"]`` must be resolved (not "auto").
    """
    import keras
    import tensorflow as tf

    from .augment import make_input_stage
    from .model import build_model, set_trainable_blocks
    from .runtime import jit_setting, precision_scope

    strategy = strategy or tf.distribute.get_strategy()
    preprocess = get_backbone(config["backbone"]).preprocess_input()
    fast = config["augment"] == "fast" and config["augmentation"] is not None
    with strategy.scope(), precision_scope(config["precision"]):
        model, block_map = build_model(config["backbone"], image_shape, config["weights"],
                                       head_pooling=config["head_pooling"],
                                       dropout=config["dropout"])
        trainable = set_trainable_blocks(model, block_map, config["first_trainable_block"],
                                         config["num_blocks"])

        def wrap(augmentation, dtype, name):
            images = keras.Input(tuple(image_shape), dtype=dtype, name="images")
            stage = make_input_stage(augmentation, preprocess, seed=config["seed"])
            return keras.Model(images, model(stage(images)), name=name)

        trainer = wrap(config["augmentation"] if fast else None,
                       "uint8" if fast or config["augmentation"] is None else "float32",
                       "trainer")
        predictor = wrap(None, "uint8", "predictor")
        # NOTE: compiled under the policy, so mixed_float16 gets Keras' loss scaling.
        trainer.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                        loss=config["loss"], metrics=["accuracy"],
                        jit_compile=jit_setting(config["jit"]))
        predictor.compile(jit_compile=jit_setting(config["jit"]))
    return model, trainer, predictor, trainable


def resolve_runtime(config):
    """The config with ``precision``/``eval_batch_size`` resolved and the device named."""
    from .runtime import default_eval_batch_size, device_description, resolve_precision

    return dict(config, precision=resolve_precision(config.get("precision", "auto")),
                eval_batch_size=config.get("eval_batch_size") or default_eval_batch_size(),
                device=device_description())


def train_run(run_dir, data, config, verbose="auto", deadline=None):
    """Train one run into ``run_dir``; return its metrics dict.

    ``data`` is a :class:`kandel_repro.data.pcam.PCamData` (or ``BreakHisData``);
    ``config`` a dict from :func:`resolve_config`. ``deadline`` (a ``time.time()``
    value): stop before an epoch that would end after it and raise
    :class:`TimeBudgetExceeded`, leaving the run unfinished.
    """
    import keras
    import pandas as pd

    from .augment import idg_batches, in_memory_dataset, predict_uint8
    from .runtime import make_strategy

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ARTEFACTS:  # an earlier, unfinished attempt must not leak into this one
        (run_dir / stale).unlink(missing_ok=True)
    started = time.time()
    train_idx, val_idx, test = data.split(config)
    config = resolve_runtime(dict(RUNTIME_DEFAULTS, **config))
    strategy = make_strategy(config["distribute"])
    config.update(image_size=int(data.image_shape[0]), dataset=data.source,
                  n_train=len(train_idx), n_val=len(val_idx),
                  n_test=len(test.x) if test.indices is None else len(test.indices),
                  replicas=int(strategy.num_replicas_in_sync))
    write_csv(run_dir / "val_ids.csv",
              pd.DataFrame({"id": data.train_ids[val_idx], "label": data.train_y[val_idx]}))
    if test.indices is not None:
        write_csv(run_dir / "test_ids.csv",
                  pd.DataFrame({"id": test.ids[test.indices], "label": test.labels}))

    keras.utils.set_random_seed(config["seed"])
    model, trainer, predictor, trainable = build_run_models(config, data.image_shape, strategy)
    config["jit"] = "on" if trainer.jit_compile else "off"  # Keras' "auto", resolved
    write_json(run_dir / "config.json", config)
    trainable_parameters = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))

    # NOTE: the splits index the packed array; no copy of the images is made.
    val_y = data.train_y[val_idx]
    if config["augment"] == "imagedatagenerator" and config["augmentation"] is not None:
        batches = idg_batches(data.train_x, data.train_y, config["batch_size"],
                              config["augmentation"], seed=config["seed"], indices=train_idx)
    else:
        batches = in_memory_dataset(data.train_x, data.train_y, train_idx,
                                    config["batch_size"], seed=config["seed"])
    state = {"history": [], "best_auc": -np.inf, "best_epoch": 0, "best_scores": None,
             "train_seconds": 0.0, "train_images": 0, "n_train": len(train_idx),
             "stopped_reason": None, "first_epoch_seconds": None, "deadline": deadline,
             "out_of_time": False}
    eval_batch = config["eval_batch_size"]
    callbacks = [
        _make_callback(run_dir, model, predictor, data.train_x, val_idx, val_y, eval_batch, state),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max",
                                      patience=config["patience"]),
    ]
    if verbose == "auto":
        verbose = 1 if os.isatty(1) else 2
    # NOTE: shuffle=False: both pipelines reshuffle every epoch themselves, from the seed.
    trainer.fit(batches, epochs=config["max_epochs"], callbacks=callbacks, verbose=verbose,
                shuffle=False)
    if state["out_of_time"]:
        raise TimeBudgetExceeded(f"{run_dir.name}: stopped after epoch {len(state['history'])} "
                                 "to stay within the time budget; not finished")

    epochs_run = len(state["history"])
    if state["best_scores"] is None:
        state["stopped_reason"] = state["stopped_reason"] or "no finite validation AUC"
        best_scores = predict_uint8(predictor, data.train_x, eval_batch, indices=val_idx)
    else:
        best_scores = state["best_scores"]
        # The best epoch's weights, back into the model the predictor wraps.
        model.set_weights(keras.saving.load_model(run_dir / "best_model.keras").get_weights())
    write_csv(run_dir / "val_predictions.csv",
              pd.DataFrame({"id": data.train_ids[val_idx], "label": val_y,
                            "prediction": best_scores}))
    test_scores = predict_uint8(predictor, test.x, eval_batch, indices=test.indices)
    test_ids = test.ids if test.indices is None else test.ids[test.indices]
    if test.submission:
        write_csv(run_dir / "submission.csv", pd.DataFrame({"id": test_ids, "label": test_scores}))
    else:
        write_csv(run_dir / "test_predictions.csv",
                  pd.DataFrame({"id": test_ids, "label": test.labels, "prediction": test_scores}))

    later = state["train_seconds"] - (state["first_epoch_seconds"] or 0.0)
    metrics = {
        "status": "ok",
        "val_auc": state["best_auc"] if np.isfinite(state["best_auc"]) else None,
        "best_epoch": state["best_epoch"],
        "epochs_run": epochs_run,
        "stopped_early": epochs_run < config["max_epochs"],
        "stopped_reason": state["stopped_reason"],
        "wall_seconds": round(time.time() - started, 2),
        "train_images_per_second": round(state["train_images"] / max(state["train_seconds"], 1e-9), 2),
        # Epochs after the first exclude tracing and compilation.
        "steady_images_per_second": (round(state["n_train"] * (epochs_run - 1) / later, 2)
                                     if epochs_run > 1 and later > 0 else None),
        "trainable_layers": len(trainable),
        "trainable_parameters": trainable_parameters,
    }
    if test.labels is not None:
        metrics[test.auc_key] = _auc(test.labels, test_scores)
    write_json(run_dir / FINISHED, metrics)
    return metrics


def record_failure(run_dir, exc):
    write_json(Path(run_dir) / FAILED, {
        "status": "failed", "error": f"{type(exc).__name__}: {exc}",
        "traceback": traceback.format_exc(),
    })


def read_run(run_dir):
    """``(config, metrics or None, error or None)`` of a run folder."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else None
    metrics = read_json(run_dir / FINISHED) if (run_dir / FINISHED).exists() else None
    error = read_json(run_dir / FAILED) if (run_dir / FAILED).exists() else None
    return config, metrics, error

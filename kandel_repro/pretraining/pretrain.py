"""Pretraining on unlabelled images: a VAE or a DCGAN (``kandel-repro pretrain vae|dcgan``).

:func:`pretrain` trains one of the generative networks of
:mod:`kandel_repro.models.generative_nets` (built by :func:`build_generative`) on the
images of a data set without their labels (``images``: the split's training rows, the test
images, or all) into a run folder::

    config.json                 every setting and the data's facts ("pretrain": the kind)
    history.csv                 one row per epoch: the network's metrics, seconds, warning
                                (DCGAN: sample_diversity too, see below)
    checkpoint.json             the last finished epoch, and its checkpoint's file:
    checkpoint-epoch<k>.weights.h5   the whole network and its optimizers (exact resume)
    dcgan_small.weights.h5      the trunk (VAE encoder / DCGAN discriminator) after the
    dcgan_small.json            last finished epoch, as ``export-weights`` writes a
                                backbone: ``train --weights RUN --backbone dcgan_small``
    samples/epoch_<k>.png       VAE: 8 held-out images over their reconstructions;
                                DCGAN: 8×8 samples of the same noise every epoch
    tensorboard/                TensorBoard's scalars
    metrics.json                written last: final losses, epochs, seconds, status

A second call with the same ``out`` resumes after the last finished epoch (the settings
must be the same; ``epochs`` may grow): each epoch's batch order comes from ``(seed,
epoch)``, each step's noise from the seed and the optimizers' step count, and the
checkpoint holds the weights and the optimizers' moments and counts, so an interrupted
run (Ctrl-C, ``kill -9``) resumed gives the weights of an uninterrupted one on the same
machine. A non-finite loss stops the run at once
(status ``stopped``), keeping the last good epoch's checkpoint and trunk. A DCGAN whose
fixed-noise samples' mean pairwise L2 distance falls below ``collapse_threshold`` × that
of real images gets a ``mode collapse`` warning in its history and on the console.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..core.files import atomic_path, check_writable, read_json, write_csv, write_json, write_text
from ..core.protocol import PROTOCOLS
from ..readers.registry import get_reader
from ..runs import rundir
from ..runs.rundir import is_pretrain_run
from . import images as pool_of

KINDS = rundir.PRETRAIN_KINDS
TRUNK = "dcgan_small"  # the registry's backbone the trunk is (models.generative.TRUNK)
EPOCHS, BATCH_SIZE, BETA = 20, 64, 1.0
LATENT = {"vae": 64, "dcgan": 100}
# VAE: Adam's usual 1e-3 (our choice); DCGAN: Radford et al. 2016, Adam 2e-4, β1 = 0.5.
LEARNING_RATE = {"vae": 1e-3, "dcgan": 2e-4}
COLLAPSE_THRESHOLD = 0.1  # our choice: samples 10× less varied than real images
FIGURE_COLUMNS, VAE_FIGURE_IMAGES, DCGAN_GRID = 8, 8, 64
CHECKPOINT = "checkpoint.json"
SAMPLES = "samples"
# The settings a resumed run must share with the run it continues (``epochs`` may grow).
SAME = ("kind", "dataset", "data_dir", "data_fingerprint", "images", "batch_size", "latent",
        "beta", "seed", "image_size", "widths", "learning_rate", "collapse_threshold",
        "split_seed", "reader_options")
OPTION_OF = {"learning_rate": "--lr", "data_dir": "--data", "data_fingerprint": "--data",
             "reader_options": "the reader options", "kind": "the kind (vae|dcgan)"}


def trunk_weights_file(run_dir: str | Path) -> Path:
    """The trunk's weights in a pretraining run: ``RUN/dcgan_small.weights.h5``."""
    return Path(run_dir) / f"{TRUNK}.weights.h5"


def _checkpoint_file(run_dir, epoch):
    return Path(run_dir) / f"checkpoint-epoch{epoch:03d}.weights.h5"


def _positive_int(value, option):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{option} must be a positive integer, got {value!r}")
    return value


def _settings(kind, images, epochs, batch_size, latent, beta, seed, learning_rate,
              collapse_threshold, widths):
    """The run's settings, checked, with each default filled in."""
    from ..models.generative import TRUNK_WIDTHS

    if kind not in KINDS:
        raise ConfigError(f"pretrain: the kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if images not in pool_of.IMAGES:
        raise ConfigError(f"--images must be one of {', '.join(pool_of.IMAGES)}, got {images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be an integer ≥ 0, got {seed!r}")
    rate = LEARNING_RATE[kind] if learning_rate is None else learning_rate
    for value, option in ((beta, "--beta"), (rate, "--lr"),
                          (collapse_threshold, "--collapse-threshold")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value < 0 or (value == 0 and option == "--lr"):
            raise ConfigError(f"{option} must be a number ≥ 0 (--lr: above 0), got {value!r}")
    return {"pretrain": kind, "kind": kind, "images": images,
            "epochs": _positive_int(EPOCHS if epochs is None else epochs, "--epochs"),
            "batch_size": _positive_int(BATCH_SIZE if batch_size is None else batch_size,
                                        "--batch-size"),
            "latent": _positive_int(LATENT[kind] if latent is None else latent, "--latent"),
            "beta": float(beta) if kind == "vae" else None, "seed": seed,
            "learning_rate": float(rate),
            "collapse_threshold": float(collapse_threshold) if kind == "dcgan" else None,
            "widths": [int(w) for w in (widths or TRUNK_WIDTHS)], "trunk": TRUNK}


def _split_settings(reader, reader_options):
    """What :meth:`PackedData.split` reads: the data set's protocol (the split a labelled
    run of these data makes) with the reader's options."""
    return dict(dataclasses.asdict(PROTOCOLS[reader.protocol]), protocol=reader.protocol,
                **reader_options)


def pretrain(kind: str, data_dir: str | Path, out: str | Path, *, dataset: str | None = None,
             images: str = "train", epochs: int | None = None, batch_size: int | None = None,
             latent: int | None = None, beta: float = BETA, seed: int = 0,
             image_size: int | None = None, cache_dir: str | Path | None = None,
             workers: int | None = None, verbose: int = 1, log: Callable[[str], None] = print,
             learning_rate: float | None = None,
             collapse_threshold: float = COLLAPSE_THRESHOLD,
             widths: tuple[int, ...] | None = None, **reader_options: Any) -> dict:
    """Pretrain a ``kind`` network (``vae`` or ``dcgan``) on the images of ``data_dir``
    (read as ``dataset``, default ``pcam``) into the run folder ``out``, or resume it;
    return the metrics written last (see the module's docstring for the folder).

    ``images``: ``train`` (the split's training rows, the images a labelled run trains
    on), ``test`` (the data set's test images: the Kaggle layout's unlabelled patches)
    or ``all``. Defaults: 20 epochs, batches of 64, latent 64 (VAE) or 100 (DCGAN),
    β = 1, Adam 1e-3 (VAE) or 2e-4 with β1 = 0.5 (DCGAN), the data set's image size
    (PCam's own; ``image_size`` resizes the data sets that resize). ``widths``: the
    trunk's (default :data:`~kandel_repro.models.generative.TRUNK_WIDTHS`, those of the
    ``dcgan_small`` backbone; others make weights that backbone cannot load).
    ``reader_options``: the reader's own (e.g. ``window``).
    """
    started = time.time()
    settings = _settings(kind, images, epochs, batch_size, latent, beta, seed, learning_rate,
                         collapse_threshold, widths)
    reader = get_reader(dataset or "pcam")
    options = {k: v for k, v in reader_options.items() if v is not None}
    unknown = sorted(set(options) - set(reader.options))
    if unknown:
        raise ConfigError(f"{', '.join('--' + key.replace('_', '-') for key in unknown)}: not "
                          f"an option of --dataset {reader.name}"
                          + (" (its images have no classes)" if "positive_class" in unknown
                             and reader.name == "images" else ""))
    split = _split_settings(reader, options)
    reader.check_config(split)
    if image_size is not None and not reader.resizes:
        raise ConfigError(f"--image-size: --dataset {reader.name} images are used at their "
                          "own size, not resized")
    if image_size is not None:  # (0 is no size, not "the default")
        _positive_int(image_size, "--image-size")
    size = (image_size or split["image_size"]) if reader.resizes else None
    step = 2 ** len(settings["widths"])  # (each block halves the side)
    if size is not None and int(size) % step:
        raise ConfigError(f"--image-size {size}: the VAE and the DCGAN halve the side "
                          f"{len(settings['widths'])} times, so it must be a multiple of {step}")
    reader.read_index(data_dir, **options)
    data = reader.load(data_dir, cache_dir, workers=workers, image_size=size, **options)
    pool = pool_of.select_images(data, images, split)
    if len(pool) < settings["batch_size"]:
        raise ConfigError(f"{pool.what} holds {len(pool)} image(s), fewer than one batch "
                          f"(--batch-size {settings['batch_size']}): give a smaller "
                          "--batch-size or more images")
    out = check_writable(out, "--out")
    from ..runs.config import with_data
    from ..training.runtime import device_description

    facts = {k: v for k, v in with_data(split, data, data_dir).items() if k not in split}
    config = dict(settings, **facts, image_size=int(data.image_shape[0]),
                  n_images=len(pool), steps_per_epoch=len(pool) // settings["batch_size"],
                  split_seed=split["split_seed"], reader_options=options,
                  cache_dir=None if cache_dir is None else str(Path(cache_dir).resolve()),
                  device=device_description())
    with rundir.claim(out):
        done = _resume_point(out, config, log)
        if done is None:
            return rundir.read_metrics(out)
        return _train(out, config, data, pool, split, done, verbose, log, started)


def _resume_point(out, config, log):
    """The epochs ``out`` has finished (0: a new run, its old files cleared); None when
    it is finished at ``config["epochs"]`` already. A run of other settings is refused."""
    old = _read_config(out)
    if old is None or not (out / CHECKPOINT).is_file():
        if (out / rundir.CONFIG).is_file() and (old is None or old.get("pretrain") not in KINDS):
            raise ConfigError(f"{out} holds another kind of run (its {rundir.CONFIG} is not a "
                              "pretraining run's): give another --out")
        _clear(out)
        return 0
    for key in SAME:
        if old.get(key) != config.get(key):
            raise ConfigError(f"{out} holds a {old.get('kind')} pretraining run made with "
                              f"{OPTION_OF.get(key, '--' + key.replace('_', '-'))} "
                              f"{old.get(key)!r}, not {config.get(key)!r}: resume it with its "
                              "settings, or give another --out")
    done = int(read_json(out / CHECKPOINT)["epoch"])
    metrics = rundir.read_metrics(out) or {}
    if metrics.get("status") == "ok" and done >= config["epochs"]:
        log(f"{out}: finished already ({done} epochs, --epochs {config['epochs']}); nothing "
            "to do")
        return None
    log(f"{out}: resuming after epoch {done} of {config['epochs']}"
        + (f" (it stopped before: {metrics.get('stopped')})" if metrics.get("stopped") else ""))
    return done


def _read_config(run_dir):
    try:
        return read_json(Path(run_dir) / rundir.CONFIG)
    except (OSError, ValueError):
        return None


def _clear(out):
    """Remove what an earlier, unresumable attempt left in ``out``."""
    import shutil

    for path in [out / name for name in (rundir.CONFIG, rundir.HISTORY, rundir.METRICS,
                                         CHECKPOINT, f"{TRUNK}.json")] + \
            [trunk_weights_file(out)] + list(out.glob("checkpoint-epoch*.weights.h5")):
        path.unlink(missing_ok=True)
    for folder in (SAMPLES, rundir.TENSORBOARD):
        shutil.rmtree(out / folder, ignore_errors=True)


def build_generative(config: dict) -> Any:
    """The VAE or DCGAN of a pretraining run's ``config``, compiled, its optimizers
    built (so a checkpoint's state loads into them), seeded from the config."""
    import keras

    from ..models import generative_nets

    keras.utils.set_random_seed(config["seed"])
    size, rate, widths = config["image_size"], config["learning_rate"], tuple(config["widths"])
    if config["kind"] == "vae":
        model = generative_nets.build_vae(size, latent=config["latent"], beta=config["beta"],
                                          widths=widths, seed=config["seed"])
        model.compile(optimizer=keras.optimizers.Adam(rate))
    else:
        model = generative_nets.build_dcgan(size, latent=config["latent"], widths=widths,
                                            seed=config["seed"])
        model.compile(d_optimizer=keras.optimizers.Adam(rate, beta_1=0.5, name="d_adam"),
                      g_optimizer=keras.optimizers.Adam(rate, beta_1=0.5, name="g_adam"))
    model.build_optimizers()
    return model


def _restore(model, run_dir):
    """Load the checkpoint ``checkpoint.json`` names into ``model``; the epoch it ends."""
    record = read_json(Path(run_dir) / CHECKPOINT)
    model.load_weights(Path(run_dir) / record["file"])
    if record.get("rng_state") is not None and hasattr(model, "set_rng_state"):
        model.set_rng_state(np.asarray(record["rng_state"]))
    return int(record["epoch"])


@dataclasses.dataclass
class _Progress:
    """What the epochs of a pretraining run have shown (kept by its callback)."""

    history: list
    stopped: str | None = None
    stopped_epoch: int | None = None
    bad_batch: bool = False


def _train(out, config, data, pool, split, done, verbose, log, started):
    import keras

    model = build_generative(config)
    if done:
        _restore(model, out)
    rundir.write_config(out, config)
    (out / rundir.METRICS).unlink(missing_ok=True)  # in progress again
    history = _old_history(out, done)
    progress = _Progress(history)
    figure = _figure_inputs(config, data, pool, split)
    callbacks = [_epoch_callback(out, config, model, figure, progress, log),
                 keras.callbacks.TensorBoard(log_dir=str(out / rundir.TENSORBOARD),
                                             write_graph=False, update_freq="epoch")]
    if done < config["epochs"]:
        batches = pool_of.epoch_batches(pool, config["batch_size"], config["seed"], done,
                                        config["epochs"])
        try:
            model.fit(batches, epochs=config["epochs"], initial_epoch=done,
                      steps_per_epoch=config["steps_per_epoch"], callbacks=callbacks,
                      verbose=verbose, shuffle=False)
        except KeyboardInterrupt:
            log(f"{out}: interrupted; run the same command to resume after epoch "
                f"{len(progress.history)}")
            raise
    return _record(out, config, progress, log, started)


def _old_history(out, done):
    """The history rows of the epochs a resumed run has finished."""
    if not done or not (out / rundir.HISTORY).is_file():
        return []
    import pandas as pd

    frame = pd.read_csv(out / rundir.HISTORY, keep_default_na=False)
    return [row for row in frame.to_dict("records") if int(row["epoch"]) <= done]


def _figure_inputs(config, data, pool, split):
    """What every epoch's figure and collapse check use, drawn once: the fixed real
    images (VAE: 8 held-out ones where there are, else training ones; DCGAN: 64 of the
    training images, the reference of the diversity), in [-1, 1]."""
    seed = config["seed"]
    if config["kind"] == "vae":
        try:
            source = pool_of.held_out_pool(data, config["images"], split)
        except ConfigError:  # --images all: none held out
            source = pool
        source = source if len(source) else pool
        rows = pool_of.fixed_rows(len(source), VAE_FIGURE_IMAGES, seed)
        return pool_of.fetch(source, rows)
    rows = pool_of.fixed_rows(len(pool), DCGAN_GRID, seed)
    return pool_of.fetch(pool, rows)


def _rng_state(model):
    """The state of a network's noise generator where it keeps one (a network whose
    noise is a function of its seed and step count keeps none: None)."""
    state = getattr(model, "rng_state", None)
    return None if state is None else np.asarray(state()).tolist()


def _finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


def _epoch_callback(out, config, model, figure, progress, log):
    import keras

    from ..models.generative import to_uint8

    class EpochEnd(keras.callbacks.Callback):
        """After each epoch: stop on a non-finite loss; else the checkpoint, the trunk,
        the figure, the diversity check and the history row, then ``checkpoint.json``
        (the epoch is finished from then on), and one summary line."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if not _finite(logs):
                progress.bad_batch = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.started
            number = epoch + 1
            if progress.bad_batch or not _finite(logs):
                bad = ", ".join(k for k, v in (logs or {}).items() if not math.isfinite(float(v)))
                progress.stopped = f"non-finite loss in epoch {number} ({bad or 'a batch'})"
                progress.stopped_epoch = number
                self.model.stop_training = True
                return
            row = {"epoch": number, **{k: float(v) for k, v in logs.items()},
                   "seconds": round(seconds, 3)}
            warning = _figure_and_check(out, config, model, figure, number, row, to_uint8)
            row["warning"] = warning
            checkpoint = _checkpoint_file(out, number)
            with atomic_path(checkpoint, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            _write_trunk(out, config, model, number)
            progress.history.append(row)
            import pandas as pd

            write_csv(out / rundir.HISTORY, pd.DataFrame(progress.history))
            write_json(out / CHECKPOINT, {"epoch": number, "file": checkpoint.name,
                                          "rng_state": _rng_state(model)})
            for old in out.glob("checkpoint-epoch*.weights.h5"):
                if old.name != checkpoint.name:
                    old.unlink(missing_ok=True)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items())
            log(f"epoch {number}/{config['epochs']}: {shown}, {seconds:.1f} s")
            if warning:
                log(f"warning: epoch {number}: {warning}")

    return EpochEnd()


def _figure_and_check(out, config, model, real, epoch, row, to_uint8):
    """Draw ``samples/epoch_<k>.png``; for a DCGAN put the samples' diversity in ``row``
    and return the mode-collapse warning ("" when none)."""
    path = out / SAMPLES / f"epoch_{epoch:03d}.png"
    if config["kind"] == "vae":
        pairs = np.concatenate([to_uint8(real), to_uint8(model.reconstruct(real))])
        pool_of.write_grid(path, pairs, FIGURE_COLUMNS)
        return ""
    samples = np.asarray(model.sample(DCGAN_GRID, seed=config["seed"]), dtype=np.float32)
    pool_of.write_grid(path, to_uint8(samples), FIGURE_COLUMNS)
    reference = pool_of.mean_pairwise_distance(real)
    ratio = pool_of.mean_pairwise_distance(samples) / reference if reference > 0 else float("nan")
    row["sample_diversity"] = ratio
    if ratio < config["collapse_threshold"]:
        return (f"mode collapse: the fixed-noise samples' mean pairwise L2 distance is "
                f"{ratio:.3f} of the real images' (below {config['collapse_threshold']:g})")
    return ""


def _write_trunk(out, config, model, epoch):
    """The trunk's weights and its description, as ``export-weights`` writes a backbone."""
    with atomic_path(trunk_weights_file(out), suffix=".weights.h5") as tmp:
        model.trunk.save_weights(tmp)
    trunk_of = "VAE encoder" if config["kind"] == "vae" else "DCGAN discriminator"
    write_text(out / f"{TRUNK}.json", json.dumps({
        "backbone": TRUNK, "source_run": str(Path(out).resolve()), "kind": config["kind"],
        "dataset": config["dataset"], "synthetic": bool(config["synthetic"]), "epochs": epoch,
        "widths": config["widths"], "image_size": config["image_size"],
        "note": f"the trunk of a {trunk_of} pretrained by kandel_repro on unlabelled images, "
                "not ImageNet's"},
        indent=2) + "\n")


def _record(out, config, progress, log, started):
    """``metrics.json``, written last."""
    last = progress.history[-1] if progress.history else {}
    values = {k: v for k, v in last.items() if k not in ("epoch", "seconds", "warning")}
    metrics = {"status": "stopped" if progress.stopped else "ok", "kind": config["kind"],
               "epochs": config["epochs"], "epochs_run": len(progress.history),
               "stopped": progress.stopped, "stopped_epoch": progress.stopped_epoch,
               "seconds": round(float(sum(r["seconds"] for r in progress.history)), 2),
               "wall_seconds": round(time.time() - started, 2),
               "n_images": config["n_images"],
               "warnings": sum(1 for r in progress.history if r.get("warning")),
               **values}
    rundir.write_metrics(out, metrics)
    if progress.stopped:
        kept = (f"the checkpoint and trunk weights of epoch {len(progress.history)} are kept"
                if progress.history else "no epoch finished, so no weights were kept")
        log(f"error: {out}: stopped: {progress.stopped}; {kept}")
    return metrics


# --- reading a finished run ----------------------------------------------------------------
def pretrain_config(run_dir: str | Path) -> dict:
    """The config of ``run_dir``, a finished pretraining run (``metrics.json`` written;
    a stopped one keeps its last good epoch); a :class:`ConfigError` naming it if not."""
    run_dir = Path(run_dir)
    if not is_pretrain_run(run_dir):
        raise ConfigError(f"{run_dir} is not a pretraining run folder (no {rundir.CONFIG} of "
                          "`kandel-repro pretrain vae|dcgan`)")
    if rundir.read_metrics(run_dir) is None or not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"{run_dir} is not a finished pretraining run (no {rundir.METRICS} "
                          "or no finished epoch): let it finish, or resume it with the same "
                          "command")
    return _read_config(run_dir)


def load_pretrained(run_dir: str | Path) -> Any:
    """The VAE or DCGAN of a finished pretraining run, with its last epoch's weights."""
    model = build_generative(pretrain_config(run_dir))
    _restore(model, run_dir)
    return model


def sample_images(run_dir: str | Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` generated images, uint8 (n, H, W, 3): the DCGAN's generator or the VAE's
    decoder on prior draws of ``seed``."""
    from ..models.generative import to_uint8

    return to_uint8(load_pretrained(run_dir).sample(int(n), seed=seed))


def held_out_images(run_dir: str | Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` real images (uint8, fewer when there are fewer) of the run's data set that
    it did not train on (:func:`~kandel_repro.pretraining.images.held_out_pool`), drawn
    from ``seed``; a run on ``--images all`` has none (:class:`ConfigError`)."""
    config = pretrain_config(run_dir)
    if config["images"] == "all":
        raise ConfigError(f"{run_dir} was pretrained on --images all: no held-out images")
    reader = get_reader(config["dataset"])
    options = config.get("reader_options") or {}
    data = reader.load(config["data_dir"], config.get("cache_dir"), progress=False,
                       image_size=config["image_size"], **options)
    pool = pool_of.held_out_pool(data, config["images"], _split_settings(reader, options))
    return pool.take(pool_of.fixed_rows(len(pool), int(n), seed))

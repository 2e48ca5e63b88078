"""What leaves a finished run: its backbone as pretrained weights for other runs
(``export-weights``), and its model for serving (``export``).

:func:`export_weights` writes ``OUT/<backbone>.weights.h5`` (what ``--weights OUT``
loads) and ``OUT/<backbone>.json`` naming the run they come from. :func:`export_model`
writes the run's model on uint8 images (:func:`serving_model`: ``best_model.keras`` with
its preprocessing inside the graph, made of Keras' own layers) as a ``.keras`` file that
``keras.models.load_model`` reads with nothing of this package imported, or as a
TensorFlow SavedModel (Keras' ``Model.export``). It is built from ``best_model.keras`` on
demand, so a run folder of any version exports it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError
from ..models.backbones import get_backbone
from ..models.build import build_base, same_layers

if TYPE_CHECKING:
    import keras

FORMATS = ("keras", "savedmodel")  # export --format


def export_weights(run_dirs: Iterable[str | Path], out: str | Path) -> list[Path]:
    """``kandel-repro export-weights``: the backbone weights of finished runs' best models,
    as ``OUT/<backbone>.weights.h5`` (what ``--weights OUT`` then loads), each with
    ``OUT/<backbone>.json`` saying which run they come from. Returns the files written."""
    from ..core.files import atomic_path, check_writable, write_text
    from . import rundir

    # NOTE: every run is checked, then --out, then every network is loaded and copied,
    # before the first file is written: a bad argument leaves nothing behind.
    runs = {}  # {backbone: (run folder, its config)}
    for run_dir in map(Path, run_dirs):
        config = _exported_config(run_dir)
        name = config["backbone"]
        if name in runs:
            raise ConfigError(f"{runs[name][0]} and {run_dir} are both {name} runs: give one "
                              "run per backbone")
        runs[name] = (run_dir, config)
    out = check_writable(out, "--out")
    bases = {name: _trained_base(run_dir, config) for name, (run_dir, config) in runs.items()}
    written = []
    for name, (run_dir, config) in runs.items():
        target = out / f"{name}.weights.h5"
        with atomic_path(target, suffix=".weights.h5") as tmp:
            bases[name].save_weights(tmp)
        write_text(out / f"{name}.json", json.dumps({
            "backbone": name, "source_run": str(run_dir.resolve()),
            "val_auc": (rundir.read_metrics(run_dir) or {}).get("val_auc"),
            "synthetic": bool(config.get("synthetic")), "dataset": config.get("dataset"),
            "note": "weights of a run trained by kandel_repro, not ImageNet's"}, indent=2) + "\n")
        written.append(target)
    return written


def _exported_config(run_dir):
    """:func:`export_weights`: the config of ``run_dir``, a finished run with a best model
    and an image size; a :class:`ConfigError` naming it and what it lacks if not."""
    from . import rundir

    config = rundir.finished_config(run_dir, use="export")
    if not config.get("backbone") or not config.get("image_size"):
        raise ConfigError(f"{run_dir / rundir.CONFIG} records no backbone or image size")
    return config


def _best_model(run_dir):
    """``run_dir``'s ``best_model.keras``, or a :class:`ConfigError` naming it."""
    import keras

    from . import rundir

    try:
        return keras.saving.load_model(run_dir / rundir.BEST_MODEL)
    except Exception as exc:  # noqa: BLE001 - keras raises many kinds for a damaged file
        raise ConfigError(f"cannot read {run_dir / rundir.BEST_MODEL} ({exc})") from None


def _trained_base(run_dir, config):
    """:func:`export_weights`: the headless backbone of ``run_dir``'s best model."""
    trained = _best_model(run_dir)
    size = int(config["image_size"])
    base = build_base(config["backbone"], (size, size, 3), "none")
    twin = same_layers(base, trained)
    for layer in base.layers:
        if layer.weights:
            layer.set_weights(twin[layer.name].get_weights())
    return base


def preprocessing_map(backbone: str) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel, bias)``: the backbone's preprocessing as the affine map of a pixel's
    colour channels it is, ``x @ kernel + bias`` (a 3×3 matrix: a channel order swapped,
    as Caffe's BGR, is a permutation in it), found by applying it to the black pixel and
    to each channel at 255, and checked on random pixels; a :class:`ConfigError` when the
    backbone's preprocessing is not such a map."""
    import keras

    preprocess = get_backbone(backbone).preprocess_input()
    probe = np.zeros((4, 1, 1, 3), np.float32)
    for channel in range(3):
        probe[1 + channel, 0, 0, channel] = 255.0
    # NOTE: a tensor, not a NumPy array: keras.applications' Caffe mode changes a NumPy
    # input in place.
    out = np.asarray(preprocess(keras.ops.convert_to_tensor(probe)), np.float64)[:, 0, 0]
    bias = out[0]
    kernel = (out[1:] - bias) / 255.0
    pixels = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3)).astype(np.float32)
    expected = np.asarray(preprocess(keras.ops.convert_to_tensor(pixels)), np.float64)
    if not np.allclose(pixels.astype(np.float64) @ kernel + bias, expected, rtol=1e-5,
                       atol=1e-5 * max(1.0, float(np.abs(expected).max()))):
        raise ConfigError(f"the preprocessing of {backbone} is not an affine map of each "
                          "pixel's channels: its model cannot be exported with it inside")
    return kernel.astype(np.float32), bias.astype(np.float32)


def serving_model(run_dir: str | Path) -> keras.Model:
    """The finished run's model on uint8 images of its size: ``best_model.keras`` behind
    its backbone's preprocessing (:func:`preprocessing_map`), as two layers of Keras' own
    (a cast, ``Rescaling(1)``, and a frozen ``Dense`` on the channels), so that the model
    saved loads without this package. Its scores are the run's (to float rounding)."""
    import keras

    run_dir = Path(run_dir)
    config = _exported_config(run_dir)
    trained = _best_model(run_dir)
    size = int(config["image_size"])
    kernel, bias = preprocessing_map(config["backbone"])
    images = keras.Input((size, size, 3), dtype="uint8", name="images")
    floats = keras.layers.Rescaling(1.0, name="to_float", dtype="float32")(images)
    preprocess = keras.layers.Dense(3, name="preprocess", dtype="float32", trainable=False)
    scores = trained(preprocess(floats))
    preprocess.set_weights([kernel, bias])
    name = f"{config['backbone']}_uint8"
    return keras.Model(images, scores, name=name)


def export_model(run_dir: str | Path, out: str | Path, format: str = "keras") -> Path:
    """``kandel-repro export``: the run's :func:`serving_model` written to ``out``: a
    ``.keras`` file (``format="keras"``) or a SavedModel folder (``"savedmodel"``, Keras'
    ``Model.export``; one that exists is replaced), atomically. Returns ``out``."""
    import os
    import shutil

    from ..core.files import atomic_path, staging_path

    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    out = Path(out)
    if format == "keras" and out.suffix != ".keras":
        raise ConfigError(f"--out {out}: a Keras model file's name ends in .keras")
    if format == "savedmodel" and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; a SavedModel is a folder")
    model = serving_model(run_dir)
    if format == "keras":
        with atomic_path(out, suffix=".keras") as tmp:
            model.save(tmp)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = staging_path(out), staging_path(out, "old")
    try:
        model.export(str(tmp), format="tf_saved_model", verbose=False)
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises many kinds
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"TensorFlow cannot export {run_dir}'s model as a SavedModel on "
                          f"this machine ({' '.join(str(exc).split())}); use --format keras"
                          ) from None
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out

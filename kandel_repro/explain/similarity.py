"""What fine-tuning changes: linear CKA between a network's activations before and after.

Centered kernel alignment (Kornblith et al. 2019) compares two representations of the
same n examples, ``X`` (n × p) and ``Y`` (n × q): with linear kernels,

    CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)        on column-centred X and Y,

1 for representations equal up to a rotation and an isotropic scaling. The debiased
variant replaces the HSIC estimates by the unbiased U-statistic (Song et al. 2012).
:class:`MinibatchCKA` averages unbiased HSIC estimates over minibatches (Nguyen et al.
2021), so memory does not grow with the number of examples.

:func:`block_similarity` compares a run's fine-tuned network with its initial weights
(or with another run) block by block, on validation images: where CKA stays near 1,
fine-tuning left the block's representation as it was.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..core.errors import ConfigError
from ..runs import rundir
from ..runs.settings import RunSettings

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a network is compared
    import keras


def _centred(x):
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """The unbiased HSIC estimator of Song et al. (2012) for Gram matrices ``k``, ``l``
    (n ≥ 4)."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 examples, got {n}")
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones_k, ones_l = k.sum(axis=0), l.sum(axis=0)
    value = (np.sum(k * l) + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2))
             - 2.0 / (n - 2) * ones_k @ ones_l)
    return value / (n * (n - 3))


def linear_cka(x: ArrayLike, y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA of two ``[n, features]`` arrays (float64)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} and {y.shape[0]} examples: CKA compares the same ones")
    if debiased:
        k, l = x @ x.T, y @ y.T
        return float(hsic_unbiased(k, l) / np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l, l)))
    x, y = _centred(x), _centred(y)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


class MinibatchCKA:
    """Linear CKA accumulated over minibatches (Nguyen et al. 2021): the means of the
    unbiased HSIC estimates of each minibatch (of at least 4 examples)."""

    def __init__(self) -> None:
        self.kl = self.kk = self.ll = 0.0
        self.batches = 0

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        k, l = x @ x.T, y @ y.T
        self.kl += hsic_unbiased(k, l)
        self.kk += hsic_unbiased(k, k)
        self.ll += hsic_unbiased(l, l)
        self.batches += 1

    def result(self) -> float:
        if not self.batches:
            raise ValueError("no minibatch seen")
        return float(self.kl / np.sqrt(self.kk * self.ll))


def initial_model(config: RunSettings, image_shape: tuple) -> keras.Model:
    """The network a run started from: its weights before the first step, rebuilt from
    the run's settings and seed as the run drew them
    (:func:`kandel_repro.runs.train.build_network`)."""
    import keras

    from ..runs.train import build_network

    keras.utils.set_random_seed(config.seed)
    return build_network(config, image_shape).model


def _validation_images(config, count, data_dir=None):
    from ..readers.registry import get_reader

    reader = get_reader(config.get("dataset", "pcam"))
    folder = data_dir or config.get("data_dir")
    data = reader.load(folder, image_size=config.get("image_size"), progress=False)
    _, val, _ = data.split(config)
    return data.x[np.sort(val)[:count]]


def finished_run(run_dir: str | Path, what: str = "RUN") -> RunSettings:
    """The settings of ``run_dir``, a finished run with a best model to compare
    (:func:`kandel_repro.runs.rundir.finished_config`)."""
    return rundir.finished_config(run_dir, what, "compare")


def check_comparable(run_dir: str | Path, config: dict, other: str | Path,
                     other_config: dict) -> None:
    """A :class:`~kandel_repro.core.errors.ConfigError` naming RUN_B ``other`` unless its network
    can be compared with ``run_dir``'s block by block: the same backbone, on images of
    the same size."""
    if other_config.get("backbone") != config.get("backbone"):
        raise ConfigError(f"RUN_B {other} is a {other_config.get('backbone')} run and "
                          f"{run_dir} a {config.get('backbone')} one: similarity compares "
                          "runs of one backbone")
    size, other_size = config.get("image_size"), other_config.get("image_size")
    if other_size != size:
        raise ConfigError(f"RUN_B {other} was trained on {other_size}×{other_size} images and "
                          f"{run_dir} on {size}×{size}: similarity compares runs of one "
                          "image size")


def check_minibatch(images: int, batch: int) -> None:
    """``--batch`` and ``--images``: at least one minibatch of at least 4 images."""
    if batch < 4:
        raise ConfigError(f"--batch must be at least 4 (the unbiased HSIC), got {batch}")
    if images < batch:
        raise ConfigError(f"--images {images} is fewer than one minibatch (--batch {batch})")


def block_similarity(run_dir: str | Path, other: str | Path | None = None, images: int = 1000,
                     batch: int = 50, data_dir: str | Path | None = None) -> dict[int, float]:
    """``{block: CKA}`` between the activations at the end of each block of ``run_dir``'s
    fine-tuned network and of its initial weights (or of run ``other``'s network), on the
    first ``images`` validation images of its split, by :class:`MinibatchCKA` over
    minibatches of ``batch``."""
    import keras

    from ..models.backbones import get_backbone

    run_dir = Path(run_dir)
    config = finished_run(run_dir)
    if other is not None:
        check_comparable(run_dir, config, other, finished_run(other, "RUN_B"))
    check_minibatch(images, batch)
    x = _validation_images(config, images, data_dir)
    usable = len(x) - len(x) % batch
    if usable < batch:
        raise ConfigError(f"{len(x)} validation images: fewer than one minibatch of {batch}")
    tuned = keras.saving.load_model(run_dir / rundir.BEST_MODEL)
    if other is None:
        start = initial_model(config, tuple(x.shape[1:]))
    else:
        start = keras.saving.load_model(Path(other) / rundir.BEST_MODEL)
    backbone = get_backbone(config["backbone"])

    def probe(model):
        # NOTE: each network's own block map: auto-generated layer names (InceptionV3's
        # stem) differ between networks built or loaded in one process.
        blocks = backbone.assign_blocks([l for l in model.layers
                                         if not l.name.startswith("head_")])
        return list(blocks), keras.Model(model.input, [model.get_layer(names[-1]).output
                                                       for names in blocks.values()])

    (ends, a), (_, b) = probe(tuned), probe(start)
    preprocess = backbone.preprocess_input()
    scores = {block: MinibatchCKA() for block in ends}
    for i in range(0, usable, batch):
        images = preprocess(x[i:i + batch].astype(np.float32))
        for block, fa, fb in zip(ends, a.predict_on_batch(images), b.predict_on_batch(images)):
            scores[block].update(fa, fb)
    return {block: score.result() for block, score in scores.items()}


def similarity_command(runs: str | Path, other: str | Path | None = None, images: int = 1000,
                       batch: int = 50, out: str | Path | None = None,
                       log: Callable[[str], None] = print,
                       name: str = "similarity") -> list[Path]:
    """What ``kandel-repro similarity`` does: per-block CKA of one run (against its
    initial weights, or run ``other``), printed, or of every finished depth of a folder of
    runs (the best learning rate of each, seed 0), written as ``<name>.csv`` and
    ``<name>.png`` in ``out`` (default: the runs' folder)."""
    import pandas as pd

    from ..core.files import check_writable, write_csv
    from ..report.plots import lines_with_bands

    runs = Path(runs)
    # NOTE: every run, RUN_B and the output folder are checked before any activation is
    # computed, so a bad argument costs nothing and leaves nothing behind.
    if not runs.is_dir():
        raise ConfigError(f"RUN {runs}: no such run folder (give a finished run, or a folder "
                          "of them)")
    if (runs / rundir.CONFIG).is_file():
        finished_run(runs)
        chosen = {runs.name: runs}
    else:
        chosen = _one_run_per_depth(runs)
        if not chosen:
            raise ConfigError(f"RUN {runs} is neither a run (no {rundir.CONFIG}) nor a folder "
                              f"of finished runs with a {rundir.BEST_MODEL}")
    if other is not None:
        other_config = finished_run(other, "RUN_B")
        for run_dir in chosen.values():
            check_comparable(run_dir, rundir.read_config(run_dir), other, other_config)
    check_minibatch(images, batch)
    out = check_writable(Path(out) if out else
                         (runs.parent if (runs / rundir.CONFIG).is_file() else runs), "--out")
    rows = []
    for label, run_dir in chosen.items():
        values = block_similarity(run_dir, other, images, batch)
        log(f"{label}: " + ", ".join(f"block {b} {v:.3f}" for b, v in values.items()))
        rows += [{"run": run_dir.name, "depth": label, "block": b, "cka": v}
                 for b, v in values.items()]
    frame = pd.DataFrame(rows)
    write_csv(out / f"{name}.csv", frame)
    series = {depth: (list(g["block"]), list(g["cka"]), list(g["cka"]), list(g["cka"]))
              for depth, g in frame.groupby("depth", sort=False)}
    config = rundir.read_config(next(iter(chosen.values())))
    against = "another run" if other else "its initial weights"
    caveat = " — synthetic data" if config.get("synthetic") else ""
    lines_with_bands(series, out / f"{name}.png",
                     title=f"Linear CKA per block: each network against {against}\n"
                           f"({images} validation images, minibatch CKA{caveat})",
                     xlabel="block", ylabel="linear CKA (1: unchanged)")
    return [out / f"{name}.csv", out / f"{name}.png"]


def _one_run_per_depth(runs_dir):
    """``{depth label: run}``: for each depth (``blocks``) of the folder's finished seed-0
    runs, the one with the best validation AUC."""
    best = {}
    for run_dir in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        config, metrics = rundir.read_config(run_dir), rundir.read_metrics(run_dir)
        if not (config and metrics and (run_dir / rundir.BEST_MODEL).is_file()
                and config.get("seed", 0) == 0 and metrics.get("val_auc") is not None):
            continue
        label = (f"layers {config['layers']}" if config.get("layers")
                 else f"blocks {config.get('blocks')}")
        if label not in best or metrics["val_auc"] > best[label][0]:
            best[label] = (metrics["val_auc"], run_dir)
    order = sorted(best.items(), key=lambda item: json.dumps(item[0]))
    return {label: run for label, (_, run) in order}

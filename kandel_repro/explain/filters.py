"""What training did to the first convolution: its filters before and after, and how far
each moved.

Transfusion (Raghu et al. 2019) compares the first layer's filters of ImageNet and random
initialisations, before and after fine-tuning: pretrained filters barely move, random
ones move more. :func:`filters_command` (``kandel-repro filters RUN [RUN…]``) draws, for
each run, the filters of the first convolution of the backbone at its initial weights
(rebuilt from the run's config and seed, :func:`kandel_repro.explain.similarity.initial_model`)
and at its final ones (``best_model.keras``), and measures the movement as the relative
L2 distance ``‖W_final − W_init‖ / ‖W_init‖`` of each filter and of the whole kernel.

The first convolution is the first ``Conv2D`` of the backbone in model order (nested
models searched in their order; the head is not searched). Depthwise and separable
convolutions are skipped: their filters are one channel each, not colour patches; every
registered backbone opens with a full ``Conv2D``. Only kernels are compared (no bias).

A run records its initial weights only by how it drew them, so a run that started from
ImageNet weights (or a weights file) needs that file on this machine to be drawn; without
it the run is refused in one line naming the file and where to put it
(:func:`missing_initial_weights`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError, WeightsUnavailable
from ..runs import rundir
from .similarity import finished_run, initial_model

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a network is read
    import keras

TILES_PER_ROW = 16  # filters per row of a mosaic


def first_convolution(model: keras.Model) -> keras.layers.Layer:
    """The first ``Conv2D`` of ``model``'s backbone in model order (nested models
    searched; layers named ``head_*`` and depthwise or separable convolutions not)."""
    import keras

    def search(layers):
        for layer in layers:
            if layer.name.startswith("head_"):
                continue
            if isinstance(layer, keras.layers.Conv2D):
                return layer
            inner = search(getattr(layer, "layers", ()))
            if inner is not None:
                return inner
        return None

    found = search(model.layers)
    if found is None:
        raise ConfigError(f"{model.name} has no Conv2D layer in its backbone: no first "
                          "convolution to draw")
    return found


def filter_movement(initial: np.ndarray, final: np.ndarray) -> tuple[np.ndarray, float]:
    """``(per filter, whole kernel)`` relative L2 distance ``‖final − initial‖ /
    ‖initial‖`` of two ``[kh, kw, in, filters]`` kernels (float64; NaN where the initial
    norm is 0)."""
    initial = np.asarray(initial, dtype=np.float64)
    final = np.asarray(final, dtype=np.float64)
    if initial.shape != final.shape:
        raise ConfigError(f"kernels of shapes {initial.shape} and {final.shape}: not the same "
                          "layer")
    n = initial.shape[-1]
    before = np.linalg.norm(initial.reshape(-1, n), axis=0)
    moved = np.linalg.norm((final - initial).reshape(-1, n), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_filter = np.where(before > 0, moved / np.where(before > 0, before, 1), np.nan)
    whole = np.linalg.norm(initial)
    layer = float(np.linalg.norm(final - initial) / whole) if whole > 0 else float("nan")
    return per_filter, layer


def missing_initial_weights(run_dir: str | Path, config: dict) -> WeightsUnavailable:
    """The error of a run whose initial weights cannot be rebuilt here: the file they
    come from (the ImageNet file Keras reads, the one ``convert-weights`` writes, or the
    weights file the run named) and where to put it.

    NOTE: the loaders' own messages offer ``--weights none``, a choice of a run to be
    trained; a finished run's weights are fixed, and filters has no such option."""
    from ..models.backbones import get_backbone
    from ..models.weights import MEANVAR

    backbone = get_backbone(config["backbone"])
    weights = config.get("weights")
    source = (config.get("weights_from") or "imagenet") if weights == MEANVAR else weights
    if source == "imagenet":
        what = (f"the ImageNet weights of {backbone.name}" if weights != MEANVAR else
                f"Mean-Var's draw from the ImageNet weights of {backbone.name}")
        if backbone.converted_from:
            path = backbone.converted_weights_file()
            todo = (f"convert them with `kandel-repro convert-weights {backbone.name} FILE` "
                    f"(FILE: {backbone.converted_from}; it writes {path.name} into "
                    f"{path.parent}/)")
        else:
            path = backbone.imagenet_weights_file(config.get("image_size"))
            todo = (f"put {path.name} into {path.parent}/, the folder Keras reads (set "
                    "KERAS_HOME to use another), or run filters where the file is")
    else:
        what, todo = f"the weights in {source}", f"put that file back at {source}"
    return WeightsUnavailable(f"{run_dir}: filters rebuilds the weights the run started from, "
                              f"{what}, and they are not on this machine: {todo}")


def run_filters(run_dir: str | Path) -> dict:
    """The first convolution of a finished run: ``{"run", "config", "layer", "initial",
    "final", "filter_relative_l2", "layer_relative_l2"}`` (kernels ``[kh, kw, in, n]``)."""
    import keras

    run_dir = Path(run_dir)
    config = finished_run(run_dir)
    final_model = keras.saving.load_model(run_dir / rundir.BEST_MODEL, compile=False)
    try:
        start = initial_model(config, tuple(final_model.input_shape[1:]))
    except WeightsUnavailable:
        raise missing_initial_weights(run_dir, config) from None
    final_layer, initial_layer = first_convolution(final_model), first_convolution(start)
    final = np.asarray(keras.ops.convert_to_numpy(final_layer.kernel))
    initial = np.asarray(keras.ops.convert_to_numpy(initial_layer.kernel))
    per_filter, layer = filter_movement(initial, final)
    return {"run": run_dir, "config": config, "layer": final_layer.name, "initial": initial,
            "final": final, "filter_relative_l2": per_filter, "layer_relative_l2": layer}


def mosaic(kernel: np.ndarray, scale: float, per_row: int = TILES_PER_ROW) -> np.ndarray:
    """The filters of a ``[kh, kw, in, n]`` kernel tiled ``per_row`` to a row, one pixel
    of white between them: RGB values ``0.5 + w / (2 · scale)`` (grey: 0) clipped to
    [0, 1]; kernels of other than 3 input channels as the mean of their channels."""
    kh, kw, channels, n = kernel.shape
    values = kernel if channels == 3 else np.repeat(kernel.mean(axis=2, keepdims=True), 3, 2)
    values = np.clip(0.5 + values / (2 * scale if scale > 0 else 1.0), 0.0, 1.0)
    columns = min(n, per_row)
    rows = math.ceil(n / columns)
    out = np.ones((rows * (kh + 1) + 1, columns * (kw + 1) + 1, 3))
    for f in range(n):
        r, c = divmod(f, columns)
        out[1 + r * (kh + 1):1 + r * (kh + 1) + kh,
            1 + c * (kw + 1):1 + c * (kw + 1) + kw] = values[:, :, :, f]
    return out


def _label(config):
    depth = (f"from layer {config['first_trainable_layer']}" if config.get("first_trainable_layer")
             else f"blocks {config.get('blocks')}")
    return f"{config['backbone']}, weights {config.get('weights')}, {depth}"


def filters_command(runs: Sequence[str | Path], out: str | Path | None = None,
                    log: Callable[[str], None] = print) -> list[Path]:
    """What ``kandel-repro filters`` does: the first convolution's filters of each run,
    initial and final, and their movement, written as ``filters.png`` and
    ``filters.json`` into ``out`` (default: the first run's folder)."""
    from ..core.files import check_writable, write_json

    runs = [Path(r) for r in runs]
    if not runs:
        raise ConfigError("give at least one RUN")
    for run in runs:  # every run checked before any network is built
        finished_run(run)
    out = Path(out) if out else runs[0]
    made = not out.exists()
    out = check_writable(out, "--out")
    results = []
    try:
        for run in runs:
            result = run_filters(run)
            log(f"{run.name}: {result['layer']} moved {result['layer_relative_l2']:.4g} "
                f"(relative L2; filters {np.nanmin(result['filter_relative_l2']):.3g}–"
                f"{np.nanmax(result['filter_relative_l2']):.3g})")
            results.append(result)
    except BaseException:
        if made and not any(out.iterdir()):  # (a folder made for nothing is not left)
            out.rmdir()
        raise
    _figure(results, out / "filters.png")
    write_json(out / "filters.json", {"figure": "filters.png", "runs": [{
        "run": str(r["run"]), "backbone": r["config"]["backbone"],
        "weights": r["config"].get("weights"), "blocks": r["config"].get("blocks"),
        "first_trainable_block": r["config"].get("first_trainable_block"),
        "first_trainable_layer": r["config"].get("first_trainable_layer"),
        "layer": r["layer"], "kernel_shape": list(r["final"].shape),
        "layer_relative_l2": r["layer_relative_l2"],
        "filter_relative_l2": [float(v) for v in r["filter_relative_l2"]],
        "scale": float(max(np.abs(r["initial"]).max(), np.abs(r["final"]).max())),
    } for r in results]})
    return [out / "filters.png", out / "filters.json"]


def _figure(results, path):
    """Per run its filters, initial above final on one scale, and beside them the
    relative movement of each filter (bars) and of the layer (dashed line)."""
    from ..report.plots import load_pyplot, save_figure

    plt = load_pyplot()
    images, heights = [], []
    for r in results:
        scale = max(np.abs(r["initial"]).max(), np.abs(r["final"]).max())
        before, after = mosaic(r["initial"], scale), mosaic(r["final"], scale)
        gap = np.ones((max(2, before.shape[0] // 6), before.shape[1], 3))
        images.append((np.concatenate([before, gap, after]), scale, before.shape[0], gap.shape[0]))
        heights.append(max(2.6, 7.2 * images[-1][0].shape[0] / before.shape[1] + 1.1))
    fig, axes = plt.subplots(len(results), 2, squeeze=False, figsize=(12, sum(heights) + 0.6),
                             gridspec_kw={"width_ratios": [3, 2], "height_ratios": heights})
    for (ax, bars), r, (image, scale, rows, gap) in zip(axes, results, images):
        kh, kw, channels, n = r["final"].shape
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([rows / 2, rows + gap + rows / 2], ["initial", "final"], fontsize=9)
        ax.tick_params(length=0)
        ax.set_title(f"{r['run'].name}: {_label(r['config'])}\n{r['layer']} "
                     f"({kh}×{kw}×{channels}, {n} filters; scale ±{scale:.3g})", fontsize=9)
        moved = r["filter_relative_l2"]
        bars.bar(np.arange(1, n + 1), np.nan_to_num(moved), color="tab:blue", width=0.8)
        bars.axhline(r["layer_relative_l2"], color="black", linestyle="--", linewidth=1)
        bars.set_ylim(bottom=0)
        if not np.nan_to_num(moved).any():
            bars.text(0.5, 0.5, "every filter unchanged", ha="center", va="center",
                      transform=bars.transAxes, color="dimgrey")
        bars.set_xlabel("filter", fontsize=8)
        bars.set_ylabel("‖W_final − W_init‖ / ‖W_init‖", fontsize=8)
        bars.set_title(f"relative L2 movement per filter\n(dashed: the whole layer, "
                       f"{r['layer_relative_l2']:.3g})", fontsize=9)
        bars.tick_params(labelsize=7)
    caveat = " — synthetic data" if any(r["config"].get("synthetic") for r in results) else ""
    fig.suptitle("The first convolution's filters before and after training: one colour "
                 "scale per run (grey: 0; ±max |w| of its two rows)" + caveat, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)

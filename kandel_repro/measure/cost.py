"""The cost side of "how deeply to fine-tune": what each depth trains, and how fast.

:func:`depth_costs` builds a backbone's run model once per depth (the same models a run
trains: input stage with augmentation, backbone, Dropout, Dense), counts its trainable
layers and parameters, and times training steps on images held in memory, with the same
input pipeline as a run. The time is of this machine; compare depths with each other,
not machines. :func:`write_cost` is ``kandel-repro cost`` (``make cost``); ``make
bench`` times the depths with the same function.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.files import write_csv
from ..models.backbones import REGISTRY, check_input_size, depth_label, get_backbone
from ..report.plots import cost_vs_depth
from ..runs.config import resolve_config, resolve_runtime
from ..runs.train import build_run_models
from ..training.pipeline import in_memory_dataset
from ..training.runtime import device_description

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow and pandas load when measuring
    import keras
    import pandas as pd


def step_timer(warm: int) -> keras.callbacks.Callback:
    """A Keras callback stamping the end of every training step (it waits for the step:
    it reads the loss); ``images_per_second(batch)`` over the steps after ``warm``."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.stamps = []

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step to finish
            self.stamps.append(time.perf_counter())

        def step_seconds(self):
            """Seconds of each timed step (those after the ``warm`` first ones)."""
            return np.diff(self.stamps[warm - 1:])

        def images_per_second(self, batch_size):
            seconds = self.step_seconds()
            return len(seconds) * batch_size / max(float(seconds.sum()), 1e-9)

    return StepTimer()


def default_size(backbone: str) -> int:
    """The image side :func:`depth_costs` uses when none is given: 224 (ImageNet's) on a
    GPU; on a CPU the backbone's smallest input (at least 32), so every family is
    measured in minutes."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return 224
    return max(get_backbone(backbone).min_input_size, 32)


def depth_costs(backbone: str, image_size: int | None = 96, batch_size: int = 32, steps: int = 5,
                warm: int = 2, first_blocks: Iterable[int] | None = None, weights: str = "none",
                seed: int = 0, images: np.ndarray | None = None, labels: np.ndarray | None = None,
                log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """A DataFrame, one row per depth from the top block only to the whole network.

    Columns: ``backbone``, ``first_block``, ``blocks`` (e.g. ``"3–5"``),
    ``trainable_layers`` (layers with weights that train, head included),
    ``trainable_parameters``, ``total_parameters``, ``seconds_per_step`` (median of the
    timed steps after ``warm`` untimed ones) and ``images_per_second`` (of the median
    step). ``first_blocks`` limits the depths measured (default: all). ``images`` and
    ``labels`` (uint8 N×S×S×3, 0/1): what to train on; default random images.
    """
    import pandas as pd

    info = get_backbone(backbone)
    side = default_size(info.name) if image_size is None else int(image_size)
    check_input_size(info, side, side, f"--image-size {side}")
    if steps < 1 or warm < 1:
        raise ValueError("steps and warm must be at least 1")
    if images is None:
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (batch_size * 4, side, side, 3), dtype=np.uint8)
        labels = rng.integers(0, 2, len(images)).astype(np.int8)
    firsts = list(range(info.num_blocks, 0, -1)) if first_blocks is None else list(first_blocks)
    rows = []
    for first in firsts:
        config = resolve_runtime(resolve_config(info.name, first, 1e-4, weights=weights,
                                                batch_size=batch_size, seed=seed))
        model, trainer, _, trainable = build_run_models(config, (side, side, 3))
        data = in_memory_dataset(images, labels, np.arange(len(images)), batch_size,
                                 seed=seed).repeat()
        timer = step_timer(warm)
        trainer.fit(data, steps_per_epoch=warm + steps, epochs=1, verbose=0, callbacks=[timer],
                    shuffle=False)
        per_step = float(np.median(timer.step_seconds()))
        rows.append({
            "backbone": info.name, "image_size": side, "first_block": first,
            "blocks": depth_label(first, info.num_blocks),
            "trainable_layers": len(trainable),
            "trainable_parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
            "total_parameters": int(model.count_params()),
            "seconds_per_step": per_step, "images_per_second": batch_size / per_step,
        })
        if log:
            log(f"{info.name} blocks {rows[-1]['blocks']}: {rows[-1]['trainable_parameters']:,} "
                f"trainable parameters, {per_step * 1e3:.0f} ms per step")
    return pd.DataFrame(rows)


def write_cost(backbones: Iterable[str], out_dir: str | Path = "tables",
               image_size: int | None = None, batch_size: int = 64, steps: int = 5,
               warm: int = 2, first_blocks: Iterable[int] | None = None,
               log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """What ``kandel-repro cost`` does: :func:`depth_costs` of each backbone (``all``:
    every one of the registry) into ``cost_vs_depth.csv`` and ``cost_vs_depth.png`` in
    ``out_dir``; returns both paths. ``image_size`` None: each backbone's
    :func:`default_size`."""
    import pandas as pd

    names = [b for name in backbones
             for b in (sorted(REGISTRY) if name == "all" else [get_backbone(name).name])]
    frame = pd.concat([depth_costs(name, image_size, batch_size, steps, warm,
                                   first_blocks=first_blocks, log=log) for name in names],
                      ignore_index=True)
    out = Path(out_dir)
    csv, png = out / "cost_vs_depth.csv", out / "cost_vs_depth.png"
    write_csv(csv, frame)
    sizes = sorted(set(frame["image_size"]))
    size = (f"{sizes[0]}×{sizes[0]} images" if len(sizes) == 1
            else "each backbone at its smallest input size")
    cost_vs_depth(frame, png, title=f"Cost of each fine-tuning depth: {size}, batch "
                  f"{batch_size}, {device_description()}")
    return csv, png

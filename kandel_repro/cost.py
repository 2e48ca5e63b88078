"""The cost side of "how deeply to fine-tune": what each depth trains, and how fast.

:func:`depth_costs` builds a backbone's run model once per depth (the same models a run
trains: input stage with augmentation, backbone, Dropout, Dense), counts its trainable
layers and parameters, and times training steps on random images held in memory, with
the same input pipeline as a run. The time is of this machine; compare depths with each
other, not machines.
"""
from __future__ import annotations

import numpy as np

from .backbones import depth_label, get_backbone


def depth_costs(backbone, image_size=96, batch_size=32, steps=5, warm=2, first_blocks=None,
                weights="none", seed=0, log=None):
    """A DataFrame, one row per depth from the top block only to the whole network.

    Columns: ``backbone``, ``first_block``, ``blocks`` (e.g. ``"3–5"``),
    ``trainable_layers`` (layers with weights that train, head included),
    ``trainable_parameters``, ``total_parameters``, ``seconds_per_step`` (median of the
    timed steps after ``warm`` untimed ones) and ``images_per_second``.
    ``first_blocks`` limits the depths measured (default: all).
    """
    import pandas as pd

    from .augment import in_memory_dataset
    from .bench import _step_timer
    from .train import build_run_models, resolve_config, resolve_runtime

    info = get_backbone(backbone)
    side = int(image_size)
    if side < info.min_input_size:
        raise ValueError(f"{info.name} needs images of at least {info.min_input_size}×"
                         f"{info.min_input_size}; got {image_size}")
    if steps < 1 or warm < 1:
        raise ValueError("steps and warm must be at least 1")
    rng = np.random.default_rng(seed)
    n = batch_size * 4
    x = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    y = rng.integers(0, 2, n).astype(np.int8)
    firsts = list(range(info.num_blocks, 0, -1)) if first_blocks is None else list(first_blocks)
    rows = []
    for first in firsts:
        config = resolve_runtime(resolve_config(info.name, first, 1e-4, weights=weights,
                                                batch_size=batch_size, seed=seed))
        model, trainer, _, trainable = build_run_models(config, (side, side, 3))
        data = in_memory_dataset(x, y, np.arange(n), batch_size, seed=seed).repeat()
        timer = _step_timer(1)
        trainer.fit(data, steps_per_epoch=warm + steps, epochs=1, verbose=0, callbacks=[timer],
                    shuffle=False)
        per_step = float(np.median(np.diff(timer.stamps[warm - 1:])))
        rows.append({
            "backbone": info.name, "first_block": first,
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

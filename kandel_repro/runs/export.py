"""A finished run's backbone as pretrained weights for other runs (``export-weights``).

``OUT/<backbone>.weights.h5`` (what ``--weights OUT`` loads) and ``OUT/<backbone>.json``
naming the run they come from.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import ConfigError
from ..models.build import build_base, same_layers


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


def _trained_base(run_dir, config):
    """:func:`export_weights`: the headless backbone of ``run_dir``'s best model."""
    import keras

    from . import rundir

    try:
        trained = keras.saving.load_model(run_dir / rundir.BEST_MODEL)
    except Exception as exc:  # noqa: BLE001 - keras raises many kinds for a damaged file
        raise ConfigError(f"cannot read {run_dir / rundir.BEST_MODEL} ({exc})") from None
    size = int(config["image_size"])
    base = build_base(config["backbone"], (size, size, 3), "none")
    twin = same_layers(base, trained)
    for layer in base.layers:
        if layer.weights:
            layer.set_weights(twin[layer.name].get_weights())
    return base

"""One run outside any study (``kandel-repro train``, the judge's classifier), and the
check of the weights a run starts from, which the grid makes for each of its backbones
too."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.files import check_writable
from ..models.backbones import get_backbone
from ..models.build import build_base
from ..models.weights import MEANVAR
from ..readers.registry import get_reader
from . import rundir, train
from .config import resolve_config, with_data
from .settings import RunSettings, UserSettings


def check_weights(configs: Iterable[RunSettings]) -> None:
    """Load, once per backbone, weights and image size, the weights the runs of
    ``configs`` start from (``--weights``, or Mean-Var's ``--weights-from``), into the
    backbone at the runs' own input size (MobileNet's and MobileNetV2's ImageNet file
    depends on it; a headless model costs no more to build at one size than another): the
    ImageNet weights are downloaded now, or their absence explained; a file or folder
    that does not hold the backbone's weights (missing, truncated, another backbone's) is
    named in one line."""
    needed = {}
    for c in configs:
        size = max(get_backbone(c.backbone).min_input_size, c.image_size)
        if c.weights == MEANVAR:
            needed.setdefault((c.backbone, c.weights_from or "imagenet", size), "--weights-from")
        elif c.weights != "none":
            needed.setdefault((c.backbone, c.weights, size), "--weights")
    for (name, weights, size), option in sorted(needed.items()):
        build_base(name, (size, size, 3), weights, option=option)  # loads or explains


def train_single(run_dir: str | Path, data_dir: str | Path, backbone: str,
                 first_trainable_block: int, learning_rate: float, dataset: str = "pcam",
                 cache_dir: str | Path | None = None, workers: int | None = None,
                 verbose: int | str = "auto", **settings: Any) -> dict:
    """What ``kandel-repro train`` does: one run outside any study, into ``run_dir``.

    ``settings``: the user's run settings as keywords (a plain mapping; ``**`` a
    :class:`~kandel_repro.runs.settings.UserSettings` passes one on), each None "the
    protocol's"; a key that is no run setting is refused at once. Resolves them under the
    data set's protocol, loads the data (packing it first if needed, at the resolved
    ``image_size``) and trains; returns the run's metrics.
    """
    reader = get_reader(dataset)
    config = resolve_config(backbone, first_trainable_block, learning_rate,
                            protocol=reader.protocol, **UserSettings(**settings))
    reader.check_config(config)
    reader.read_index(data_dir, config, **reader.options_of(config))
    check_weights([config])
    run_dir = check_writable(run_dir, "--run-dir")
    data = reader.load(data_dir, cache_dir, workers=workers, image_size=config.image_size,
                       **reader.options_of(config))
    with rundir.claim(run_dir):
        return train.train_run(run_dir, data, with_data(config, data, data_dir), verbose=verbose)

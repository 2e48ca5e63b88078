"""How ``--weights`` is spelled (one spelling for each meaning), and where Keras keeps
weight files."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import WeightsUnavailable

# --weights: these spellings mean random initialisation; "imagenet" the paper's weights;
# "meanvar" random weights with the statistics of pretrained ones (--weights-from).
RANDOM_WEIGHTS = ("none", "random", "scratch")


MEANVAR = "meanvar"


def keras_models_dir() -> Path:
    """Where Keras looks for (and downloads) application weight files."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def normalise_weights(weights: str | Path | None) -> str:
    """One spelling of ``--weights``: ``"imagenet"``, ``"none"``, ``"meanvar"`` or a path.

    ``None``, ``"none"``, ``"random"`` and ``"scratch"`` (any case) are random weights;
    ``"imagenet"`` (any case) the ImageNet weights; ``"meanvar"`` Mean-Var
    initialisation; anything else must be an existing file (a ``keras.applications``
    notop ``.h5``, or a ``.weights.h5`` of ``kandel-repro export-weights``) or a folder
    of ``<backbone>.weights.h5`` files, named in the error if it is not. A path is
    spelled absolute (as ``--data`` and ``--wsi-map`` are), so that the same file given
    from another working folder is the same experiment. What the file holds is checked
    where it is loaded (:func:`kandel_repro.models.build.build_base`).
    """
    text = "none" if weights is None else str(weights)
    if text.lower() in RANDOM_WEIGHTS:
        return "none"
    if text.lower() in ("imagenet", MEANVAR):
        return text.lower()
    path = Path(text).expanduser()
    if not path.exists():
        raise WeightsUnavailable(
            f"weights file {str(path)!r} does not exist; give 'imagenet', 'none', 'meanvar', "
            "the path of a keras.applications notop .h5 file, or a folder of "
            "<backbone>.weights.h5 files (kandel-repro export-weights)")
    return str(path.resolve())

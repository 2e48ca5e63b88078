"""Reader of a folder of unlabelled images (``--dataset images``): any folder, its
subfolders included, for ``kandel-repro pretrain`` (a VAE or a DCGAN needs no labels).

Every image file under ``DATA`` (the files :func:`~kandel_repro.data.images.is_image`
accepts; hidden entries skipped, links followed as the folder reader follows them, the
other files counted by extension on the standard error) is one image of a single class,
``unlabelled``; the own-data protocol splits them 80/10/10 as it splits a
labelled folder, so that ``pretrain --images train`` leaves the validation part out for
the judge's real images. Images are decoded and resized to ``image_size`` when packed,
as the folder reader does (:mod:`kandel_repro.readers.folder`), into
``DATA/.kandel_cache/images-<size>``; with ``skip_unreadable`` the images that cannot be
decoded are left out and counted, as the folder reader does. A classifier cannot train on
it: ``train`` and ``grid`` refuse it (:func:`check_config`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.protocol import OWN
from ..data import cache
from ..data.images import EXTENSIONS, check_window
from ..data.packed import Split, TestSet
from . import own
from .folder import said, walk
from .own import OwnData

if TYPE_CHECKING:
    import pandas as pd

CLASS = "unlabelled"


@dataclass
class UnlabelledData(OwnData):
    """Images of one class, ``unlabelled``: split at random (no classes to stratify by)."""

    def split(self, config: dict) -> Split:
        """``validation_fraction`` and ``test_fraction`` of the images (10 % each by
        default) at random, seeded by ``split_seed``; the rest is the training part."""
        n = len(self.y)
        val_n = int(round(n * config.get("validation_fraction", OWN.validation_fraction)))
        test_n = int(round(n * config.get("test_fraction", OWN.test_fraction)))
        order = np.random.default_rng(config.get("split_seed", OWN.split_seed)).permutation(n)
        val, test = np.sort(order[:val_n]), np.sort(order[val_n:val_n + test_n])
        train = np.sort(order[val_n + test_n:])
        return Split(train, val, TestSet(self.x, self.ids, indices=test, labels=None))


def read_index(root: str | Path, window: Sequence[float] | None = None,
               skip_unreadable: bool = False) -> pd.DataFrame:
    """One row per image (:func:`~kandel_repro.readers.own.index_frame`), all of the one
    class ``unlabelled``; no image is decoded (``skip_unreadable`` changes nothing here)."""
    check_window(window)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (--dataset images reads every "
                        "image under a folder)")
    listing = walk(root)
    said(listing, root)
    images = listing.images
    if not images:
        raise DataError(f"{root} holds no image (files {' '.join(EXTENSIONS)}, in it or its "
                        "subfolders)")
    rows = [{"path": str(path), "id": path.relative_to(root).as_posix(), "label": CLASS,
             "group": "", "split": ""} for path in images]
    return own.index_frame(rows, [CLASS])


def check_config(config: dict) -> None:
    """Refuse a classifier's run (its config names a backbone): these images have no
    labels."""
    if config.get("backbone") is not None:
        raise ConfigError("--dataset images holds no labels: it serves `kandel-repro pretrain` "
                          "only; a classifier trains on a labelled layout (--dataset folder, "
                          "csv, pcam, …)")
    if (config.get("split") or "auto") not in ("auto", "image"):
        raise ConfigError(f"--split {config['split']}: --dataset images is split by image")


def _source(root, cache_dir, workers, progress, image_size, window,
            skip_unreadable) -> cache.Source:
    index = read_index(root, window)
    return own.source("images", root, root, index, cache_dir, "images", image_size,
                      window=window, workers=workers, progress=progress,
                      skip_unreadable=bool(skip_unreadable))


def pack(root: str | Path, cache_dir: str | Path | None = None, workers: int | None = None,
         progress: bool = True, force: bool = False, image_size: int | None = None,
         verify: bool = False, window: Sequence[float] | None = None,
         skip_unreadable: bool = False) -> Path:
    """Decode and resize every image once into a uint8 cache (as the folder reader)."""
    return own.pack(_source(root, cache_dir, workers, progress, image_size, window,
                            skip_unreadable), root, force, verify)


def load(root: str | Path, cache_dir: str | Path | None = None, workers: int | None = None,
         progress: bool = True, image_size: int | None = None,
         window: Sequence[float] | None = None, skip_unreadable: bool = False) -> OwnData:
    """Pack if needed (at ``image_size``), then load the arrays."""
    return own.load(_source(root, cache_dir, workers, progress, image_size, window,
                            skip_unreadable), root, make=UnlabelledData)

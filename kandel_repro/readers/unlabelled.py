"""The reader of a folder of unlabelled images (``--dataset images``:
:class:`UnlabelledReader`): any folder, its subfolders included, for ``kandel-repro
pretrain`` (a VAE or a DCGAN needs no labels).

Every image file under ``DATA`` (the files :func:`~kandel_repro.data.images.is_image`
accepts; hidden entries skipped, links followed as the folder reader follows them, the
other files counted by extension on the standard error) is one image of a single class,
``unlabelled``; the own-data protocol splits them 80/10/10 as it splits a
labelled folder, so that ``pretrain --images train`` leaves the validation part out for
the judge's real images. Images are decoded and resized to ``image_size`` when packed,
as the folder reader does (:mod:`kandel_repro.readers.folder`), into
``DATA/.kandel_cache/images-<size>``; with ``skip_unreadable`` the images that cannot be
decoded are left out and counted, as the folder reader does. A classifier cannot train on
it: ``train`` and ``grid`` refuse it (:meth:`UnlabelledReader.check_labels`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.protocol import OWN
from ..data.images import EXTENSIONS, check_window
from ..data.packed import Split, TestSet
from . import own
from .folder import said, walk
from .own import Listed, OwnData, OwnReader

if TYPE_CHECKING:
    import pandas as pd

CLASS = "unlabelled"
LAYOUT = "every image under a folder"  # as its messages name what it reads


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
        raise DataError(f"image folder {root} does not exist (--dataset images reads "
                        f"{LAYOUT})")
    listing = walk(root)
    said(listing, root)
    images = listing.images
    if not images:
        raise DataError(f"{root} holds no image (files {' '.join(EXTENSIONS)}, in it or its "
                        "subfolders)")
    rows = [{"path": str(path), "id": path.relative_to(root).as_posix(), "label": CLASS,
             "group": "", "split": ""} for path in images]
    return own.index_frame(rows, [CLASS])


class UnlabelledReader(OwnReader):
    """Every image under a folder, of the one class ``unlabelled``, packed into
    ``DATA/.kandel_cache/images-<size>`` and loaded as :class:`UnlabelledData`."""

    layout = LAYOUT
    packed = UnlabelledData
    wrong_split = "--split {split}: --dataset images is split by image"
    index = staticmethod(read_index)

    def listed(self, root: str | Path, window: Sequence[float] | None = None) -> Listed:
        return Listed(read_index(root, window), root, "images")

    def check_labels(self, config: dict) -> None:
        """Refuse a classifier's run (its config names a backbone): these images have no
        labels."""
        if config.get("backbone") is not None:
            raise ConfigError("--dataset images holds no labels: it serves `kandel-repro "
                              "pretrain` only; a classifier trains on a labelled layout "
                              "(--dataset folder, csv, pcam, …)")

    checks = (check_labels, OwnReader.check_split)

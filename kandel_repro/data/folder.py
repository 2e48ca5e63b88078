"""Reader of image folders (``--dataset folder``): a user's own data, one folder per class.

Two layouts::

    DATA/<class>/<images…>                    split 80/10/10 when trained on
    DATA/{train,val,test}/<class>/<images…>   pre-split: the parts used as they are

Images in subfolders of a class folder count for that class. The class names are the
class folders' names, sorted (with two classes the second is the positive, label 1);
a pre-split layout's three parts must hold the same classes. Hidden entries (``.*``,
such as the packed cache ``.kandel_cache``) are ignored, and so are files beside the
class folders (a README, a CSV). Images are the files of the extensions
:data:`~kandel_repro.data.images.EXTENSIONS` (``.png .jpg .jpeg .tif .tiff .bmp .dcm``,
in any case); a file of another extension is skipped, not an error. The folder layout
has no groups: to keep each patient or slide on one side of the split, list the images
in a CSV manifest (``--dataset csv``, :mod:`kandel_repro.data.manifest`).

Images are decoded by :func:`~kandel_repro.data.images.decode_image` and resized to
``image_size`` (default 224) when packed, into ``DATA/.kandel_cache/folder-<size>``
(``-<hash>`` appended with a ``window``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, DataError
from . import cache, own
from .images import EXTENSIONS, check_window, is_image
from .own import PARTS, OwnData

if TYPE_CHECKING:
    import pandas as pd

LAYOUT = "DATA/<class>/<images>, or DATA/{train,val,test}/<class>/<images>"


def _folders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted by name."""
    return sorted((entry for entry in folder.iterdir()
                   if entry.is_dir() and not entry.name.startswith(".")), key=lambda p: p.name)


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (its subfolders too), hidden entries skipped,
    in a fixed order."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(top) / name for name in sorted(files)
                     if not name.startswith(".") and is_image(name))
    return found


def _classes(folder: Path) -> dict[str, Path]:
    classes = {entry.name: entry for entry in _folders(folder)}
    if not classes:
        raise DataError(f"no class folders in {folder}: expected {LAYOUT}")
    return classes


def read_index(root: str | Path, window: Sequence[float] | None = None) -> pd.DataFrame:
    """One row per image (:func:`~kandel_repro.data.own.index_frame`: path, id, label,
    y, group, split), the layout checked; no image is decoded."""
    check_window(window)
    root = Path(root)
    if root.is_file():
        raise DataError(f"{root} is a file; --dataset folder reads a folder ({LAYOUT}); "
                        "for a CSV manifest use --dataset csv")
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (expected {LAYOUT}); make a "
                        f"synthetic one with 'kandel-repro data synthetic-folder --out {root}'")
    top = _folders(root)
    parts = [entry.name for entry in top if entry.name in PARTS]
    if parts:
        others = [entry.name for entry in top if entry.name not in PARTS]
        if others:
            raise DataError(f"{root} mixes split folders ({', '.join(parts)}) with class "
                            f"folders ({', '.join(others)}): put every class folder under "
                            "train/, val/ and test/, or use no split folders")
        missing = [part for part in PARTS if part not in parts]
        if missing:
            raise DataError(f"{root} is split into {', '.join(parts)} but has no "
                            f"{', '.join(missing)} folder: a pre-split layout needs train/, "
                            "val/ and test/, each with the same class folders")
        layout = {part: _classes(root / part) for part in PARTS}
        names = sorted(set().union(*layout.values()))
        for part, classes in layout.items():
            lacking = [name for name in names if name not in classes]
            if lacking:
                raise DataError(f"the parts of {root} do not hold the same classes: "
                                f"{root / part} has no class folder {', '.join(lacking)}")
    else:
        layout = {"": _classes(root)}
        names = sorted(layout[""])
    own.check_classes(names, str(root), "one folder of images per class")
    rows = []
    for part, classes in layout.items():
        for name in names:
            images = image_files(classes[name])
            if not images:
                raise DataError(f"class folder {classes[name]} holds no image (files "
                                f"{' '.join(EXTENSIONS)})")
            rows.extend({"path": str(path), "id": path.relative_to(root).as_posix(),
                         "label": name, "group": "", "split": part} for path in images)
    return own.index_frame(rows, names)


def check_config(config: dict) -> None:
    """Refuse what the folder layout cannot serve, before anything is read: the CSV
    manifest's options, and a split by group (folders name no groups)."""
    own.check_split_option(config)
    given = [f"--{key.replace('_', '-')}" for key in ("path_column", "label_column",
                                                      "group_column")
             if config.get(key) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to "
                          "a CSV manifest (--dataset csv), not to --dataset folder")
    if config.get("split") == "group":
        raise ConfigError("--split group needs a group (patient, slide) per image, which the "
                          "folder layout has none of: list the images in a CSV manifest with "
                          "a group column (--dataset csv)")


def _source(root, cache_dir, workers, progress, image_size, window) -> cache.Source:
    index = read_index(root, window)
    return own.source("folder", root, root, index, cache_dir, "folder", image_size,
                      window=window, workers=workers, progress=progress)


def pack(root: str | Path, cache_dir: str | Path | None = None, workers: int | None = None,
         progress: bool = True, force: bool = False, image_size: int | None = None,
         verify: bool = False, window: Sequence[float] | None = None) -> Path:
    """Decode and resize every image once into a uint8 cache; reuse it while unchanged
    and undamaged (``verify``: its checksums too). ``window``: a fixed (center, width)
    for images of more than 8 bits (:mod:`~kandel_repro.data.images`)."""
    return cache.pack_source(_source(root, cache_dir, workers, progress, image_size, window),
                             force, verify)[0]


def load(root: str | Path, cache_dir: str | Path | None = None, workers: int | None = None,
         progress: bool = True, image_size: int | None = None,
         window: Sequence[float] | None = None) -> OwnData:
    """Pack if needed (at ``image_size``), then load the arrays as
    :class:`~kandel_repro.data.own.OwnData`."""
    return own.load(_source(root, cache_dir, workers, progress, image_size, window), root)

"""The reader of image folders (``--dataset folder``: :class:`FolderReader`): a user's own
data, one folder per class.

Two layouts::

    DATA/<class>/<images…>                    split 80/10/10 when trained on
    DATA/{train,val,test}/<class>/<images…>   pre-split: the parts used as they are

A pre-split layout's folders are named as a CSV manifest's ``split`` values are
(:func:`~kandel_repro.readers.own.split_part`): ``train``/``training``,
``val``/``valid``/``validation``, ``test``/``testing``, in any case (``Train/``,
``Validation/``). Its three parts must hold the same classes, and a class folder named
like a part (``train/val/``) is refused, as are two folders of one part and split folders
beside class folders.

Images in subfolders of a class folder count for that class; links are followed, to
folders as to files, inside a class folder as at the top. A folder or an image reached
twice within one class (two links to one folder) is read once and said; one reached from
two classes or two parts (a link to a sibling class, to a folder above the class, from
train into test) is refused, naming both places: an image has one class and one part. A
broken link is refused, naming it. The class names are the class folders' names, in the order of
both own-data readers (:func:`~kandel_repro.readers.own.class_order`: as numbers when all
read as numbers, so ``2`` before ``10``, else as text; with two classes the second is the
positive, label 1, unless ``positive_class`` names the other). Hidden entries (``.*``,
such as the packed cache ``.kandel_cache``, macOS' ``.DS_Store``) are ignored, and so are
files beside the class folders (a README, a CSV). Images are the files
:func:`~kandel_repro.data.images.is_image` accepts; a file of another kind inside a class
folder is skipped, and the skipped files are counted by extension on the standard error.
The folder layout has no groups: to keep each patient or slide on one side of the split,
list the images in a CSV manifest (``--dataset csv``, :mod:`kandel_repro.readers.manifest`).

Images are decoded by :func:`~kandel_repro.data.images.decode_image` and resized to
``image_size`` (default 224) when packed, into ``DATA/.kandel_cache/folder-<size>``
(``-<hash>`` appended with a ``window``, or another positive class); an image that
cannot be decoded is refused with every other one, or left out with
``skip_unreadable`` (:func:`~kandel_repro.readers.own.source`).
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, DataError
from ..data import cache
from ..data.images import EXTENSIONS, check_window, is_image
from . import own
from .own import PARTS, Listed, OwnReader, join_and, split_part

if TYPE_CHECKING:
    import pandas as pd

LAYOUT = "DATA/<class>/<images>, or DATA/{train,val,test}/<class>/<images>"
_SAID: set[str] = set()  # notes said in this process


def note_once(message: str) -> None:
    """:func:`~kandel_repro.data.cache.warn`, once per process for each message: a
    command lists a folder more than once (checked first, then packed)."""
    if message not in _SAID:
        _SAID.add(message)
        cache.warn(message)


def _folders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder`` (links to folders too), sorted by name."""
    return sorted((entry for entry in folder.iterdir()
                   if entry.is_dir() and not entry.name.startswith(".")), key=lambda p: p.name)


@dataclass
class Listing:
    """What :func:`walk` found under a folder: ``repeats`` are ``(path, where it was read
    before)`` of a folder or image reached again within one owner (read once),
    ``crossings`` the same across owners (two classes, two parts: refused)."""

    images: list[Path] = field(default_factory=list)
    others: Counter = field(default_factory=Counter)  # files that are not images, by extension
    repeats: list[tuple[Path, Path]] = field(default_factory=list)
    crossings: list[tuple[Path, Path, str, str]] = field(default_factory=list)
    broken: list[Path] = field(default_factory=list)  # links to nothing

    def add(self, other: Listing) -> None:
        self.images += other.images
        self.others += other.others
        self.repeats += other.repeats
        self.crossings += other.crossings
        self.broken += other.broken


def walk(folder: str | Path, seen: dict[str, tuple[Path, str]] | None = None,
         owner: str = "") -> Listing:
    """The image files under ``folder`` and its subfolders, in a fixed order, hidden
    entries skipped and links followed. ``seen`` (``{real path: (path, owner)}``, shared
    by the walks of one layout) holds the folders and images read so far and what they
    were read as (``owner``: "class 'a'", "class 'a' of train"); one reached again is
    not read again but recorded: a repeat within the same owner, a crossing from
    another."""
    found = Listing()
    seen = {} if seen is None else seen

    def visit(path, real):
        """True where ``path`` (real path ``real``) is read now, the first time."""
        if real not in seen:
            seen[real] = (path, owner)
            return True
        first, first_owner = seen[real]
        if first_owner == owner:
            found.repeats.append((path, first))
        else:
            found.crossings.append((path, first, owner, first_owner))
        return False

    if not visit(Path(folder), os.path.realpath(folder)):
        return found
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [name for name in sorted(d for d in dirs if not d.startswith("."))
                   if visit(Path(top) / name, os.path.realpath(os.path.join(top, name)))]
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(top) / name
            if path.is_symlink() and not path.exists():
                found.broken.append(path)
            elif not is_image(name):
                found.others[path.suffix.lower() or "no extension"] += 1
            elif visit(path, os.path.realpath(path)):
                found.images.append(path)
    return found


def said(listing: Listing, root: Path) -> None:
    """Refuse the broken links of ``listing`` (all named, in one line); say the folders
    read once only and the files that are not images."""
    if listing.broken:
        first = listing.broken[0]
        if len(listing.broken) == 1:
            raise DataError(f"{first} is a broken link (to {os.readlink(first)}): remove it or "
                            "restore what it points to")
        named = ", ".join(f"{path.relative_to(root).as_posix()} (to {os.readlink(path)})"
                          for path in listing.broken[:5])
        more = f" and {len(listing.broken) - 5} more" if len(listing.broken) > 5 else ""
        raise DataError(f"{first} is a broken link, one of {len(listing.broken)} in {root}: "
                        f"{named}{more}; remove them or restore what they point to")
    if listing.crossings:
        path, first, owner, first_owner = listing.crossings[0]
        link = _link_of(path, root) or _link_of(first, root)
        more = (f"; and {len(listing.crossings) - 1} more such path"
                f"{'s' if len(listing.crossings) > 2 else ''}" if len(listing.crossings) > 1
                else "")
        raise DataError(f"{_shown(first, root)} ({first_owner}) and {_shown(path, root)} "
                        f"({owner}) are the same {'folder' if path.is_dir() else 'image'} in "
                        f"{root}" + (f", through the link {_shown(link, root)}" if link else "")
                        + f"{more}: an image has one class and one part; remove the link (or "
                        "copy the images you mean)")
    for path, first in listing.repeats:
        note_once(f"{_shown(path, root)} in {root} leads to {_shown(first, root)}, read "
                  "already: its images are read once")
    if listing.others:
        kinds = ", ".join(f"{ext} ×{n}" for ext, n in listing.others.most_common())
        count = sum(listing.others.values())
        note_once(f"skipped {count} file{'s that are' if count > 1 else ' that is'} not "
                  f"{'images' if count > 1 else 'an image'} ({kinds}) in {root}")


def _link_of(path: Path, root: Path) -> Path | None:
    """The first link on the way from ``root`` down to ``path`` (itself included)."""
    try:
        steps = path.relative_to(root).parts
    except ValueError:
        return path if path.is_symlink() else None
    for depth in range(1, len(steps) + 1):
        if (root.joinpath(*steps[:depth])).is_symlink():
            return root.joinpath(*steps[:depth])
    return None


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` where it lies under it, else as it is."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _classes(folder: Path) -> dict[str, Path]:
    classes = {entry.name: entry for entry in _folders(folder)}
    if not classes:
        raise DataError(f"no class folders in {folder}: expected {LAYOUT}")
    return classes


def _split_layout(root: Path, top: list[Path]) -> dict[str, Path] | None:
    """``{part: its folder}`` of a pre-split layout, None for class folders alone; the
    layout refused when it mixes the two, misses a part or has two folders of one."""
    parts: dict[str, list[Path]] = {}
    for entry in top:
        if split_part(entry.name):
            parts.setdefault(split_part(entry.name), []).append(entry)
    if not parts:
        return None
    spelled = ", ".join(entry.name for entry in top if split_part(entry.name))
    others = [entry.name for entry in top if not split_part(entry.name)]
    if others:
        raise DataError(f"{root} mixes split folders ({spelled}) with class folders "
                        f"({', '.join(others)}): put every class folder under train/, val/ and "
                        "test/, or use no split folders")
    for part, entries in parts.items():
        if len(entries) > 1:
            raise DataError(f"{root} has two folders for the {part} part "
                            f"({', '.join(entry.name for entry in entries)}): keep one")
    missing = [part for part in PARTS if part not in parts]
    if missing:
        raise DataError(f"{root} is split into {spelled} but has no {', '.join(missing)} "
                        "folder: a pre-split layout needs train/, val/ and test/ (in any case; "
                        "also valid/, validation/), each with the same class folders")
    return {part: parts[part][0] for part in PARTS}


def _names(root: Path, layout: dict[str, dict[str, Path]]) -> list[str]:
    """The class names of ``layout`` (``{part: {class: folder}}``) in the readers' order;
    refused where a name is a split part's or one number is written two ways."""
    names = set().union(*layout.values())
    for part, classes in layout.items():
        for name, path in classes.items():
            if part and split_part(name):
                raise DataError(f"class folder {path} is named like a split part "
                                f"({split_part(name)}): a class may not be called train, val or "
                                "test (nor valid, validation, training, testing); rename it")
    for spellings in own.same_numbers(sorted(names)):
        raise DataError(f"the class folders {join_and([repr(s) for s in spellings])} are one "
                        f"number written in different ways in {root}: rename them so that "
                        "each class is written one way (or merge them)")
    return own.class_order(names)


def read_index(root: str | Path, window: Sequence[float] | None = None,
               positive_class: str | None = None, skip_unreadable: bool = False,
               split_settings: dict | None = None) -> pd.DataFrame:
    """One row per image (:func:`~kandel_repro.readers.own.index_frame`: path, id, label,
    y, group, split), the layout checked; no image is decoded. ``positive_class``: the
    class of label 1 (two classes). ``split_settings``: a run's split
    (:data:`~kandel_repro.readers.registry.SPLIT_KEYS`), which is then drawn on the index and
    refused here if the data cannot serve it (``skip_unreadable`` changes nothing here)."""
    check_window(window)
    root = Path(root)
    if root.is_file():
        raise DataError(f"{root} is a file; --dataset folder reads a folder ({LAYOUT}); "
                        "for a CSV manifest use --dataset csv")
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (expected {LAYOUT}); make a "
                        f"synthetic one with 'kandel-repro data synthetic-folder --out {root}'")
    parts = _split_layout(root, _folders(root))
    if parts:
        layout = {part: _classes(folder) for part, folder in parts.items()}
        names = _names(root, layout)
        for part, classes in layout.items():
            lacking = [name for name in names if name not in classes]
            if lacking:
                raise DataError(f"the parts of {root} do not hold the same classes: "
                                f"{parts[part]} has no class folder {', '.join(lacking)}")
    else:
        layout = {"": _classes(root)}
        names = _names(root, layout)
    own.check_classes(names, str(root), "one folder of images per class")
    labels = own.order_classes(names, positive_class, str(root))
    rows, listing = [], Listing()
    # the data folder and the parts' folders are no class: a link to one is a crossing
    seen = {os.path.realpath(folder): (folder, "the data folder itself" if folder == root
                                       else f"the {part} part's folder")
            for part, folder in [("", root), *(parts or {}).items()]}
    for part, classes in layout.items():
        for name in names:  # (rows in the rule's order whatever the positive class)
            found = walk(classes[name], seen, f"class {name!r}" + (f" of {part}" if part
                                                                    else ""))
            listing.add(found)
            if not (found.images or found.broken or found.crossings):
                raise DataError(f"class folder {classes[name]} holds no image (files "
                                f"{' '.join(EXTENSIONS)})")
            rows.extend({"path": str(path), "id": path.relative_to(root).as_posix(),
                         "label": name, "group": "", "split": part} for path in found.images)
    said(listing, root)
    index = own.index_frame(rows, labels)
    if split_settings:
        own.check_index_split(index, root, split_settings)
    return index


class FolderReader(OwnReader):
    """Image folders (see the module's docstring), packed into
    ``DATA/.kandel_cache/folder-<size>``."""

    layout = LAYOUT
    index = staticmethod(read_index)

    def listed(self, root: str | Path, window: Sequence[float] | None = None,
               positive_class: str | None = None) -> Listed:
        return Listed(read_index(root, window, positive_class), root, "folder")

    def check_columns(self, config: dict) -> None:
        """Refuse the CSV manifest's options."""
        given = [f"--{key.replace('_', '-')}" for key in ("path_column", "label_column",
                                                          "group_column")
                 if config.get(key) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} "
                              "to a CSV manifest (--dataset csv), not to --dataset folder")

    def check_groups(self, config: dict) -> None:
        """Refuse a split by group: folders name no groups."""
        if config.get("split") == "group":
            raise ConfigError("--split group needs a group (patient, slide) per image, which "
                              "the folder layout has none of: list the images in a CSV "
                              "manifest with a group column (--dataset csv)")

    checks = (OwnReader.check_split, check_columns, check_groups)

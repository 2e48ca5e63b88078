"""A user's own data: the packed type and the skeleton both of its readers share.

The ``folder`` reader (:mod:`kandel_repro.data.folder`: ``DATA/<class>/<images>``) and
the ``csv`` reader (:mod:`kandel_repro.data.manifest`: a CSV manifest) differ only in how
they find the images, their classes, groups and given split: each gives an index
(:func:`index_frame`) and packs and loads it through :func:`source` and :func:`load`,
which decode every image by :func:`~kandel_repro.data.images.decode_image` into the
shared uint8 cache (:mod:`kandel_repro.data.cache`). Any number of classes, two at least;
a class's label is its index in ``class_names``.

:class:`OwnData` splits 80/10/10 (the own-data protocol, after the paper's BreakHis
split, §4.3) by the data's own split when they bring one, else by group (patient, slide:
no group on two sides) when they name groups, else stratified by label at random; every
class must reach validation and test, where the macro AUC needs each one.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.protocol import OWN
from . import cache
from .images import check_window, decode_image
from .packed import PackedData, Split, TestSet
from .split import check_splittable, three_way

if TYPE_CHECKING:
    import pandas as pd

CACHE_FORMAT = 1
ARRAYS = ("x", "y", "ids", "groups", "splits", "class_names")
PARTS = ("train", "val", "test")  # a given split's parts, in the cache's "splits"
SPLITS = ("auto", "given", "image", "group")  # config["split"] for own data


def index_frame(rows: list[dict], class_names: list[str]) -> pd.DataFrame:
    """The index a reader gives (its ``read_index``): one row per image with ``path``
    (to open), ``id`` (relative to the data folder, posix), ``label`` (the class name, a
    categorical whose categories are ``class_names`` in label order), ``y`` (the label
    index), ``group`` and ``split`` ("" where none)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["path", "id", "label", "group", "split"])
    frame["label"] = pd.Categorical(frame["label"], categories=list(class_names))
    frame.insert(3, "y", frame["label"].cat.codes.astype(np.int16))
    return frame


def check_classes(class_names: list[str], what: str, how: str) -> None:
    """Refuse data of fewer than two classes: ``how`` says what a class is there."""
    if len(class_names) < 2:
        found = f"one class only ({class_names[0]!r})" if class_names else "no class"
        raise DataError(f"{what} has {found}: a classifier needs images of at least two "
                        f"classes ({how})")


def check_split_option(config: dict) -> str:
    """``config["split"]`` (default auto), refused unless one of :data:`SPLITS`."""
    kind = config.get("split") or "auto"
    if kind not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)} for your own data, "
                          f"got {kind!r}")
    return kind


@dataclass
class OwnData(PackedData):
    """A user's own data packed: ``x``/``y``/``ids`` hold every image, ``class_names``
    the classes in label order, ``groups`` each image's group and ``splits`` its given
    part (train, val, test), both "" where the data name none."""

    class_names: np.ndarray = None
    groups: np.ndarray = None
    splits: np.ndarray = None

    @property
    def has_split(self) -> bool:
        return bool(len(self.splits)) and bool((self.splits != "").all())

    @property
    def has_groups(self) -> bool:
        return bool(len(self.groups)) and bool((self.groups != "").all())

    def facts(self) -> dict:
        return {"classes": [str(name) for name in self.class_names],
                "num_classes": len(self.class_names)}

    def split_kind(self, config: dict) -> str:
        """The split ``config["split"]`` asks for, resolved (auto: given, else group,
        else image), or a :class:`ConfigError` when the data cannot serve it."""
        kind = check_split_option(config)
        if kind == "auto":
            return "given" if self.has_split else "group" if self.has_groups else "image"
        if kind == "given" and not self.has_split:
            raise ConfigError(f"--split given needs the data's own split, and {self.root} "
                              "brings none (a split column of train/val/test, or train/, "
                              "val/ and test/ folders); leave --split out")
        if kind in ("image", "group") and self.has_split:
            raise ConfigError(f"{self.root} brings its own split (train/val/test), which "
                              f"--split {kind} would ignore: drop --split {kind}, or drop "
                              "the data's split (the split column, or the split folders)")
        if kind == "group" and not self.has_groups:
            raise ConfigError(f"--split group needs a group (patient, slide) per image, and "
                              f"{self.root} names none: use a CSV manifest with a group "
                              "column (--dataset csv, --group-column NAME)")
        return kind

    def split_facts(self, config: dict) -> dict:
        return {"split_used": self.split_kind(config)}

    def split(self, config: dict) -> Split:
        """80/10/10 (``validation_fraction``, ``test_fraction``) by ``config["split"]``
        (:meth:`split_kind`), seeded by ``split_seed``; the test set is labelled."""
        kind = self.split_kind(config)
        what = str(self.root)
        if kind == "given":
            train, val, test = (np.flatnonzero(self.splits == part) for part in PARTS)
        else:
            fractions = (config.get("validation_fraction", OWN.validation_fraction),
                         config.get("test_fraction", OWN.test_fraction))
            check_splittable(self.y, fractions, what, names=self.class_names)
            option = ("--split group" if config.get("split") == "group" else
                      "--split auto (by group, as the data name groups; --split image "
                      "splits images instead)")
            train, val, test = three_way(self.y, self.groups, *fractions,
                                         config.get("split_seed", OWN.split_seed), kind,
                                         groups_named="groups", option=option)
        self._check_parts(kind, {"train": train, "val": val, "test": test})
        return Split(train, val, TestSet(self.x, self.ids, indices=test, labels=self.y[test],
                                         auc_key="test_auc"))

    def _check_parts(self, kind, parts):
        """Every part holds images, and validation and test (where the macro AUC is
        taken) and train hold every class."""
        fix = {"given": "move some of its images there",
               "group": "its groups are too few or too one-sided; name more groups, or "
                        "split with --split image",
               "image": "the class has too few images; add images of it"}[kind]
        for part, rows in parts.items():
            if not len(rows):
                raise DataError(f"the {part} part of {self.root} holds no image; "
                                + ("give it images" if kind == "given" else fix))
            missing = np.setdiff1d(np.arange(len(self.class_names)), self.y[rows])
            if len(missing):
                raise DataError(f"the {part} part of {self.root} holds no image of class "
                                f"{str(self.class_names[missing[0]])!r} (every class must be in "
                                f"train, val and test for a macro AUC); {fix}")


def options_suffix(options: dict[str, Any]) -> str:
    """``-<8 hex>`` of the reader options not at their default (``options``: those),
    or "" when there are none: caches of other options lie apart."""
    if not options:
        return ""
    return "-" + hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]


def source(dataset: str, root: str | Path, data_folder: str | Path, index: pd.DataFrame,
           cache_dir: str | Path | None, stem: str, image_size: int | None,
           window: Any = None, options: dict[str, Any] | None = None,
           workers: int | None = None, progress: bool = True,
           extra: bytes = b"") -> cache.Source:
    """What a reader of own data packs (:class:`~kandel_repro.data.cache.Source`): every
    image of ``index``, decoded and resized to ``image_size`` (default 224) into
    ``<cache_dir or data_folder/.kandel_cache>/<stem>-<size>[-<hash of options>]``.

    ``data_folder``: the folder the image ids are relative to (the folder read, or the
    CSV's); ``options``: the reader's options other than ``window`` that are not at
    their default; they, ``window`` and the size are hashed with the files, and so are
    ``extra`` bytes (the CSV's)."""
    size = int(image_size or OWN.image_size)
    window = check_window(window)
    settings = dict(options or {}, **({"window": list(window)} if window else {}))
    name = f"{stem}-{size}{options_suffix(settings)}"
    cache_dir = Path(cache_dir) / name if cache_dir else Path(data_folder) / ".kandel_cache" / name
    paths = index["path"].tolist()
    class_names = np.array(index["label"].cat.categories, dtype=str)

    def build(manifest: dict) -> Path:
        return cache.build(
            cache_dir, {"x": paths}, functools.partial(decode_image, size=size, window=window),
            (size, size, 3),
            dict(manifest, n=len(paths), classes=class_names.tolist(), options=settings),
            extra_arrays={"y": index["y"].to_numpy(np.int16), "ids": index["id"].to_numpy(str),
                          "groups": index["group"].to_numpy(str),
                          "splits": index["split"].to_numpy(str), "class_names": class_names},
            workers=workers, progress=progress, desc=f"packing {root} at {size}×{size}")

    hashed = json.dumps(dict(settings, size=size), sort_keys=True).encode()
    return cache.Source(Path(data_folder), cache_dir, dataset, CACHE_FORMAT, ARRAYS, paths,
                        build, extra=hashed + b"\0" + extra)


def load(source: cache.Source, root: str | Path) -> OwnData:
    """``source`` packed if needed, then loaded as :class:`OwnData` whose ``root`` is
    what the user gave (the folder, or the CSV file)."""
    # NOTE: no legacy fingerprint: every run of these readers records identities
    data = cache.load_source(source, OwnData, legacy=False)
    data.root = Path(root)
    return data

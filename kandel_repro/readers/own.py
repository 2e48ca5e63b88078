"""A user's own data: the packed type and the reader both of its readers derive from.

The ``folder`` reader (:mod:`kandel_repro.readers.folder`: ``DATA/<class>/<images>``) and
the ``csv`` reader (:mod:`kandel_repro.readers.manifest`: a CSV manifest) differ only in how
they find the images, their classes, groups and given split: each gives an index
(:func:`index_frame`, in what :meth:`OwnReader.listed` finds) and packs and loads it as
:class:`OwnReader` does, through :func:`source`, which decodes every image by
:func:`~kandel_repro.data.images.decode_image` into the shared uint8 cache
(:mod:`kandel_repro.data.cache`). Any number of classes, two at least;
a class's label is its index in ``class_names``.

Both readers follow one rule for classes (:func:`class_order`): class names that all read
as numbers (``0``, ``2``, ``10``, ``0.5``, ``1e3``) are compared as numbers, so ``2``
comes before ``10``; one number written two ways (``1``, ``01``, ``1.0``) is refused,
naming where each spelling is, since a class is a name the run's tables print and which
spelling is meant is the user's call; any other names are sorted as text. With two
classes the second is the positive (label 1), unless ``positive_class`` names the other
(:func:`order_classes`). The names of a given split's parts (:func:`split_part`) are one
rule too: ``train``/``training``, ``val``/``valid``/``validation``, ``test``/``testing``,
in any case, as a split folder or as a ``split`` column's value.

:class:`OwnData` splits 80/10/10 (the own-data protocol, after the paper's BreakHis
split, §4.3) by the data's own split when they bring one, else by group (patient, slide:
no group on two sides) when they name groups, else stratified by label at random; every
class must reach validation and test, where the macro AUC needs each one. The split is
stratified by the classes in the rule's order whatever the positive class, so choosing it
leaves the split's images as they are. A given split whose parts share a group (a patient
in train and test) is used as given, and said (:meth:`OwnData.split`, and
``groups_across_split`` among the split's facts). The same split can be run on a
reader's index before anything is decoded (:func:`check_index_split`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.protocol import OWN
from ..data import cache
from ..data.images import check_window, decode_image
from ..data.packed import PackedData, Split, TestSet
from ..data.split import check_splittable, three_way
from .base import Reader
from .registry import OWN_SPLITS

if TYPE_CHECKING:
    import pandas as pd

# 2: colour images of more than 8 bits decoded at full depth (every cache packed before is
# packed again once: a cache does not record whether it held such images)
CACHE_FORMAT = 2
ARRAYS = ("x", "y", "ids", "groups", "splits", "class_names")
PARTS = ("train", "val", "test")  # a given split's parts, in the cache's "splits"
# How a split that is none of own data's (OWN_SPLITS) is refused.
WRONG_SPLIT = "--split must be one of {splits} for your own data, got {split!r}"
# The names of a given split's parts, lower-cased: split folders and split column values.
SPLIT_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "test": "test", "testing": "test"}
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def split_part(name: str) -> str | None:
    """The part of a given split (train, val, test) that a folder's name or a split
    column's value names, in any case (:data:`SPLIT_VALUES`); None if it names none."""
    return SPLIT_VALUES.get(str(name).strip().lower())


def _numbers(labels) -> dict[str, Decimal] | None:
    """``{label: its value}`` when every label reads as a number, else None."""
    labels = set(labels)
    if not labels or not all(NUMBER.match(label) for label in labels):
        return None
    return {label: Decimal(label) for label in labels}


def class_order(labels: Sequence[str]) -> list[str]:
    """The distinct ``labels`` in the rule's order: as numbers when all read as numbers,
    else as text."""
    distinct = set(labels)
    numbers = _numbers(distinct)
    if numbers is None:
        return sorted(distinct)
    return sorted(distinct, key=lambda label: (numbers[label], label))


def same_numbers(labels: Sequence[str]) -> list[list[str]]:
    """Spellings of one number among ``labels`` (``["1", "01", "1.0"]``), in the order
    they first appear, when every label reads as a number; ``[]`` otherwise."""
    numbers = _numbers(labels)
    if numbers is None:
        return []
    spellings: dict[Decimal, list[str]] = {}
    for label in dict.fromkeys(labels):
        spellings.setdefault(numbers[label], []).append(label)
    return [names for names in spellings.values() if len(names) > 1]


def join_and(items: Sequence[str]) -> str:
    """``"a, b and c"``."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def order_classes(names: list[str], positive: str | None, what: str) -> list[str]:
    """``names`` (in the rule's order) with the class ``positive`` last, so that its
    label is 1; a :class:`ConfigError` when there are not two classes, or no such class
    (a number matches its other spellings: ``1`` names class ``1.0``)."""
    if positive is None:
        return list(names)
    if len(names) != 2:
        raise ConfigError(f"--positive-class applies to two classes; {what} has {len(names)} "
                          f"({', '.join(names)}): with more, every class is scored one "
                          "against the rest")
    chosen = [name for name in names if name == str(positive)]
    numbers = _numbers(list(names) + [str(positive)])
    if not chosen and numbers is not None:
        chosen = [name for name in names if numbers[name] == numbers[str(positive)]]
    if not chosen:
        raise ConfigError(f"--positive-class {positive!r} is not a class of {what}: its "
                          f"classes are {', '.join(names)}")
    return [name for name in names if name != chosen[0]] + chosen


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


def split_kind(has_split: bool, has_groups: bool, root: Any, config: dict) -> str:
    """The split ``config["split"]`` asks for, resolved (auto: given, else group, else
    image), or a :class:`ConfigError` when it is none of own data's (:data:`OWN_SPLITS`)
    or data of ``root`` that bring (or not) their own split and groups cannot serve it."""
    kind = config.get("split") or "auto"
    if kind not in OWN_SPLITS:
        raise ConfigError(WRONG_SPLIT.format(split=kind, splits=", ".join(OWN_SPLITS)))
    if kind == "auto":
        return "given" if has_split else "group" if has_groups else "image"
    if kind == "given" and not has_split:
        raise ConfigError(f"--split given needs the data's own split, and {root} "
                          "brings none (a split column of train/val/test, or train/, "
                          "val/ and test/ folders); leave --split out")
    if kind in ("image", "group") and has_split:
        raise ConfigError(f"{root} brings its own split (train/val/test), which "
                          f"--split {kind} would ignore: drop --split {kind}, or drop "
                          "the data's split (the split column, or the split folders)")
    if kind == "group" and not has_groups:
        raise ConfigError(f"--split group needs a group (patient, slide) per image, and "
                          f"{root} names none: use a CSV manifest with a group "
                          "column (--dataset csv, --group-column NAME)")
    return kind


def named_for_all(values: np.ndarray) -> bool:
    """Whether every image has a value (a group, a given part) in ``values``; "" is none."""
    return bool(len(values)) and bool((values != "").all())


def split_rows(y: np.ndarray, groups: np.ndarray, splits: np.ndarray,
               class_names: Sequence[str], root: Any,
               config: dict) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """``(kind, train, val, test)`` rows of a split of own data (see :class:`OwnData`):
    what :meth:`OwnData.split` draws, and :func:`check_index_split` from an index."""
    kind = split_kind(named_for_all(splits), named_for_all(groups), root, config)
    names = [str(name) for name in class_names]
    if kind == "given":
        train, val, test = (np.flatnonzero(splits == part) for part in PARTS)
    else:
        fractions = (config.get("validation_fraction", OWN.validation_fraction),
                     config.get("test_fraction", OWN.test_fraction))
        seed = config.get("split_seed", OWN.split_seed)
        # NOTE: stratified by the classes in the rule's order, not by label: with another
        # positive class the labels swap, and the split's images must not change with them
        order = class_order(names)
        strata = np.array([order.index(name) for name in names], np.int64)[np.asarray(y)]
        check_splittable(strata, fractions, str(root), names=order, seed=seed,
                         by_image=kind == "image")
        option = ("--split group" if config.get("split") == "group" else
                  "--split auto (by group, as the data name groups; --split image "
                  "splits images instead)")
        train, val, test = three_way(strata, groups, *fractions, seed, kind,
                                     groups_named="groups", option=option)
    _check_parts(kind, {"train": train, "val": val, "test": test}, np.asarray(y), names, root)
    return kind, train, val, test


def _check_parts(kind, parts, y, names, root):
    """Every part holds images, and validation and test (where the macro AUC is taken)
    and train hold every class."""
    fix = {"given": "move some of its images there",
           "group": "its groups are too few or too one-sided; name more groups, or "
                    "split with --split image",
           "image": "the class has too few images; add images of it"}[kind]
    for part, rows in parts.items():
        if not len(rows):
            raise DataError(f"the {part} part of {root} holds no image; "
                            + ("give it images" if kind == "given" else fix))
        missing = [repr(names[c]) for c in np.setdiff1d(np.arange(len(names)), y[rows])]
        if missing:
            raise DataError(f"the {part} part of {root} holds no image of class"
                            f"{'es' if len(missing) > 1 else ''} {', '.join(missing)} (every "
                            f"class must be in train, val and test for a macro AUC); {fix}")


def groups_across(groups: np.ndarray, splits: np.ndarray) -> list[str]:
    """The groups (sorted) whose images lie in more than one part of a given split."""
    parts: dict[str, set] = {}
    for group, part in zip(groups.tolist(), splits.tolist()):
        parts.setdefault(group, set()).add(part)
    return sorted(group for group, seen in parts.items() if len(seen) > 1)


def check_index_split(index: pd.DataFrame, root: Any, settings: dict) -> None:
    """Refuse, from a reader's index and before any image is decoded, data the split of
    ``settings`` (a run's split keys,
    :data:`~kandel_repro.readers.registry.SPLIT_KEYS`) cannot serve: the same split
    :meth:`OwnData.split` draws after packing, with the same messages."""
    split_rows(index["y"].to_numpy(np.int64), index["group"].to_numpy(str),
               index["split"].to_numpy(str), list(index["label"].cat.categories), root,
               {key: value for key, value in settings.items() if value is not None})


@dataclass
class OwnData(PackedData):
    """A user's own data packed: ``x``/``y``/``ids`` hold every image, ``class_names``
    the classes in label order, ``groups`` each image's group and ``splits`` its given
    part (train, val, test), both "" where the data name none. ``unreadable``: the
    images the cache leaves out (``skip_unreadable``)."""

    class_names: np.ndarray = None
    groups: np.ndarray = None
    splits: np.ndarray = None
    unreadable: int = 0
    _warned: bool = field(default=False, repr=False)  # groups on two sides: said once

    @property
    def has_split(self) -> bool:
        return named_for_all(self.splits)

    @property
    def has_groups(self) -> bool:
        return named_for_all(self.groups)

    def facts(self) -> dict:
        facts = {"classes": [str(name) for name in self.class_names],
                 "num_classes": len(self.class_names)}
        if self.unreadable:
            facts["unreadable_skipped"] = int(self.unreadable)
        return facts

    def split_kind(self, config: dict) -> str:
        """The split ``config["split"]`` asks for, resolved (auto: given, else group,
        else image), or a :class:`ConfigError` when the data cannot serve it."""
        return split_kind(self.has_split, self.has_groups, self.root, config)

    def split_facts(self, config: dict) -> dict:
        """The split used and, for a given split of data that name groups, how many
        groups it puts on two sides (``groups_across_split``)."""
        kind = self.split_kind(config)
        facts = {"split_used": kind}
        if kind == "given" and self.has_groups:
            facts["groups_across_split"] = len(groups_across(self.groups, self.splits))
        return facts

    def split(self, config: dict) -> Split:
        """80/10/10 (``validation_fraction``, ``test_fraction``) by ``config["split"]``
        (:meth:`split_kind`), seeded by ``split_seed``; the test set is labelled. A given
        split that puts a group on two sides is warned of, once."""
        kind, train, val, test = split_rows(self.y, self.groups, self.splits,
                                            self.class_names, self.root, config)
        if kind == "given" and self.has_groups and not self._warned:
            self._warned = True
            across = groups_across(self.groups, self.splits)
            if across:
                named = ", ".join(across[:5]) + (", …" if len(across) > 5 else "")
                cache.warn(f"warning: {len(across)} group{'s' if len(across) > 1 else ''} "
                           f"({named}) {'are' if len(across) > 1 else 'is'} on two sides of "
                           f"the data's own split of {self.root}: a patient's or slide's "
                           "images are then trained on and scored; drop the split column to "
                           "split by group instead")
        return Split(train, val, TestSet(self.x, self.ids, indices=test, labels=self.y[test],
                                         auc_key="test_auc"))


def options_suffix(options: dict[str, Any]) -> str:
    """``-<8 hex>`` of the reader options not at their default (``options``: those),
    or "" when there are none: caches of other options lie apart."""
    if not options:
        return ""
    return "-" + hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]


def source(dataset: str, root: str | Path, data_folder: str | Path, index: pd.DataFrame,
           cache_dir: str | Path | None, stem: str, image_size: int,
           window: Any = None, options: dict[str, Any] | None = None,
           workers: int | None = None, progress: bool = True,
           extra: bytes = b"", skip_unreadable: bool = False) -> cache.Source:
    """What a reader of own data packs (:class:`~kandel_repro.data.cache.Source`): every
    image of ``index``, decoded and resized to ``image_size`` (the reader's
    :meth:`~kandel_repro.readers.base.Reader.image_side`) into
    ``<cache_dir or data_folder/.kandel_cache>/<stem>-<size>[-<hash of options>]``.

    ``data_folder``: the folder the image ids are relative to (the folder read, or the
    CSV's); ``options``: the reader's options other than ``window`` that are not at
    their default; they, ``window`` and the size are hashed with the files, and so are
    ``extra`` bytes (the CSV's).

    A positive class other than the rule's (the index's classes out of the rule's order)
    names a cache of its own, as it changes the packed labels, but is not hashed with
    the files: the images, and so the data's identity, are the same. A cache serves only
    the index's classes in the index's order (a cache packed before the rule or with
    another positive class is packed again). ``skip_unreadable``: images that cannot be
    decoded are left out of the cache (listed in its manifest) instead of refused; it is
    not hashed either, as it changes nothing where every image can be read, and a cache
    that left images out serves only where it is given."""
    size = image_size
    window = check_window(window)
    settings = dict(options or {}, **({"window": list(window)} if window else {}))
    class_names = np.array(index["label"].cat.categories, dtype=str)
    named = dict(settings)
    if class_names.tolist() != class_order(class_names.tolist()):
        named["positive_class"] = str(class_names[-1])
    name = f"{stem}-{size}{options_suffix(named)}"
    cache_dir = Path(cache_dir) / name if cache_dir else Path(data_folder) / ".kandel_cache" / name
    paths = index["path"].tolist()

    def build(manifest: dict) -> Path:
        return cache.build(
            cache_dir, {"x": paths}, functools.partial(decode_image, size=size, window=window),
            (size, size, 3),
            dict(manifest, n=len(paths), classes=class_names.tolist(), options=settings),
            extra_arrays={"y": index["y"].to_numpy(np.int16), "ids": index["id"].to_numpy(str),
                          "groups": index["group"].to_numpy(str),
                          "splits": index["split"].to_numpy(str), "class_names": class_names},
            workers=workers, progress=progress, desc=f"packing {root} at {size}×{size}",
            skip_unreadable=skip_unreadable, per_image={"x": ("y", "ids", "groups", "splits")})

    def serves(manifest: dict) -> str | None:
        if manifest.get("classes") != class_names.tolist():
            return (f"it holds the classes {manifest.get('classes')} in label order, "
                    f"these data {class_names.tolist()}")
        skipped = manifest.get("unreadable_skipped")
        if skipped and not skip_unreadable:
            # NOTE: the files are those the cache was packed from (its fingerprint matched):
            # the images it left out are unreadable still, so decoding again would refuse them
            named = "; ".join(f"{entry['path']}: {entry['reason']}"
                              for entry in manifest.get("unreadable", [])[:3])
            raise DataError(f"{skipped} image{'s' if skipped > 1 else ''} of {root} cannot be "
                            f"decoded ({named}{'; …' if skipped > 3 else ''}; all listed in "
                            f"{cache_dir / 'manifest.json'}): fix or remove them, or pass "
                            "--skip-unreadable to train on the others, as the packed cache "
                            "does")
        return None

    hashed = json.dumps(dict(settings, size=size), sort_keys=True).encode()
    return cache.Source(Path(data_folder), cache_dir, dataset, CACHE_FORMAT, ARRAYS, paths,
                        build, extra=hashed + b"\0" + extra, serves=serves)


def said_unreadable(cache_dir: str | Path, root: Any) -> int:
    """The images the cache in ``cache_dir`` leaves out as unreadable, said on the
    standard error (every time the cache is used, so that a run's log says it)."""
    manifest = json.loads((Path(cache_dir) / "manifest.json").read_text())
    skipped = int(manifest.get("unreadable_skipped") or 0)
    if skipped:
        named = ", ".join(entry["path"] for entry in manifest.get("unreadable", [])[:3])
        cache.warn(f"the packed cache left out {skipped} unreadable image"
                   f"{'s' if skipped > 1 else ''} of {manifest.get('n', '?')} in {root} "
                   f"(--skip-unreadable): {named}{', …' if skipped > 3 else ''}; all listed "
                   f"in {Path(cache_dir) / 'manifest.json'}")
    return skipped


@dataclass(frozen=True)
class Listed:
    """What a reader of own data found to pack (:meth:`OwnReader.listed`)."""

    index: pd.DataFrame  # one row per image (index_frame)
    folder: Path  # the folder the image ids are relative to (the data's, the CSV's)
    stem: str  # the cache folder's name, before its size
    # the reader options not at their default (window aside), hashed with the files
    options: dict[str, Any] = field(default_factory=dict)
    extra: bytes = b""  # hashed with the files too (a CSV's bytes)


class OwnReader(Reader):
    """A reader of a user's own data: what it finds (:meth:`listed`) is packed by
    :func:`source` (resized to ``image_size``, ``window`` and ``skip_unreadable`` as
    given), the images its cache leaves out said whenever it is used, and loaded as
    :class:`OwnData` (or :attr:`packed`) whose ``root`` is what the user gave (the folder,
    or the CSV file). Its splits are own data's (:data:`OWN_SPLITS`)."""

    packed = OwnData
    # NOTE: no legacy fingerprint: every run of these readers records identities
    legacy = False
    wrong_split = WRONG_SPLIT

    @abstractmethod
    def listed(self, root: str | Path, window: Any = None, **options: Any) -> Listed:
        """The index of ``root`` and how its cache is named and hashed."""

    def source(self, root: str | Path, cache_dir: str | Path | None, workers: int | None,
               progress: bool, image_size: int | None, window: Any = None,
               skip_unreadable: bool = False, **options: Any) -> cache.Source:
        listed = self.listed(root, window=window, **options)
        return source(self.entry.name, root, listed.folder, listed.index, cache_dir,
                      listed.stem, image_size, window=window, options=listed.options,
                      workers=workers, progress=progress, extra=listed.extra,
                      skip_unreadable=bool(skip_unreadable))

    def packed_here(self, folder: Path, root: str | Path) -> None:
        said_unreadable(folder, root)

    def loaded(self, data: OwnData, source: cache.Source, root: str | Path) -> OwnData:
        """``data`` with the user's ``root``; a class every image of which was left out
        as unreadable is refused."""
        data.root = Path(root)
        data.unreadable = said_unreadable(source.cache_dir, root)
        if data.unreadable and len(data.class_names) > 1:
            counts = np.bincount(data.y, minlength=len(data.class_names))
            empty = [str(data.class_names[k]) for k in np.flatnonzero(counts == 0)]
            if empty:
                raise DataError(f"--skip-unreadable left class {empty[0]!r} of {root} without "
                                f"an image: every image of it is among the {data.unreadable} "
                                "unreadable ones left out; fix them, or remove the class")
        return data

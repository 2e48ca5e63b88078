"""The data sets a run can read: what the package knows of each without reading it.

:data:`READERS` maps a data set's name (a run's ``dataset``, ``--dataset`` on the command
line) to its :class:`ReaderEntry`: the paper's protocol that applies to it, whether its
images are resized, whether its test split is labelled, the reader options it takes, the
``split`` values it serves, and its reader (a :class:`~kandel_repro.readers.base.Reader`
subclass named ``module:Class``, imported when the data set is first read). A new data set
is its reader's module plus one entry here.

NOTE: the facts live here, once, and each reader reads them from its entry: the run
settings, studies, tables and command line ask them of every data set, and importing
every reader (and through them the cache and the image decoders) for that would make the
import chains from those modules too long; a copy on each class could drift.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError

if TYPE_CHECKING:  # (the registry stands on nothing but its entries)
    from ..data.packed import PackedData

# The run settings a split of own data reads, handed to the readers that check a split
# on their index (ReaderEntry.checks_split, Reader.read_index).
SPLIT_KEYS = ("split", "validation_fraction", "test_fraction", "split_seed")


@dataclass(frozen=True)
class ReaderEntry:
    """One data set: its facts, and its reader (:attr:`reader`) for reading it."""

    name: str
    protocol: str  # kandel_repro.core.protocol.PROTOCOLS key
    description: str
    reader_class: str  # "module:Class" in kandel_repro.readers: a base.Reader subclass
    resizes: bool  # images are resized to the run's image_size when packed
    labelled_test: bool  # its test split has labels: tables show the test AUC
    # config keys passed on to the reader's read_index/pack/load as keyword arguments
    # (those not None): how to read the layout (a CSV's column names, a DICOM window)
    options: tuple[str, ...] = ()
    # the values of a run's ``split`` it serves (the first: what a run asks by default)
    splits: tuple[str, ...] = ()
    # its index takes a run's split settings (SPLIT_KEYS) as split_settings and draws the
    # split on the index: data too small for it are refused before packing
    checks_split: bool = False

    def options_of(self, config: dict | None) -> dict[str, Any]:
        """The reader options a (resolved) config sets: ``{key: value}`` of
        :attr:`options` whose value is not None."""
        config = config or {}
        return {key: config[key] for key in self.options if config.get(key) is not None}

    @functools.cached_property
    def reader(self) -> Any:
        """Its reader, bound to this entry (its module imported the first time; typed
        ``Any``, as naming the class would import it)."""
        module, _, name = self.reader_class.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(self)

    # What reads data is its reader's (kandel_repro.readers.base.Reader: the same names).
    def read_index(self, root: str | Path, config: dict | None = None, **options: Any) -> Any:
        return self.reader.read_index(root, config, **options)

    def check_config(self, config: dict) -> None:
        self.reader.check_config(config)

    def pack(self, root: str | Path, cache_dir: str | Path | None = None, **how: Any) -> Path:
        return self.reader.pack(root, cache_dir, **how)

    def load(self, root: str | Path, cache_dir: str | Path | None = None,
             **how: Any) -> PackedData:
        return self.reader.load(root, cache_dir, **how)


# The splits of a user's own data (auto: given, else group, else image), both readers'
# and their packed data's (kandel_repro.readers.own).
OWN_SPLITS = ("auto", "given", "image", "group")

READERS = {entry.name: entry for entry in (
    ReaderEntry("pcam", "pcam", "Kaggle 'Histopathologic Cancer Detection' (PCam) layout",
                "pcam:PCamReader", resizes=False, labelled_test=False,
                splits=("image", "slide")),
    ReaderEntry("pcam-h5", "pcam", "the original PatchCamelyon release (HDF5): its own train, "
                "valid and labelled test splits", "pcam_h5:PCamH5Reader", resizes=False,
                labelled_test=True, splits=("image", "release")),
    ReaderEntry("breakhis", "breakhis", "BreaKHis_v1 folder layout", "breakhis:BreakHisReader",
                resizes=True, labelled_test=True, splits=("image", "patient")),
    # --- your own data: any number of classes, train/val/test split 80/10/10 -----------
    ReaderEntry("folder", "own", "image folders: DATA/<class>/<images>, or pre-split "
                "DATA/{train,val,test}/<class>/<images>", "folder:FolderReader", resizes=True,
                labelled_test=True, options=("window", "positive_class", "skip_unreadable"),
                splits=OWN_SPLITS, checks_split=True),
    ReaderEntry("csv", "own", "a CSV manifest (--data FILE.csv): path,label[,group][,split], "
                "paths relative to the CSV", "manifest:ManifestReader", resizes=True,
                labelled_test=True, options=("path_column", "label_column", "group_column",
                                             "window", "positive_class", "skip_unreadable"),
                splits=OWN_SPLITS, checks_split=True),
    # --- images without labels, for pretraining (kandel-repro pretrain) -----------------
    ReaderEntry("images", "own", "unlabelled images: every image under DATA (pretraining "
                "only)", "unlabelled:UnlabelledReader", resizes=True, labelled_test=False,
                options=("window", "skip_unreadable"), splits=("auto", "image")),
)}


def get_reader(name: str) -> ReaderEntry:
    try:
        return READERS[name]
    except KeyError:
        raise ConfigError(f"unknown data set {name!r}; one of {', '.join(READERS)}") from None

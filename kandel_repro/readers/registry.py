"""The data sets a run can read, each behind one interface.

:data:`READERS` maps a data set's name (a run's ``dataset``, ``--dataset`` on the command
line) to a :class:`Reader`: its module's ``read_index`` (check the layout, decode
nothing), ``pack`` (decode once into the uint8 cache) and ``load`` (pack if needed, then
a :class:`~kandel_repro.data.packed.PackedData`), all with one signature, and the
protocol of the paper that applies to it. A new data set is a new entry. A reader's
module is imported when the reader is first used, so the registry itself (what studies
and the command line consult) stands on nothing but its entries.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError

if TYPE_CHECKING:  # (the registry stands on nothing but its entries)
    from ..data.packed import PackedData

# The run settings a split of own data reads, handed to the readers that check a split
# on their index (Reader.checks_split, Reader.read_index).
SPLIT_KEYS = ("split", "validation_fraction", "test_fraction", "split_seed")


@dataclass(frozen=True)
class Reader:
    name: str
    protocol: str  # kandel_repro.core.protocol.PROTOCOLS key
    description: str
    module_name: str  # of kandel_repro.data: read_index(root), pack(root, ...), load(root, ...)
    resizes: bool  # images are resized to the run's image_size when packed
    labelled_test: bool  # its test split has labels: tables show the test AUC
    # config keys passed on to the module's read_index/pack/load as keyword arguments
    # (those not None): how to read the layout (a CSV's column names, a DICOM window)
    options: tuple[str, ...] = ()
    # its read_index takes a run's split settings (SPLIT_KEYS) as split_settings and draws
    # the split on the index: data too small for it are refused before packing
    checks_split: bool = False

    def options_of(self, config: dict | None) -> dict[str, Any]:
        """The reader options a (resolved) config sets: ``{key: value}`` of
        :attr:`options` whose value is not None."""
        config = config or {}
        return {key: config[key] for key in self.options if config.get(key) is not None}

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"{__package__}.{self.module_name}")

    def read_index(self, root: str | Path, config: dict | None = None, **options: Any) -> Any:
        """The index of its layout (``options``: the reader's own); given a run's resolved
        ``config`` (it names its ``protocol``), a reader that :attr:`checks_split` also
        draws the run's split on the index, refusing data too small for it before
        anything is packed."""
        if self.checks_split and config and "protocol" in config:
            options["split_settings"] = {key: config.get(key) for key in SPLIT_KEYS}
        return self.module.read_index(root, **options)

    def check_config(self, config: dict) -> None:
        """Refuse settings this data set cannot serve (e.g. a split of another layout)
        before anything is read or packed."""
        check = getattr(self.module, "check_config", None)
        if check is not None:
            check(config)

    def pack(self, root: str | Path, cache_dir: str | Path | None = None,
             workers: int | None = None, progress: bool = True, force: bool = False,
             image_size: int | None = None, verify: bool = False, **options: Any) -> Path:
        return self.module.pack(root, cache_dir, workers=workers, progress=progress, force=force,
                                image_size=image_size if self.resizes else None, verify=verify,
                                **options)

    def load(self, root: str | Path, cache_dir: str | Path | None = None,
             workers: int | None = None, progress: bool = True,
             image_size: int | None = None, **options: Any) -> PackedData:
        """The packed data; ``image_size`` applies to readers that resize (ignored by
        the others, whose images keep their own size); ``options``: the reader's own
        (:attr:`options`, e.g. from :meth:`options_of` a config)."""
        return self.module.load(root, cache_dir, workers=workers, progress=progress,
                                image_size=image_size if self.resizes else None, **options)


READERS = {r.name: r for r in (
    Reader("pcam", "pcam", "Kaggle 'Histopathologic Cancer Detection' (PCam) layout", "pcam",
           resizes=False, labelled_test=False),
    Reader("pcam-h5", "pcam", "the original PatchCamelyon release (HDF5): its own train, "
           "valid and labelled test splits", "pcam_h5", resizes=False, labelled_test=True),
    Reader("breakhis", "breakhis", "BreaKHis_v1 folder layout", "breakhis",
           resizes=True, labelled_test=True),
    # --- your own data: any number of classes, train/val/test split 80/10/10 -----------
    Reader("folder", "own", "image folders: DATA/<class>/<images>, or pre-split "
           "DATA/{train,val,test}/<class>/<images>", "folder", resizes=True,
           labelled_test=True, options=("window", "positive_class", "skip_unreadable"),
           checks_split=True),
    Reader("csv", "own", "a CSV manifest (--data FILE.csv): path,label[,group][,split], "
           "paths relative to the CSV", "manifest", resizes=True, labelled_test=True,
           options=("path_column", "label_column", "group_column", "window", "positive_class",
                    "skip_unreadable"), checks_split=True),
    # --- images without labels, for pretraining (kandel-repro pretrain) -----------------
    Reader("images", "own", "unlabelled images: every image under DATA (pretraining only)",
           "unlabelled", resizes=True, labelled_test=False,
           options=("window", "skip_unreadable")),
)}


def get_reader(name: str) -> Reader:
    try:
        return READERS[name]
    except KeyError:
        raise ConfigError(f"unknown data set {name!r}; one of {', '.join(READERS)}") from None


def load_data(dataset: str, data_dir: str | Path, cache_dir: str | Path | None = None,
              workers: int | None = None, image_size: int | None = None,
              progress: bool = True, **options: Any) -> PackedData:
    """Read (packing first if needed) data set ``dataset`` from ``data_dir``."""
    return get_reader(dataset).load(data_dir, cache_dir, workers=workers, progress=progress,
                                    image_size=image_size, **options)

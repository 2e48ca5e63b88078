"""The reader every data set has: what reading, packing and loading share, written once.

A data set's reader is a subclass of :class:`Reader` in the data set's module, bound to
its registry entry (:class:`~kandel_repro.readers.registry.ReaderEntry`: its protocol,
options, splits…). It declares its files (``layout``, as its messages name them), the
:class:`~kandel_repro.data.packed.PackedData` type it loads (``packed``, with ``fields``,
``mmap`` and ``legacy``: how the cache's arrays fill it) and its ``checks`` of a run's
settings (:meth:`Reader.check_split` against the entry's splits among them), and
implements what is its own: :meth:`Reader.index` (read and check the layout, decode
nothing) and :meth:`Reader.source` (what its cache packs). It inherits
:meth:`Reader.read_index`, :meth:`Reader.check_config`, :meth:`Reader.pack` and
:meth:`Reader.load`, one signature for every data set.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ..core.errors import ConfigError
from ..core.protocol import PROTOCOLS
from ..data import cache
from ..data.images import resize_side
from ..data.packed import PackedData
from .registry import SPLIT_KEYS, ReaderEntry


class Reader(ABC):
    """A data set's reader (see the module's docstring)."""

    layout: ClassVar[str] = ""
    packed: ClassVar[type[PackedData]] = PackedData
    fields: ClassVar[dict[str, str] | None] = None  # packed's fields ← the cache's arrays
    mmap: ClassVar[tuple[str, ...]] = ()  # arrays memory-mapped rather than read
    # False for readers every run of which records identities: no legacy fingerprint
    legacy: ClassVar[bool] = True
    # How a split its entry does not serve is refused: {split}, {splits} and {name}.
    wrong_split: ClassVar[str] = ("--split {split} does not apply to --dataset {name}: one of "
                                  "{splits}")

    def __init__(self, entry: ReaderEntry) -> None:
        self.entry = entry

    @abstractmethod
    def index(self, root: str | Path, **options: Any) -> Any:
        """The index of the layout under ``root``, every file checked and none decoded."""

    @abstractmethod
    def source(self, root: str | Path, cache_dir: str | Path | None, workers: int | None,
               progress: bool, image_size: int | None, **options: Any) -> cache.Source:
        """What the cache of ``root`` packs (``image_size``: :meth:`image_side`'s, so
        None unless the entry resizes)."""

    def image_side(self, image_size: int | None) -> int | None:
        """The side images are packed at: None for a data set whose images keep their own
        size; else ``image_size``, checked, or where it is None the protocol's
        (``core.protocol``: 224) — the one place that default is resolved for data read
        without a run's settings (``kandel-repro data pack``); a run's settings carry
        their own, resolved with them."""
        if not self.entry.resizes:
            return None
        return resize_side(image_size, PROTOCOLS[self.entry.protocol].image_size)

    def read_index(self, root: str | Path, config: dict | None = None, **options: Any) -> Any:
        """The index (``options``: the reader's own); given a run's resolved ``config``
        (it names its ``protocol``), a reader whose entry ``checks_split`` also draws the
        run's split on the index, refusing data too small for it before packing."""
        if self.entry.checks_split and config and "protocol" in config:
            options["split_settings"] = {key: config.get(key) for key in SPLIT_KEYS}
        return self.index(root, **options)

    def check_split(self, config: dict) -> None:
        """Refuse a ``split`` the entry does not serve (none given: its first)."""
        split = config.get("split") or self.entry.splits[0]
        if split not in self.entry.splits:
            raise ConfigError(self.wrong_split.format(split=split, name=self.entry.name,
                                                      splits=", ".join(self.entry.splits)))

    checks: ClassVar[tuple[Callable[[Any, dict], None], ...]] = (check_split,)

    def check_config(self, config: dict) -> None:
        """Refuse settings this data set cannot serve, before anything is read or packed:
        each of :attr:`checks` in turn."""
        for check in self.checks:
            check(self, config)

    def pack(self, root: str | Path, cache_dir: str | Path | None = None,
             workers: int | None = None, progress: bool = True, force: bool = False,
             image_size: int | None = None, verify: bool = False, **options: Any) -> Path:
        """The cache folder (``cache_dir``, default beside the data), the images decoded
        into it once: a cache of unchanged files is reused while undamaged (``verify``:
        its checksums too), unless ``force``. ``image_size`` applies to readers that
        resize (:meth:`image_side`); ``options``: the reader's own."""
        source = self.source(root, cache_dir, workers=workers, progress=progress,
                             image_size=self.image_side(image_size), **options)
        folder = cache.pack_source(source, force, verify)[0]
        self.packed_here(folder, root)
        return folder

    def load(self, root: str | Path, cache_dir: str | Path | None = None,
             workers: int | None = None, progress: bool = True,
             image_size: int | None = None, **options: Any) -> PackedData:
        """The packed data, packed first if needed (as :meth:`pack`)."""
        source = self.source(root, cache_dir, workers=workers, progress=progress,
                             image_size=self.image_side(image_size), **options)
        data = cache.load_source(source, self.packed, self.fields, self.mmap, self.legacy)
        return self.loaded(data, source, root)

    def packed_here(self, folder: Path, root: str | Path) -> None:
        """What a reader says of the cache it has just packed or found current."""

    def loaded(self, data: PackedData, source: cache.Source, root: str | Path) -> PackedData:
        """``data`` as loaded from ``source``, completed or checked by the reader."""
        return data

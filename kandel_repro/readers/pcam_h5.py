"""The reader of the original PatchCamelyon release (HDF5), with its labelled,
slide-disjoint test split (``--dataset pcam-h5``: :class:`PCamH5Reader`).

Layout (the six files of https://github.com/basveeling/pcam, as distributed: gzipped)::

    DATA/camelyonpatch_level_2_split_train_x.h5.gz   x: 262,144×96×96×3 uint8
    DATA/camelyonpatch_level_2_split_train_y.h5.gz   y: 262,144×1×1×1
    DATA/camelyonpatch_level_2_split_valid_x.h5.gz   32,768 …
    DATA/camelyonpatch_level_2_split_valid_y.h5.gz
    DATA/camelyonpatch_level_2_split_test_x.h5.gz    32,768 …
    DATA/camelyonpatch_level_2_split_test_y.h5.gz

(``.h5`` files, already decompressed, are read as well.) Packing decompresses each file
once, with a progress bar, checks its key, shape, dtype and length, and streams the
images in blocks into the uint8 cache (``DATA/.kandel_cache/pcam-h5/``); the decompressed
``.h5`` files are removed once packed. Loading memory-maps the cache, so the 7 GB of the
real release are never read into the process's memory at once. The release's own
splits are used as they are: train, valid (model selection) and test (the reported AUC).

The release's README lists an MD5 per file and has been reported to swap two of them;
the checks here are of content (keys, shapes, dtypes, lengths, a complete gzip stream),
not of a listed checksum.
"""
from __future__ import annotations

import gzip
import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError, DataError
from ..data import cache
from ..data.layouts import MARKER, PREFIX, SPLITS
from ..data.packed import PackedData, Split, TestSet
from .base import Reader
from .registry import get_reader

CACHE_FORMAT = 1
ARRAYS = ("x", "y", "ids", "part")
BLOCK = 4096  # images copied per read from an HDF5 file
LAYOUT = ", ".join(f"{PREFIX}{s}_{k}.h5[.gz]" for s in SPLITS for k in "xy")


def source(root: str | Path, split: str, key: str) -> Path | None:
    """The file of ``split``'s ``key`` (x or y) in ``root``: ``.h5`` or ``.h5.gz`` (the
    ``.h5`` where both are there: see :func:`doubled`)."""
    for suffix in (".h5", ".h5.gz"):
        path = Path(root) / f"{PREFIX}{split}_{key}{suffix}"
        if path.is_file():
            return path
    return None


def doubled(files: dict[tuple[str, str], Path]) -> list[Path]:
    """The ``.h5`` files of ``files`` that have a ``.h5.gz`` of the same name beside them
    (the ``.h5`` is the one read)."""
    return [path for path in files.values()
            if path.suffix == ".h5" and path.with_name(path.name + ".gz").is_file()]


def read_index(root: str | Path) -> dict[tuple[str, str], Path]:
    """``{(split, key): path}`` of the six files; an error naming those missing."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file; give the folder holding the six PCam HDF5 files")
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist. Download the six files of the "
                        "PatchCamelyon release (github.com/basveeling/pcam) there, or make a "
                        f"synthetic set with 'kandel-repro data synthetic-h5 --out {root}'")
    files = {(s, k): source(root, s, k) for s in SPLITS for k in "xy"}
    missing = [f"{PREFIX}{s}_{k}.h5.gz" for (s, k), p in files.items() if p is None]
    if missing:
        raise DataError(f"{root} lacks {', '.join(missing)} (expected {LAYOUT})")
    return files


def _expected_side(root):
    marker = Path(root) / MARKER
    if marker.is_file():
        try:
            return int(json.loads(marker.read_text())["params"]["size"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"{marker} does not say the set's image size") from None
    return 96


def _decompress(path, dest, progress):
    """``path`` (.h5.gz) decompressed to ``dest``, naming the file when it is damaged."""
    from tqdm.auto import tqdm

    try:
        with gzip.open(path, "rb") as src, open(dest, "wb") as out, tqdm(
                total=path.stat().st_size, unit="B", unit_scale=True, disable=not progress,
                desc=f"decompressing {path.name}") as bar:
            raw = src.fileobj
            last = 0
            while chunk := src.read(1 << 22):
                out.write(chunk)
                bar.update(raw.tell() - last)
                last = raw.tell()
    except (EOFError, OSError, zlib.error) as exc:
        dest.unlink(missing_ok=True)
        raise DataError(f"{path} is not a complete gzip file ({exc}); download it again") from None
    return dest


def _dataset(path, key, name):
    """The HDF5 file ``path`` open, and its dataset ``key``; errors name ``name`` (the
    file as the user has it: ``path`` may be its decompressed copy)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{name} is not a readable HDF5 file ({exc})") from None
    if key not in handle:
        found = ", ".join(handle.keys()) or "none"
        handle.close()
        raise DataError(f"{name} has no dataset '{key}' (found: {found})")
    return handle, handle[key]


def _check(path, key, data, side):
    if key == "x":
        if data.ndim != 4 or tuple(data.shape[1:]) != (side, side, 3):
            raise DataError(f"{path}: dataset 'x' has shape {tuple(data.shape)}, expected "
                            f"N×{side}×{side}×3")
        if data.dtype != np.uint8:
            raise DataError(f"{path}: dataset 'x' holds {data.dtype}, expected uint8")
    else:
        if data.ndim < 1 or int(np.prod(data.shape[1:])) != 1:
            raise DataError(f"{path}: dataset 'y' has shape {tuple(data.shape)}, expected "
                            "N×1×1×1")
        if not np.issubdtype(data.dtype, np.integer):
            raise DataError(f"{path}: dataset 'y' holds {data.dtype}, expected integer labels")


def _copy_all(files, work, side, progress):
    """Stream x and y of the three splits into ``work/x.npy`` and ``work/y.npy``."""
    from tqdm.auto import tqdm

    handles, lengths = [], {}
    try:
        datasets = {}
        for split in SPLITS:
            for key in "xy":
                path = files[(split, key)]
                if path.suffix == ".gz":
                    path = _decompress(path, work / path.name[:-3], progress)
                handle, data = _dataset(path, key, files[(split, key)])
                handles.append(handle)
                _check(files[(split, key)], key, data, side)
                datasets[(split, key)] = data
            nx, ny = len(datasets[(split, "x")]), len(datasets[(split, "y")])
            if nx != ny:
                raise DataError(f"{files[(split, 'x')]} holds {nx:,} images but "
                                f"{files[(split, 'y')]} {ny:,} labels")
            if nx == 0:
                raise DataError(f"{files[(split, 'x')]} holds no image: the {split} split is "
                                "empty; download the release's file again")
            lengths[split] = nx
        total = sum(lengths.values())
        x = np.lib.format.open_memmap(work / "x.npy", mode="w+", dtype=np.uint8,
                                      shape=(total, side, side, 3))
        y = np.empty(total, dtype=np.int8)
        start = 0
        with tqdm(total=total, unit="img", disable=not progress,
                  desc="packing PCam (HDF5)") as bar:
            for split in SPLITS:
                for i in range(0, lengths[split], BLOCK):
                    block = datasets[(split, "x")][i:i + BLOCK]
                    x[start + i:start + i + len(block)] = block
                    labels = np.asarray(datasets[(split, "y")][i:i + BLOCK]).reshape(-1)
                    if not np.isin(labels, (0, 1)).all():
                        raise DataError(f"{files[(split, 'y')]}: labels must be 0 or 1, found "
                                        f"{sorted(set(labels.tolist()) - {0, 1})[:3]}")
                    y[start + i:start + i + len(block)] = labels
                    bar.update(len(block))
                start += lengths[split]
        x.flush()
        del x
        np.save(work / "y.npy", y)
    finally:
        for handle in handles:
            handle.close()
        for path in work.glob("*.h5"):  # decompressed copies: the cache holds the data now
            path.unlink()
    return lengths



@dataclass
class PCamH5Data(PackedData):
    """The release packed: ``x``/``y``/``ids`` hold every patch, ``part`` says which of
    the release's splits each belongs to (0 train, 1 valid, 2 test)."""

    part: np.ndarray = None

    def split(self, config: dict) -> Split:
        """The release's own splits: train, valid (model selection), test (reported)."""
        get_reader(self.dataset).check_config(config)  # (no split of the Kaggle layout)
        train, val, test = (np.flatnonzero(self.part == i) for i in range(3))
        for name, rows in (("train", train), ("valid", val), ("test", test)):
            if len(np.unique(self.y[rows])) < 2:
                raise DataError(f"the {name} split of {self.root} holds one class only")
        return Split(train, val, TestSet(self.x, self.ids, indices=test, labels=self.y[test],
                                         auc_key="test_auc"))

    def split_facts(self, config: dict) -> dict:
        get_reader(self.dataset).check_config(config)
        return {"split": "release"}


class PCamH5Reader(Reader):
    """The release's six files, decompressed, checked and copied once into the uint8
    cache (``DATA/.kandel_cache/pcam-h5/``, or ``pcam-h5/`` in the cache folder given),
    reused while the files are unchanged and the cache undamaged, and memory-mapped as
    :class:`PCamH5Data`. The patches keep their own size (paper §4.1); decompressing a
    gzip stream is sequential, so ``workers`` is unused."""

    layout = LAYOUT
    packed = PCamH5Data
    mmap = ("x",)
    # NOTE: no legacy fingerprint: every run of this reader records identities
    legacy = False
    index = staticmethod(read_index)

    def check_release(self, config: dict) -> None:
        """Refuse the split options of the Kaggle layout: the release has its own splits.
        (``split`` is "image", the PCam protocol's default, until
        :meth:`PCamH5Data.split_facts` records it as "release".)"""
        split = config.get("split", self.entry.splits[0])
        given = ([f"--split {split}"] if split not in self.entry.splits else []) \
            + (["--wsi-map"] if config.get("wsi_map") else [])
        if given:
            raise ConfigError(f"{' and '.join(given)} {'do' if len(given) > 1 else 'does'} not "
                              f"apply to --dataset {self.entry.name}: the release has its own "
                              "train / valid / test splits; leave it out, or use --dataset pcam "
                              "(the Kaggle layout)")

    checks = (check_release,)

    def source(self, root: str | Path, cache_dir: str | Path | None, workers: int | None,
               progress: bool, image_size: int | None, **options: Any) -> cache.Source:
        """The six files, copied into the cache by :func:`_copy_all`."""
        root = Path(root)
        files = read_index(root)
        paths = [files[(s, k)] for s in SPLITS for k in "xy"]
        cache_dir = (Path(cache_dir) / "pcam-h5" if cache_dir
                     else root / ".kandel_cache" / "pcam-h5")

        def build(manifest: dict) -> Path:
            side = _expected_side(root)
            for path in doubled(files):
                cache.warn(f"{root} holds both {path.name} and {path.name}.gz; reading "
                           f"{path.name} (remove the one that is not the release's file)")
            work = cache.stage(cache_dir)
            try:
                lengths = _copy_all(files, work, side, progress)
                total = sum(lengths.values())
                parts = np.concatenate([np.full(lengths[s], i, np.int8)
                                        for i, s in enumerate(SPLITS)])
                ids = np.concatenate([np.char.add(f"{s}-", np.char.zfill(
                    np.arange(lengths[s]).astype(str), 6)) for s in SPLITS])
                np.save(work / "part.npy", parts)
                np.save(work / "ids.npy", ids)
                manifest = dict(manifest, n=total, lengths=lengths)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            return cache.commit(work, cache_dir, manifest, ARRAYS, (side, side, 3))

        return cache.Source(root, cache_dir, "pcam-h5", CACHE_FORMAT, ARRAYS, paths, build)

"""Reader and packer for the Kaggle "Histopathologic Cancer Detection" layout.

Layout (the competition's files, unpacked)::

    DATA/train/<id>.tif        96×96 RGB patches
    DATA/train_labels.csv      id,label
    DATA/test/<id>.tif         unlabelled patches
    DATA/sample_submission.csv id,label — the test ids in submission order

Decoding 277k small TIFF files takes minutes, so :func:`pack` decodes them once, in
parallel worker processes, into a uint8 cache (``N×H×W×3`` ``.npy`` arrays plus ids and
labels) that the next run loads in seconds. The cache records a fingerprint of the
source files (names, sizes, modification times, CSV contents) and is rebuilt when the
source changes. Decoded images are streamed straight into a memory-mapped ``.npy``
file, so packing never holds the data set in memory.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..runio import write_json
from .synthetic import MARKER

CACHE_FORMAT = 1
CHUNK = 256  # files decoded per worker task


@dataclass
class PCamIndex:
    """Ids, labels and file paths read and checked from the CSVs."""

    root: Path
    train_ids: list
    train_labels: np.ndarray
    test_ids: list

    def train_path(self, image_id):
        return self.root / "train" / f"{image_id}.tif"

    def test_path(self, image_id):
        return self.root / "test" / f"{image_id}.tif"


@dataclass
class PCamData:
    """The packed arrays: uint8 images, ids and (for train) labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    train_ids: np.ndarray
    test_x: np.ndarray
    test_ids: np.ndarray
    source: str  # "synthetic" or "pcam"
    root: Path
    fingerprint: str = ""

    @property
    def image_shape(self):
        return tuple(self.train_x.shape[1:])


def _read_id_csv(path, want_label):
    import pandas as pd

    if not path.is_file():
        raise DataError(f"missing {path}")
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if list(frame.columns[:2]) != ["id", "label"]:
        raise DataError(f"{path} must have the header 'id,label', found {','.join(map(str, frame.columns))}")
    if frame["id"].isna().any():
        row = int(frame.index[frame["id"].isna()][0]) + 2
        raise DataError(f"{path} line {row}: empty id")
    dup = frame["id"][frame["id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate id {dup.iloc[0]!r} ({len(dup)} duplicate rows in all)")
    if want_label:
        labels = pd.to_numeric(frame["label"], errors="coerce")
        bad = ~labels.isin([0, 1])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path} line {i + 2}: label of id {frame['id'].iloc[i]!r} must be 0 or 1, "
                f"got {str(frame['label'].iloc[i])!r}"
            )
        return frame["id"].tolist(), labels.to_numpy().astype(np.int8)
    return frame["id"].tolist(), None


def _check_files(folder, ids, csv_name):
    if not folder.is_dir():
        raise DataError(f"missing folder {folder} (the {folder.name}/ tifs of the Kaggle data)")
    present = {entry.name for entry in os.scandir(folder)}
    for image_id in ids:
        if f"{image_id}.tif" not in present:
            raise DataError(
                f"id {image_id!r} of {csv_name} has no file {folder / (image_id + '.tif')}"
            )


def read_index(root):
    """Read and check the CSVs of a Kaggle-layout folder; no image is decoded."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist. Unpack the Kaggle competition "
            f"'histopathologic-cancer-detection' there (train/, test/, train_labels.csv, "
            f"sample_submission.csv), or make a synthetic set with "
            f"'kandel-repro data synthetic --out {root}'"
        )
    train_ids, labels = _read_id_csv(root / "train_labels.csv", want_label=True)
    test_ids, _ = _read_id_csv(root / "sample_submission.csv", want_label=False)
    _check_files(root / "train", train_ids, "train_labels.csv")
    _check_files(root / "test", test_ids, "sample_submission.csv")
    return PCamIndex(root, train_ids, labels, test_ids)


def decode_tif(path):
    """Decode one patch to an RGB uint8 array, naming the file on failure."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                raise ValueError(f"mode {img.mode}, expected RGB")
            return np.asarray(img, dtype=np.uint8)
    except Exception as exc:
        raise DataError(f"cannot decode {path}: {exc}") from None


def _decode_chunk(task):
    paths, shape = task
    out = np.empty((len(paths),) + shape, dtype=np.uint8)
    for i, path in enumerate(paths):
        arr = decode_tif(path)
        if arr.shape != shape:
            raise DataError(
                f"{path} is {arr.shape[0]}×{arr.shape[1]}×{arr.shape[2] if arr.ndim == 3 else 1}, "
                f"expected {shape[0]}×{shape[1]}×{shape[2]} like the first training image"
            )
        out[i] = arr
    return out


def fingerprint(root):
    """Hash of the source: file names, sizes and mtimes of train/ and test/, CSV bytes."""
    root = Path(root)
    digest = hashlib.sha1()
    for sub in ("train", "test"):
        entries = sorted(
            (e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(root / sub)
        )
        digest.update(sub.encode())
        for name, size, mtime in entries:
            digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    for csv in ("train_labels.csv", "sample_submission.csv"):
        digest.update((root / csv).read_bytes())
    return digest.hexdigest()


def default_cache_dir(root):
    return Path(root) / ".kandel_cache"


def _pack_split(paths, shape, target, pool, bar):
    array = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8,
                                      shape=(len(paths),) + shape)
    tasks = [(paths[i:i + CHUNK], shape) for i in range(0, len(paths), CHUNK)]
    chunks = pool.imap(_decode_chunk, tasks) if pool else map(_decode_chunk, tasks)
    start = 0
    for chunk in chunks:
        array[start:start + len(chunk)] = chunk
        start += len(chunk)
        bar.update(len(chunk))
    array.flush()
    del array


def pack(root, cache_dir=None, workers=None, progress=True, force=False):
    """Decode every tif once into a uint8 cache; reuse it while the source is unchanged.

    Returns the cache folder. The cache is built in a temporary folder and moved into
    place when complete, so an interrupted pack never leaves a half-written cache.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    index = read_index(root)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(root)
    stamp = fingerprint(root)
    manifest_path = cache_dir / "manifest.json"
    if not force and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") == stamp and manifest.get("format") == CACHE_FORMAT:
            return cache_dir
    first = decode_tif(index.train_path(index.train_ids[0]))
    if first.ndim != 3 or first.shape[2] != 3:
        raise DataError(f"{index.train_path(index.train_ids[0])} is not an RGB image")
    shape = tuple(first.shape)
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir.with_name(f".{cache_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise DataError(
            f"cannot write the packed cache to {cache_dir} ({exc}); pass --cache DIR "
            f"with a writable folder"
        ) from None
    workers = workers or min(8, os.cpu_count() or 1)
    total = len(index.train_ids) + len(index.test_ids)
    # NOTE: spawn, not fork: the caller may have TensorFlow's threads running.
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        with tqdm(total=total, desc=f"packing {root}", unit="img", disable=not progress) as bar:
            _pack_split([index.train_path(i) for i in index.train_ids], shape,
                        tmp / "train_x.npy", pool, bar)
            _pack_split([index.test_path(i) for i in index.test_ids], shape,
                        tmp / "test_x.npy", pool, bar)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool:
            pool.terminate()
            pool.join()
    np.save(tmp / "train_y.npy", index.train_labels)
    np.save(tmp / "train_ids.npy", np.array(index.train_ids))
    np.save(tmp / "test_ids.npy", np.array(index.test_ids))
    write_json(tmp / "manifest.json", {
        "format": CACHE_FORMAT, "fingerprint": stamp, "source": str(root.resolve()),
        "image_shape": list(shape), "n_train": len(index.train_ids),
        "n_test": len(index.test_ids),
        "dataset": "synthetic" if (root / MARKER).exists() else "pcam",
    })
    old = cache_dir.with_name(f".{cache_dir.name}.old-{os.getpid()}")
    if cache_dir.exists():
        os.replace(cache_dir, old)
    os.replace(tmp, cache_dir)
    shutil.rmtree(old, ignore_errors=True)
    return cache_dir


def load(root, cache_dir=None, workers=None, progress=True):
    """Pack if needed, then load the arrays into memory."""
    cache_dir = pack(root, cache_dir, workers=workers, progress=progress)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    return PCamData(
        train_x=np.load(cache_dir / "train_x.npy"),
        train_y=np.load(cache_dir / "train_y.npy"),
        train_ids=np.load(cache_dir / "train_ids.npy"),
        test_x=np.load(cache_dir / "test_x.npy"),
        test_ids=np.load(cache_dir / "test_ids.npy"),
        source=manifest["dataset"],
        root=Path(root),
        fingerprint=manifest["fingerprint"],
    )

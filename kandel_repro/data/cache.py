"""Packing decoded images into a uint8 ``.npy`` cache, shared by the data sets.

Images are decoded in parallel worker processes, chunk by chunk, and streamed into a
memory-mapped ``.npy`` file, so packing never holds the whole data set in memory. A
cache is built in a temporary folder and moved into place only when complete; its
``manifest.json`` records a fingerprint of the source so that a changed source is
repacked and an unchanged one reused.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..runio import write_json

CHUNK = 128  # files decoded per worker task


def fingerprint(paths, extra=b""):
    """Hash of file paths, sizes and modification times (plus ``extra`` bytes)."""
    digest = hashlib.sha1(extra)
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def identity(paths, root, extra=b""):
    """Hash of file paths relative to ``root`` and sizes (plus ``extra`` bytes).

    What a run records as its ``data_fingerprint``: the same data give the same value
    wherever they are mounted and whenever they were copied (a Kaggle kernel resuming
    an earlier kernel's runs sees new modification times), unlike :func:`fingerprint`,
    which decides when a cache is stale.
    """
    digest = hashlib.sha1(extra)
    root = os.path.abspath(root)
    for path in paths:
        relative = Path(os.path.relpath(os.path.abspath(path), root)).as_posix()
        digest.update(f"{relative}\0{os.stat(path).st_size}\n".encode())
    return digest.hexdigest()


def current(cache_dir, stamp, fmt):
    """True if ``cache_dir`` holds a complete cache of source ``stamp``."""
    manifest = Path(cache_dir) / "manifest.json"
    if not manifest.exists():
        return False
    data = json.loads(manifest.read_text())
    return (data.get("fingerprint") == stamp and data.get("format") == fmt
            and "identity" in data)  # caches made before identities existed are rebuilt


def _decode_chunk(task):
    decode, paths, shape = task
    out = np.empty((len(paths),) + shape, dtype=np.uint8)
    for i, path in enumerate(paths):
        arr = decode(path)
        if arr.shape != shape:
            raise DataError(
                f"{path} is {'×'.join(map(str, arr.shape))}, expected "
                f"{'×'.join(map(str, shape))} like the first image"
            )
        out[i] = arr
    return out


def build(cache_dir, arrays, decode, shape, manifest, extra_arrays=None, workers=None,
          progress=True, desc="packing"):
    """Decode ``arrays`` = ``{name: [paths]}`` into ``cache_dir/<name>.npy``.

    ``decode`` must be a picklable module-level function ``path -> uint8 array`` of
    ``shape``. ``extra_arrays`` (``{name: array}``: labels, ids, ...) are saved beside
    the images. Returns ``cache_dir``.
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    extra = extra_arrays or {}
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir.with_name(f".{cache_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise DataError(f"cannot write the packed cache to {cache_dir} ({exc}); pass "
                        f"--cache DIR with a writable folder") from None
    workers = workers or min(8, os.cpu_count() or 1)
    total = sum(len(p) for p in arrays.values())
    # NOTE: spawn, not fork: the caller may have TensorFlow's threads running. An
    # executor, not a Pool: a worker that cannot start raises instead of hanging.
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else None)
    try:
        with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
            for name, paths in arrays.items():
                target = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+",
                                                   dtype=np.uint8, shape=(len(paths),) + shape)
                tasks = [(decode, paths[i:i + CHUNK], shape) for i in range(0, len(paths), CHUNK)]
                start = 0
                for chunk in (pool.map(_decode_chunk, tasks) if pool else map(_decode_chunk, tasks)):
                    target[start:start + len(chunk)] = chunk
                    start += len(chunk)
                    bar.update(len(chunk))
                target.flush()
                del target
        for name, value in extra.items():
            np.save(tmp / f"{name}.npy", value)
        write_json(tmp / "manifest.json", dict(manifest, image_shape=list(shape)))
    except BrokenProcessPool:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            "the image-decoding worker processes died before finishing. They are "
            "spawned, so a script that packs (or loads) data must do it under "
            "`if __name__ == \"__main__\":`; or decode in this process with "
            "workers=1 (--workers 1)."
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    old = cache_dir.with_name(f".{cache_dir.name}.old-{os.getpid()}")
    if cache_dir.exists():
        os.replace(cache_dir, old)
    os.replace(tmp, cache_dir)
    shutil.rmtree(old, ignore_errors=True)
    return cache_dir


def load(cache_dir, names):
    """Load arrays ``names`` and the manifest of a cache."""
    cache_dir = Path(cache_dir)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    return {name: np.load(cache_dir / f"{name}.npy") for name in names}, manifest

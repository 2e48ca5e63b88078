"""Packing decoded images into a uint8 ``.npy`` cache, shared by the data sets.

Images are decoded in parallel worker processes, chunk by chunk, and written chunk by
chunk into a ``.npy`` file (read memory-mapped later), so packing never holds the whole
data set in memory: its peak does not grow with the number of images (``make bench``). A
cache is built in a temporary folder and moved into place only when complete; its
``manifest.json`` records a fingerprint of the source (paths relative to the data
folder, sizes, modification times: however the folder is spelled) so that a changed
source is repacked and an unchanged one reused, and the shape, dtype and SHA-256 of
every array so that a damaged cache is found: shapes and sizes are checked whenever the
cache is used (cheap), the checksums by ``data pack`` and ``data verify``. A damaged
cache is packed again, and so is one its source's own test refuses (:attr:`Source.serves`:
own data's classes in another order). Every file that cannot be read is named in one
pass, or left out where the reader is told to (:mod:`~kandel_repro.data.pack_notes`);
a listed file that is gone or a broken link is named in one line
(:func:`hash_sources`). Temporary folders left by a killed packer are removed by the
next one (their names, host and process id, from :func:`~kandel_repro.core.files.staging_path`),
and decoding workers exit when the process that started them dies. Packers of one cache
take turns (:func:`packing`, a file lock beside it): of several processes that find it
missing at once — grid tasks starting together on a node — one packs and the others
wait, then use what it packed.

Every reader packs and loads through one skeleton (:func:`pack_source`,
:func:`load_source`): its format gives a :class:`Source` (the files hashed, how the
cache is built from them) and the rest is shared.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.errors import DataError
from ..core.files import remove_stale_staging, staging_path, write_json
from . import pack_notes
from .layouts import MARKER
from .packed import PackedData

CHUNK = 128  # files decoded per worker task


class SourceHashes(NamedTuple):
    """The three hashes of a data set's files (:func:`hash_sources`): each a SHA-1 of
    ``extra`` and one line per file, differing in what the line holds."""

    # relative path, size, modification time: decides when a cache is stale (the
    # manifest's "fingerprint"), the same whichever way the folder is spelled, so a grid's
    # driver and its Ray workers, or two shells, agree on it
    stamp: str
    # relative path, size: the data's identity (the manifest's "identity", a run's
    # ``data_fingerprint``), the same wherever the data are mounted and whenever they were
    # copied (a Kaggle kernel resuming an earlier kernel's runs sees new modification times)
    data_fingerprint: str
    # path as spelled, size, modification time: the stamp of caches and runs made before
    # data identities were recorded; it changes with the spelling of the data folder
    # (``data/pcam`` or ``/home/me/data/pcam``)
    legacy_fingerprint: str


def hash_sources(paths: Iterable[str | Path], root: str | Path,
                 extra: bytes = b"") -> SourceHashes:
    """The :class:`SourceHashes` of the files ``paths`` of the data folder ``root``
    (plus ``extra`` bytes: CSV contents, the image size), from one pass over them."""
    stamp, identity, legacy = hashlib.sha1(extra), hashlib.sha1(extra), hashlib.sha1(extra)
    root = os.path.abspath(root)
    for path in paths:
        stat = _stat(path)
        relative = Path(os.path.relpath(os.path.abspath(path), root)).as_posix()
        stamp.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        identity.update(f"{relative}\0{stat.st_size}\n".encode())
        legacy.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return SourceHashes(stamp.hexdigest(), identity.hexdigest(), legacy.hexdigest())


def _stat(path):
    """``os.stat(path)``, or a :class:`DataError` naming the file."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DataError(f"{path} is a broken link (to {os.readlink(path)}): remove it or "
                            "restore what it points to") from None
        raise DataError(f"{path} does not exist (removed while the data were read?)") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc})") from None


def _manifest(cache_dir):
    """The cache's manifest, or a :class:`DataError` naming the file."""
    path = Path(cache_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return manifest


def sha256(path: str | Path, block: int = 1 << 23) -> str:
    """The SHA-256 of a file, read in blocks (an array of the cache is gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def check(cache_dir: str | Path, names: Iterable[str], deep: bool = False) -> dict:
    """Raise :class:`DataError` naming the file when the cache's arrays ``names`` are
    missing, truncated or of another shape than the manifest records; with ``deep``,
    when their SHA-256 differs from the one recorded at packing (garbage of the right
    size). Returns the manifest."""
    cache_dir = Path(cache_dir)
    manifest = _manifest(cache_dir)
    arrays = manifest.get("arrays", {})
    for name in names:
        path = cache_dir / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise DataError(f"{path} is missing") from None
        except (OSError, ValueError) as exc:  # a truncated file cannot be mapped
            raise DataError(f"{path} is damaged ({exc})") from None
        expected = arrays.get(name)
        if expected and (list(array.shape) != expected["shape"]
                         or str(array.dtype) != expected["dtype"]):
            raise DataError(f"{path} holds a {array.dtype} array of shape {list(array.shape)}; "
                            f"{expected['dtype']} of shape {expected['shape']} was packed")
        del array
        if deep and name in manifest.get("checksums", {}):
            if sha256(path) != manifest["checksums"][name]:
                raise DataError(f"{path} does not match the checksum recorded when it was packed")
    # Arrays of one split ("train_x", "train_y", "train_ids"; BreakHis' "x", "y", …)
    # hold one row per image: their lengths must agree.
    groups = {}
    for name in names:
        rows = len(np.load(cache_dir / f"{name}.npy", mmap_mode="r"))
        groups.setdefault(name.rsplit("_", 1)[0] if "_" in name else "", {})[name] = rows
    for group in groups.values():
        if len(set(group.values())) > 1:
            raise DataError(f"the arrays of {cache_dir} disagree in length ({group})")
    return manifest


def current(cache_dir: str | Path, stamp: str, fmt: int, names: Iterable[str] = (),
            deep: bool = False, log: Callable[[str], None] | None = None,
            serves: Callable[[dict], str | None] | None = None) -> bool:
    """True if ``cache_dir`` holds a complete, undamaged cache of source ``stamp``.

    A damaged cache (:func:`check` of ``names``; ``deep``: checksums too), or one that
    ``serves`` (the source's own test of the manifest: a reason, or None) refuses, is not
    current: ``log`` says why, and the caller packs again.
    """
    manifest_path = Path(cache_dir) / "manifest.json"
    if not manifest_path.exists():
        return False
    try:
        data = _manifest(cache_dir)
        if not (data.get("fingerprint") == stamp and data.get("format") == fmt
                and "identity" in data):  # caches made before identities existed are rebuilt
            return False
        check(cache_dir, names, deep=deep)
    except DataError as exc:
        if log:
            log(f"the packed cache in {cache_dir} is damaged ({exc}); packing it again")
        return False
    reason = serves(data) if serves else None
    if reason:
        if log:
            log(f"the packed cache in {cache_dir} does not serve ({reason}); packing it again")
        return False
    return True


def warn(message: str) -> None:
    """A note on the standard error (not the results' output)."""
    print(f"kandel-repro: {message}", file=sys.stderr, flush=True)


def _watch_parent(parent):
    """Exit this decoding worker when the process that started it is gone."""
    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def _decode_chunk(task):
    """``(images, failures)`` of a chunk of paths: the decoded images (zeros where one
    failed) and ``[(row in the chunk, path, why)]`` of those that could not be read, so
    that a pass names every unreadable file, not the first."""
    decode, paths, shape = task
    out = np.zeros((len(paths),) + shape, dtype=np.uint8)
    failures = []
    for i, path in enumerate(paths):
        try:
            if os.path.getsize(path) == 0:
                raise DataError(f"{path} is empty (0 bytes)")
            arr = decode(path)
            if arr.shape != shape:
                raise DataError(f"{path} is {'×'.join(map(str, arr.shape))}, expected "
                                f"{'×'.join(map(str, shape))}")
        except DataError as exc:
            failures.append((i, path, str(exc)))
            continue
        except OSError as exc:
            failures.append((i, path, f"cannot read {path} ({exc.strerror or exc})"))
            continue
        out[i] = arr
    return out, failures


@contextlib.contextmanager
def packing(cache_dir: str | Path) -> Iterator[None]:
    """Hold the packing lock of ``cache_dir`` (``.NAME.lock`` beside it; on storage
    shared between machines too, where ``flock`` reaches the other clients): the caller
    checks whether the cache is current and packs it while no other process does. Says
    so on the standard error when it has to wait. Where no lock file can be written (a
    read-only folder), it goes on without one: nothing can be packed there anyway."""
    cache_dir = Path(cache_dir)
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache_dir.with_name(f".{cache_dir.name}.lock"), "a")
    except OSError:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if getattr(multiprocessing.current_process(), "_inheriting", False):
                # a decoding worker of this very packer, spawned from a script that packs
                # at its top level, is re-running that script: waiting would never end
                raise RuntimeError("a spawned process started packing while being set up: "
                                   "the script must pack under `if __name__ == "
                                   "\"__main__\":`") from None
            warn(f"waiting for another process to finish packing {cache_dir}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pack_once(cache_dir: str | Path, stamp: str, fmt: int, names: Iterable[str],
              build: Callable[[], Path], force: bool = False, verify: bool = False,
              serves: Callable[[dict], str | None] | None = None) -> Path:
    """``cache_dir``, packed by ``build()`` (which returns it) unless it is already a
    current, undamaged cache of ``stamp`` that ``serves`` accepts (``verify``: checksums
    too; ``force``: packed again anyway) — decided and done under :func:`packing`, so
    that of several processes only one packs. Every reader packs through this."""
    with packing(cache_dir):
        if not force and current(cache_dir, stamp, fmt, names, deep=verify, log=warn,
                                 serves=serves):
            return cache_dir
        return build()


def stage(cache_dir: str | Path) -> Path:
    """A new, empty temporary folder beside ``cache_dir`` to build a cache in (the
    folders of dead packers of this host removed first)."""
    cache_dir = Path(cache_dir)
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        # NOTE: "old" too: a packer killed while moving its cache in leaves the one it
        # replaced under that name (commit).
        remove_stale_staging(cache_dir, kinds=("tmp", "old"))
        tmp = staging_path(cache_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise DataError(f"cannot write the packed cache to {cache_dir} ({exc}); pass "
                        f"--cache DIR with a writable folder") from None
    return tmp


def commit(tmp: Path, cache_dir: str | Path, manifest: dict, names: Iterable[str],
           shape: tuple[int, ...]) -> Path:
    """Record the arrays ``names`` of ``tmp`` (shapes, dtypes, SHA-256) in its manifest
    and move it into place as ``cache_dir``; return ``cache_dir``."""
    cache_dir = Path(cache_dir)
    try:
        mapped = {name: np.load(tmp / f"{name}.npy", mmap_mode="r") for name in names}
        described = {name: {"shape": list(a.shape), "dtype": str(a.dtype)}
                     for name, a in mapped.items()}
        del mapped
        write_json(tmp / "manifest.json", dict(
            manifest, image_shape=list(shape), arrays=described,
            checksums={name: sha256(tmp / f"{name}.npy") for name in names}))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = staging_path(cache_dir, "old")
    if cache_dir.exists():
        os.replace(cache_dir, old)
    os.replace(tmp, cache_dir)
    shutil.rmtree(old, ignore_errors=True)
    pack_notes.PACKED_HERE.add(cache_dir.resolve())
    return cache_dir


def build(cache_dir: str | Path, arrays: dict[str, Sequence[str | Path]],
          decode: Callable[[str | Path], np.ndarray], shape: tuple[int, ...], manifest: dict,
          extra_arrays: dict[str, np.ndarray] | None = None, workers: int | None = None,
          progress: bool = True, desc: str = "packing", skip_unreadable: bool = False,
          per_image: dict[str, Sequence[str]] | None = None) -> Path:
    """Decode ``arrays`` = ``{name: [paths]}`` into ``cache_dir/<name>.npy``.

    ``decode`` must be a picklable module-level function ``path -> uint8 array`` of
    ``shape``. ``extra_arrays`` (``{name: array}``: labels, ids, ...) are saved beside
    the images. Returns ``cache_dir``.

    Files that cannot be read are all found in one pass and refused in one message
    (:func:`~kandel_repro.data.pack_notes.refuse`), unless ``skip_unreadable``: then
    their rows are left out of the image array and of the extra arrays ``per_image``
    names for it (``{"x": ("y", "ids")}``: one row per image), and the manifest lists
    them (``unreadable``, ``unreadable_skipped``).
    """
    from tqdm.auto import tqdm

    extra = extra_arrays or {}
    workers = workers or min(8, os.cpu_count() or 1)
    total = sum(len(p) for p in arrays.values())
    pack_notes.check_room(cache_dir, total, shape, CHUNK, workers)
    tmp = stage(cache_dir)
    # NOTE: spawn, not fork: the caller may have TensorFlow's threads running. An
    # executor, not a Pool: a worker that cannot start raises instead of hanging.
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_watch_parent, initargs=(os.getpid(),))
            if workers > 1 else None)
    failures = {name: [] for name in arrays}
    try:
        with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
            for name, paths in arrays.items():
                # NOTE: the chunks are written to the file, not through a memory map: the
                # pages of a map count in this process's resident memory while it is mapped,
                # so its peak would grow with the number of images
                header = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+",
                                                   dtype=np.uint8, shape=(len(paths),) + shape)
                offset = header.offset
                del header
                tasks = [(decode, paths[i:i + CHUNK], shape) for i in range(0, len(paths), CHUNK)]
                with open(tmp / f"{name}.npy", "r+b") as target:
                    target.seek(offset)
                    results = pool.map(_decode_chunk, tasks) if pool else map(_decode_chunk, tasks)
                    for start, (chunk, failed) in zip(range(0, len(paths), CHUNK), results):
                        target.write(np.ascontiguousarray(chunk).data)
                        failures[name] += [(start + i, path, why) for i, path, why in failed]
                        bar.update(len(chunk))
        manifest = pack_notes.leave_out(tmp, manifest, failures, extra, total, cache_dir,
                                        skip_unreadable, per_image or {})
        for name, value in extra.items():
            np.save(tmp / f"{name}.npy", value)
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
    pack_notes.forget(cache_dir)
    return commit(tmp, cache_dir, manifest, list(arrays) + list(extra), shape)


def load(cache_dir: str | Path, names: Iterable[str],
         mmap: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], dict]:
    """Load arrays ``names`` and the manifest of a cache (checked: :func:`check`); the
    arrays in ``mmap`` are memory-mapped (read-only), not read into memory."""
    cache_dir = Path(cache_dir)
    try:
        manifest = check(cache_dir, names)
        return {name: np.load(cache_dir / f"{name}.npy", mmap_mode="r" if name in mmap else None)
                for name in names}, manifest
    except (DataError, OSError, ValueError) as exc:
        raise DataError(f"the packed cache in {cache_dir} cannot be used ({exc}); pack it again "
                        "with `kandel-repro data pack --force`") from None


# What a manifest's "dataset" said of a synthetic set before manifests recorded the
# reader's name and a "synthetic" flag apart; caches packed then are still current.
LEGACY_SYNTHETIC = ("synthetic", "synthetic-breakhis")


def synthetic(manifest: dict) -> bool:
    """Whether a cache was packed from a synthetic set (one of this package's generators
    wrote it): its manifest's ``synthetic`` flag or, in a manifest written before the
    flag, a ``dataset`` of :data:`LEGACY_SYNTHETIC`."""
    if "synthetic" in manifest:
        return bool(manifest["synthetic"])
    return manifest.get("dataset") in LEGACY_SYNTHETIC


@dataclass(frozen=True)
class Source:
    """What a data set's format gives the reader skeleton (:func:`pack_source`,
    :func:`load_source`); hashing, the lock, reuse, the manifest's common fields and
    loading are the same for every format."""

    root: Path  # the data folder, as given
    cache_dir: Path
    dataset: str  # the reader's name (readers.READERS): PackedData.dataset, the manifest's
    fmt: int  # the format's CACHE_FORMAT: a cache of another format is packed again
    names: Sequence[str]  # the cache's arrays
    paths: Sequence[str | Path]  # the source files hashed (:func:`hash_sources`)
    build: Callable[[dict], Path]  # packs cache_dir, given the manifest's common fields
    extra: bytes = b""  # hashed with the files (CSV contents, the image size)
    # a current cache's manifest tested beyond its stamp: why it does not serve, or None
    serves: Callable[[dict], str | None] | None = None


def pack_source(source: Source, force: bool = False,
                verify: bool = False) -> tuple[Path, SourceHashes]:
    """``(cache folder, the source's hashes)``, the cache packed by ``source.build``
    unless it is a current, undamaged cache of these files (:func:`pack_once`;
    ``verify``: checksums too; ``force``: packed again anyway). ``build`` gets the
    manifest fields every cache records: format, stamp (``fingerprint``), source folder,
    identity, the reader's name and whether the set is synthetic (its folder holds the
    generators' marker). Every reader's ``pack`` is this."""
    root = Path(source.root)
    hashes = hash_sources(source.paths, root, source.extra)
    manifest = {"format": source.fmt, "fingerprint": hashes.stamp,
                "source": str(root.resolve()), "identity": hashes.data_fingerprint,
                "dataset": source.dataset, "synthetic": (root / MARKER).exists()}
    cache_dir = pack_once(source.cache_dir, hashes.stamp, source.fmt, source.names,
                          lambda: source.build(manifest), force, verify, source.serves)
    return cache_dir, hashes


def load_source(source: Source, make: Callable[..., PackedData],
                fields: dict[str, str] | None = None, mmap: Sequence[str] = (),
                legacy: bool = True) -> PackedData:
    """``source`` packed if needed (:func:`pack_source`), then loaded as ``make`` (a
    :class:`PackedData` subclass): ``fields`` maps its fields to the cache's arrays (by
    default, the arrays' own names), ``mmap`` the arrays memory-mapped, not read. The
    data's ``fingerprint`` is the identity the manifest records; ``legacy``: give its
    legacy fingerprint too (not for readers every run of which records identities).
    Every reader's ``load`` is this."""
    cache_dir, hashes = pack_source(source)
    arrays, manifest = load(cache_dir, source.names, mmap=mmap)
    fields = fields or {name: name for name in source.names}
    return make(**{field: arrays[name] for field, name in fields.items()},
                dataset=source.dataset, synthetic=synthetic(manifest), root=Path(source.root),
                fingerprint=manifest["identity"],
                legacy_fingerprint=hashes.legacy_fingerprint if legacy else "")

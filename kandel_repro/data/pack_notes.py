"""What packing says of its images (:func:`kandel_repro.data.cache.build` and
``kandel-repro data pack``).

Every image a packer cannot read (truncated, corrupt, of another size, empty) is found
in one pass over the data, not one per attempt: :func:`refuse` names the first
:data:`NAMED` in one line, with the count, and writes them all, one per line, to
``<cache>.unreadable.txt`` beside the cache when there are more. A reader that is told to
skip them (``skip_unreadable``) packs the others instead: :func:`drop_rows` takes the
unreadable rows out of the arrays already written, and :func:`record` lists them in the
cache's manifest (:func:`leave_out` does one or the other). A cache that cannot fit the
disk, or whose decoding would hold more than half the memory, is refused before anything
is decoded (:func:`check_room`). :func:`describe` is what ``data pack`` prints: whether it
packed the cache (:data:`PACKED_HERE`) or reused it, and its images per class (per part of
a given split).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.files import write_text

NAMED = 3  # unreadable images named in the one-line message
BLOCK = 128  # rows copied at a time when rows are dropped


def relative(path: str | Path, manifest: dict) -> str:
    """``path`` relative to the data folder the manifest records (posix), else as given."""
    source = manifest.get("source")
    if not source:
        return str(path)
    try:
        return Path(os.path.relpath(os.path.abspath(path), source)).as_posix()
    except ValueError:  # another drive
        return str(path)


def reasons(failures: Sequence[tuple[str | Path, str]],
            manifest: dict) -> list[tuple[str, str]]:
    """``[(relative path, why)]`` of ``failures`` ``[(path, message)]``: each message
    with its path written relative to the data folder, so that a line stays short."""
    out = []
    for path, message in failures:
        name = relative(path, manifest)
        out.append((name, message.replace(str(path), name)))
    return out


def refuse(failures: Sequence[tuple[str, str]], total: int, manifest: dict,
           cache_dir: str | Path, can_skip: bool) -> None:
    """Raise the one :class:`DataError` naming the unreadable images ``failures``
    (``[(relative path, why)]``, all of them) of ``total``; beyond :data:`NAMED`, the
    full list goes to a file named in the message. ``can_skip``: the reader offers
    ``--skip-unreadable``."""
    cache_dir = Path(cache_dir)
    named = _grouped([why for _, why in failures[:NAMED]])
    more = ""
    if len(failures) > NAMED:
        listing = cache_dir.with_name(f"{cache_dir.name}.unreadable.txt")
        try:
            write_text(listing, "".join(f"{path}\t{why}\n" for path, why in failures))
            more = f"; and {len(failures) - NAMED} more (all {len(failures)} listed in {listing})"
        except OSError:  # (a read-only data folder: the count still says it)
            more = f"; and {len(failures) - NAMED} more"
    source = manifest.get("source", "the data")
    raise DataError(f"cannot pack {len(failures):,} of {total:,} images of {source}: {named}"
                    f"{more}; fix or remove them"
                    + (", or pass --skip-unreadable to pack the others" if can_skip else ""))


def check_room(cache_dir: str | Path, images: int, shape: Sequence[int], chunk: int,
               workers: int) -> None:
    """Refuse, before anything is decoded, a cache that cannot fit: its arrays need more
    than the disk's free space where it is written, or the chunks decoded at once (one
    per worker, and the one being written) more than half the machine's memory — an
    ``--image-size`` far above what the images or the networks need."""
    import shutil

    size = int(np.prod(shape, dtype=np.int64))
    side = "×".join(map(str, shape[:2]))
    folder = Path(cache_dir).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if images * size > free:
        raise DataError(f"packing {images:,} images at {side} needs {_bytes(images * size)} "
                        f"in {folder}, where {_bytes(free)} are free: choose a smaller "
                        "--image-size (or --cache DIR on a larger disk)")
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # (a system that does not say)
        return
    held = min(chunk, images) * size * (workers + 1)
    if held > memory / 2:
        raise DataError(f"packing images at {side} holds {_bytes(held)} in memory at once "
                        f"({workers} worker(s) decoding {min(chunk, images)} images each), "
                        f"more than half of this machine's {_bytes(memory)}: choose a smaller "
                        "--image-size (or fewer --workers)")


def _bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1000
    return ""


def _grouped(whys: Sequence[str]) -> str:
    """``whys`` joined by "; ", those that end alike (": the limit guards …; raise it
    with …") said once for the group: ``a is truncated; b is truncated (both: it ends
    inside its pixel data; copy it again)``."""
    tails = Counter(why.rsplit(": ", 1)[1] for why in whys if ": " in why)
    groups: dict[str, list[str]] = {}
    for why in whys:
        head, tail = why.rsplit(": ", 1) if ": " in why else (why, "")
        if tails.get(tail, 0) > 1:
            groups.setdefault(tail, []).append(head)
        else:
            groups[why] = []
    return "; ".join(
        key if not heads else f"{'; '.join(heads)} "
        f"({'both' if len(heads) == 2 else f'all {len(heads)}'}: {key})"
        for key, heads in groups.items())


def forget(cache_dir: str | Path) -> None:
    """Remove the list :func:`refuse` wrote of a cache once it packs."""
    Path(cache_dir).with_name(f"{Path(cache_dir).name}.unreadable.txt").unlink(missing_ok=True)


def drop_rows(path: str | Path, bad: Sequence[int]) -> None:
    """Rewrite the ``.npy`` array at ``path`` without its rows ``bad``, a block at a
    time (the array may be gigabytes), through a temporary file moved into place."""
    path = Path(path)
    header = np.load(path, mmap_mode="r")  # (its shape, type and where its rows start)
    shape, dtype, offset = header.shape, header.dtype, header.offset
    del header
    keep = np.ones(shape[0], bool)
    keep[list(bad)] = False
    row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    part = path.with_name(f".{path.name}.part")
    out = np.lib.format.open_memmap(part, mode="w+", dtype=dtype,
                                    shape=(int(keep.sum()),) + tuple(shape[1:]))
    start = out.offset
    del out
    with open(path, "rb") as src, open(part, "r+b") as dst:
        dst.seek(start)
        for first in range(0, shape[0], BLOCK):
            count = min(BLOCK, shape[0] - first)
            src.seek(offset + first * row)
            block = np.frombuffer(src.read(count * row), dtype).reshape((count,) + shape[1:])
            dst.write(np.ascontiguousarray(block[keep[first:first + count]]).data)
    os.replace(part, path)


def record(manifest: dict, failures: Sequence[tuple[str, str]]) -> dict:
    """``manifest`` with the images left out: ``unreadable`` (each path and why) and
    ``unreadable_skipped`` (their count)."""
    return dict(manifest, unreadable=[{"path": path, "reason": why} for path, why in failures],
                unreadable_skipped=len(failures))


def leave_out(tmp, manifest, failures, extra, total, cache_dir, skip, per_image):
    """The manifest of a cache being built in ``tmp`` once its unreadable images
    (``failures``: ``{image array: [(row, path, why)]}``, of ``total`` images) are dealt
    with: refused, all named (:func:`refuse`), or, with ``skip`` and image arrays whose
    per-image arrays ``per_image`` names, their rows dropped from the image arrays and
    from ``extra`` (changed in place) and listed (:func:`record`)."""
    found = [(path, why) for name in failures for _, path, why in failures[name]]
    if not found:
        return manifest
    named = reasons(found, manifest)
    if not (skip and {name for name, failed in failures.items() if failed} <= set(per_image)):
        refuse(named, total, manifest, cache_dir, can_skip=bool(per_image))
    if len(found) == total:
        raise DataError(f"none of the {total:,} images of {manifest.get('source', 'the data')} "
                        f"can be read: {named[0][1]}")
    for name, failed in failures.items():
        rows = [row for row, _, _ in failed]
        if rows:
            drop_rows(tmp / f"{name}.npy", rows)
            for other in per_image[name]:
                extra[other] = np.delete(extra[other], rows, axis=0)
    return record(manifest, named)


# The caches this process packed (:func:`~kandel_repro.data.cache.commit` adds them), not
# reused: what `data pack` says of them.
PACKED_HERE: set[Path] = set()


def describe(cache_dir: str | Path) -> str:
    """What ``data pack`` prints of the cache in ``cache_dir``: ``packed N images of
    DATA into CACHE`` if this process packed it (:data:`PACKED_HERE`: not one another
    process packed meanwhile), else ``reused the packed
    cache in CACHE``; then its images per class, per part of a given split (the cache's
    ``y``/``train_y``, ``class_names`` and ``splits`` arrays, where it has them; the
    labelled training images of a data set whose test images have no label)."""
    cache_dir = Path(cache_dir)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    images = sum(array["shape"][0] for name, array in manifest.get("arrays", {}).items()
                 if name == "x" or name.endswith("_x"))
    source = manifest.get("source", "the data")
    lines = [f"packed {images:,} images of {source} into {cache_dir}"
             if cache_dir.resolve() in PACKED_HERE else
             f"reused the packed cache in {cache_dir} ({images:,} images of {source})"]
    labels = next((cache_dir / name for name in ("y.npy", "train_y.npy")
                   if (cache_dir / name).is_file()), None)
    if labels is None:
        return lines[0]
    y = np.load(labels)
    names = (np.load(cache_dir / "class_names.npy").tolist()
             if (cache_dir / "class_names.npy").is_file() else None)
    classes = range(len(names)) if names else np.unique(y).tolist()

    def label(k):
        return str(names[k]) if names else f"label {k}"

    splits = np.load(cache_dir / "splits.npy") if (cache_dir / "splits.npy").is_file() else None
    if splits is not None and len(splits) and (splits != "").all():
        parts = "; ".join(
            f"{part}: " + ", ".join(f"{label(k)} {int((y[splits == part] == k).sum()):,}"
                                    for k in classes)
            for part in ("train", "val", "test"))
        lines.append(f"images per class in each part of the data's own split: {parts}")
    else:
        which = (f" (the {len(y):,} labelled training images)" if labels.name == "train_y.npy"
                 else "")
        lines.append(f"images per class{which}: " + ", ".join(
            f"{label(k)}: {int((y == k).sum()):,}" for k in classes))
    if names and len(names) == 2:
        lines.append(f"the positive class (label 1, whose probability a run gives): "
                     f"{names[1]} (--positive-class names the other)")
    return "\n".join(lines)

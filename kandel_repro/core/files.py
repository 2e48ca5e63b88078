"""Atomic file writes, small JSON helpers and staging names, used by run folders and caches.

Every result file is written to a temporary name in the same folder and then moved
into place with ``os.replace``, so an interrupted process never leaves a truncated
file where a finished one is expected. What is built under a name of its own before it
is moved into place (a packed cache, a synthetic data set, a saved model) is staged
under one name scheme (:func:`staging_path`: the host and the process id), so that the
next writer can tell a dead process's leftovers from a live one's and remove them
(:func:`remove_stale_staging`).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # NOTE: annotations only; pandas loads where a table is made
    import pandas as pd


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes files only their owner can read; results get the usual permissions.
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(folder: str | Path, option: str) -> Path:
    """Create ``folder`` if needed and check that files can be written in it; a
    :class:`~kandel_repro.core.errors.ConfigError` naming the folder and ``option`` if not."""
    from .errors import ConfigError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder; give {option} a folder you can "
                          "write to")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"cannot write into {folder} ({exc.strerror or exc}); give {option} a "
                          "folder you can write to") from None
    return folder


# This host's name as it goes into staging names: characters a file name cannot hold
# become "_".
HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())


def staging_path(path: str | Path, kind: str = "tmp", suffix: str = "") -> Path:
    """The name beside ``path`` under which this process stages it:
    ``.NAME.KIND-HOST-PID`` then ``suffix`` (``kind`` "tmp" for what is being built, "old"
    for what it replaces while the new one moves in; ``suffix`` where a writer needs the
    name to end in one, as Keras' ``.keras``). The host and the process id together:
    processes of two machines that share the folder never pick the same name, and
    :func:`remove_stale_staging` tells from the name whose leftover it is."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{HOST}-{os.getpid()}{suffix}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (another user's counts as
    running): what a dead one staged or locked may be taken over."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(path: str | Path, kinds: tuple[str, ...] = ("tmp",),
                         hostless: bool = False) -> None:
    """Remove the staging folders beside ``path`` (:func:`staging_path`, of the ``kinds``
    given) that processes of this host left when they died (``kill -9``). Those of live
    processes are left alone, and so are other hosts' (their processes cannot be checked
    from here). ``hostless``: also those named by the process id alone
    (``.NAME.tmp-PID``), as earlier versions of a writer named them."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    host = f"(?:{re.escape(HOST)}-)?" if hostless else f"{re.escape(HOST)}-"
    kind = "|".join(re.escape(k) for k in kinds)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:{kind})-{host}(\d+)$")
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON, atomically. A non-finite float (NaN, ±inf: not JSON) is
    written as null."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=_jsonable, allow_nan=False)
    write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a pandas DataFrame atomically, without its index."""
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


def _finite(obj):
    """``obj`` with every non-finite float replaced by None (recursively)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")

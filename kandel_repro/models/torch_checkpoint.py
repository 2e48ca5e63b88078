"""Reading the tensors of a PyTorch checkpoint (``.pth``/``.pt``/``.bin``) without PyTorch.

:func:`read_checkpoint` gives a ``torch.save``'d state dict as ``{tensor name: numpy
array}``, in the file's order, from either format ``torch.save`` writes: the zip archive
of PyTorch ≥ 1.6 (``<root>/data.pkl`` and a record ``<root>/data/<key>`` per storage) and
the legacy one of earlier versions (``_use_new_zipfile_serialization=False``): pickles of
a magic number, a protocol version, the writer's sizes and byte order, the object, the
storage keys, then each storage's element count and bytes.

A checkpoint is untrusted input, and unpickling runs whatever callable a pickle names.
This reader's unpickler resolves only an allowlist — ``collections.OrderedDict``, the
``torch._utils`` functions that rebuild tensors and parameters and the storage types —
each to a stand-in of ours that records numbers, never to PyTorch; any other name is
refused before anything is called. A file is refused in one line naming it (and the
tensor at fault) when it is neither format, truncated, big-endian, a storage's size is not
what its tensors say, or its object is not a state dict of tensors. A training checkpoint
``{"state_dict": {...}, ...}`` or ``{"model": {...}, ...}`` gives that inner state dict
(if its other entries unpickle under the same allowlist).
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from ..core.errors import WeightsUnavailable

# torch.save's legacy format opens with this number, then this protocol version.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# Storage type → the little-endian dtype of its bytes (BFloat16: raw 16 bits, widened later).
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
    "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16",
    "UntypedStorage": "u1",  # NOTE: torch ≥ 2 names it for a bare storage saved untyped
}
WRAPPER_KEYS = ("state_dict", "model")  # a training checkpoint's entry holding the weights


class StorageType(NamedTuple):
    """What a storage type global (``torch.FloatStorage``…) unpickles to: its name only."""
    name: str


class Storage:
    """A storage the pickle refers to: its key, element type and count, later its values."""

    def __init__(self, kind: StorageType, key: str, numel: int) -> None:
        self.kind, self.key, self.numel = kind, key, numel
        self.dtype = np.dtype(STORAGE_DTYPES[kind.name])
        self.values: np.ndarray | None = None  # NOTE: legacy files hold them after the pickle
        self.view: tuple[Storage, int] | None = None  # a legacy view: (root storage, offset)

    def flat(self) -> np.ndarray:  # NOTE: once the file's storages are read
        if self.view is not None:
            root, offset = self.view
            return root.flat()[offset:offset + self.numel]
        assert self.values is not None, self.key
        return self.values


class Tensor(NamedTuple):
    """What ``_rebuild_tensor_v2`` unpickles to: where the tensor lies in its storage."""
    storage: Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, shape: Any, stride: Any, *_: Any) -> Tensor:
    """Stand-in of ``torch._utils._rebuild_tensor(_v2)``: requires_grad, hooks and
    metadata, which follow, say nothing of the values."""
    ints = (isinstance(n, int) and n >= 0 for n in (offset, *shape, *stride))
    if not (isinstance(storage, Storage) and isinstance(shape, tuple)
            and isinstance(stride, tuple) and len(shape) == len(stride) and all(ints)):
        raise ValueError("a tensor rebuilt from other than a storage, offset, shape, stride")
    return Tensor(storage, offset, shape, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Tensor:
    """Stand-in of ``torch._utils._rebuild_parameter(_with_state)``: the tensor it wraps."""
    if not isinstance(data, Tensor):
        raise ValueError("a parameter rebuilt from other than a tensor")
    return data


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
    ("torch.storage", "UntypedStorage"): StorageType("UntypedStorage"),
}


class _Refused(Exception):
    """A problem found inside the unpickler; :func:`read_checkpoint` names the file."""


class _Unpickler(pickle.Unpickler):
    """Resolves the allowlist and nothing else; storages through ``storage_for``."""

    def __init__(self, file: IO[bytes], storage_for: Any = None) -> None:
        super().__init__(file)
        self.storage_for = storage_for

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise _Refused(f"refuses to unpickle {module}.{name}: a checkpoint holds tensors "
                           "only; this one names code to run (a pickled model or object?)")
        return ALLOWED[module, name]

    def persistent_load(self, pid: Any) -> Any:
        ok = (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
              and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
              and isinstance(pid[4], int) and pid[4] >= 0)
        if self.storage_for is None or not ok:
            raise _Refused(f"refers to an object {str(pid)[:60]!r} that is not a storage")
        return self.storage_for(pid)


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict ``torch.save`` wrote to ``path``: ``{tensor name: numpy array}`` in
    the file's order, each array C-contiguous and of the tensor's dtype (bfloat16 widened
    to float32). A dict of tensors is the state dict; a dict holding one under
    ``"state_dict"`` or ``"model"`` (a training checkpoint) gives that one. Raises
    :class:`WeightsUnavailable`, in one line naming the file, for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0)
            obj = _read_zip(path) if head.startswith(b"PK") else _read_legacy(f, head)
        return _state_dict(obj)
    except _Refused as exc:
        raise WeightsUnavailable(f"{path}: {exc}") from None
    except OSError as exc:
        raise WeightsUnavailable(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zlib.error, ValueError,
            TypeError, KeyError, IndexError, AttributeError, struct.error, OverflowError,
            MemoryError, RuntimeError, NotImplementedError) as exc:
        # NOTE: a damaged pickle fails in many ways: each is one line, never a traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise WeightsUnavailable(f"{path}: not a readable torch.save checkpoint, truncated "
                                 f"or damaged ({type(exc).__name__}: {first})") from None


def _read_zip(path: Path) -> Any:
    """The object of a zip-format checkpoint, its storages read from their records."""
    if not zipfile.is_zipfile(path):
        raise _Refused("opens as a zip archive (torch.save's format) but has no zip "
                       "directory at its end: truncated, or damaged")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise _Refused(f"a zip archive with {len(pickles)} <root>/data.pkl records, not "
                           "the one of torch.save's format")
        root = pickles[0][:-len("data.pkl")]
        order = (archive.read(root + "byteorder").decode("ascii", "replace").strip()
                 if root + "byteorder" in names else "little")
        if order != "little":
            raise _Refused(f"its storages are {order}-endian; only little-endian checkpoints "
                           "are read (save it again on a little-endian machine)")
        loaded: dict[str, Storage] = {}

        def storage_for(pid: tuple) -> Storage:
            _, kind, key, _location, numel = pid[:5]
            if key not in loaded:
                loaded[key] = storage = Storage(kind, key, numel)
                record = f"{root}data/{key}"
                if record not in names:
                    raise _Refused(f"storage {key} has no record {record} in the archive: "
                                   "an incomplete checkpoint")
                storage.values = _values(archive.read(record), storage)
            return loaded[key]

        with archive.open(pickles[0]) as pkl:
            return _Unpickler(pkl, storage_for).load()


def _read_legacy(f: IO[bytes], head: bytes) -> Any:
    """The object of a legacy checkpoint, its storages read from after the pickles."""
    if not head:
        raise _Refused("an empty file, not a checkpoint")
    if not head.startswith(b"\x80"):
        raise _Refused(f"neither torch.save format: it opens with {head!r}, not a zip "
                       "archive's b'PK' nor a pickle's b'\\x80'")
    if _Unpickler(f).load() != LEGACY_MAGIC:
        raise _Refused("a pickle without torch.save's magic number: not a checkpoint")
    protocol = _Unpickler(f).load()
    if protocol != LEGACY_PROTOCOL:
        raise _Refused(f"a legacy checkpoint of protocol {protocol!r}, not {LEGACY_PROTOCOL}")
    sys_info = _Unpickler(f).load()
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise _Refused("written by a big-endian machine (sys_info little_endian is not True); "
                       "only little-endian checkpoints are read")
    storages: dict[str, Storage] = {}
    obj = _Unpickler(f, lambda pid: _legacy_storage(pid, storages)).load()
    keys = _Unpickler(f).load()
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise _Refused("its list of storage keys is not a list of strings")
    for key in keys:
        if key not in storages or storages[key].view is not None:
            raise _Refused(f"lists storage {key!r}, which no tensor refers to as a root")
        storage = storages[key]
        (count,) = struct.unpack("<q", _read_exactly(f, 8, key))
        if count != storage.numel:
            raise _Refused(f"storage {key} holds {count} elements, its tensors say "
                           f"{storage.numel}: a damaged checkpoint")
        storage.values = _values(_read_exactly(f, count * storage.dtype.itemsize, key), storage)
    unread = [k for k, s in storages.items() if s.values is None and s.view is None]
    if unread:
        raise _Refused(f"storage {unread[0]} is not among the storages the file holds")
    return obj


def _legacy_storage(pid: tuple, storages: dict[str, Storage]) -> Storage:
    """A legacy persistent id's storage: a root, or a view into one (``view_metadata``)."""
    _, kind, key, _location, numel = pid[:5]
    if key not in storages:
        storages[key] = Storage(kind, key, numel)
    view = pid[5] if len(pid) > 5 else None
    if view is None:
        return storages[key]
    view_key, offset, size = view
    if view_key not in storages:
        storages[view_key] = Storage(kind, view_key, size)
        if offset < 0 or offset + size > storages[key].numel:
            raise _Refused(f"storage view {view_key} reaches beyond its storage {key}")
        storages[view_key].view = (storages[key], offset)
    return storages[view_key]


def _read_exactly(f: IO[bytes], size: int, key: str) -> bytes:
    """The next ``size`` bytes, which the file must still hold."""
    # NOTE: measured first: a damaged count must not make read() allocate gigabytes
    left = os.fstat(f.fileno()).st_size - f.tell()
    if size > left:
        raise _Refused(f"ends within storage {key} ({max(left, 0)} of its {size} bytes "
                       "left): a truncated file")
    return f.read(size)


def _values(data: bytes, storage: Storage) -> np.ndarray:
    """A storage's elements from its bytes, which must be exactly as many as it says."""
    expected = storage.numel * storage.dtype.itemsize
    if len(data) != expected:
        raise _Refused(f"storage {storage.key} has {len(data)} bytes, its {storage.numel} "
                       f"{storage.kind.name} elements take {expected}: a damaged checkpoint")
    return np.frombuffer(data, dtype=storage.dtype)


def _state_dict(obj: Any) -> dict[str, np.ndarray]:
    """The tensors of the unpickled object, which must be (or hold) a state dict."""
    if not isinstance(obj, dict):
        raise _Refused(f"holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = obj
    if not all(isinstance(v, Tensor) for v in obj.values()):
        inner = [obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)]
        tensors = inner[0] if inner else obj
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise _Refused(f"a state dict key {name!r} is not a tensor name")
        if not isinstance(value, Tensor):
            raise _Refused(f"entry {name} holds a {type(value).__name__}, not a tensor: not a "
                           "state dict of tensors")
        out[name] = _array(value, name)
    return out


def _array(tensor: Tensor, name: str) -> np.ndarray:
    """The tensor's values: its shape and strides over its storage, copied contiguous."""
    flat = tensor.storage.flat()
    if all(tensor.shape):  # NOTE: an empty tensor reads nothing, wherever it says it lies
        last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride))
        if last >= flat.size:
            raise _Refused(f"tensor {name} reaches element {last} of its storage of "
                           f"{flat.size}: a damaged checkpoint")
        strides = [s * flat.itemsize for s in tensor.stride]
        values = np.lib.stride_tricks.as_strided(flat[tensor.offset:], tensor.shape, strides)
    else:
        values = np.zeros(tensor.shape, flat.dtype)
    values = np.array(values, dtype=flat.dtype.newbyteorder("="), order="C")
    if tensor.storage.kind.name == "BFloat16Storage":  # NOTE: bfloat16 is float32's top half
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values

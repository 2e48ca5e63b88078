"""Writing files as ``torch.save`` does, without PyTorch: checkpoints for the tests of
:mod:`kandel_repro.models.torch_checkpoint` and of ``convert-weights``.

:func:`save` writes ``{name: tensor}`` (or any object holding :class:`T` tensors) in
torch.save's zip format (PyTorch ≥ 1.6) or its legacy one, the pickles naming the same
globals (``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``…) and persistent ids
as PyTorch's. :class:`Global` writes any ``module.name`` a hostile file could name.
"""
from __future__ import annotations

import functools
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_TYPES = {"float32": "FloatStorage", "float64": "DoubleStorage",
                 "float16": "HalfStorage", "int64": "LongStorage", "int32": "IntStorage",
                 "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
                 "bool": "BoolStorage"}


@dataclass(frozen=True)
class Global:
    """A ``module.name`` the pickle names (GLOBAL opcode); called with ``args`` if given."""
    module: str
    name: str
    args: tuple | None = None

    def __call__(self, *args):  # NOTE: pickle writes only callables as a reduce's function
        raise AssertionError(f"{self.module}.{self.name} is a name to write, not to call")


@functools.lru_cache(maxsize=None)
def _global(module: str, name: str) -> Global:
    """One object per name, so that the pickle refers back to it as torch's do."""
    return Global(module, name)


REBUILD = Global("torch._utils", "_rebuild_tensor_v2")
PARAMETER = Global("torch._utils", "_rebuild_parameter")


@dataclass(eq=False)
class Storage:
    """A storage: flat values (bfloat16 given as their uint16 bits) and its type's name."""
    values: np.ndarray
    kind: str = ""
    key: str = ""
    view_of: tuple[Storage, int] | None = None  # legacy only: (root storage, offset)

    def __post_init__(self):
        self.kind = self.kind or STORAGE_TYPES[str(self.values.dtype)]


@dataclass(eq=False)
class T:
    """A tensor: a view of ``storage`` (a new one holding ``values`` if not given)."""
    values: np.ndarray | None = None
    storage: Storage | None = None
    offset: int = 0
    shape: tuple = ()
    stride: tuple = ()
    parameter: bool = False  # pickled through _rebuild_parameter, as nn.Parameter is
    extra: tuple = field(default=())  # the arguments after the stride, if not the usual

    def __post_init__(self):
        if self.storage is None:
            values = np.array(self.values, order="C")  # NOTE: ascontiguousarray makes 0-d 1-d
            self.storage = Storage(values.reshape(-1))
            self.shape = values.shape
            self.stride = tuple(s // max(values.itemsize, 1) for s in values.strides)


class _Writer(pickle._Pickler):  # NOTE: the Python pickler, to write GLOBALs of no module
    def __init__(self, file, storages: dict[int, Storage], legacy: bool):
        super().__init__(file, protocol=2)
        self.storages, self.legacy = storages, legacy

    def persistent_id(self, obj: Any):
        if not isinstance(obj, Storage):
            return None
        root, offset = obj.view_of or (obj, 0)
        if id(root) not in self.storages:
            root.key = root.key or str(len(self.storages))
            self.storages[id(root)] = root
        pid = ("storage", _global("torch", root.kind), root.key, "cpu", root.values.size)
        if not self.legacy:
            return pid
        view = None if obj is root else (f"view{offset}", offset, obj.values.size)
        return pid + (view,)

    def reducer_override(self, obj: Any):
        if isinstance(obj, T):
            args = obj.extra or (False, OrderedDict())  # requires_grad, backward_hooks
            rebuilt = Global(REBUILD.module, REBUILD.name, (
                obj.storage, obj.offset, tuple(obj.shape), tuple(obj.stride), *args))
            if obj.parameter:
                return _global(PARAMETER.module, PARAMETER.name), (rebuilt, False, OrderedDict())
            return _global(REBUILD.module, REBUILD.name), rebuilt.args
        if isinstance(obj, Global) and obj.args is not None:
            return _global(obj.module, obj.name), obj.args
        return NotImplemented

    def save_marker(self, obj: Global):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, Global: save_marker}


def _pickle(obj: Any, legacy: bool) -> tuple[bytes, list[Storage]]:
    buffer, storages = io.BytesIO(), {}
    _Writer(buffer, storages, legacy).dump(obj)
    return buffer.getvalue(), list(storages.values())


def storage_bytes(storage: Storage) -> bytes:
    return storage.values.astype(storage.values.dtype.newbyteorder("<")).tobytes()


def save(path: Path, obj: Any, fmt: str = "zip", *, byteorder: str | None = "little",
         skip: tuple[str, ...] = (), little_endian: bool = True,
         counts: dict[str, int] | None = None) -> Path:
    """Writes ``obj`` as ``torch.save`` would in ``fmt`` ("zip" or "legacy"). ``skip``
    leaves records out of the zip; ``byteorder``/``little_endian`` say what the file
    claims; ``counts`` overrides a legacy storage's element count."""
    path = Path(path)
    data, storages = _pickle(obj, legacy=fmt == "legacy")
    if fmt == "zip":
        records = {"archive/data.pkl": data, "archive/.format_version": b"1",
                   "archive/version": b"3\n",
                   **{f"archive/data/{s.key}": storage_bytes(s) for s in storages}}
        if byteorder is not None:
            records["archive/byteorder"] = byteorder.encode()
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, payload in records.items():
                if name not in skip:
                    archive.writestr(name, payload)
        return path
    sys_info = {"protocol_version": 1001, "little_endian": little_endian,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as f:
        for header in (MAGIC, 1001, sys_info):
            pickle.dump(header, f, protocol=2)
        f.write(data)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", (counts or {}).get(s.key, s.values.size)))
            f.write(storage_bytes(s))
    return path

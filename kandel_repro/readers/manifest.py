"""The reader of a CSV manifest (``--dataset csv --data FILE.csv``: :class:`ManifestReader`):
a user's own images, one row each, anywhere under the CSV's folder.

Columns (a header row first; others are ignored)::

    path    the image, relative to the CSV's folder (--path-column NAME)
    label   its class, any text (--label-column NAME)
    group   optional: its patient, slide… ("group" if present, or --group-column NAME);
            a split by group keeps each group on one side
    split   optional: train, val or test (also training, valid, validation, testing;
            any case): the data's own split, used as it is

The separator is a comma, or, where the header holds none, the semicolon, tab or bar it
holds (spreadsheets of some locales write ``path;label``). A path may be written with
``/`` or with Windows' ``\\`` (``tiles\\000.png``). Labels are read as text and ordered
by the rule both own-data readers follow (:func:`~kandel_repro.readers.own.class_order`):
as numbers when all read as numbers (``2`` before ``10``; ``0.5`` before ``1``), else
as text; one number written two ways (``1``, ``01``, ``1.0``) is refused, naming the
rows of each spelling. A class's label is its index in that order (with two classes the
second is the positive, label 1, unless ``positive_class`` names the other). Cells are
stripped of surrounding spaces. Images are the files
:func:`~kandel_repro.data.images.is_image` accepts.

Every problem is a :class:`DataError` naming the CSV and the row (counted from 1, the
first row after the header) or the value: a missing, unreadable or empty CSV, a missing
column (the columns it has are listed), an absolute path or one leaving the CSV's folder
(``..``), a path of another extension, one that does not exist (or is a broken link) or
is listed twice, an empty label, an empty group, an unknown split.

Images are decoded by :func:`~kandel_repro.data.images.decode_image` and resized to
``image_size`` (default 224) when packed, into
``<CSV folder>/.kandel_cache/csv-<CSV name>-<size>`` (``-<hash>`` appended when a
column option or ``window`` is not its default, or the positive class is another); the
CSV's bytes are hashed with the images, so an edited manifest is packed again. An image
that cannot be decoded is refused with every other one, or left out with
``skip_unreadable`` (:func:`~kandel_repro.readers.own.source`).
"""
from __future__ import annotations

import io
import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import DataError
from ..data import cache
from ..data.images import EXTENSIONS, check_window, is_image
from . import own
from .own import Listed, OwnReader

if TYPE_CHECKING:
    import pandas as pd

LAYOUT = "a CSV manifest (--data FILE.csv)"  # as its messages name what it reads
DEFAULTS = {"path_column": "path", "label_column": "label", "group_column": "group"}
SPLIT_COLUMN = "split"
SEPARATORS = (";", "\t", "|")  # tried, in this order, where the header holds no comma


def _separator(data: bytes) -> str:
    """The CSV's separator: a comma, unless its header holds none and holds one of
    :data:`SEPARATORS`."""
    header = data.decode("utf-8-sig", errors="replace").lstrip().splitlines()[0]
    if "," in header:
        return ","
    return next((sep for sep in SEPARATORS if sep in header), ",")


def _read_csv(path: Path) -> tuple[pd.DataFrame, bytes]:
    """The CSV as text cells (stripped) and its bytes, or a :class:`DataError`."""
    import pandas as pd

    if path.is_dir():
        raise DataError(f"{path} is a folder; --dataset csv reads {LAYOUT}; for class folders "
                        "use --dataset folder")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"CSV manifest {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data.strip():
        raise DataError(f"{path} is empty: a CSV manifest needs a header (path,label) and a "
                        "row per image")
    sep = _separator(data)
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                            encoding="utf-8-sig", sep=sep)
    except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
        raise DataError(f"cannot read {path} as a CSV: {exc}") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    frame.attrs["separator"] = sep
    return frame.fillna("").apply(lambda column: column.astype(str).str.strip()), data


def _column(frame, path, name, option):
    if name not in frame.columns:
        sep = frame.attrs.get("separator", ",")
        read = "" if sep == "," else f"; separated by {sep!r}"
        raise DataError(f"{path} has no column {name!r} (its columns: "
                        f"{', '.join(map(repr, frame.columns))}{read}); name it with {option}")
    return frame[name].tolist()


def _relative(value, csv, row):
    """A path cell as a posix path inside the CSV's folder, or a :class:`DataError`."""
    where = f"{csv}, row {row}"
    if not value:
        raise DataError(f"{where}: empty path")
    if os.path.isabs(value) or value.startswith("\\") or re.match(r"^[A-Za-z]:", value):
        raise DataError(f"{where}: path {value!r} is absolute; give paths relative to the "
                        f"CSV's folder {csv.parent}")
    # NOTE: a backslash is Windows' separator, unless a file of that very name exists (a
    # POSIX name may hold one)
    posix = value.replace("\\", "/") if not (csv.parent / value).is_file() else value
    normal = posixpath.normpath(posix)
    if normal == ".." or normal.startswith("../"):
        raise DataError(f"{where}: path {value!r} leaves the CSV's folder {csv.parent}; keep "
                        "the images under it (or move the CSV up)")
    if not is_image(normal):
        raise DataError(f"{where}: {value!r} is not an image of a kind read here "
                        f"({' '.join(EXTENSIONS)})")
    target = csv.parent / normal
    if target.is_symlink() and not target.exists():
        raise DataError(f"{where}: {value!r} is a broken link (to {os.readlink(target)}): "
                        "remove the row or restore what it points to")
    if not target.is_file():
        raise DataError(f"{where}: {value!r} does not exist (paths are relative to the CSV's "
                        f"folder {csv.parent})")
    return normal


def _index(root, path_column, label_column, group_column, positive_class=None):
    """The checked index of the CSV ``root`` and the CSV's bytes."""
    csv = Path(root)
    frame, data = _read_csv(csv)
    if not len(frame):
        raise DataError(f"{csv} lists no image (a header only)")
    paths = _column(frame, csv, path_column or DEFAULTS["path_column"], "--path-column")
    labels = _column(frame, csv, label_column or DEFAULTS["label_column"], "--label-column")
    group_name = group_column or DEFAULTS["group_column"]
    groups = (_column(frame, csv, group_name, "--group-column")
              if group_column or group_name in frame.columns else [""] * len(frame))
    splits = frame[SPLIT_COLUMN].tolist() if SPLIT_COLUMN in frame.columns else None
    rows, seen = [], {}
    for i, (value, label, group) in enumerate(zip(paths, labels, groups)):
        row = i + 1
        relative = _relative(value, csv, row)
        if relative in seen:
            raise DataError(f"{csv}, row {row}: {value!r} is listed twice (also row "
                            f"{seen[relative]}); list each image once")
        seen[relative] = row
        if label.lower() in ("", "nan"):
            raise DataError(f"{csv}, row {row}: empty label for {value!r}")
        if (group_column or group_name in frame.columns) and not group:
            raise DataError(f"{csv}, row {row}: empty {group_name!r} for {value!r} (every "
                            "image needs its group)")
        part = ""
        if splits is not None:
            part = own.split_part(splits[i])
            if part is None:
                raise DataError(f"{csv}, row {row}: split {splits[i]!r} is not train, val or "
                                "test")
        rows.append({"path": str(csv.parent / relative), "id": relative, "label": label,
                     "group": group, "split": part})
    column = label_column or DEFAULTS["label_column"]
    for spellings in own.same_numbers(labels):
        where = [f"{label!r} ({_rows([i + 1 for i, l in enumerate(labels) if l == label])})"
                 for label in spellings]
        raise DataError(f"{csv}: the labels {own.join_and(where)} are one number written in "
                        f"different ways, so they would be {len(spellings)} classes: write each "
                        f"class one way in the {column!r} column")
    names = own.class_order(labels)
    own.check_classes(names, str(csv), f"the {column!r} column")
    names = own.order_classes(names, positive_class, str(csv))
    return own.index_frame(rows, names), data


def _rows(numbers):
    """``"row 3"``, ``"rows 2, 5"``, ``"rows 1, 2, 3, … (40 rows)"``."""
    shown = ", ".join(map(str, numbers[:3])) + (f", … ({len(numbers)} rows)"
                                                 if len(numbers) > 3 else "")
    return f"row{'s' if len(numbers) > 1 else ''} {shown}"


def read_index(root: str | Path, path_column: str | None = None,
               label_column: str | None = None, group_column: str | None = None,
               window: Sequence[float] | None = None, positive_class: str | None = None,
               skip_unreadable: bool = False, split_settings: dict | None = None
               ) -> pd.DataFrame:
    """One row per image of the CSV manifest ``root``
    (:func:`~kandel_repro.readers.own.index_frame`: path, id, label, y, group, split), every
    row checked; no image is decoded. ``positive_class``: the class of label 1 (two
    classes). ``split_settings``: a run's split
    (:data:`~kandel_repro.readers.registry.SPLIT_KEYS`), which is then drawn on the index
    and refused here if the data cannot serve it
    (``skip_unreadable`` changes nothing here)."""
    check_window(window)
    index = _index(root, path_column, label_column, group_column, positive_class)[0]
    if split_settings:
        own.check_index_split(index, Path(root), split_settings)
    return index


class ManifestReader(OwnReader):
    """A CSV manifest (see the module's docstring), packed into
    ``<CSV folder>/.kandel_cache/csv-<CSV name>-<size>``, the CSV's bytes hashed with the
    images."""

    layout = LAYOUT
    index = staticmethod(read_index)

    def listed(self, root: str | Path, window: Sequence[float] | None = None,
               path_column: str | None = None, label_column: str | None = None,
               group_column: str | None = None, positive_class: str | None = None) -> Listed:
        csv = Path(root)
        index, data = _index(csv, path_column, label_column, group_column, positive_class)
        given = {"path_column": path_column, "label_column": label_column,
                 "group_column": group_column}
        options = {key: value for key, value in given.items()
                   if value is not None and value != DEFAULTS[key]}
        return Listed(index, csv.parent, f"csv-{csv.stem}", options, data)

    def source(self, root: str | Path, *args: Any, **kwargs: Any) -> cache.Source:
        # NOTE: the cache's messages name the CSV as a path, as they always have
        return super().source(Path(root), *args, **kwargs)

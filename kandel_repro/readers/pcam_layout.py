"""The Kaggle layout of PCam ("Histopathologic Cancer Detection"), read and checked
without decoding an image::

    DATA/train/<id>.tif        96×96 RGB patches
    DATA/train_labels.csv      id,label
    DATA/test/<id>.tif         unlabelled patches
    DATA/sample_submission.csv id,label — the test ids in submission order

NOTE: apart from the reader (:mod:`kandel_repro.readers.pcam`), which indexes the layout
with :func:`read_index`, so that the Kaggle tools (download, submission) stand on the
files alone: a chain from them through the reader down to its cache would be too long.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..data.layouts import PREFIX as H5_PREFIX

# The files of the layout, as its messages name them.
LAYOUT = "train/, test/, train_labels.csv, sample_submission.csv"


@dataclass
class PCamIndex:
    """Ids, labels and file paths read and checked from the CSVs."""

    root: Path
    train_ids: list
    train_labels: np.ndarray
    test_ids: list

    def train_path(self, image_id: str) -> Path:
        return self.root / "train" / f"{image_id}.tif"

    def test_path(self, image_id: str) -> Path:
        return self.root / "test" / f"{image_id}.tif"


def ids_fingerprint(ids: Iterable) -> str:
    """SHA-1 of ids in order: the identity of a ``sample_submission.csv``."""
    return hashlib.sha1("\n".join(map(str, ids)).encode()).hexdigest()


def _read_id_csv(path, want_label):
    import pandas as pd

    if not path.is_file():
        raise DataError(f"missing {path}")
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if list(frame.columns[:2]) != ["id", "label"]:
        raise DataError(f"{path} must have the header 'id,label', found "
                        f"{','.join(map(str, frame.columns))}")
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


def read_index(root: str | Path) -> PCamIndex:
    """Read and check the CSVs of a Kaggle-layout folder; no image is decoded."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file; give the folder in the Kaggle layout ({LAYOUT})")
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist. Unpack the Kaggle competition "
            f"'histopathologic-cancer-detection' there ({LAYOUT}), or make a synthetic set with "
            f"'kandel-repro data synthetic --out {root}'"
        )
    if not (root / "train_labels.csv").exists() and any(root.glob(f"{H5_PREFIX}*.h5*")):
        raise DataError(f"{root} holds the files of the PatchCamelyon HDF5 release "
                        f"({H5_PREFIX}*.h5[.gz]), not the Kaggle layout; read it with "
                        "--dataset pcam-h5")
    train_ids, labels = _read_id_csv(root / "train_labels.csv", want_label=True)
    test_ids, _ = _read_id_csv(root / "sample_submission.csv", want_label=False)
    for name, ids in (("train_labels.csv", train_ids), ("sample_submission.csv", test_ids)):
        if not ids:
            raise DataError(f"{root / name} lists no image (a header only)")
    _check_files(root / "train", train_ids, "train_labels.csv")
    _check_files(root / "test", test_ids, "sample_submission.csv")
    return PCamIndex(root, train_ids, labels, test_ids)


# The competition's files (paper §4.1; Kaggle "Histopathologic Cancer Detection").
KAGGLE_COUNTS = {"train": 220_025, "test": 57_458}


def verify(root: str | Path, counts: dict[str, int] | None = None) -> PCamIndex:
    """Check an unpacked competition folder completely; return its :class:`PCamIndex`.

    Beyond :func:`read_index` (CSVs well formed, every listed id has its tif): no tif in
    ``train/`` or ``test/`` that its CSV does not list, so that ``sample_submission.csv``
    ids equal the test files, and — with ``counts`` (e.g. :data:`KAGGLE_COUNTS`) — the
    number of files of each split. Every problem found is named.
    """
    root = Path(root)
    index = read_index(root)
    problems = []
    for split, ids, csv in (("train", index.train_ids, "train_labels.csv"),
                            ("test", index.test_ids, "sample_submission.csv")):
        files = {entry.name[:-4] for entry in os.scandir(root / split)
                 if entry.name.endswith(".tif")}
        unlisted = sorted(files - set(ids))
        if unlisted:
            problems.append(f"{len(unlisted)} tif(s) in {root / split} not listed in {csv}, "
                            f"e.g. {unlisted[0]}.tif")
        if counts is not None and len(files) != counts[split]:
            problems.append(f"{root / split} holds {len(files):,} tifs; the competition has "
                            f"{counts[split]:,} (incomplete or mixed download?)")
    if problems:
        raise DataError(f"{root} is not a complete, consistent copy of the competition data:\n  - "
                        + "\n  - ".join(problems))
    return index

"""The reader of the Kaggle "Histopathologic Cancer Detection" layout (``--dataset pcam``,
:class:`PCamReader`; its files: :mod:`kandel_repro.readers.pcam_layout`).

Decoding 277k small TIFF files takes minutes, so they are packed once, in parallel
worker processes, into a uint8 cache (``N×H×W×3`` ``.npy`` arrays plus ids and labels)
that the next run loads in seconds. The cache records a fingerprint of the source files
(names, sizes, modification times, CSV contents) and is rebuilt when the source changes.
Decoded images are streamed straight into a memory-mapped ``.npy`` file, so packing
never holds the data set in memory.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..data import cache
from ..data.layouts import HIDDEN_LABELS, MARKER, WSI_MAP
from ..data.packed import PackedData, Split, TestSet
from ..data.split import group_split, train_val_split
from .base import Reader
from .pcam_layout import KAGGLE_COUNTS, LAYOUT, ids_fingerprint, read_index, verify

CACHE_FORMAT = 2
ARRAYS = ("train_x", "train_y", "train_ids", "test_x", "test_ids")
PATCH_SIZE = 96  # the Kaggle patches (paper §4.1)


@dataclass
class PCamData(PackedData):
    """The Kaggle layout packed: ``x``/``y``/``ids`` are ``train/``, ``test_x``/``test_ids``
    the unlabelled ``test/`` in ``sample_submission.csv`` order."""

    test_x: np.ndarray = None
    test_ids: np.ndarray = None

    def facts(self) -> dict:
        """The sample file's identity, so a submission can be checked anywhere later."""
        return {"sample_ids_sha1": ids_fingerprint(self.test_ids)}

    def wsi_map(self, config: dict) -> Path:
        """The path of the patch → slide map ``split="slide"`` uses."""
        return Path(config.get("wsi_map") or Path(self.root) / WSI_MAP)

    def split_facts(self, config: dict) -> dict:
        if config.get("split", "image") != "slide":
            return {}
        path = self.wsi_map(config)
        if not path.is_file():
            raise DataError(f"--split slide needs the patch → slide map {path} (id,wsi; the "
                            "community file patch_id_wsi.csv); put it there or give --wsi-map")
        return {"wsi_map": str(path.resolve()),
                "wsi_map_sha1": hashlib.sha1(path.read_bytes()).hexdigest()}

    def slides(self, config: dict) -> np.ndarray:
        """The slide of every labelled image, from the map; the ids it lacks are named."""
        import pandas as pd

        path = self.wsi_map(config)
        self.split_facts(config)  # the file is there
        try:
            frame = pd.read_csv(path, dtype=str)
        except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
            raise DataError(f"cannot read {path}: {exc}") from None
        if not {"id", "wsi"} <= set(frame.columns):
            raise DataError(f"{path} must have the columns id,wsi, found "
                            f"{','.join(map(str, frame.columns))}")
        pairs = frame.drop_duplicates(["id", "wsi"])
        twice = pairs["id"][pairs["id"].duplicated()]
        if len(twice):
            patch = twice.iloc[0]
            both = ", ".join(pairs.loc[pairs["id"] == patch, "wsi"].astype(str))
            raise DataError(f"{path} gives patch {patch} more than one slide ({both})"
                            + (f", and {twice.nunique() - 1:,} other patch(es) too"
                               if twice.nunique() > 1 else "")
                            + "; a patch comes from one slide")
        slides = pairs.set_index("id")["wsi"].reindex(self.ids)
        missing = list(np.asarray(self.ids)[slides.isna().to_numpy()])
        if missing:
            raise DataError(f"{path} has no slide for {len(missing):,} id(s) of train_labels.csv, "
                            f"e.g. {', '.join(missing[:5])}")
        return slides.to_numpy()

    def split(self, config: dict) -> Split:
        """Paper §4.1: 80/20 of ``train/``, by image (the paper) or by slide (no slide on
        both sides, stratified by label as far as slides allow); the test set is
        Kaggle's, written as a submission (its labels are known only for a synthetic
        set)."""
        what = f"{Path(self.root) / 'train_labels.csv'}"
        if config.get("split", "image") == "slide":
            train, val = group_split(self.y, self.slides(config), config["validation_fraction"],
                                     config["split_seed"], what)
        else:
            train, val = train_val_split(self.y, config["validation_fraction"],
                                         config["split_seed"], config["stratified_split"],
                                         what=what)
        return Split(train, val, TestSet(self.test_x, self.test_ids,
                                         labels=self._hidden_test_labels(),
                                         auc_key="synthetic_test_auc", submission=True))

    def _hidden_test_labels(self):
        """Labels of a synthetic test set (Kaggle's test labels are hidden)."""
        import pandas as pd

        path = Path(self.root) / HIDDEN_LABELS
        if not self.synthetic or not path.exists():
            return None
        labels = pd.read_csv(path, dtype={"id": str}).set_index("id")["label"]
        return labels.reindex(self.test_ids).to_numpy()


def verify_folder(root: str | Path, any_size: bool = False,
                  cache_dir: str | Path | None = None) -> str:
    """What ``kandel-repro data verify`` does: :func:`verify` a folder, holding it to the
    competition's file counts unless it is a synthetic set (or ``any_size``), and check
    its packed cache, if there is one, against the checksums recorded when it was packed;
    return a summary. Images are not decoded here (packing decodes every one)."""
    root = Path(root)
    synthetic = (root / MARKER).exists()
    counts = None if synthetic or any_size else KAGGLE_COUNTS
    index = verify(root, counts)
    lines = [f"{root}: {len(index.train_ids):,} labelled and {len(index.test_ids):,} test "
             "images, complete and consistent"
             + (" (synthetic set)" if synthetic else "" if counts else " (counts not checked)")]
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(root)
    if (cache_dir / "manifest.json").exists():
        cache.check(cache_dir, ARRAYS, deep=True)
        lines.append(f"{cache_dir}: packed cache intact (shapes and checksums)")
    return "\n".join(lines)


def decode_tif(path: str | Path) -> np.ndarray:
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


def default_cache_dir(root: str | Path) -> Path:
    return Path(root) / ".kandel_cache"


def patch_shape(root: str | Path) -> tuple[int, int, int]:
    """The size every image of ``root`` must have: PCam's 96×96, or the size a synthetic
    set declares in its marker file."""
    marker = Path(root) / MARKER
    size = PATCH_SIZE
    if marker.is_file():
        try:
            size = int(json.loads(marker.read_text())["params"]["size"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"{marker} does not say the set's image size; make the synthetic "
                            "set again") from None
    return (size, size, 3)


class PCamReader(Reader):
    """The Kaggle layout: the tifs of ``train/`` and ``test/``, hashed with the bytes of
    both CSVs, packed at their own size (paper §4.1) and loaded as :class:`PCamData`.

    The cache's fingerprint covers every listed file's path (within the data folder),
    size and modification time and the bytes of both CSVs; the identity (a run's
    ``data_fingerprint``) the same without times."""

    layout = LAYOUT
    packed = PCamData
    fields = {"x": "train_x", "y": "train_y", "ids": "train_ids", "test_x": "test_x",
              "test_ids": "test_ids"}
    index = staticmethod(read_index)

    def source(self, root: str | Path, cache_dir: str | Path | None, workers: int | None,
               progress: bool, image_size: int | None, **options: Any) -> cache.Source:
        root = Path(root)
        index = read_index(root)
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(root)
        train_paths = [index.train_path(i) for i in index.train_ids]
        test_paths = [index.test_path(i) for i in index.test_ids]
        csv_bytes = b"".join((root / n).read_bytes()
                             for n in ("train_labels.csv", "sample_submission.csv"))

        def build(manifest: dict) -> Path:
            return cache.build(
                cache_dir, {"train_x": train_paths, "test_x": test_paths}, decode_tif,
                patch_shape(root), dict(manifest, n_train=len(train_paths),
                                        n_test=len(test_paths)),
                extra_arrays={"train_y": index.train_labels,
                              "train_ids": np.array(index.train_ids),
                              "test_ids": np.array(index.test_ids)},
                workers=workers, progress=progress, desc=f"packing {root}")

        return cache.Source(root, cache_dir, "pcam", CACHE_FORMAT, ARRAYS,
                            train_paths + test_paths, build, extra=csv_bytes)

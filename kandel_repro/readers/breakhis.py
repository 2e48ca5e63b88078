"""The reader of BreakHis (paper §4.3; ``--dataset breakhis``: :class:`BreakHisReader`).

The real layout (the ``BreaKHis_v1`` archive, unpacked)::

    BreaKHis_v1/histology_slides/breast/<benign|malignant>/SOB/<subtype>/
        <patient folder, e.g. SOB_B_A_14-22549AB>/<40X|100X|200X|400X>/
        SOB_B_A-14-22549AB-40-001.png

``--data`` may point at the folder holding ``BreaKHis_v1``, at ``BreaKHis_v1`` itself,
or at ``histology_slides/breast``. Every PNG's name is parsed for class, subtype,
patient and magnification and checked against its folders; a name that does not parse
or disagrees with its folders is refused with the file named.

Images are 700×460; they are resized (without keeping the aspect ratio, as Keras'
``flow_from_directory(target_size=...)`` does) to ``image_size``×``image_size`` when
packed. The paper split images at random 80/10/10 (``split="image"``, stratified by
label here); ``split="patient"`` keeps every patient's images on one side.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import ConfigError, DataError
from ..data import cache
from ..data.packed import PackedData, Split, TestSet
from ..data.split import check_splittable, three_way
from .base import Reader

if TYPE_CHECKING:
    import pandas as pd

CACHE_FORMAT = 1
SUBTYPES = {
    "A": ("benign", "adenosis"),
    "F": ("benign", "fibroadenoma"),
    "PT": ("benign", "phyllodes_tumor"),
    "TA": ("benign", "tubular_adenoma"),
    "DC": ("malignant", "ductal_carcinoma"),
    "LC": ("malignant", "lobular_carcinoma"),
    "MC": ("malignant", "mucinous_carcinoma"),
    "PC": ("malignant", "papillary_carcinoma"),
}
MAGNIFICATIONS = (40, 100, 200, 400)
NAME = re.compile(
    r"^(?P<procedure>[A-Z]+)_(?P<cls>[BM])_(?P<type>[A-Z]+)-(?P<year>\d+)-"
    r"(?P<patient>[0-9A-Za-z]+)-(?P<mag>\d+)-(?P<seq>\d+)\.(?i:png)$"
)
LAYOUT = ("BreaKHis_v1/histology_slides/breast/<benign|malignant>/SOB/<subtype>/"
          "<patient folder>/<40X|100X|200X|400X>/<file>.png")


def parse_name(path: str | Path) -> dict:
    """``{class, subtype, patient, magnification, label}`` of one BreakHis file."""
    path = Path(path)
    match = NAME.match(path.name)
    if not match:
        raise DataError(f"{path}: file name does not parse as "
                        f"<procedure>_<B|M>_<type>-<year>-<patient>-<mag>-<seq>.png "
                        f"(e.g. SOB_B_A-14-22549AB-40-001.png)")
    code = match["type"]
    if code not in SUBTYPES:
        raise DataError(f"{path}: unknown tumour type {code!r}; known: {', '.join(SUBTYPES)}")
    cls, subtype = SUBTYPES[code]
    if (cls == "benign") != (match["cls"] == "B"):
        raise DataError(f"{path}: class letter {match['cls']!r} disagrees with type {code!r}")
    mag = int(match["mag"])
    if mag not in MAGNIFICATIONS:
        raise DataError(f"{path}: magnification {mag} is not one of {MAGNIFICATIONS}")
    parts = path.parts
    for expected, where in ((cls, "class"), (subtype, "subtype"), (f"{mag}X", "magnification")):
        if expected not in parts:
            raise DataError(f"{path}: {where} {expected!r} from the file name is not in its "
                            "folder path")
    patient = f"{match['year']}-{match['patient']}"
    if len(parts) >= 3 and not parts[-3].endswith(patient):
        raise DataError(f"{path}: patient {patient!r} from the file name is not its folder "
                        f"{parts[-3]!r}")
    return {"class": cls, "subtype": subtype, "patient": patient,
            "magnification": mag, "label": int(cls == "malignant")}


def find_breast_root(root: str | Path) -> Path:
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file; give the folder holding BreaKHis_v1 (expected "
                        f"{LAYOUT})")
    for candidate in (root / "BreaKHis_v1" / "histology_slides" / "breast",
                      root / "histology_slides" / "breast", root):
        if (candidate / "benign").is_dir() and (candidate / "malignant").is_dir():
            return candidate
    raise DataError(
        f"no BreakHis data under {root}: expected {LAYOUT}. Download and unpack the "
        f"BreaKHis_v1 archive there, or make a synthetic set with "
        f"'kandel-repro data synthetic-breakhis --out {root}'"
    )


def read_index(root: str | Path) -> pd.DataFrame:
    """A DataFrame of every image: path, id, label, class, subtype, patient, magnification."""
    import pandas as pd

    breast = find_breast_root(root)
    rows = []
    for cls in ("benign", "malignant"):
        for path in sorted(p for p in (breast / cls).rglob("*") if p.suffix.lower() == ".png"):
            rows.append({"path": str(path), "id": path.stem,
                         **parse_name(path.relative_to(breast.parent))})
    if not rows:
        raise DataError(f"no PNG images under {breast} (expected {LAYOUT})")
    frame = pd.DataFrame(rows)
    dup = frame["id"][frame["id"].duplicated()]
    if len(dup):
        raise DataError(f"duplicate BreakHis file name {dup.iloc[0]!r} under {breast}")
    return frame


def decode_png(path: str | Path, size: int) -> np.ndarray:
    """Decode a BreakHis PNG as RGB and resize it to size×size."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR),
                              dtype=np.uint8)
    except Exception as exc:
        raise DataError(f"cannot decode {path}: {exc}") from None


@dataclass
class BreakHisData(PackedData):
    """BreakHis packed: ``x``/``y``/``ids`` hold every image; the split picks the
    training, validation and test rows (paper §4.3)."""

    patients: np.ndarray = None
    magnifications: np.ndarray = None

    def split(self, config: dict) -> Split:
        """Paper §4.3: 80/10/10, by image (the paper) or by patient; optionally one
        magnification only."""
        pool = np.arange(len(self.y))
        mag = config.get("magnification", "all")
        if mag != "all":
            if int(mag) not in MAGNIFICATIONS:
                raise ConfigError(f"magnification must be all or one of {MAGNIFICATIONS}, "
                                  f"got {mag!r}")
            pool = pool[self.magnifications == int(mag)]
            if not len(pool):
                raise DataError(f"{self.root} holds no {mag}X image; choose another "
                                "--magnification (or all)")
        check_splittable(self.y[pool], (config["validation_fraction"], config["test_fraction"]),
                         f"{self.root}" + ("" if mag == "all" else f" at {mag}X"),
                         seed=config["split_seed"],
                         by_image=config.get("split", "image") == "image")
        train, val, test = split_three(self.y[pool], self.patients[pool],
                                       config["validation_fraction"], config["test_fraction"],
                                       config["split_seed"], config.get("split", "image"))
        train, val, test = pool[train], pool[val], pool[test]
        return Split(train, val, TestSet(self.x, self.ids, indices=test, labels=self.y[test],
                                         auc_key="test_auc"))


def split_three(labels: np.ndarray, patients: np.ndarray, val_fraction: float,
                test_fraction: float, seed: int, kind: str = "image"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / validation / test, stratified by label.

    ``kind="image"`` splits images at random (the paper); ``kind="patient"`` keeps each
    patient's images on one side: :func:`~kandel_repro.data.split.three_way`, the split
    of every 80/10/10 data set, by image or by group.
    """
    if kind not in ("image", "patient"):
        raise ConfigError(f"split must be 'image' or 'patient', got {kind!r}")
    return three_way(labels, patients, val_fraction, test_fraction, seed,
                     "group" if kind == "patient" else "image", groups_named="patients",
                     option="--split patient")


def default_cache_dir(root: str | Path, size: int) -> Path:
    return Path(root) / ".kandel_cache" / f"breakhis-{size}"


ARRAYS = ("x", "y", "ids", "patients", "magnifications")


class BreakHisReader(Reader):
    """Every PNG of the layout, resized to ``image_size`` (default: the protocol's, 224;
    hashed with the files) into a cache of that size, and loaded as
    :class:`BreakHisData`."""

    layout = LAYOUT
    packed = BreakHisData
    index = staticmethod(read_index)

    def source(self, root: str | Path, cache_dir: str | Path | None, workers: int | None,
               progress: bool, image_size: int | None, **options: Any) -> cache.Source:
        size = image_size  # (the reader's image_side: the protocol's where not given)
        index = read_index(root)
        cache_dir = (Path(cache_dir) / f"breakhis-{size}" if cache_dir
                     else default_cache_dir(root, size))
        paths = index["path"].tolist()

        def build(manifest: dict) -> Path:
            return cache.build(
                cache_dir, {"x": paths}, functools.partial(decode_png, size=size),
                (size, size, 3), dict(manifest, n=len(paths)),
                extra_arrays={"y": index["label"].to_numpy(np.int8),
                              "ids": index["id"].to_numpy(str),
                              "patients": index["patient"].to_numpy(str),
                              "magnifications": index["magnification"].to_numpy(np.int16)},
                workers=workers, progress=progress, desc=f"packing {root} at {size}×{size}")

        return cache.Source(Path(root), cache_dir, "breakhis", CACHE_FORMAT, ARRAYS, paths,
                            build, extra=f"size={size}".encode())

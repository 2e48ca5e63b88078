"""A deterministic synthetic PCam written in the layout of the original HDF5 release.

``write_synthetic_pcam_h5(out, n_train, n_valid, n_test, seed, size)`` writes the six
files :mod:`kandel_repro.readers.pcam_h5` reads — ``camelyonpatch_level_2_split_{train,
valid,test}_{x,y}.h5.gz``, gzipped as the release is distributed, with the dataset keys
``x`` (N×size×size×3 uint8) and ``y`` (N×1×1×1 uint8) — and ``SYNTHETIC.json``. The
patches are those of :mod:`kandel_repro.readers.synthetic.pcam` (PCam's centre rule decides the
label); each split is half positive, like the release's.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from ...core.errors import DataError
from ...core.files import write_json
from ...data.layouts import MARKER, PREFIX, SPLITS
from .pcam import made_before, staging, synthetic_patch

FORMAT_VERSION = 1


def write_synthetic_pcam_h5(out: str | Path, n_train: int = 1000, n_valid: int = 200,
                            n_test: int = 200, seed: int = 0, size: int = 96,
                            progress: bool = True) -> Path:
    """Write (or reuse) a synthetic set in the HDF5 release's layout; return its folder."""
    import h5py
    from tqdm.auto import tqdm

    out = Path(out)
    params = {"format": FORMAT_VERSION, "kind": "pcam-h5", "train": int(n_train),
              "valid": int(n_valid), "test": int(n_test), "seed": int(seed), "size": int(size)}
    for name, value in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        if int(value) < 2:
            raise DataError(f"--{name} must be at least 2 (both classes), got {value}")
    if int(size) < 16:
        raise DataError(f"--size must be at least 16 pixels, got {size}")
    if made_before(out, params):
        return out
    with staging(out) as tmp:
        counts = {"train": int(n_train), "valid": int(n_valid), "test": int(n_test)}
        with tqdm(total=sum(counts.values()), desc="synthetic PCam (HDF5)", unit="img",
                  disable=not progress) as bar:
            for part, split in enumerate(SPLITS):
                n = counts[split]
                labels = np.zeros(n, dtype=np.uint8)
                labels[: n // 2] = 1
                np.random.default_rng([seed, 13, part]).shuffle(labels)
                x = np.empty((n, size, size, 3), dtype=np.uint8)
                for i, label in enumerate(labels):
                    x[i] = synthetic_patch(np.random.default_rng([seed, 17, part, i]), size,
                                           int(label))
                    bar.update()
                for key, value in (("x", x), ("y", labels.reshape(n, 1, 1, 1))):
                    raw = tmp / f"{PREFIX}{split}_{key}.h5"
                    with h5py.File(raw, "w") as f:
                        f.create_dataset(key, data=value)
                    with open(raw, "rb") as src, gzip.GzipFile(raw.with_name(raw.name + ".gz"),
                                                               "wb", mtime=0) as dst:
                        shutil.copyfileobj(src, dst)
                    raw.unlink()
        write_json(tmp / MARKER, {"params": params,
                                  "note": "synthetic PCam-like data in the layout of the HDF5 "
                                          "release, made by kandel_repro; not PCam"})
    return out

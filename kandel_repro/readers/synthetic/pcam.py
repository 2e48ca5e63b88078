"""A deterministic synthetic PCam written in the real Kaggle layout.

``write_synthetic_pcam(out, n_train, n_test, seed)`` writes::

    out/train/<id>.tif          RGB TIFF, size×size (96 like PCam by default)
    out/train_labels.csv        id,label
    out/test/<id>.tif
    out/sample_submission.csv   id,label (label 0 for every id, as Kaggle's file)
    out/SYNTHETIC.json          marker: generator parameters (not part of Kaggle's layout)
    out/synthetic_test_labels.csv  the hidden test labels, for offline scoring

so the same reader, packer and training code run on it as on the Kaggle files.

The images imitate H&E: pink eosin stroma with fibrous texture and scattered purple
nuclei; a *tumour-like structure* is a blob of large, dark, crowded nuclei. PCam's rule
decides the label: 1 iff the tumour structure touches the centre region (the centre
32×32 of a 96×96 patch, one third of the side in general). Most negatives hold a tumour
structure outside the centre, and stain, brightness and nucleus density vary between
images, so per-image mean colour says little about the label and a model must look at
where the structure is.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...core.errors import DataError
from ...core.files import check_writable, remove_stale_staging, staging_path, write_json
from ...data.layouts import HIDDEN_LABELS, MARKER, WSI_MAP

FORMAT_VERSION = 1
# Fraction of negatives that hold a tumour structure outside the centre region.
NEGATIVE_WITH_OUTSIDE_TUMOUR = 0.75
POSITIVE_FRACTION = 0.405  # Kaggle: 89,117 of 220,025 labels are 1


@contextlib.contextmanager
def staging(out: str | Path) -> Iterator[Path]:
    """A new, empty temporary folder beside ``out`` (new, or an empty folder) to write a
    set in, moved onto ``out`` when the body succeeds and removed on any error or
    interrupt. ``out``'s parent is checked writable first (a one-line error naming
    ``--out``), and the temporary folders of writers of this host that died
    (``kill -9``) are removed (and those of earlier versions, named without the host)."""
    out = Path(os.path.abspath(out))  # (a name, also for "." and "..")
    check_writable(out.parent, "--out")
    remove_stale_staging(out, hostless=True)
    tmp = staging_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty, checked by the writer
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def centre_slice(size: int) -> slice:
    """The centre region that decides the label (32 of 96 pixels for PCam)."""
    lo = size // 3
    return slice(lo, size - lo)


def smooth_noise(rng, size, cells):
    """A smooth random field in [0, 1] by bilinear upsampling of a coarse grid."""
    grid = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0, cells, size, endpoint=False)
    i0 = np.floor(coords).astype(int)
    frac = coords - i0
    rows = grid[i0] * (1 - frac)[:, None] + grid[i0 + 1] * frac[:, None]
    return rows[:, i0] * (1 - frac)[None, :] + rows[:, i0 + 1] * frac[None, :]


def paint_discs(img, rng, yy, xx, centres, radii, colour, alpha, mask=None):
    """Blend discs of ``colour`` (at ``alpha``, its shade drawn by ``rng`` per disc) into
    ``img`` in place, at ``centres`` with ``radii`` on the pixel grid ``yy``, ``xx``
    (inside ``mask`` where given)."""
    for (cy, cx), r in zip(centres, radii):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if mask is not None:
            disc &= mask
        shade = colour * rng.uniform(0.85, 1.15)
        img[disc] = img[disc] * (1 - alpha) + shade * alpha


def _tumour_mask(rng, size, yy, xx, centre, radius):
    angle = np.arctan2(yy - centre[0], xx - centre[1])
    wobble = sum(
        rng.uniform(0.05, 0.15) * np.sin(k * angle + rng.uniform(0, 2 * np.pi))
        for k in (2, 3, 5)
    )
    dist = np.sqrt((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2)
    return dist <= radius * (1 + wobble)


def _place_tumour(rng, size, yy, xx, label):
    """Draw a tumour mask that touches the centre iff ``label`` is 1."""
    centre_region = centre_slice(size)
    for _ in range(1000):
        radius = rng.uniform(size / 10, size / 6)
        if label:
            lo, hi = size / 3 - radius * 0.8, size * 2 / 3 + radius * 0.8
            centre = rng.uniform(lo, hi, size=2)
        else:
            centre = rng.uniform(0, size, size=2)
        mask = _tumour_mask(rng, size, yy, xx, centre, radius)
        touches = mask[centre_region, centre_region].any()
        if mask.sum() > 0.25 * np.pi * radius**2 and bool(touches) == bool(label):
            return mask, centre, radius
    raise RuntimeError("could not place a tumour structure")  # pragma: no cover


def synthetic_patch(rng: np.random.Generator, size: int, label: int) -> np.ndarray:
    """One RGB uint8 patch whose label follows PCam's centre rule."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Stain and brightness vary per image, as between slides and scanners.
    eosin = np.array([232.0, 150.0, 195.0]) * rng.uniform(0.85, 1.08, size=3)
    haem = np.array([105.0, 55.0, 150.0]) * rng.uniform(0.8, 1.2, size=3)
    texture = smooth_noise(rng, size, cells=max(2, size // 12))
    angle = rng.uniform(0, np.pi)
    fibres = 0.5 + 0.5 * np.sin(
        (xx * np.cos(angle) + yy * np.sin(angle)) * rng.uniform(0.3, 0.8) * 32 / size * 2
        + 6 * texture
    )
    img = eosin[None, None, :] * (0.82 + 0.12 * texture[..., None] + 0.08 * fibres[..., None])

    # Scattered normal nuclei, density varying per image.
    density = rng.uniform(0.5, 2.2)
    n_nuclei = rng.poisson(density * size * size / 120)
    centres = rng.uniform(0, size, size=(n_nuclei, 2))
    radii = rng.uniform(max(0.7, size / 80), max(1.0, size / 40), size=n_nuclei)
    paint_discs(img, rng, yy, xx, centres, radii, haem, alpha=0.75)

    has_tumour = label == 1 or rng.random() < NEGATIVE_WITH_OUTSIDE_TUMOUR
    if has_tumour:
        mask, centre, radius = _place_tumour(rng, size, yy, xx, label)
        img[mask] = img[mask] * 0.7 + haem * 0.3  # purple tint of the crowded region
        n_tumour = max(3, int(mask.sum() / (size / 16) ** 2 * 0.6))
        t_centres = centre + rng.normal(0, radius * 0.6, size=(n_tumour, 2))
        t_radii = rng.uniform(max(1.0, size / 32), max(1.5, size / 18), size=n_tumour)
        paint_discs(img, rng, yy, xx, t_centres, t_radii, haem * 0.55, alpha=0.9, mask=mask)
    img *= rng.uniform(0.9, 1.1)
    img += rng.normal(0, 4.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_id(seed: int, split: str, index: int) -> str:
    """A 40-hex id like Kaggle's, deterministic in (seed, split, index)."""
    return hashlib.sha1(f"kandel-synthetic-{seed}-{split}-{index}".encode()).hexdigest()


def _labels(rng, n):
    labels = np.zeros(n, dtype=np.int64)
    labels[: int(round(n * POSITIVE_FRACTION))] = 1
    rng.shuffle(labels)
    return labels


def _slides(seed, n, count, first):
    """``(slide of each patch, labels)`` for ``n`` patches on ``count`` slides numbered
    from ``first``: each slide has a tumour prevalence of its own (from nearly none to
    mostly tumour, 40 % on average, as PCam's), so a slide's stain tells something of
    its labels — the leak a split by slide closes."""
    rng = np.random.default_rng([seed, 23, first])
    prevalence = rng.beta(0.8, 1.18, size=count)
    slide = first + rng.integers(0, count, size=n)
    labels = (rng.random(n) < prevalence[slide - first]).astype(np.int64)
    return slide, labels


def slide_stain(seed: int, slide: int) -> np.ndarray:
    """A slide's stain: one multiplier per RGB channel, as between slides and scanners."""
    return np.random.default_rng([seed, 21, int(slide)]).uniform(0.82, 1.18, size=3)


def made_before(out: Path, params: dict) -> bool:
    """True when ``out`` already holds the synthetic set ``params`` describe (reuse it);
    a :class:`DataError` when it is a file, a set made with other parameters, or a folder
    holding anything else; False when it is new or empty (write it)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; --out must be a folder (new, or one this command made)")
    marker = out / MARKER
    if marker.exists():
        existing = json.loads(marker.read_text())
        if existing.get("params") == params:
            return True
        raise DataError(f"{out} already holds a synthetic set made with {existing.get('params')}, "
                        f"not {params}; choose another --out or delete that folder")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not a synthetic set; choose another --out")
    return False


def write_synthetic_pcam(out: str | Path, n_train: int = 2000, n_test: int = 500, seed: int = 0,
                         size: int = 96, progress: bool = True, slides: int = 0) -> Path:
    """Write (or reuse) a synthetic set in the Kaggle layout; return its folder.

    ``slides`` > 0: the patches come from that many synthetic slides (and the test
    patches from a quarter as many others), each with its own stain and tumour
    prevalence, and ``patch_id_wsi.csv`` (``id,wsi``) maps every labelled patch to its
    slide, as the community file does for Kaggle's data. ``slides=0`` (default): the
    images and labels of earlier versions, no slides.

    A folder already holding a complete set made with the same parameters is reused;
    one made with other parameters is an error (it is never overwritten silently).
    """
    import pandas as pd
    from PIL import Image
    from tqdm.auto import tqdm

    out = Path(out)
    params = {"format": FORMAT_VERSION, "train": int(n_train), "test": int(n_test),
              "seed": int(seed), "size": int(size)}
    if slides:
        params["slides"] = int(slides)  # absent for sets without slides, as before
        if int(slides) < 5:
            raise DataError(f"--slides must be at least 5 (a slide-level 80/20 split needs "
                            f"5), got {slides}")
    for name, value in (("train", n_train), ("test", n_test)):
        if int(value) < 1:
            raise DataError(f"--{name} must be at least 1, got {value}")
    if int(size) < 16:
        raise DataError(f"--size must be at least 16 pixels, got {size}")
    if made_before(out, params):
        return out

    with staging(out) as tmp:
        (tmp / "train").mkdir()
        (tmp / "test").mkdir()
        label_rng = np.random.default_rng([seed, 7])
        splits = {"train": _labels(label_rng, n_train), "test": _labels(label_rng, n_test)}
        slide_of = {}
        if slides:
            test_slides = max(1, int(slides) // 4)
            slide_of["train"], splits["train"] = _slides(seed, n_train, int(slides), 0)
            slide_of["test"], splits["test"] = _slides(seed, n_test, test_slides, int(slides))
        tables = {}
        total = n_train + n_test
        with tqdm(total=total, desc="synthetic PCam", unit="img", disable=not progress) as bar:
            for split_index, (split, labels) in enumerate(splits.items()):
                ids = []
                for index, label in enumerate(labels):
                    rng = np.random.default_rng([seed, split_index, index])
                    image_id = synthetic_id(seed, split, index)
                    patch = synthetic_patch(rng, size, int(label))
                    if slides:
                        stain = slide_stain(seed, slide_of[split][index])
                        patch = np.clip(patch * stain, 0, 255).astype(np.uint8)
                    Image.fromarray(patch).save(tmp / split / f"{image_id}.tif", format="TIFF")
                    ids.append(image_id)
                    bar.update()
                tables[split] = pd.DataFrame({"id": ids, "label": labels})
        tables["train"].to_csv(tmp / "train_labels.csv", index=False)
        tables["test"].assign(label=0).to_csv(tmp / "sample_submission.csv", index=False)
        tables["test"].to_csv(tmp / HIDDEN_LABELS, index=False)
        if slides:
            pd.DataFrame({"id": tables["train"]["id"],
                          "wsi": [f"synthetic_slide_{k:03d}" for k in slide_of["train"]]}).to_csv(
                tmp / WSI_MAP, index=False)
        write_json(tmp / MARKER, {
            "params": params,
            "note": "synthetic PCam-like data made by kandel_repro; not the Kaggle data",
            "hidden_test_labels": HIDDEN_LABELS,
        })
    return out

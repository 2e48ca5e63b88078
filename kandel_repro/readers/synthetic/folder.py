"""A deterministic synthetic multi-class set in the ``folder`` layout, with its manifest.

``write_synthetic_folder(out, classes, images, patients, ...)`` writes::

    out/<class>/<patient>-<n>.<ext>   ``images`` per class, RGB, size×size
    out/manifest.csv                  path,label,group (group: the patient), for --dataset csv
    out/SYNTHETIC.json                marker: the generator's parameters

so that both own-data readers (``--dataset folder`` on ``out``, ``--dataset csv`` on
``out/manifest.csv``) run on it. The classes are tissue-like, named after the Kather
colorectal tissue classes (tumour, stroma, lymphocytes, normal mucosa, adipose, mucus,
muscle, debris, background; the first ``classes`` of them): each has a colour and a
texture of its own (nuclei of a size and density, fibres, glands, fat vacuoles). Every
patient has images of every class and a stain of their own, and each image is drawn
part-way towards another class's look and carries noise, so that the classes overlap:
a small CNN learns them well above chance in a few epochs, not perfectly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import DataError
from ...core.files import write_json, write_text
from ...data.layouts import MARKER
from .pcam import made_before, paint_discs, smooth_noise, staging

FORMAT_VERSION = 1
MANIFEST = "manifest.csv"
FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "tif": "tif", "tiff": "tif", "bmp": "bmp"}
# name: (base colour, nuclei per 100 px², nucleus radius at 64 px, nucleus darkness,
#        fibres, glands, vacuoles)
CLASSES = {
    "tumour": ((200, 120, 185), 2.6, 2.4, 0.55, 0.0, 0, 0),
    "stroma": ((232, 150, 190), 0.4, 1.2, 0.75, 1.0, 0, 0),
    "lymphocytes": ((215, 160, 205), 4.5, 1.2, 0.40, 0.0, 0, 0),
    "normal": ((225, 165, 200), 0.6, 1.5, 0.60, 0.2, 4, 0),
    "adipose": ((238, 215, 228), 0.1, 1.0, 0.70, 0.0, 0, 9),
    "mucus": ((200, 185, 225), 0.2, 1.0, 0.75, 0.3, 0, 0),
    "muscle": ((225, 110, 150), 0.5, 1.6, 0.65, 0.7, 0, 0),
    "debris": ((210, 140, 175), 1.6, 0.9, 0.60, 0.2, 0, 3),
    "background": ((228, 225, 230), 0.05, 1.0, 0.85, 0.0, 0, 0),
}
HAEMATOXYLIN = np.array([105.0, 55.0, 150.0])


def synthetic_tissue(rng: np.random.Generator, size: int, cls: str, other: str,
                     mix: float, stain: np.ndarray) -> np.ndarray:
    """One RGB uint8 image of class ``cls``, drawn ``mix`` of the way towards class
    ``other``'s look, in a patient's ``stain`` (per-channel factors)."""
    look = [np.asarray(a, float) * (1 - mix) + np.asarray(b, float) * mix
            for a, b in zip(CLASSES[cls], CLASSES[other])]
    base, density, radius, darkness, fibres, glands, vacuoles = look
    scale = size / 64
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = smooth_noise(rng, size, cells=max(2, size // 10))
    angle = rng.uniform(0, np.pi)
    waves = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.9 / scale
                               + 5 * texture)
    img = base * stain * (0.88 + 0.12 * texture[..., None] - 0.18 * fibres * waves[..., None])
    for _ in range(int(round(float(vacuoles) * rng.uniform(0.6, 1.4)))):
        centre = rng.uniform(0, size, 2)
        hole = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (rng.uniform(5, 10) * scale) ** 2
        img[hole] = img[hole] * 0.2 + np.array([248.0, 246.0, 248.0]) * 0.8
    for _ in range(int(round(float(glands) * rng.uniform(0.5, 1.5)))):
        centre, ring_radius = rng.uniform(0, size, 2), rng.uniform(5, 9) * scale
        lumen = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (ring_radius * 0.6) ** 2
        img[lumen] = img[lumen] * 0.3 + np.array([245.0, 235.0, 240.0]) * 0.7
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False) + rng.uniform(0, 1)
        ring = centre + ring_radius * np.stack([np.sin(angles), np.cos(angles)], 1)
        paint_discs(img, rng, yy, xx, ring, np.full(len(ring), 1.3 * scale),
                     HAEMATOXYLIN * stain, alpha=0.8)
    count = rng.poisson(float(density) * size * size / 100 * rng.uniform(0.6, 1.4))
    centres = rng.uniform(0, size, size=(count, 2))
    radii = float(radius) * scale * rng.uniform(0.7, 1.3, size=count)
    paint_discs(img, rng, yy, xx, centres, radii, HAEMATOXYLIN * stain * float(darkness) * 1.4,
                 alpha=0.8)
    img *= rng.uniform(0.88, 1.12)
    img += rng.normal(0, 10.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_folder(out: str | Path, classes: int = 3, images: int = 48,
                           patients: int = 12, size: int = 64, seed: int = 0,
                           image_format: str = "png", progress: bool = True) -> Path:
    """Write (or reuse) a synthetic set of ``classes`` tissue classes, ``images`` per
    class spread over ``patients`` patients (each with images of every class), in the
    folder layout plus ``manifest.csv``; return ``out``.

    Reused when ``out`` already holds one made with the same parameters; another set,
    or a folder holding anything else, is an error.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    out = Path(out)
    ext = FORMATS.get(str(image_format).lower())
    if ext is None:
        raise DataError(f"--format must be one of {', '.join(sorted(set(FORMATS.values())))}, "
                        f"got {image_format!r}")
    if not 2 <= int(classes) <= len(CLASSES):
        raise DataError(f"--classes must be from 2 to {len(CLASSES)}, got {classes}")
    if not 1 <= int(patients) <= int(images):
        raise DataError(f"--patients must be from 1 to --images ({images}), got {patients}")
    if int(size) < 8:
        raise DataError(f"--size must be at least 8 pixels, got {size}")
    params = {"format": FORMAT_VERSION, "kind": "folder", "classes": int(classes),
              "images": int(images), "patients": int(patients), "size": int(size),
              "seed": int(seed), "image_format": ext}
    if made_before(out, params):
        return out
    names = list(CLASSES)[:int(classes)]
    lines = ["path,label,group"]
    with staging(out) as tmp:
        with tqdm(total=len(names) * int(images), desc="synthetic folder", unit="img",
                  disable=not progress) as bar:
            stains = [np.random.default_rng([seed, 7, p]).uniform(0.85, 1.15, 3)
                      for p in range(int(patients))]
            for c, name in enumerate(names):
                (tmp / name).mkdir()
                for i in range(int(images)):
                    patient, n = i % int(patients), i // int(patients)
                    rng = np.random.default_rng([seed, c, i])
                    other = names[(c + 1 + int(rng.integers(len(names) - 1))) % len(names)]
                    array = synthetic_tissue(rng, int(size), name, other,
                                             float(rng.uniform(0, 0.5)), stains[patient])
                    relative = f"{name}/P{patient + 1:02d}-{n + 1:03d}.{ext}"
                    Image.fromarray(array).save(tmp / relative,
                                                **({"quality": 92} if ext == "jpg" else {}))
                    lines.append(f"{relative},{name},P{patient + 1:02d}")
                    bar.update()
        # (rows in the order the folder reader finds the files: the same arrays)
        write_text(tmp / MANIFEST, "\n".join([lines[0]] + sorted(lines[1:])) + "\n")
        write_json(tmp / MARKER, {"params": params, "note": "synthetic tissue-like data made "
                                                            "by kandel_repro; not real tissue"})
    return out

"""A deterministic synthetic BreakHis written in the real ``BreaKHis_v1`` layout.

``write_synthetic_breakhis(out, ...)`` writes 700×460 RGB PNGs under
``out/BreaKHis_v1/histology_slides/breast/<benign|malignant>/SOB/<subtype>/
SOB_<B|M>_<type>_<patient>/<mag>X/SOB_<B|M>_<type>-<patient>-<mag>-<seq>.png`` for the
eight subtypes, several patients each and the four magnifications, plus a
``SYNTHETIC.json`` marker in ``out``. Benign tissue shows glands (rings of small
nuclei around a pale lumen) in pink stroma; malignant tissue shows sheets of large,
dark, crowded, irregular nuclei. Each patient has a stain of its own, so images of one
patient resemble each other — what makes a patient-level split harder than an image one.
Structures scale with the magnification. Images are drawn at a quarter of the
resolution and upsampled, which keeps generation fast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import DataError
from ...core.files import write_json
from ...data.layouts import MARKER
from ..breakhis import MAGNIFICATIONS, SUBTYPES
from .pcam import made_before, paint_discs, smooth_noise, staging

FORMAT_VERSION = 1
WIDTH, HEIGHT = 700, 460
SCALE = 4  # drawn at 175×115, upsampled to 700×460


def synthetic_image(rng: np.random.Generator, stain: tuple[np.ndarray, np.ndarray],
                    malignant: bool, magnification: int) -> np.ndarray:
    h, w = HEIGHT // SCALE, WIDTH // SCALE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    eosin, haem = stain
    texture = smooth_noise(rng, max(h, w), cells=12)[:h, :w]
    img = eosin[None, None, :] * (0.85 + 0.15 * texture[..., None])
    zoom = magnification / 100.0
    if malignant:
        n = int(rng.integers(60, 110) / zoom ** 0.5)
        centres = rng.uniform(0, [h, w], size=(n, 2))
        radii = rng.uniform(1.5, 3.5, size=n) * zoom ** 0.5
        paint_discs(img, rng, yy, xx, centres, radii, haem * 0.6, alpha=0.85)
        paint_discs(img, rng, yy, xx, centres + rng.normal(0, 2, centres.shape),
                     radii * 0.8, haem * 0.45, alpha=0.6)
    else:
        for _ in range(int(rng.integers(3, 7))):
            centre = rng.uniform(0, [h, w])
            radius = rng.uniform(6, 12) * zoom ** 0.5
            lumen = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (radius * 0.6) ** 2
            img[lumen] = img[lumen] * 0.3 + np.array([245.0, 235.0, 240.0]) * 0.7
            angles = np.linspace(0, 2 * np.pi, 14, endpoint=False) + rng.uniform(0, 1)
            ring = centre + radius * np.stack([np.sin(angles), np.cos(angles)], 1)
            paint_discs(img, rng, yy, xx, ring, np.full(len(ring), 1.2 * zoom ** 0.3), haem,
                        alpha=0.8)
        scattered = rng.uniform(0, [h, w], size=(int(rng.integers(20, 40)), 2))
        paint_discs(img, rng, yy, xx, scattered, np.full(len(scattered), 1.0), haem, alpha=0.7)
    img += rng.normal(0, 3.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_breakhis(out: str | Path, patients_per_subtype: int = 3,
                             images_per_magnification: int = 4, seed: int = 0,
                             progress: bool = True) -> Path:
    """Write (or reuse) a synthetic BreakHis; return ``out``.

    Reused when ``out`` already holds one made with the same parameters; a different
    one there is an error.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    out = Path(out)
    params = {"format": FORMAT_VERSION, "kind": "breakhis", "seed": int(seed),
              "patients_per_subtype": int(patients_per_subtype),
              "images_per_magnification": int(images_per_magnification)}
    if patients_per_subtype < 1 or images_per_magnification < 1:
        raise DataError(f"patients per subtype and images per magnification must be ≥ 1, "
                        f"got {patients_per_subtype} and {images_per_magnification}")
    if made_before(out, params):
        return out
    with staging(out) as tmp:
        breast = tmp / "BreaKHis_v1" / "histology_slides" / "breast"
        total = (len(SUBTYPES) * patients_per_subtype * len(MAGNIFICATIONS)
                 * images_per_magnification)
        with tqdm(total=total, desc="synthetic BreakHis", unit="img", disable=not progress) as bar:
            for type_index, (code, (cls, subtype)) in enumerate(SUBTYPES.items()):
                letter = "M" if cls == "malignant" else "B"
                for p in range(patients_per_subtype):
                    patient = f"14-{10000 + 100 * type_index + p}"
                    prng = np.random.default_rng([seed, type_index, p])
                    stain = (np.array([232.0, 150.0, 195.0]) * prng.uniform(0.85, 1.08, 3),
                             np.array([105.0, 55.0, 150.0]) * prng.uniform(0.8, 1.2, 3))
                    for mag in MAGNIFICATIONS:
                        folder = (breast / cls / "SOB" / subtype
                                  / f"SOB_{letter}_{code}_{patient}" / f"{mag}X")
                        folder.mkdir(parents=True)
                        for seq in range(1, images_per_magnification + 1):
                            rng = np.random.default_rng([seed, type_index, p, mag, seq])
                            small = synthetic_image(rng, stain, cls == "malignant", mag)
                            image = Image.fromarray(small).resize((WIDTH, HEIGHT), Image.BILINEAR)
                            image.save(
                                folder / f"SOB_{letter}_{code}-{patient}-{mag}-{seq:03d}.png",
                                compress_level=1)
                            bar.update()
        write_json(tmp / MARKER, {"params": params, "note": "synthetic BreakHis-like data made "
                                                            "by kandel_repro; not BreakHis"})
    return out

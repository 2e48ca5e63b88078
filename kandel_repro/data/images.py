"""Decoding any image file of a user's own data into the RGB uint8 array a model reads.

:func:`decode_image` reads, by extension (in any case), PNG (``.png``), JPEG (``.jpg``,
``.jpeg``), TIFF (``.tif``, ``.tiff``; a multi-page TIFF gives its first page, the full
image of a pyramid), BMP (``.bmp``) and DICOM (``.dcm``, with the optional pydicom:
``pip install 'kandel_repro[dicom]'``); :data:`EXTENSIONS` lists them. Whatever the
file holds, the result is ``size``×``size``×3 uint8:

- EXIF orientation is applied (a phone's portrait photo stands upright);
- gray images give three equal channels, alpha is dropped, palette images are
  expanded, CMYK is converted to RGB;
- images of more than 8 bits (16-bit TIFF and PNG, 32-bit integer or float TIFF, DICOM)
  are brought to 8 bits by **per-image min–max** (lowest value → 0, highest → 255, a
  constant image → 0) unless a fixed ``window`` (center, width) is given: values below
  center − width/2 → 0, above center + width/2 → 255, linear between (the DICOM
  convention). Min–max is the default because it needs nothing but the image: it works
  for any bit depth and value range (a 12-bit scanner's data in a 16-bit file, a
  microscope's floats) and never maps a whole image to black or white, where a fixed
  rule would have to know the scanner. Its cost is that a pixel value means a different
  gray in different images; a ``window`` keeps values comparable across images;
- a DICOM file's modality LUT (RescaleSlope/Intercept) is applied, then ``window`` if
  given, else the file's own VOI LUT or WindowCenter/WindowWidth, else min–max;
  MONOCHROME1 (white is low) is inverted; RGB passes through; a multi-frame file (a
  volume, a cine loop) is refused: one image per file;
- the image is resized to ``size``×``size``, bilinear, without keeping the aspect ratio
  (as BreakHis' images are, and as Keras' ``image_dataset_from_directory`` does).

A file that cannot be decoded (truncated, corrupt) is a :class:`DataError` naming it.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataError

PIL_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_EXTENSIONS = (".dcm",)
EXTENSIONS = PIL_EXTENSIONS + DICOM_EXTENSIONS
HIGH_DEPTH_MODES = ("I", "F")  # and every "I;16…": PIL's modes of more than 8 bits
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def is_image(path: str | Path) -> bool:
    """Whether ``path``'s extension is one :func:`decode_image` reads."""
    return Path(path).suffix.lower() in EXTENSIONS


def check_window(window: Sequence[float] | None) -> tuple[float, float] | None:
    """``window`` as ``(center, width)`` floats (None stays None), or a
    :class:`ConfigError` when it is not two finite numbers with a positive width."""
    if window is None:
        return None
    try:
        center, width = (float(value) for value in window)
    except (TypeError, ValueError):
        raise ConfigError(f"--window takes two numbers, CENTER,WIDTH (e.g. 40,400), "
                          f"got {window!r}") from None
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ConfigError(f"--window CENTER,WIDTH needs finite numbers and a width above 0, "
                          f"got {center:g} {width:g}")
    return center, width


def to_8bit(values: np.ndarray, window: Sequence[float] | None = None) -> np.ndarray:
    """``values`` (any depth) as uint8: by ``window`` (center, width) when given, else
    per-image min–max (a constant image, or one without a finite value, → 0)."""
    values = np.asarray(values, dtype=np.float64)
    if window is not None:
        center, width = window
        scaled = (values - (center - width / 2)) / width
    else:
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.clip(np.rint(np.nan_to_num(scaled * 255.0, nan=0.0)), 0, 255).astype(np.uint8)


def _stretch(values, low, high):
    """``values`` mapped linearly from [low, high] to [0, 255]."""
    low, high = min(low, high), max(low, high)
    if high <= low:
        return np.zeros(np.shape(values), np.uint8)
    scaled = (np.asarray(values, np.float64) - low) / (high - low) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray):
    return np.repeat(gray[..., None], 3, axis=2)


def _read_pil(path, window):
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()  # a truncated file raises here
        img = ImageOps.exif_transpose(img)
    if img.mode in HIGH_DEPTH_MODES or img.mode.startswith("I;16"):
        return _gray_to_rgb(to_8bit(np.asarray(img), window))
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _voi_functions():
    """pydicom's modality and VOI LUT functions: ``pydicom.pixels`` (3.x) or
    ``pydicom.pixel_data_handlers.util`` (2.x)."""
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _file_window(values, ds, apply_voi_lut):
    """``values`` through the file's VOI LUT or window, as uint8; None if it has neither.
    The output range is the LUT's (its entries' extremes) or the window's (what it maps
    values far below and far above to), which depends on the file's bit depth."""
    sequence = ds.get("VOILUTSequence")
    if sequence and sequence[0].get("LUTDescriptor") and sequence[0].get("LUTData") is not None:
        descriptor = [int(value) for value in sequence[0].LUTDescriptor]
        entries, first = descriptor[0] or 2 ** 16, descriptor[1]
        if descriptor[2] == 8:
            # NOTE: pydicom indexes an 8-bit LUT with uint8, which wraps past 256 entries;
            # its entries read as 16 bits are the same values
            item = copy.copy(sequence[0])
            item.LUTDescriptor = descriptor[:2] + [16]
            ds = copy.copy(ds)
            ds.VOILUTSequence = [item]
        ends = apply_voi_lut(np.arange(first, first + entries), ds)
        out = apply_voi_lut(np.rint(values).astype(np.int64), ds)
        return _stretch(out, float(ends.min()), float(ends.max()))
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        with np.errstate(over="ignore"):
            ends = apply_voi_lut(np.array([-1e300, 1e300]), ds)
            out = apply_voi_lut(np.asarray(values, np.float64), ds)
        return _stretch(out, float(ends[0]), float(ends[1]))
    return None


def _read_dicom(path, window):
    try:
        import pydicom
    except ImportError:
        raise DataError(f"reading DICOM ({path}) needs pydicom: "
                        "pip install 'kandel_repro[dicom]'") from None
    apply_modality_lut, apply_voi_lut = _voi_functions()
    ds = pydicom.dcmread(path, force=True)
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise DataError(f"{path} has no pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(f"{path} holds {frames} frames (a multi-frame DICOM); one image per "
                        "file is read: save the frame to use as a file of its own")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    pixels = ds.pixel_array
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        values = apply_modality_lut(pixels, ds)
        gray = to_8bit(values, window) if window is not None else None
        if gray is None:
            gray = _file_window(values, ds, apply_voi_lut)
        if gray is None:
            gray = to_8bit(values)
        return _gray_to_rgb(255 - gray if photometric == "MONOCHROME1" else gray)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # RGB (YBR is converted by pydicom)
        if pixels.dtype != np.uint8:
            pixels = _stretch(pixels, 0, 2 ** int(ds.get("BitsStored", 16)) - 1)
        return pixels
    raise DataError(f"{path}: photometric interpretation {photometric} is not read; save "
                    "the image as MONOCHROME2 or RGB")


def decode_image(path: str | Path, size: int,
                 window: Sequence[float] | None = None) -> np.ndarray:
    """One image file as a ``size``×``size``×3 uint8 array, by the rules of this module;
    ``window``: a fixed (center, width) for images of more than 8 bits (else min–max, or
    a DICOM file's own window). Top-level, so that a ``functools.partial`` of it decodes
    in the packing workers. A file that cannot be read is a :class:`DataError` naming it."""
    from PIL import Image

    window = check_window(window)
    suffix = Path(path).suffix.lower()
    try:
        if suffix in DICOM_EXTENSIONS:
            rgb = _read_dicom(path, window)
        elif suffix in PIL_EXTENSIONS:
            rgb = _read_pil(path, window)
        else:
            raise DataError(f"{path}: {suffix or 'no extension'} is not an image kind read "
                            f"here ({', '.join(EXTENSIONS)})")
        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
        return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the file's
        raise DataError(f"cannot decode {path}: {exc}") from None

"""The pixel-level rules every image reader shares (:mod:`.images` for the files Pillow or
tifffile reads, :mod:`.dicom` for DICOM): the largest image decoded (a guard against
decompression bombs, raised by :data:`LIMIT_VARIABLE` or ``--max-image-pixels``),
values of any depth brought to 8 bits (:func:`to_8bit`: per-image min–max, or a fixed
window), and gray as three channels."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataError

LIMIT_VARIABLE = "KANDEL_MAX_IMAGE_PIXELS"
# NOTE: Pillow's own refusal point: it raises DecompressionBombError above twice its
# Image.MAX_IMAGE_PIXELS (89,478,485); below that it only warns.
DEFAULT_PIXEL_LIMIT = 178_956_970


def check_pixel_limit(value: int | str, source: str = "--max-image-pixels") -> int:
    """``value`` as the largest number of pixels an image may have, or a
    :class:`ConfigError` naming ``source`` when it is not a whole number above 0."""
    try:
        limit = int(str(value).strip().replace(",", "").replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"{source} takes a whole number of pixels above 0, got {value!r}")
    return limit


def max_image_pixels() -> int:
    """The largest image decoded, in pixels: :data:`LIMIT_VARIABLE` when it is set,
    else :data:`DEFAULT_PIXEL_LIMIT`."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    return check_pixel_limit(text, LIMIT_VARIABLE) if text else DEFAULT_PIXEL_LIMIT


@contextlib.contextmanager
def pixel_limit(limit: int | str | None) -> Iterator[None]:
    """Within it, :func:`decode_image` refuses images of more than ``limit`` pixels, here
    and in the decoding processes started meanwhile (they inherit the environment:
    :data:`LIMIT_VARIABLE` is set). None leaves the limit as it is."""
    if limit is None:
        yield
        return
    previous = os.environ.get(LIMIT_VARIABLE)
    os.environ[LIMIT_VARIABLE] = str(check_pixel_limit(limit))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LIMIT_VARIABLE, None)
        else:
            os.environ[LIMIT_VARIABLE] = previous


def check_size(path: str | Path, width: int, height: int) -> None:
    """A :class:`DataError` when an image of ``width``×``height`` is over the limit."""
    limit = max_image_pixels()
    if width * height > limit:
        raise DataError(f"{path}: {width}×{height} = {width * height:,} pixels, over the limit "
                        f"of {limit:,}: the limit guards against decompression bombs; raise "
                        f"it with --max-image-pixels N or the environment variable "
                        f"{LIMIT_VARIABLE}=N")


def to_8bit(values: np.ndarray, window: Sequence[float] | None = None) -> np.ndarray:
    """``values`` (any depth, any number of channels) as uint8: by ``window`` (center,
    width) when given, else one min–max over all of them (a constant image, or one
    without a finite value, → 0)."""
    values = np.asarray(values, dtype=np.float64)
    if window is not None:
        center, width = window
        scaled = (values - (center - width / 2)) / width
    else:
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.clip(np.rint(np.nan_to_num(scaled * 255.0, nan=0.0)), 0, 255).astype(np.uint8)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)

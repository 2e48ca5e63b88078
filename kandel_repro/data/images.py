"""Decoding any image file of a user's own data into the RGB uint8 array a model reads.

:func:`decode_image` reads, by extension (in any case), PNG (``.png``), JPEG (``.jpg``,
``.jpeg``), TIFF (``.tif``, ``.tiff``; a multi-page TIFF gives its first page, the full
image of a pyramid), BMP (``.bmp``), GIF (``.gif``), WebP (``.webp``) and DICOM (``.dcm``,
with the optional pydicom and its decoders: ``pip install 'kandel_repro[dicom]'``; see
:mod:`kandel_repro.data.dicom`); :data:`EXTENSIONS` lists them. Whatever the file holds,
the result is ``size``×``size``×3 uint8:

- EXIF orientation is applied (a phone's portrait photo stands upright);
- gray images give three equal channels, alpha is dropped (not composited), palette
  images are expanded, CMYK is converted to RGB;
- an animated GIF, WebP or PNG is refused, as a multi-frame DICOM is: one image per file;
- images of more than 8 bits — gray or colour: 16-bit PNG and TIFF, 32-bit integer and
  float TIFF, gray DICOM (a colour DICOM is scaled from its stored bit range instead, and
  a gray one takes its own window first: :mod:`kandel_repro.data.dicom`) — are decoded
  at their full depth and brought to 8 bits by
  **per-image min–max** (lowest value → 0, highest → 255, a constant image → 0) unless a
  fixed ``window`` (center, width) is given: values below center − width/2 → 0, above
  center + width/2 → 255, linear between (the DICOM convention). Min–max is the default
  because it needs nothing but the image: it works for any bit depth and value range (a
  12-bit camera's data in a 16-bit file, a microscope's floats) and never maps a whole
  image to black or white, where a fixed rule would have to know the scanner. Its cost
  is that a pixel value means a different gray in different images; a ``window`` keeps
  values comparable across images. A colour image is stretched by **one** min–max over
  all its colour channels together, not one per channel: the ratios between its
  channels — its colour balance, a stain's hue — stay as the file holds them, where a
  stretch per channel would turn a reddish image gray and amplify a dim channel's noise;
  a ``window`` likewise applies to every channel alike. 8-bit images are left as they are;
- a 4th band of a TIFF is dropped when its ExtraSamples tag marks it as alpha, and the
  file is refused otherwise (a 4th band of data is not thrown away in silence);
- the image is resized to ``size``×``size``, bilinear, without keeping the aspect ratio
  (as BreakHis' images are, and as Keras' ``image_dataset_from_directory`` does).

Pillow reads every format but DICOM. It keeps only the high byte of a 16-bit colour
sample, so a 16-bit RGB(A) PNG or contiguous TIFF is decoded twice by Pillow's own
decoder (which undoes PNG's filters and TIFF's compression), once unpacking the samples'
high bytes and once their low ones. A TIFF that Pillow cannot read at its depth (float or
32-bit colour, 16-bit planar colour, 16-bit gray with alpha) is read with tifffile, a
dependency imported only then, so that an install without it (``pip install --no-deps``)
reads every other file and names it where it is needed (``pip install tifffile``). A
16-bit gray PNG with alpha, which neither reads at its depth, is refused.

An image of more than :data:`~.pixels.DEFAULT_PIXEL_LIMIT` pixels (Pillow's own limit) is
refused as a possible decompression bomb, before it is decoded; the environment variable
:data:`~.pixels.LIMIT_VARIABLE` (``KANDEL_MAX_IMAGE_PIXELS``) raises the limit — the
command line's ``--max-image-pixels`` sets it (:func:`~.pixels.pixel_limit`) for the
decoding processes.

A file that cannot be decoded (truncated, corrupt) is a one-line :class:`DataError`
naming it.
"""
from __future__ import annotations

import contextlib
import math
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataError
from .dicom import read_dicom
from .pixels import check_size, gray_to_rgb, to_8bit

PIL_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
DICOM_EXTENSIONS = (".dcm",)
EXTENSIONS = PIL_EXTENSIONS + DICOM_EXTENSIONS
TIFF_EXTENSIONS = (".tif", ".tiff")
HIGH_DEPTH_MODES = ("I", "F")  # and every "I;16…": PIL's modes of more than 8 bits
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")  # Pillow's formats whose frames are an animation
# Pillow's rawmodes of colour samples of 16 bits, whose unpackers keep only the high byte
SPLIT16 = re.compile(r"^(RGB|RGBA);16([BLN])$")
# TIFF photometric interpretations read at any depth: their number of colour bands
TIFF_COLOUR_BANDS = {0: 1, 1: 1, 2: 3}  # MINISWHITE, MINISBLACK, RGB
TIFF_ALPHA = (1, 2)  # ExtraSamples: associated, unassociated alpha


def is_image(path: str | Path) -> bool:
    """Whether ``path``'s extension is one :func:`decode_image` reads."""
    return Path(path).suffix.lower() in EXTENSIONS


def resize_side(image_size: int | None, default: int) -> int:
    """The side images are resized to: ``image_size``, or ``default`` where it is None;
    a :class:`ConfigError` for a side that is not a positive integer (0 is no size)."""
    if image_size is None:
        return int(default)
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
        raise ConfigError(f"--image-size must be a positive integer (pixels), got "
                          f"{image_size!r}")
    return int(image_size)


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


def bands_to_rgb(values: np.ndarray, colour: int,
                 window: Sequence[float] | None) -> np.ndarray:
    """An image's samples (H×W, or H×W×bands: ``colour`` colour bands first, then alpha)
    as RGB uint8: 8-bit samples as they are, deeper ones by :func:`to_8bit` over all the
    colour bands together; alpha dropped."""
    if values.ndim == 3:
        values = values[..., 0] if colour == 1 else values[..., :colour]
    if values.dtype != np.uint8:
        values = to_8bit(values, window)
    return gray_to_rgb(values) if values.ndim == 2 else values


@contextlib.contextmanager
def _pillow_unguarded() -> Iterator[None]:
    """Pillow's own decompression-bomb check off (:func:`check_size` replaces it: it
    names the file and how to raise the limit). GIF checks again on every frame."""
    from PIL import Image

    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _open_pil(path):
    from PIL import Image

    img = Image.open(path)
    try:
        check_size(path, *img.size)
    except DataError:
        img.close()
        raise
    return img


def _rawmode(tile):
    args = tile[3]
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str)
                                                else None)


def _with_rawmode(tile, rawmode):
    args = tile[3]
    args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def _split16(img):
    """The match of :data:`SPLIT16` when Pillow reads ``img`` as colour samples of 16
    bits of which it keeps the high byte only; else None."""
    rawmodes = {_rawmode(tile) for tile in img.tile}
    return SPLIT16.match(rawmodes.pop()) if len(rawmodes) == 1 and None not in rawmodes else None


def _full_depth_pil(path, split) -> np.ndarray:
    """The 16-bit samples of an image that Pillow reads as ``split`` (a
    :data:`SPLIT16` match): its decoder, which undoes PNG's filters and TIFF's
    compression, runs twice, unpacking the samples' high bytes, then their low ones."""
    from PIL import ImageOps

    order = split.group(2)
    if order == "N":  # libtiff hands over samples in this machine's byte order
        order = "L" if sys.byteorder == "little" else "B"
    low = f"{split.group(1)};16{'B' if order == 'L' else 'L'}"
    planes = []
    for rawmode in (split.group(0), low):
        with _open_pil(path) as img:
            img.tile = [_with_rawmode(tile, rawmode) for tile in img.tile]
            img.load()
            planes.append(np.asarray(ImageOps.exif_transpose(img), dtype=np.uint16))
    return planes[0] << 8 | planes[1]


def _check_extra_bands(path, photometric, samples, extras):
    """A :class:`DataError` when a TIFF holds bands beyond its colour that its
    ExtraSamples tag does not mark as alpha (a 4th band of data, not transparency)."""
    colour = TIFF_COLOUR_BANDS.get(photometric)
    if colour is None or samples <= colour:
        return
    extra = samples - colour
    if len(extras) < extra or any(value not in TIFF_ALPHA for value in extras[:extra]) or extra > 1:
        raise DataError(f"{path} holds {samples} bands: {'RGB' if colour == 3 else 'gray'} and "
                        f"{extra} that its ExtraSamples tag does not mark as alpha; save its "
                        "colour as an image of its own (RGB or gray, with at most an alpha "
                        "band marked as such)")


def _tags(img):
    """A TIFF's photometric interpretation, samples a pixel, ExtraSamples, bits and
    sample formats of its first page, as Pillow read them."""
    tags = img.tag_v2

    def values(tag, default):
        value = tags.get(tag, default)
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)

    return (tags.get(262), int(tags.get(277, 1)), values(338, ()), values(258, (1,)),
            values(339, (1,)), tags.get(284, 1))


def _needs_tifffile(path, img) -> bool:
    """Whether a TIFF Pillow opened must be read with tifffile (colour of more than 8
    bits that Pillow's two-pass reading cannot give); refuses unmarked extra bands."""
    photometric, samples, extras, bits, formats, planar = _tags(img)
    _check_extra_bands(path, photometric, samples, extras)
    deep = max(bits) > 8 or any(value != 1 for value in formats)
    return samples > 1 and deep and (planar == 2 or any(value != 1 for value in formats)
                                     or _split16(img) is None)


# TIFF orientations (tag 274) as numpy turns of an H×W(×bands) array, as Pillow's exif_transpose
ORIENTATIONS = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
                7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


def _read_tifffile(path, window, identified=True):
    """A TIFF's first page read with tifffile at its full depth, as RGB uint8;
    ``identified``: whether Pillow read its tags (else it could not tell what it is)."""
    try:
        import tifffile
    except ImportError:
        kinds = "float or 32-bit samples, 16-bit planar colour, 16-bit gray with alpha"
        what = (f"is a TIFF that Pillow cannot decode at its depth ({kinds}); reading it"
                if identified else f"cannot be read by Pillow; if it is a TIFF of {kinds}, it")
        raise DataError(f"{path} {what} needs tifffile: pip install tifffile") from None
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        check_size(path, page.imagewidth, page.imagelength)
        photometric, samples = int(page.photometric), int(page.samplesperpixel)
        _check_extra_bands(path, photometric, samples, tuple(int(e) for e in page.extrasamples))
        if photometric not in TIFF_COLOUR_BANDS:
            raise DataError(f"{path}: a TIFF of {page.photometric.name} samples of "
                            f"{page.bitspersample} bits is not read; save it as RGB or gray")
        try:
            values = page.asarray()
        except Exception as exc:  # noqa: BLE001 - a codec tifffile has not
            if "imagecodecs" not in str(exc):
                raise
            raise DataError(f"{path} is compressed as {page.compression.name}, which tifffile "
                            "reads only with imagecodecs: pip install imagecodecs") from None
        tag = page.tags.get(274)
        orientation = int(tag.value) if tag is not None else 1
        axes = page.axes
    if axes == "SYX":
        values = np.moveaxis(values, 0, -1)
    elif axes not in ("YX", "YXS"):
        raise DataError(f"{path}: its first page is a {axes} array of shape {values.shape}, "
                        "not one image")
    rgb = bands_to_rgb(values, TIFF_COLOUR_BANDS[photometric], window)
    rgb = 255 - rgb if photometric == 0 else rgb  # MINISWHITE: white is low
    return ORIENTATIONS.get(orientation, lambda a: a)(rgb)


def _read_pil(path, window):
    from PIL import ImageOps, UnidentifiedImageError

    try:
        img = _open_pil(path)
    except UnidentifiedImageError:
        if Path(path).suffix.lower() in TIFF_EXTENSIONS:
            return _read_tifffile(path, window, identified=False)
        raise
    with img:
        frames = getattr(img, "n_frames", 1) if img.format in ANIMATED_FORMATS else 1
        if frames > 1:
            raise DataError(f"{path} is an animation of {frames} frames; one image per file is "
                            "read: save the frame to use as a still image")
        if img.format == "TIFF" and _needs_tifffile(path, img):
            return _read_tifffile(path, window)
        if {_rawmode(tile) for tile in img.tile} == {"LA;16B"}:  # no low-byte unpacker
            raise DataError(f"{path} is a 16-bit gray PNG with alpha, which is read at 8 bits "
                            "only; save it without its alpha (16-bit gray) or as a TIFF")
        split = _split16(img)
        if split is None:
            img.load()  # a truncated file raises here
            img = ImageOps.exif_transpose(img)
    if split is not None:
        return bands_to_rgb(_full_depth_pil(path, split), 3, window)
    if img.mode in HIGH_DEPTH_MODES or img.mode.startswith("I;16"):
        return bands_to_rgb(np.asarray(img), 1, window)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


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
        with _pillow_unguarded():
            if suffix in DICOM_EXTENSIONS:
                rgb = read_dicom(path, window)
            elif suffix in PIL_EXTENSIONS:
                rgb = _read_pil(path, window)
            else:
                raise DataError(f"{path}: {suffix or 'no extension'} is not an image kind read "
                                f"here ({', '.join(EXTENSIONS)})")
            image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
            return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    except (DataError, ConfigError):
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the file's
        # NOTE: a decoder's message may span lines (pydicom lists each plugin's failure)
        raise DataError(f"cannot decode {path}: {' '.join(str(exc).split())}") from None

"""Decoding a DICOM file (``.dcm``) into RGB uint8, for :func:`kandel_repro.data.images.
decode_image`, with the optional pydicom (``pip install 'kandel_repro[dicom]'``, which
also brings the decoders of compressed pixel data: pylibjpeg with libjpeg for JPEG,
JPEG Lossless and JPEG-LS, OpenJPEG for JPEG 2000, and a fast RLE).

- The modality LUT (RescaleSlope/Intercept) is applied, then ``window`` if given, else
  the file's own VOI LUT or WindowCenter/WindowWidth, else min–max (the rules of
  :mod:`kandel_repro.data.images`); MONOCHROME1 (white is low) is inverted;
- RGB passes through (YBR is converted to RGB by pydicom; samples of more than 8 bits
  are scaled from their stored range, or by ``window`` when given); PALETTE COLOR
  (ultrasound) becomes the RGB of its palette (16-bit palette entries by their high byte);
- a multi-frame file (a volume, a cine loop) is refused: one image per file;
- a file that names no transfer syntax is read as its data set is encoded when its pixel
  data are uncompressed (as a file of the old ACR-NEMA kind is), and refused when they are
  compressed (the codec cannot be known);
- compressed pixel data that no installed decoder reads are refused with the install
  that reads them; a truncated file is named as such (cut inside its header or its pixel
  data), and so is an image over the pixel limit.
"""
from __future__ import annotations

import copy
import struct
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .pixels import check_size, gray_to_rgb, to_8bit

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# (7FE0,0010), (7FE0,0008), (7FE0,0009) as they are written, little- and big-endian
PIXEL_TAGS = tuple(bytes(tag) for element in (0x10, 0x08, 0x09)
                   for tag in ((0xE0, 0x7F, element, 0x00), (0x7F, 0xE0, 0x00, element)))
# (FFFE,E0DD) and its zero length: the end of compressed pixel data, little- and big-endian
SEQUENCE_ENDS = (b"\xfe\xff\xdd\xe0\0\0\0\0", b"\xff\xfe\xe0\xdd\0\0\0\0")
UNDEFINED_LENGTH = 0xFFFFFFFF


def _stretch(values, low, high):
    """``values`` mapped linearly from [low, high] to [0, 255]."""
    low, high = min(low, high), max(low, high)
    if high <= low:
        return np.zeros(np.shape(values), np.uint8)
    scaled = (np.asarray(values, np.float64) - low) / (high - low) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _lut_functions():
    """pydicom's modality, VOI and colour LUT functions: ``pydicom.pixels`` (3.x) or
    ``pydicom.pixel_data_handlers.util`` (2.x)."""
    try:
        from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
    except ImportError:
        from pydicom.pixel_data_handlers.util import (apply_color_lut, apply_modality_lut,
                                                      apply_voi_lut)
    return apply_modality_lut, apply_voi_lut, apply_color_lut


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


def _palette_to_rgb(pixels, ds, apply_color_lut):
    """A PALETTE COLOR image as the RGB uint8 of its palette."""
    rgb = apply_color_lut(pixels, ds)
    if rgb.dtype == np.uint8:
        return rgb
    entries, first = (int(value) for value in ds.RedPaletteColorLookupTableDescriptor[:2])
    palette = apply_color_lut(np.arange(first, first + (entries or 2 ** 16)), ds)
    # NOTE: some writers put 8-bit colours in tables they say are of 16 bits; the
    # others' entries span 0…65535 (a colour c as c·256 or c·257: its high byte is c)
    return (rgb if palette.max() <= 255 else rgb >> 8).astype(np.uint8)


def _read(pydicom, path):
    try:
        with warnings.catch_warnings():
            # NOTE: pydicom warns of what it reads leniently (a value of the wrong form, a
            # file ending before a delimiter); what matters is said by this module's errors
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, force=True)
    except (EOFError, struct.error):
        raise DataError(f"{path} is truncated: it ends inside a DICOM element; copy it "
                        "again") from None


def _why_no_pixels(path, ds) -> str:
    """What to tell of a file in which pydicom found no pixel data: that it is truncated
    where that shows (pydicom keeps an element the file ends inside of with the bytes
    there are, or drops it without a word), else that it has none."""
    elements = list(ds.elements())  # as read: not converted
    last = elements[-1] if elements else None
    length, value = getattr(last, "length", None), getattr(last, "value", None)
    if any(tag in Path(path).read_bytes() for tag in PIXEL_TAGS):
        return f"{path} is truncated: it ends inside its pixel data; copy it again"
    if length not in (None, UNDEFINED_LENGTH) and isinstance(value, bytes) and len(value) < length:
        return f"{path} is truncated: it ends inside its element {last.tag}; copy it again"
    if not elements:
        return f"{path} holds no DICOM data set: it is empty, cut short in its header, or not DICOM"
    if "Rows" in ds and "Columns" in ds:
        return (f"{path} has no pixel data, though its header describes a {ds.Columns}×{ds.Rows} "
                "image: if it was cut short, copy it again")
    return f"{path} has no pixel data"


def _check_complete(path, ds):
    """A :class:`DataError` when the file ends before its pixel data do: fewer bytes than
    their length, or compressed (encapsulated) data without the delimiter that ends them."""
    for keyword in PIXEL_KEYWORDS:
        if keyword not in ds:
            continue
        raw = ds.get_item(keyword)
        length, value = getattr(raw, "length", None), getattr(raw, "value", None)
        if length not in (None, UNDEFINED_LENGTH) and value is not None and len(value) < length:
            raise DataError(f"{path} is truncated: its pixel data hold {len(value)} of their "
                            f"{length} bytes; copy it again")
        if length == UNDEFINED_LENGTH:
            data = Path(path).read_bytes()
            start = max(data.rfind(tag) for tag in PIXEL_TAGS)
            if not any(end in data[start:] for end in SEQUENCE_ENDS):
                raise DataError(f"{path} is truncated: it ends inside its pixel data; copy it "
                                "again")


def _name_transfer_syntax(path, ds):
    """The transfer syntax of a file that names none, when it can be known: that of the
    data set's own encoding, for uncompressed (defined-length) pixel data."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    raw = ds.get_item(next(keyword for keyword in PIXEL_KEYWORDS if keyword in ds))
    if getattr(raw, "length", None) == UNDEFINED_LENGTH or getattr(raw, "is_undefined_length",
                                                                   False):
        raise DataError(f"{path} names no transfer syntax (0002,0010) and its pixel data are "
                        "compressed, by a codec it does not name; write the file again with "
                        "its transfer syntax (e.g. with dcmodify or gdcmconv)")
    implicit, little = (getattr(ds, "original_encoding", None)
                        or (ds.is_implicit_VR, ds.is_little_endian))
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _check_decoder(path, ds):
    """A :class:`DataError` naming the install when no decoder of pydicom's reads the
    file's compressed pixel data (pydicom 3; pydicom 2 says it itself)."""
    try:
        from pydicom.pixels import get_decoder
    except ImportError:
        return
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DataError(f"{path}: its transfer syntax {syntax.name} ({syntax}) is one pydicom "
                        "does not decode; convert the file (e.g. gdcmconv --raw)") from None
    if not decoder.is_available:
        raise DataError(f"{path} is compressed as {syntax.name}, and no installed decoder "
                        "reads it: pip install 'kandel_repro[dicom]' (pydicom's decoders of it: "
                        f"{'; '.join(decoder.missing_dependencies)})")


def read_dicom(path: str | Path, window) -> np.ndarray:
    """A DICOM file's image as RGB uint8 (H×W×3), by the rules of this module."""
    try:
        import pydicom
    except ImportError:
        raise DataError(f"reading DICOM ({path}) needs pydicom: "
                        "pip install 'kandel_repro[dicom]'") from None
    apply_modality_lut, apply_voi_lut, apply_color_lut = _lut_functions()
    ds = _read(pydicom, path)
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise DataError(_why_no_pixels(path, ds))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(f"{path} holds {frames} frames (a multi-frame DICOM); one image per "
                        "file is read: save the frame to use as a file of its own")
    check_size(path, int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0))
    _check_complete(path, ds)
    _name_transfer_syntax(path, ds)
    _check_decoder(path, ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    pixels = ds.pixel_array
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        values = apply_modality_lut(pixels, ds)
        gray = to_8bit(values, window) if window is not None else None
        if gray is None:
            gray = _file_window(values, ds, apply_voi_lut)
        if gray is None:
            gray = to_8bit(values)
        return gray_to_rgb(255 - gray if photometric == "MONOCHROME1" else gray)
    if photometric == "PALETTE COLOR":
        return _palette_to_rgb(pixels, ds, apply_color_lut)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # RGB (YBR is converted by pydicom)
        if pixels.dtype != np.uint8:
            pixels = (to_8bit(pixels, window) if window is not None
                      else _stretch(pixels, 0, 2 ** int(ds.get("BitsStored", 16)) - 1))
        return pixels
    raise DataError(f"{path}: photometric interpretation {photometric} is not read; save "
                    "the image as MONOCHROME2 or RGB")

"""Colour images of more than 8 bits (16-bit PNG and TIFF, float and 32-bit TIFF) are
decoded at their full depth and brought to 8 bits by the same rule as gray ones: min–max
over the whole image (all colour channels together), or a given window."""
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from kandel_repro.core.errors import DataError
from kandel_repro.data.images import decode_image

tifffile = pytest.importorskip("tifffile")

RNG = np.random.default_rng(1)
# 12-bit data in 16-bit files, as a microscope camera writes them; each channel its own range
RGB12 = np.stack([RNG.integers(0, 1500, (9, 7)), RNG.integers(500, 3000, (9, 7)),
                  RNG.integers(2000, 4096, (9, 7))], axis=2).astype(np.uint16)
ALPHA = RNG.integers(0, 65536, (9, 7, 1)).astype(np.uint16)


def joint_minmax(values):
    """The documented rule: one min–max over every colour channel together."""
    values = np.asarray(values, np.float64)
    return np.rint((values - values.min()) / (values.max() - values.min()) * 255).astype(np.uint8)


def resized(pixels, size):
    """8-bit ``pixels`` resized as :func:`decode_image` resizes."""
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))


def png16(path, pixels):
    """A 16-bit PNG of ``pixels`` (H×W gray, or H×W×2|3|4: gray+alpha, RGB, RGBA), written
    by hand (Pillow cannot write one), its rows filtered with each of PNG's five filters in
    turn, so that a reader must undo them all."""
    pixels = np.asarray(pixels, ">u2")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    height, width, channels = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = 2 * channels
    rows = pixels.reshape(height, -1).view(np.uint8).astype(np.int64)
    out, prior = [], np.zeros(rows.shape[1], np.int64)
    for r, x in enumerate(rows):
        a = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])
        b, c = prior, np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        kind = r % 5
        if kind == 4:
            p = a + b - c
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
            predicted = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        else:
            predicted = [0 * x, a, b, (a + b) // 2][kind]
        out.append(bytes([kind]) + ((x - predicted) & 0xFF).astype(np.uint8).tobytes())
        prior = x
    _write_png(path, width, height, 16, colour_type, zlib.compress(b"".join(out)))
    return path


def _write_png(path, width, height, depth, colour_type, idat):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                                  colour_type, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_48_bit_png_is_decoded_at_full_depth_min_to_max_over_all_channels(tmp_path):
    out = decode_image(png16(tmp_path / "rgb48.png", RGB12), 9)
    assert (out == resized(joint_minmax(RGB12), 9)).all()


def test_colour_balance_is_kept_not_stretched_per_channel(tmp_path):
    square = np.zeros((8, 8, 3), np.uint16)
    square[..., 0], square[..., 1] = 1000, 2000  # a dark red, brighter green, no blue
    square[0, 0] = (0, 0, 4000)                   # and one bright blue pixel
    out = decode_image(png16(tmp_path / "balance.png", square), 8)
    assert tuple(out[4, 4]) == (64, 128, 0) and tuple(out[0, 0]) == (0, 0, 255)


def test_64_bit_rgba_png_drops_its_alpha_and_keeps_full_depth(tmp_path):
    out = decode_image(png16(tmp_path / "rgba64.png", np.concatenate([RGB12, ALPHA], 2)), 9)
    square = resized(joint_minmax(RGB12), 9)
    assert (out == square).all()


def test_16_bit_gray_with_alpha_png_is_refused_not_cut_to_8_bits(tmp_path):
    png16(tmp_path / "la.png", np.stack([RGB12[..., 1], ALPHA[..., 0]], 2))
    with pytest.raises(DataError, match=r"la\.png is a 16-bit gray PNG with alpha, which is "
                                        r"read at 8 bits only; save it without its alpha"):
        decode_image(tmp_path / "la.png", 8)
    png16(tmp_path / "gray.png", RGB12[..., 1])  # without alpha: its full depth
    assert (decode_image(tmp_path / "gray.png", 8)
            == resized(joint_minmax(RGB12[..., 1]), 8)[..., None]).all()


def test_a_window_applies_to_16_bit_colour(tmp_path):
    square = np.array([[[1000, 2000, 3000], [3500, 4000, 5000]]], np.uint16).repeat(2, axis=0)
    path = png16(tmp_path / "w.png", square)
    out = decode_image(path, 2, window=(3000, 2000))  # 2000 → 0, 4000 → 255
    assert out[:, 0].tolist() == [[0, 0, 128]] * 2 and out[:, 1].tolist() == [[191, 255, 255]] * 2
    tifffile.imwrite(tmp_path / "w.tif", square, photometric="rgb")
    assert (decode_image(tmp_path / "w.tif", 2, window=(3000, 2000)) == out).all()


@pytest.mark.parametrize("layout", [
    {"photometric": "rgb"},                                # raw strips
    {"photometric": "rgb", "compression": "zlib"},         # through libtiff
    {"photometric": "rgb", "planarconfig": "separate"},    # one plane per colour
])
def test_48_bit_tiff_in_every_layout_gives_the_same_pixels(tmp_path, layout):
    pixels = np.moveaxis(RGB12, -1, 0) if layout.get("planarconfig") == "separate" else RGB12
    tifffile.imwrite(tmp_path / "rgb48.tif", pixels, **layout)
    out = decode_image(tmp_path / "rgb48.tif", 9)
    expected = resized(joint_minmax(RGB12), 9)
    assert (out == expected).all()


@pytest.mark.parametrize("alpha", ["unassalpha", "assocalpha"])
def test_16_bit_tiff_with_alpha_drops_it(tmp_path, alpha):
    tifffile.imwrite(tmp_path / "rgba.tif", np.concatenate([RGB12, ALPHA], 2),
                     photometric="rgb", extrasamples=[alpha])
    out = decode_image(tmp_path / "rgba.tif", 9)
    assert (out == resized(joint_minmax(RGB12), 9)).all()


def test_a_fourth_band_that_is_not_alpha_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "four.tif", np.concatenate([RGB12, ALPHA], 2),
                     photometric="rgb", extrasamples=["unspecified"])
    with pytest.raises(DataError, match=r"four\.tif holds 4 bands: RGB and 1 that its "
                                        r"ExtraSamples tag does not mark as alpha"):
        decode_image(tmp_path / "four.tif", 8)
    tifffile.imwrite(tmp_path / "bands.tif", np.concatenate([RGB12, ALPHA], 2),
                     photometric="minisblack", planarconfig="contig")
    with pytest.raises(DataError, match=r"bands\.tif holds 4 bands: gray and 3 that"):
        decode_image(tmp_path / "bands.tif", 8)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
def test_float_and_32_bit_colour_tiff(tmp_path, dtype):
    values = (RGB12.astype(np.float64) - 2000) / 7
    tifffile.imwrite(tmp_path / "f.tif", values.astype(dtype), photometric="rgb")
    out = decode_image(tmp_path / "f.tif", 9)
    expected = joint_minmax(values.astype(dtype))
    assert (out == resized(expected, 9)).all()


def test_16_bit_gray_with_alpha_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "la.tif", np.stack([RGB12[..., 2], ALPHA[..., 0]], 2),
                     photometric="minisblack", extrasamples=["unassalpha"])
    out = decode_image(tmp_path / "la.tif", 8)
    gray = resized(joint_minmax(RGB12[..., 2]), 8)
    assert (out == gray[..., None]).all()


def test_without_tifffile_a_tiff_that_needs_it_names_it(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(RGB12, -1, 0), photometric="rgb",
                     planarconfig="separate")
    tifffile.imwrite(tmp_path / "float.tif", RGB12.astype(np.float32), photometric="rgb")
    tifffile.imwrite(tmp_path / "rgb48.tif", RGB12, photometric="rgb")
    monkeypatch.setitem(sys.modules, "tifffile", None)  # not installed
    for name in ("planar.tif", "float.tif"):
        with pytest.raises(DataError, match=rf"{name}.*needs tifffile: pip install tifffile"):
            decode_image(tmp_path / name, 8)
    # a contiguous 16-bit RGB TIFF is read at full depth by Pillow alone
    out = decode_image(tmp_path / "rgb48.tif", 9)
    assert (out == resized(joint_minmax(RGB12), 9)).all()


def test_8_bit_colour_is_left_as_it_is(tmp_path):
    pixels = (RGB12 // 64).astype(np.uint8)  # 0 … 63: not stretched, 8-bit values are colours
    tifffile.imwrite(tmp_path / "rgb8.tif", pixels, photometric="rgb")
    Image.fromarray(pixels).save(tmp_path / "rgb8.png")
    for name in ("rgb8.tif", "rgb8.png"):
        out = decode_image(tmp_path / name, 9)
        assert (out == resized(pixels, 9)).all(), name


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])  # Pillow twice; tifffile
def test_the_tiff_orientation_tag_is_applied_at_full_depth(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "turned.tif", RGB12.astype(dtype), photometric="rgb",
                     extratags=[(274, "H", 1, 6, True)])  # "rotate 90° clockwise to display"
    out = decode_image(tmp_path / "turned.tif", 9)
    assert (out == resized(np.rot90(joint_minmax(RGB12), -1), 9)).all()

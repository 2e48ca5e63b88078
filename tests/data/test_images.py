import sys

import numpy as np
import pytest
from helpers import dicom_dataset, minmax
from PIL import Image

from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.data.images import check_window, decode_image, is_image
from kandel_repro.data.pixels import to_8bit

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 12, 3), dtype=np.uint8)
RAMP16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 100 + 1000)  # 1000 … 7300


def dicom(path, pixels, photometric="MONOCHROME2", bits=13, **tags):
    """A DICOM file of ``pixels`` (one frame, or a stack of frames) with ``tags``; the
    test is skipped without pydicom (the optional extra kandel_repro[dicom])."""
    ds = dicom_dataset(pixels, photometric, bits)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("ext", ["png", "tif", "tiff", "bmp", "PNG"])
def test_lossless_rgb_comes_back_unchanged(tmp_path, ext):
    Image.fromarray(RGB).save(tmp_path / f"a.{ext}")
    out = decode_image(tmp_path / f"a.{ext}", 12)
    assert out.dtype == np.uint8 and out.shape == (12, 12, 3) and (out == RGB).all()


def test_jpeg_is_decoded_close_to_its_pixels_and_resized(tmp_path):
    smooth = np.stack(list(np.meshgrid(np.arange(16) * 15, np.arange(16) * 15))
                      + [np.full((16, 16), 90)], axis=2).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpeg", quality=95)
    assert np.abs(decode_image(tmp_path / "a.jpeg", 16).astype(int) - smooth).mean() < 4
    small = decode_image(tmp_path / "a.jpeg", 8)
    assert small.shape == (8, 8, 3)
    assert small[0, -1, 0] > 150 > small[0, 0, 0]  # red grows along x, as in the original


def test_resize_ignores_the_aspect_ratio(tmp_path):
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(tmp_path / "wide.png")
    assert decode_image(tmp_path / "wide.png", 16).shape == (16, 16, 3)


def test_gray_gives_three_equal_channels(tmp_path):
    gray = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(gray).convert("LA").save(tmp_path / "ga.png")
    Image.fromarray(gray > 127).save(tmp_path / "bw.png")
    for name, expected in (("g.png", gray), ("ga.png", gray), ("bw.png", (gray > 127) * 255)):
        out = decode_image(tmp_path / name, 8)
        assert (out == np.asarray(expected, np.uint8)[..., None]).all(), name


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.concatenate([RGB, np.zeros((12, 12, 1), np.uint8)], axis=2)  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert (decode_image(tmp_path / "a.png", 12) == RGB).all()


def test_palette_images_are_expanded_with_or_without_transparency(tmp_path):
    palette = Image.fromarray(RGB).quantize(8)
    palette.save(tmp_path / "p.png")
    expected = np.asarray(palette.convert("RGB"))
    assert (decode_image(tmp_path / "p.png", 12) == expected).all()
    palette.info["transparency"] = 0
    palette.save(tmp_path / "pt.png", transparency=0)
    assert (decode_image(tmp_path / "pt.png", 12) == expected).all()


def test_cmyk_is_converted_to_rgb(tmp_path):
    cmyk = Image.fromarray(RGB).convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    out = decode_image(tmp_path / "c.tif", 12)
    assert out.shape == (12, 12, 3) and (out == np.asarray(cmyk.convert("RGB"))).all()


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((8, 16, 3), np.uint8)  # 16 wide: left red, right blue
    img[:, :8, 0] = 255
    img[:, 8:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = decode_image(tmp_path / "phone.jpg", 16).astype(int)
    assert out[:6, :, 0].mean() > 200 and out[:6, :, 2].mean() < 50  # red on top now
    assert out[-6:, :, 2].mean() > 200 and out[-6:, :, 0].mean() < 50


@pytest.mark.parametrize("ext", ["tif", "png"])
def test_16_bit_images_are_stretched_min_to_max(tmp_path, ext):
    Image.fromarray(RAMP16).save(tmp_path / f"deep.{ext}")
    out = decode_image(tmp_path / f"deep.{ext}", 8)
    assert (out == minmax(RAMP16)[..., None]).all()
    assert out.min() == 0 and out.max() == 255


def test_32_bit_float_tiff_and_a_constant_image(tmp_path):
    values = np.linspace(-1.5, 3.0, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert (decode_image(tmp_path / "f.tif", 8)[..., 1] == minmax(values)).all()
    Image.fromarray(np.full((8, 8), 4000, np.uint16)).save(tmp_path / "flat.tif")
    assert (decode_image(tmp_path / "flat.tif", 8) == 0).all()


def test_a_window_is_fixed_across_images(tmp_path):
    Image.fromarray(RAMP16).save(tmp_path / "a.tif")
    Image.fromarray(RAMP16 + 2000).save(tmp_path / "b.tif")
    window = [4000, 2000]  # 3000 → 0, 5000 → 255
    a = decode_image(tmp_path / "a.tif", 8, window=window)[..., 0]
    b = decode_image(tmp_path / "b.tif", 8, window=window)[..., 0]
    assert (a[RAMP16 <= 3000] == 0).all() and (a[RAMP16 >= 5000] == 255).all()
    assert a[RAMP16 == 4000] == 128
    assert (b[RAMP16 == 2000] == a[RAMP16 == 4000]).all()  # the same value, the same gray
    # min–max gives every image its full range instead: the same value, another gray
    a, b = decode_image(tmp_path / "a.tif", 8)[..., 0], decode_image(tmp_path / "b.tif", 8)[..., 0]
    assert (a == b).all() and a[RAMP16 == 4000] != 128


def test_to_8bit_rules():
    assert to_8bit(np.array([5.0, 5.0])).tolist() == [0, 0]
    assert to_8bit(np.array([np.nan, 0.0, 1.0])).tolist() == [0, 0, 255]
    assert to_8bit(np.array([-10, 0, 10, 20]), (5, 10)).tolist() == [0, 0, 255, 255]


@pytest.mark.parametrize("window, message", [
    ([1, 2, 3], "two numbers"), (["a", 1], "two numbers"), (5, "two numbers"),
    ([40, 0], "width above 0"), ([float("nan"), 10], "finite"),
])
def test_bad_windows_are_refused(window, message):
    with pytest.raises(ConfigError, match=message):
        check_window(window)


def test_a_window_as_a_list_of_text_numbers_is_read():
    assert check_window(["40", "400"]) == (40.0, 400.0) and check_window(None) is None


def test_truncated_and_unknown_files_are_refused_with_their_name(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=r"cannot decode .*cut\.png"):
        decode_image(tmp_path / "cut.png", 8)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot decode .*text\.png"):
        decode_image(tmp_path / "text.png", 8)
    Image.fromarray(RGB).save(tmp_path / "a.ico")
    with pytest.raises(DataError, match=r"a\.ico: \.ico is not an image kind"):
        decode_image(tmp_path / "a.ico", 8)
    assert is_image("X.JPG") and is_image("a/b.dcm") and not is_image("a.ico")


# --- DICOM ---------------------------------------------------------------------------

def test_dicom_without_a_window_is_stretched_min_to_max(tmp_path):
    out = decode_image(dicom(tmp_path / "a.dcm", RAMP16), 8)
    assert (out == minmax(RAMP16)[..., None]).all()


def test_dicom_window_of_the_file_is_used(tmp_path):
    path = dicom(tmp_path / "a.dcm", RAMP16, WindowCenter=4000.5, WindowWidth=2001)
    out = decode_image(path, 8)[..., 0]
    assert (out[RAMP16 <= 3000] == 0).all() and (out[RAMP16 >= 5000] == 255).all()
    assert abs(int(out[RAMP16 == 4000][0]) - 128) <= 1


def test_dicom_voi_lut_of_the_file_is_used_over_its_window(tmp_path):
    from pydicom.dataset import Dataset

    lut = Dataset()
    lut.add_new(0x00283002, "US", [8192, 0, 8])  # 8192 entries of 8 bits
    lut.add_new(0x00283006, "US", [min(255, v // 16) for v in range(8192)])
    path = dicom(tmp_path / "a.dcm", RAMP16, bits=13, VOILUTSequence=[lut],
                 WindowCenter=100, WindowWidth=10)
    out = decode_image(path, 8)[..., 0]
    assert (out == np.minimum(255, RAMP16 // 16)).all()


def test_a_given_window_wins_over_the_file_and_follows_the_rescale(tmp_path):
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 10  # 0 … 630
    path = dicom(tmp_path / "ct.dcm", stored, RescaleSlope=2, RescaleIntercept=-500,
                 WindowCenter=0, WindowWidth=10)
    out = decode_image(path, 8, window=(0, 1000))[..., 0]  # values -500 … 760
    assert out[0, 0] == 0 and out[stored == 250][0] == 128 and out[stored == 500][0] == 255


def test_dicom_monochrome1_is_inverted(tmp_path):
    out = decode_image(dicom(tmp_path / "a.dcm", RAMP16, "MONOCHROME1"), 8)
    assert (out == 255 - minmax(RAMP16)[..., None]).all()


def test_rgb_dicom_passes_through(tmp_path):
    assert (decode_image(dicom(tmp_path / "c.dcm", RGB, "RGB", 8), 12) == RGB).all()


def test_dicom_problems_are_one_line_naming_the_file(tmp_path):
    path = dicom(tmp_path / "cine.dcm", np.stack([RAMP16, RAMP16]), NumberOfFrames=2)
    with pytest.raises(DataError, match=r"cine\.dcm holds 2 frames"):
        decode_image(path, 8)
    import pydicom

    ds = pydicom.dcmread(dicom(tmp_path / "a.dcm", RAMP16))
    del ds.PixelData
    ds.save_as(tmp_path / "empty.dcm")
    with pytest.raises(DataError, match=r"empty\.dcm has no pixel data"):
        decode_image(tmp_path / "empty.dcm", 8)


def test_dicom_without_pydicom_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "a.dcm").write_bytes(b"\0" * 128 + b"DICM")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # not installed
    with pytest.raises(DataError, match=r"reading DICOM \(.*a\.dcm\) needs pydicom: pip install "
                                        r"'kandel_repro\[dicom\]'"):
        decode_image(tmp_path / "a.dcm", 8)

"""DICOM files as other tools write them: palette colour, compressed pixel data (JPEG
Lossless, JPEG 2000) read by the decoders of the ``dicom`` extra, truncated files, files
that name no transfer syntax, and images over the pixel limit."""
import configparser
from pathlib import Path

import numpy as np
import pytest
from helpers import dicom_dataset, minmax

from kandel_repro.core.errors import DataError
from kandel_repro.data.images import decode_image
from kandel_repro.data.pixels import LIMIT_VARIABLE

pydicom = pytest.importorskip("pydicom")
from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian,  # noqa: E402
                         JPEG2000Lossless)

ROOT = Path(__file__).resolve().parents[2]
FILES = Path(__file__).with_name("files")
RAMP16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 100 + 1000)  # 1000 … 7300
# ramp_jpeg_lossless.dcm holds RAMP16 (13 bits stored), compressed by GDCM as JPEG
# Lossless, Non-Hierarchical, First-Order Prediction (process 14, selection value 1)
JPEG_LOSSLESS = FILES / "ramp_jpeg_lossless.dcm"


def palette_dataset(indices, colours, bits=16):
    """A PALETTE COLOR file: 8-bit ``indices`` into ``colours`` (n×3 of 0…255), its
    lookup tables of ``bits``-bit entries (16: each 8-bit colour c stored as c × 257)."""
    ds = dicom_dataset(indices.astype(np.uint8), "MONOCHROME2", 8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    scale = 257 if bits == 16 else 1
    for channel, name in enumerate(("Red", "Green", "Blue")):
        ds[f"{name}PaletteColorLookupTableDescriptor"] = pydicom.DataElement(
            f"{name}PaletteColorLookupTableDescriptor", "US", [len(colours), 0, bits])
        values = (colours[:, channel].astype(np.uint16) * scale).astype("<u2")
        ds[f"{name}PaletteColorLookupTableData"] = pydicom.DataElement(
            f"{name}PaletteColorLookupTableData", "OW",
            values.tobytes() if bits == 16 else values.astype(np.uint8).tobytes())
    return ds


def test_palette_colour_becomes_its_rgb(tmp_path):
    rng = np.random.default_rng(3)
    colours = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = rng.integers(0, 256, (12, 12), dtype=np.uint8)
    palette_dataset(indices, colours).save_as(tmp_path / "us.dcm", enforce_file_format=True)
    assert (decode_image(tmp_path / "us.dcm", 12) == colours[indices]).all()


def test_pydicoms_own_palette_file_if_it_ships_it():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("examples_palette.dcm", download=False)
    if path is None:
        pytest.skip("this pydicom ships no examples_palette.dcm")
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(path)
    expected = (apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)  # 16-bit tables
    out = decode_image(path, 64)
    from PIL import Image

    assert (out == np.asarray(Image.fromarray(expected).resize((64, 64), Image.BILINEAR))).all()


def test_jpeg_lossless_is_decoded_by_the_extras_decoders():
    assert pydicom.dcmread(JPEG_LOSSLESS).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    assert (decode_image(JPEG_LOSSLESS, 8) == minmax(RAMP16)[..., None]).all()


RAMP64 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 1000)  # OpenJPEG's smallest


def jpeg2000_file(path):
    ds = dicom_dataset(RAMP64)
    ds.compress(JPEG2000Lossless, RAMP64)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_jpeg_2000_and_a_truncated_one(tmp_path):
    path = jpeg2000_file(tmp_path / "j2k.dcm")
    assert (decode_image(path, 64) == minmax(RAMP64)[..., None]).all()
    data = path.read_bytes()
    start = data.index(b"\xe0\x7f\x10\x00")  # the pixel data's tag
    for end in (start + 6, start + 40, len(data) - 30):
        (tmp_path / "cut.dcm").write_bytes(data[:end])
        with pytest.raises(DataError, match=r"cut\.dcm is truncated: it ends inside its pixel "
                                            r"data; copy it again"):
            decode_image(tmp_path / "cut.dcm", 8)


def test_truncated_uncompressed_pixel_data_and_header(tmp_path):
    dicom_dataset(RAMP16).save_as(tmp_path / "whole.dcm", enforce_file_format=True)
    data = (tmp_path / "whole.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-40])
    with pytest.raises(DataError, match=r"cut\.dcm is truncated: its pixel data hold 88 of "
                                        r"their 128 bytes; copy it again"):
        decode_image(tmp_path / "cut.dcm", 8)
    uid = data.index(b"\x08\x00\x18\x00")  # SOP Instance UID
    (tmp_path / "head.dcm").write_bytes(data[:uid + 20])  # cut inside its value
    with pytest.raises(DataError, match=r"head\.dcm is truncated: it ends inside its element "
                                        r"\(0008,0018\); copy it again"):
        decode_image(tmp_path / "head.dcm", 8)
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.dcm holds no DICOM data set"):
        decode_image(tmp_path / "empty.dcm", 8)


def test_a_file_without_a_transfer_syntax(tmp_path):
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds = dicom_dataset(RAMP16, syntax=syntax)
        ds.save_as(tmp_path / "plain.dcm", enforce_file_format=True)
        ds = pydicom.dcmread(tmp_path / "plain.dcm")
        del ds.file_meta.TransferSyntaxUID
        ds.save_as(tmp_path / "nots.dcm", implicit_vr=syntax.is_implicit_VR, little_endian=True)
        assert "TransferSyntaxUID" not in pydicom.dcmread(tmp_path / "nots.dcm").file_meta
        # uncompressed: read as the data set itself is encoded
        assert (decode_image(tmp_path / "nots.dcm", 8) == minmax(RAMP16)[..., None]).all()
    ds = pydicom.dcmread(jpeg2000_file(tmp_path / "j2k.dcm"))
    del ds.file_meta.TransferSyntaxUID
    ds.save_as(tmp_path / "j2k_nots.dcm", implicit_vr=False, little_endian=True)
    with pytest.raises(DataError, match=r"j2k_nots\.dcm names no transfer syntax \(0002,0010\) "
                                        r"and its pixel data are compressed"):
        decode_image(tmp_path / "j2k_nots.dcm", 8)


def test_a_missing_decoder_names_the_extra(monkeypatch):
    import pydicom.pixels

    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(DataError, match=r"ramp_jpeg_lossless\.dcm is compressed as JPEG "
                                        r"Lossless.*no installed decoder reads it: pip install "
                                        r"'kandel_repro\[dicom\]'"):
        decode_image(JPEG_LOSSLESS, 8)


def test_a_decoders_failure_is_one_line():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("JPEG-lossy.dcm", download=False)  # 12-bit JPEG no plugin reads
    if path is None:
        pytest.skip("this pydicom ships no JPEG-lossy.dcm")
    with pytest.raises(DataError) as caught:
        decode_image(path, 8)
    assert "\n" not in str(caught.value) and "JPEG-lossy.dcm" in str(caught.value)


def test_a_dicom_over_the_pixel_limit(tmp_path, monkeypatch):
    dicom_dataset(RAMP16).save_as(tmp_path / "a.dcm", enforce_file_format=True)
    monkeypatch.setenv(LIMIT_VARIABLE, "63")
    with pytest.raises(DataError, match=r"a\.dcm: 8×8 = 64 pixels, over the limit of 63: "):
        decode_image(tmp_path / "a.dcm", 8)


def test_the_dicom_extra_installs_the_decoders_and_the_tests_use_them():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = {name: {line.split(">")[0].split("=")[0].strip() for line in text.splitlines()
                     if line.strip() and not line.strip().startswith("#")}
              for name, text in config["options.extras_require"].items()}
    decoders = {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"}
    assert decoders | {"pydicom"} <= extras["dicom"]
    assert extras["dicom"] <= extras["test"]

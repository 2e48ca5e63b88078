"""The largest image decoded (a guard against decompression bombs, which the user can
raise), and the still-image formats GIF and WebP."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.data.images import EXTENSIONS, decode_image, is_image
from kandel_repro.data.pixels import LIMIT_VARIABLE, pixel_limit

RGB = np.random.default_rng(2).integers(0, 256, (10, 10, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def no_limit_set(monkeypatch):
    """Each test starts without the variable, and leaves none behind."""
    monkeypatch.delenv(LIMIT_VARIABLE, raising=False)


def huge_blank_png(path, width, height):
    """A 1-bit PNG of ``width``×``height`` pixels that takes a few kilobytes on disk."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer, row = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_an_image_over_the_default_limit_says_how_to_raise_it(tmp_path):
    path = huge_blank_png(tmp_path / "slide.png", 16384, 11000)  # 180,224,000 pixels
    with pytest.raises(DataError) as caught:
        decode_image(path, 8)
    message = str(caught.value)
    assert "\n" not in message and "slide.png" in message
    assert "16384×11000 = 180,224,000 pixels" in message and "limit of 178,956,970" in message
    assert "--max-image-pixels N" in message and f"{LIMIT_VARIABLE}=N" in message


def test_the_limit_is_read_from_the_environment(tmp_path, monkeypatch):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    monkeypatch.setenv(LIMIT_VARIABLE, "99")
    with pytest.raises(DataError, match=r"a\.png: 10×10 = 100 pixels, over the limit of 99[:;]"):
        decode_image(tmp_path / "a.png", 10)
    monkeypatch.setenv(LIMIT_VARIABLE, "100")
    assert (decode_image(tmp_path / "a.png", 10) == RGB).all()
    monkeypatch.setenv(LIMIT_VARIABLE, "lots")
    with pytest.raises(ConfigError, match=rf"{LIMIT_VARIABLE} .*a whole number of pixels above "
                                          r"0, got 'lots'"):
        decode_image(tmp_path / "a.png", 10)


def test_pixel_limit_sets_the_variable_for_its_duration_only(monkeypatch):
    import os

    with pixel_limit(1234):
        assert os.environ[LIMIT_VARIABLE] == "1234"
    assert LIMIT_VARIABLE not in os.environ
    monkeypatch.setenv(LIMIT_VARIABLE, "77")
    with pixel_limit(None):  # not given: the environment's own stands
        assert os.environ[LIMIT_VARIABLE] == "77"
    with pixel_limit(5):
        assert os.environ[LIMIT_VARIABLE] == "5"
    assert os.environ[LIMIT_VARIABLE] == "77"


def test_the_cli_option_reaches_the_spawned_decoding_workers(tmp_path, capsys):
    for label in ("a", "b"):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(RGB).save(tmp_path / "d" / label / f"{i}.png")
    args = ["data", "pack", "--dataset", "folder", "--data", str(tmp_path / "d"),
            "--image-size", "8", "--workers", "2"]
    assert main(args + ["--max-image-pixels", "99"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert error.startswith("kandel-repro: error: ")
    assert "10×10 = 100 pixels, over the limit of 99" in error and error.count("raise it") == 1
    assert main(args + ["--max-image-pixels", "100"]) == 0
    assert "packed" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "many"])
def test_the_cli_option_refuses_what_is_not_a_count(value, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["data", "pack", "--data", "x", "--max-image-pixels", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"--max-image-pixels takes a whole number of pixels above 0, got '{value}'" in err


def test_the_pack_verbs_offer_the_option(capsys):
    for verb in (["data", "pack"], ["train"], ["grid", "depth"], ["pretrain", "vae"]):
        with pytest.raises(SystemExit):
            main(verb + ["--help"])
        assert "--max-image-pixels" in capsys.readouterr().out, verb


# --- GIF and WebP --------------------------------------------------------------------

def test_still_gif_and_webp_are_read(tmp_path):
    assert ".gif" in EXTENSIONS and ".webp" in EXTENSIONS
    assert is_image("a/B.GIF") and is_image("x.webp")
    palette = Image.fromarray(RGB).quantize(16)
    palette.save(tmp_path / "a.gif")
    assert (decode_image(tmp_path / "a.gif", 10) == np.asarray(palette.convert("RGB"))).all()
    Image.fromarray(RGB).save(tmp_path / "a.webp", lossless=True)
    assert (decode_image(tmp_path / "a.webp", 10) == RGB).all()
    rgba = np.concatenate([RGB, np.full((10, 10, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "alpha.webp", lossless=True, exact=True)
    assert (decode_image(tmp_path / "alpha.webp", 10) == RGB).all()  # alpha dropped


@pytest.mark.parametrize("ext", ["gif", "webp"])
def test_an_animation_is_refused_naming_its_frames(tmp_path, ext):
    frames = [Image.fromarray(RGB), Image.fromarray(255 - RGB), Image.fromarray(RGB // 2)]
    frames[0].save(tmp_path / f"cine.{ext}", save_all=True, append_images=frames[1:],
                   duration=100, **({"lossless": True} if ext == "webp" else {}))
    with pytest.raises(DataError, match=rf"cine\.{ext} is an animation of 3 frames; one image "
                                        r"per file is read"):
        decode_image(tmp_path / f"cine.{ext}", 8)

"""Option values refused when they are parsed or resolved: an image side that is not a
positive number, in every verb that takes one, and augmentation options that contradict
each other."""
import pytest

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError
from kandel_repro.runs.config import resolve_config


def _verbs(data, out):
    """Each verb that takes --image-size, on ``data`` (a class-folder set), writing to
    ``out``."""
    return {
        "train": ["train", "--data", data, "--dataset", "folder", "--run-dir", out,
                  "--backbone", "cbr_small", "--first-block", "1", "--lr", "1e-3",
                  "--weights", "none"],
        "grid": ["grid", "depth", "--backbone", "cbr_small", "--data", data, "--runs", out,
                 "--weights", "none"],
        "data pack": ["data", "pack", "--data", data, "--dataset", "folder", "--cache", out],
        "pretrain": ["pretrain", "vae", "--data", data, "--dataset", "folder", "--out", out],
        "cost": ["cost", "cbr_small", "--out", out],
    }


@pytest.mark.parametrize("verb", ["train", "grid", "data pack", "pretrain", "cost"])
@pytest.mark.parametrize("size", ["-3", "0"])
def test_an_image_side_that_is_not_positive_is_refused_when_parsed(tmp_path, capsys, verb, size):
    (tmp_path / "data").mkdir()
    argv = _verbs(str(tmp_path / "data"), str(tmp_path / "out"))[verb]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--image-size", size])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]  # argparse's one line (after its usage)
    assert "--image-size" in line and "positive" in line and size in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_resolve_config_refuses_an_image_side_that_is_not_a_positive_integer(size):
    with pytest.raises(ConfigError, match="--image-size must be a positive integer"):
        resolve_config("cbr_small", 1, 1e-3, protocol="own", image_size=size)


@pytest.mark.parametrize("colour", [{"stain_jitter": "strong"}, {"brightness": 0.1},
                                    {"crop": 0.875, "hue": 0.05}])
def test_colour_options_with_no_augmentation_are_refused(colour):
    """--no-augmentation turns every training-time augmentation off: a colour, crop or stain
    option given with it contradicts it and is refused, naming both."""
    with pytest.raises(ConfigError, match="--no-augmentation") as refused:
        resolve_config("cbr_small", 1, 1e-3, augmentation=None, **colour)
    for key in colour:
        assert "--" + key.replace("_", "-") in str(refused.value)
    config = resolve_config("cbr_small", 1, 1e-3, augmentation=None)  # alone: fine
    assert config["augmentation"] is None and config["stain_jitter"] == 0.0


def test_no_augmentation_with_stain_jitter_is_one_line_on_the_command_line(tiny_pcam, tmp_path,
                                                                           capsys):
    assert main(["train", "--data", str(tiny_pcam), "--run-dir", str(tmp_path / "run"),
                 "--backbone", "cbr_small", "--first-block", "1", "--lr", "1e-3", "--weights",
                 "none", "--epochs", "1", "--no-augmentation", "--stain-jitter", "strong"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kandel-repro: error: "), err
    assert "--no-augmentation" in err and "--stain-jitter" in err
    assert not (tmp_path / "run").exists()


def test_a_bad_option_value_is_refused_in_one_line_naming_help(capsys):
    """argparse's refusals are one line too (no usage block), pointing to --help."""
    from kandel_repro.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["data", "pack", "--data", "x", "--image-size", "-3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("kandel-repro data pack: error: argument --image-size: must be a positive "
                   "integer (pixels), got -3 (see kandel-repro data pack --help)")

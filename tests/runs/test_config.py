"""One place resolves and checks a run's settings (kandel_repro.runs.config)."""
import json

import pytest
from helpers import LEGACY

from kandel_repro.core.errors import ConfigError, WeightsUnavailable
from kandel_repro.models.weights import normalise_weights
from kandel_repro.runs.config import CHOICES, resolve_config
from kandel_repro.runs.keys import upgrade


def test_resolve_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="from 1 to 5.*got 6"):
        resolve_config("vgg16", 6, 1e-4)
    with pytest.raises(ConfigError, match="--lr must be positive"):
        resolve_config("vgg16", 5, 0)
    with pytest.raises(ConfigError, match="--lr must be positive, got inf"):
        resolve_config("vgg16", 5, float("inf"))
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve_config("vgg16", 5, 1e-4, colour="red")
    with pytest.raises(ConfigError, match="unknown backbone 'resnet'"):
        resolve_config("resnet", 5, 1e-4)
    with pytest.raises(WeightsUnavailable, match="nowhere.h5"):
        resolve_config("vgg16", 5, 1e-4, weights="nowhere.h5")
    with pytest.raises(ConfigError, match="--precision must be one of auto, float32, mixed_float16"):
        resolve_config("vgg16", 5, 1e-4, precision="float16")
    with pytest.raises(ConfigError, match="--distribute must be one of"):
        resolve_config("vgg16", 5, 1e-4, distribute="tpu")
    with pytest.raises(ConfigError, match="--augmenter must be one of fast, imagedatagenerator"):
        resolve_config("vgg16", 5, 1e-4, augmenter="gpu")
    with pytest.raises(ConfigError, match="--eval-batch-size must be a positive integer"):
        resolve_config("vgg16", 5, 1e-4, eval_batch_size=0)
    with pytest.raises(ConfigError, match="BreakHis only"):
        resolve_config("vgg16", 5, 1e-4, image_size=64)
    with pytest.raises(ConfigError, match="--split patient does not apply to pcam"):
        resolve_config("vgg16", 5, 1e-4, split="patient")
    with pytest.raises(ConfigError, match="--wsi-map applies to PCam's --split slide only"):
        resolve_config("vgg16", 5, 1e-4, wsi_map="map.csv")
    with pytest.raises(ConfigError, match="--magnification must be one of"):
        resolve_config("vgg16", 5, 1e-4, protocol="breakhis", magnification="30")


@pytest.mark.parametrize("given, spelled", [
    (None, "none"), ("none", "none"), ("None", "none"), ("random", "none"), ("Scratch", "none"),
    ("imagenet", "imagenet"), ("ImageNet", "imagenet")])
def test_weights_have_one_spelling(given, spelled):
    assert normalise_weights(given) == spelled
    if given is not None:  # to resolve_config, None means "not given": the protocol's imagenet
        assert resolve_config("vgg16", 5, 1e-4, weights=given)["weights"] == spelled


def test_a_weights_file_is_kept_by_its_path(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"")
    assert resolve_config("vgg16", 5, 1e-4, weights=str(path))["weights"] == str(path.resolve())


def test_a_weights_path_is_one_experiment_from_any_working_folder(tmp_path, monkeypatch):
    """`--weights w/vgg16.weights.h5` and the same file typed absolute, or from another
    folder, are the same setting (also Mean-Var's --weights-from)."""
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "vgg16.weights.h5").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    absolute = str((tmp_path / "w" / "vgg16.weights.h5").resolve())
    for folder, spelling in ((".", "w/vgg16.weights.h5"), (".", "./w/../w/vgg16.weights.h5"),
                             ("elsewhere", "../w/vgg16.weights.h5"), ("elsewhere", absolute)):
        monkeypatch.chdir(tmp_path / folder)
        assert normalise_weights(spelling) == absolute
        assert resolve_config("vgg16", 5, 1e-4, weights=spelling)["weights"] == absolute
        config = resolve_config("vgg16", 5, 1e-4, weights="meanvar", weights_from=spelling)
        assert config["weights_from"] == absolute


def test_a_run_that_recorded_a_relative_weights_path_still_resumes(tmp_path, monkeypatch):
    """Runs made before paths were resolved recorded --weights as typed: read from the
    working folder the grid resumes in, they are the same experiment as before."""
    from kandel_repro.runs import rundir

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "vgg16.weights.h5").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    config = resolve_config("vgg16", 5, 1e-4, weights="w/vgg16.weights.h5")
    run = tmp_path / "runs" / "vgg16_blocks5-5_lr1e-04"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(dict(config, weights="w/vgg16.weights.h5")))
    rundir.check_same_experiment(run, config)  # as typed then, resolved now: the same
    absolute = resolve_config("vgg16", 5, 1e-4, weights=str(tmp_path / "w" / "vgg16.weights.h5"))
    rundir.check_same_experiment(run, absolute)  # the same file, typed another way
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vgg16.weights.h5").write_bytes(b"")
    other = resolve_config("vgg16", 5, 1e-4, weights="v/vgg16.weights.h5")
    with pytest.raises(ConfigError, match="other settings.*weights"):
        rundir.check_same_experiment(run, other)


def test_other_settings_get_one_spelling():
    assert resolve_config("vgg16", 5, 1e-4, protocol="breakhis",
                          magnification="100X")["magnification"] == "100"
    # the earlier name of the augmenter setting is still understood
    assert resolve_config("vgg16", 5, 1e-4, augment="imagedatagenerator")["augmenter"] == \
        "imagedatagenerator"


def test_augmentation_off_is_a_setting_and_the_augmenter_how_it_is_applied():
    config = resolve_config("vgg16", 5, 1e-4, augmentation=None, augmenter="imagedatagenerator")
    assert config["augmentation"] is None and config["augmenter"] == "imagedatagenerator"
    assert resolve_config("vgg16", 5, 1e-4)["augmentation"]["rotation_range"] == 180.0


def test_the_command_line_offers_exactly_the_choices_of_the_config():
    from kandel_repro.cli.options import build_parser

    parser = build_parser()
    grid = parser._subparsers._group_actions[0].choices["grid"]
    offered = {action.dest: tuple(action.choices) for action in grid._actions
               if action.choices and action.dest in CHOICES}
    # None (a setting's "not given") is offered by leaving the option out
    assert offered == {key: tuple(v for v in values if v is not None)
                       for key, values in CHOICES.items()}


def test_old_config_files_are_read_in_todays_names():
    old = json.loads((LEGACY / "table2" / "vgg16_blocks5-5_lr1e-04" / "config.json").read_text())
    assert old["augment"] == "fast" and old["dataset"] == "synthetic"  # as written then
    new = upgrade(old)
    assert "augment" not in new and new["augmenter"] == "fast"
    assert new["dataset"] == "pcam" and new["synthetic"] is True
    old6 = json.loads((LEGACY / "table6" / "vgg16_blocks5-5_lr1e-04" / "config.json").read_text())
    assert upgrade(old6)["dataset"] == "breakhis" and upgrade(old6)["synthetic"] is True
    # runs made before the augmenter was recorded used ImageDataGenerator
    from kandel_repro.runs.keys import ADDED

    assert upgrade({"protocol": "pcam", "dataset": "pcam"}) == {
        "protocol": "pcam", "dataset": "pcam", "synthetic": False,
        "augmenter": "imagedatagenerator", "split": "image", **ADDED}
    assert upgrade(None) is None


def test_the_data_folder_is_recorded_as_an_absolute_path(tiny_pcam, monkeypatch):
    from kandel_repro.readers.pcam_layout import ids_fingerprint
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.config import with_data

    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    monkeypatch.chdir(tiny_pcam.parent)
    config = with_data(resolve_config("vgg16", 5, 1e-4), data, tiny_pcam.name)
    assert config["data_dir"] == str(tiny_pcam.resolve())
    assert config["sample_ids_sha1"] == ids_fingerprint(data.test_ids)
    assert config["dataset"] == "pcam" and config["synthetic"] is True

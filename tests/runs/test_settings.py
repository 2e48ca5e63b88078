"""A run's settings as typed objects (kandel_repro.runs.settings): RunSettings read from and
written to config.json exactly as the dicts before them, UserSettings checked when made, the
protocol's facts read by resolve_config, and the grid taking both as typed objects."""
import dataclasses
import json

import pytest
from helpers import LEGACY

from kandel_repro.core.errors import ConfigError
from kandel_repro.core.files import write_json
from kandel_repro.core.protocol import PCAM, PROTOCOLS, OwnDataProtocol
from kandel_repro.runs import rundir
from kandel_repro.runs.config import resolve_config
from kandel_repro.runs.keys import upgrade
from kandel_repro.runs.settings import (EVALUATION_DEFAULTS, RUNTIME_DEFAULTS, TYPED_KEYS,
                                        USER_KEYS, RunSettings, UserSettings)

LEGACY_CONFIGS = sorted(LEGACY.glob("*/*/config.json"))


@pytest.mark.parametrize("path", LEGACY_CONFIGS, ids=lambda p: p.parent.parent.name)
def test_a_config_file_round_trips_through_the_typed_object_byte_for_byte(path, tmp_path):
    raw = json.loads(path.read_text())
    rundir.write_config(tmp_path, RunSettings.of(raw))
    assert (tmp_path / rundir.CONFIG).read_bytes() == path.read_bytes()
    settings = RunSettings.from_config(raw)  # in today's names
    assert settings.to_config() == upgrade(raw) and list(settings) == list(upgrade(raw))
    assert settings.augmenter == "fast" and "augment" not in settings
    assert settings.synthetic is True and settings.dataset in ("pcam", "breakhis")


def test_resolved_settings_hold_todays_keys_in_todays_order():
    config = resolve_config("vgg16", 3, 1e-4)
    protocol = [f.name for f in dataclasses.fields(PCAM)]
    assert list(config) == [*protocol, "protocol", *RUNTIME_DEFAULTS, *EVALUATION_DEFAULTS,
                            "backbone", "first_trainable_block", "learning_rate", "blocks",
                            "num_blocks"]
    assert config.to_config() == {**dataclasses.asdict(PCAM), "protocol": "pcam",
                                  **RUNTIME_DEFAULTS, **EVALUATION_DEFAULTS,
                                  "backbone": "vgg16", "first_trainable_block": 3,
                                  "learning_rate": 1e-4, "blocks": "3–5", "num_blocks": 5}
    layered = resolve_config("vgg16", 1, 1e-4, first_trainable_layer=11)
    assert list(layered)[-1] == "layers" and layered.layers == layered["layers"]


def test_settings_are_changed_into_new_ones_never_in_place():
    config = resolve_config("vgg16", 5, 1e-4)
    later = config.updated(seed=3, n_train=10)
    assert config.seed == 0 and "n_train" not in config and config.n_train is None
    assert later.seed == 3 and later["n_train"] == 10
    assert list(later) == [*config, "n_train"]  # a key held keeps its place, a new one last
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3
    with pytest.raises(TypeError):
        config["seed"] = 3
    assert dict(config) == config.to_config() and config == config.to_config()


def test_what_varies_by_data_set_is_kept_as_facts():
    config = resolve_config("vgg16", 5, 1e-4, protocol="own").updated(
        classes=["a", "b", "c"], num_classes=3, split_used="image")
    assert config.facts == {"classes": ["a", "b", "c"], "num_classes": 3, "split_used": "image"}
    assert config["split_used"] == "image" and config.get("sample_ids_sha1") is None


@pytest.mark.parametrize("recorded, count", [({}, 2), ({"num_classes": None}, 2),
                                             ({"num_classes": 2}, 2), ({"num_classes": 4}, 4)])
def test_the_number_of_classes_has_one_spelling(recorded, count):
    assert RunSettings.from_config({"protocol": "own", **recorded}).num_classes == count


def test_what_a_study_set_for_a_run_travels_beside_its_config_not_in_it():
    from kandel_repro.report.collect import collect
    from kandel_repro.report.header import caveat_of

    _, configs = collect("table2", LEGACY / "table2")
    (config,) = configs
    assert config.set_by_study == {"backbone", "first_trainable_block", "learning_rate"}
    assert "set_by_study" not in config.to_config()
    assert config.updated(seed=1).set_by_study == config.set_by_study
    # weights a study's row sets are not the user's choice: no caveat of random weights
    assert "random weights" in caveat_of([config])
    assert "random weights" not in caveat_of([RunSettings.of(config, frozenset({"weights"}))])


def test_every_setting_a_user_may_give_is_a_typed_field():
    protocols = {f.name for p in PROTOCOLS.values() for f in dataclasses.fields(p)}
    assert USER_KEYS == protocols | set(RUNTIME_DEFAULTS) | set(EVALUATION_DEFAULTS)
    assert {f.name for f in dataclasses.fields(UserSettings)} == USER_KEYS | {"given"}
    assert USER_KEYS < TYPED_KEYS


def test_user_settings_refuse_an_unknown_key_at_once_in_one_line():
    with pytest.raises(ConfigError, match="unknown setting: max_epoch ") as error:
        UserSettings(weights="none", max_epoch=3)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="unknown settings: colour, max_epoch "):
        UserSettings(max_epoch=3, colour="red")


def test_user_settings_hold_what_was_given_as_given():
    settings = UserSettings(weights="none", augment="imagedatagenerator", seed=None,
                            augmentation=None)
    assert dict(settings) == {"weights": "none", "augmenter": "imagedatagenerator",
                              "seed": None, "augmentation": None}  # the earlier name read
    assert settings.max_epochs is None and "max_epochs" not in settings
    assert dict(settings.without("seed")) == {"weights": "none",
                                              "augmenter": "imagedatagenerator",
                                              "augmentation": None}
    config = resolve_config("vgg16", 5, 1e-4, **settings)
    assert config.augmentation is None and config.weights == "none"  # None: augmentation off
    assert config.seed == PCAM.seed  # None elsewhere: the protocol's


def test_the_splits_and_resizing_of_a_protocol_are_read_from_it(monkeypatch):
    assert not {"splits", "resizes", "wsi_map_split", "kept_size"} & set(
        dataclasses.asdict(PROTOCOLS["own"]))  # the protocol's facts, not a run's settings

    @dataclasses.dataclass(frozen=True)
    class GivenOnly(OwnDataProtocol):
        splits = ("given",)

    assert resolve_config("vgg16", 5, 1e-4, protocol="own", split="image").split == "image"
    monkeypatch.setitem(PROTOCOLS, "own", GivenOnly())
    with pytest.raises(ConfigError, match="--split image does not apply to own: one of given"):
        resolve_config("vgg16", 5, 1e-4, protocol="own", split="image")
    assert resolve_config("vgg16", 5, 1e-4, protocol="own", split="given").split == "given"


def test_the_data_record_the_side_of_their_images(tiny_pcam):
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.config import with_data

    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4)
    assert config.image_size == PCAM.image_size  # before the data: the protocol's
    recorded = with_data(config, data)
    assert recorded.image_size == data.image_shape[0] != PCAM.image_size  # PCam's own side
    assert list(recorded)[:len(config)] == list(config)


def test_the_grid_takes_its_options_and_settings_as_typed_objects(tiny_pcam, tmp_path):
    from kandel_repro.grid.grid import GridOptions, run_grid

    with pytest.raises(TypeError, match="GridOptions and UserSettings"):
        run_grid("table2", tiny_pcam, tmp_path / "runs", GridOptions(),
                 {"weights": "none"})  # a plain dict is not taken for the settings
    with pytest.raises(TypeError, match="GridOptions and UserSettings"):
        run_grid("table2", tiny_pcam, tmp_path / "runs", {"shard": "1/3"})
    with pytest.raises(TypeError):
        GridOptions(weights="none")  # a run setting is not a grid option
    assert not (tmp_path / "runs").exists()


def test_run_models_are_named(tmp_path):
    from kandel_repro.runs.config import resolve_runtime
    from kandel_repro.runs.train import build_network, build_run_models

    config = resolve_runtime(resolve_config("cbr_tiny", 1, 1e-3, weights="none",
                                            augmentation=None))
    models = build_run_models(config, (32, 32, 3))
    model, trainer, predictor, trainable = models  # unpacking reads as before
    assert (models.model, models.trainer, models.predictor, models.trainable) == (
        model, trainer, predictor, trainable)
    assert models.predictor.inputs[0].dtype == "uint8" and models.trainer.optimizer is not None
    assert set(models.trainable) <= {layer.name for layer in models.model.layers}
    network = build_network(config, (32, 32, 3))
    assert network.model.count_params() == model.count_params() and network.block_map


def test_a_config_written_by_a_run_is_read_back_the_same(tmp_path):
    config = resolve_config("vgg16", 5, 1e-4, protocol="own").updated(
        dataset="folder", synthetic=False, data_dir="/d", num_classes=3, n_train=8)
    rundir.write_config(tmp_path, config)
    written = (tmp_path / rundir.CONFIG).read_bytes()
    again = rundir.read_config(tmp_path)  # (own data: every key added since is held)
    assert RunSettings.from_config(again) == config
    write_json(tmp_path / "again.json", RunSettings.from_config(again).to_config())
    assert (tmp_path / "again.json").read_bytes() == written

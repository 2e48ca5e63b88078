"""The unlabelled studies' registry entries, how their pretrained rows find their pretrain
runs, and ``--weights-from RUN`` naming a pretrain run."""
import json

import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.runs.config import resolve_config
from kandel_repro.studies.cells import study_configs
from kandel_repro.studies.registry import get_study
from kandel_repro.studies.unlabelled import PREFIX, bind_pretrained, find_pretrain_run


def _pretrain_run(folder, kind, finished=True):
    """A folder that looks like a finished pretrain run to the study (its real files are
    tested in tests/pretraining/test_pretrain.py)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"pretrain": kind, "kind": kind}))
    if finished:
        (folder / "metrics.json").write_text("{}")
        (folder / "dcgan_small.weights.h5").write_bytes(b"")
    return folder


def test_unlabelled_rows_compare_one_trunk_and_imagenet_as_reference():
    study = get_study("unlabelled")
    rows = {level.label: dict(level.settings) for level in study.rows}
    assert list(rows) == ["scratch", "VAE", "DCGAN", "ImageNet (VGG16)"]
    assert {rows[r]["backbone"] for r in ("scratch", "VAE", "DCGAN")} == {"dcgan_small"}
    assert rows["VAE"]["weights"] == PREFIX + "vae" and rows["scratch"]["weights"] == "none"
    # every run fine-tunes end to end at the study's one learning rate
    assert {c.first_trainable_block for c in study.cells()} == {1}
    assert {c.learning_rate for c in study.cells()} == {1e-4}
    assert [level.settings["train_fraction"] for level in study.columns] == [0.01, 0.05, 0.2, 1.0]
    # the verdict is asked at the smallest fraction
    assert study.findings[0].claim == ("worse", ("scratch", "1/100"), ("VAE", "1/100"))


def test_fractions_remake_both_studies_and_their_claims():
    study = get_study("unlabelled", "0.5,0.02")
    assert [level.label for level in study.columns] == ["1/50", "1/2"]
    assert study.findings[1].claim == ("worse", ("scratch", "1/50"), ("DCGAN", "1/50"))
    depth = get_study("unlabelled-depth", "0.5,0.02")
    assert depth.fixed["train_fraction"] == 0.02
    assert [level.label for level in depth.rows] == ["4", "3–4", "2–4", "1–4"]
    assert [level.label for level in depth.columns] == ["scratch", "VAE", "DCGAN"]
    with pytest.raises(ConfigError, match="datasize and unlabelled"):
        get_study("table2", "0.5")


def test_bind_finds_pretrain_runs_inside_or_beside_the_runs_folder(tmp_path):
    vae = _pretrain_run(tmp_path / "runs" / "pretrain-vae", "vae")
    dcgan = _pretrain_run(tmp_path / "pretrain-dcgan", "dcgan")
    said = []
    bound = bind_pretrained(get_study("unlabelled"), tmp_path / "runs",
                            imagenet_available=lambda name: False, log=said.append)
    weights = {level.label: level.settings["weights"] for level in bound.rows}
    assert weights == {"scratch": "none", "VAE": str(vae.resolve()), "DCGAN": str(dcgan.resolve())}
    assert "ImageNet (VGG16) row is left out" in said[0]
    # with the weights on the machine the ImageNet row stays
    kept = bind_pretrained(get_study("unlabelled"), tmp_path / "runs",
                           imagenet_available=lambda name: True, log=said.append)
    assert len(kept.rows) == 4
    # the configs of the bound study load the pretrain runs' folders as --weights
    configs = study_configs(bound, (0,))
    assert configs["dcgan_small_vae_frac0.01"]["weights"] == str(vae.resolve())
    # other studies pass unchanged
    table2 = get_study("table2")
    assert bind_pretrained(table2, tmp_path / "runs") is table2


def test_missing_or_unfinished_pretrain_runs_say_how_to_make_them(tmp_path):
    with pytest.raises(ConfigError, match="kandel-repro pretrain vae --data DIR --out"):
        find_pretrain_run(tmp_path / "runs", "vae")
    _pretrain_run(tmp_path / "runs" / "pretrain-vae", "vae", finished=False)
    with pytest.raises(ConfigError, match="has not finished"):
        find_pretrain_run(tmp_path / "runs", "vae")
    _pretrain_run(tmp_path / "runs" / "pretrain-dcgan", "vae")
    with pytest.raises(ConfigError, match="not a dcgan pretrain run"):
        find_pretrain_run(tmp_path / "runs", "dcgan")


def test_the_study_refuses_weights_of_the_user(tmp_path):
    with pytest.raises(ConfigError, match="sets --weights itself"):
        study_configs(get_study("unlabelled"), (0,), weights="none")


def test_weights_from_a_pretrain_run_initialises_the_backbone(tmp_path):
    run = _pretrain_run(tmp_path / "vae", "vae")
    config = resolve_config("dcgan_small", 1, 1e-4, weights_from=str(run))
    assert config["weights"] == str(run.resolve()) and config["weights_from"] is None
    # with meanvar it is the statistics' source
    config = resolve_config("dcgan_small", 1, 1e-4, weights="meanvar", weights_from=str(run))
    assert config["weights"] == "meanvar" and config["weights_from"] == str(run.resolve())
    with pytest.raises(ConfigError, match="leave out --weights"):
        resolve_config("dcgan_small", 1, 1e-4, weights="none", weights_from=str(run))
    # a folder that is not a pretrain run keeps the old rule
    (tmp_path / "other").mkdir()
    with pytest.raises(ConfigError, match="applies to --weights meanvar"):
        resolve_config("dcgan_small", 1, 1e-4, weights_from=str(tmp_path / "other"))


def test_a_kaggle_kernel_refuses_the_unlabelled_studies():
    from kandel_repro.kaggle.kernel import kernel_study

    for name in ("unlabelled", "unlabelled-depth"):
        with pytest.raises(ConfigError, match="pretrain runs on this machine"):
            kernel_study(name)
    assert kernel_study("table2").name == "table2"


def test_pretrain_runs_must_be_of_the_grids_data(tmp_path):
    from kandel_repro.studies.unlabelled import check_pretrain_data

    for kind in ("vae", "dcgan"):
        _pretrain_run(tmp_path / "runs" / f"pretrain-{kind}", kind)
    (tmp_path / "runs" / "pretrain-vae" / "config.json").write_text(json.dumps(
        {"kind": "vae", "data_fingerprint": "abc", "data_dir": "/data/a", "images": "all"}))
    (tmp_path / "runs" / "pretrain-dcgan" / "config.json").write_text(json.dumps(
        {"kind": "dcgan", "data_fingerprint": "abc", "data_dir": "/data/a", "images": "train"}))
    (tmp_path / "runs" / "pretrain-dcgan" / "metrics.json").write_text('{"status": "stopped"}')
    bound = bind_pretrained(get_study("unlabelled"), tmp_path / "runs",
                            imagenet_available=lambda name: False, log=lambda _: None)
    said = []
    check_pretrain_data(bound, {"data_fingerprint": "abc", "data_dir": "/data/a"}, said.append)
    assert any("--images all, which holds the validation images" in line for line in said)
    assert any("stopped before its last epoch" in line for line in said)
    with pytest.raises(ConfigError, match="was pretrained on /data/a, not on the grid's data"):
        check_pretrain_data(bound, {"data_fingerprint": "xyz", "data_dir": "/data/b"})

"""`kandel-repro pretrain`: the command line, bad input, a non-finite loss and mode collapse."""
import json

import numpy as np
import pytest

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError
from kandel_repro.pretraining import images as pretrain_data, pretrain as P

TINY = dict(batch_size=8, widths=(8, 16, 16, 16), latent=8, verbose=0, workers=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_cli_trains_a_vae(tiny_pcam, cache, tmp_path, capsys):
    out = tmp_path / "vae"
    status = main(["pretrain", "vae", "--data", str(tiny_pcam), "--out", str(out), "--epochs",
                   "1", "--batch-size", "16", "--latent", "4", "--images", "all",
                   "--cache", str(cache), "--workers", "1"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1: " in printed and '"status": "ok"' in printed
    config = json.loads((out / "config.json").read_text())
    assert config["n_images"] == 80 and config["beta"] == 1.0  # 60 train/ + 20 test/
    assert config["widths"] == [64, 128, 256, 512]  # the dcgan_small backbone's
    assert (out / "samples" / "epoch_001.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"loss", "reconstruction", "kl"} <= set(metrics)
    # --weights-from the run: its encoder's trunk starts a classifier (blocks 1–3 frozen)
    import keras

    from kandel_repro.models.build import build_base, same_layers
    from kandel_repro.runs.single import train_single

    run = tmp_path / "from-vae"
    train_single(run, tiny_pcam, "dcgan_small", 4, 1e-3, weights_from=str(out), max_epochs=1,
                 cache_dir=cache, workers=1, verbose=0)
    assert json.loads((run / "config.json").read_text())["weights"] == str(out.resolve())
    trunk = build_base("dcgan_small", (32, 32, 3), str(P.trunk_weights_file(out)))
    trained = same_layers(trunk, keras.saving.load_model(run / "best_model.keras"))
    for name in ("block1_conv", "block2_conv", "block3_conv", "block3_bn"):
        for kept, start in zip(trained[name].get_weights(), trunk.get_layer(name).get_weights()):
            assert np.array_equal(kept, start), name
    moved = [not np.array_equal(a, b) for a, b in zip(
        trained["block4_conv"].get_weights(), trunk.get_layer("block4_conv").get_weights())]
    assert any(moved)  # the fine-tuned block trained


def test_too_few_images_is_one_line(tiny_pcam, cache, tmp_path, capsys):
    status = main(["pretrain", "dcgan", "--data", str(tiny_pcam), "--out", str(tmp_path / "r"),
                   "--images", "test", "--batch-size", "64", "--cache", str(cache),
                   "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "holds 20 image(s), fewer than one batch (--batch-size 64)" in err
    assert not (tmp_path / "r").exists()


def test_pcam_is_not_resized(tiny_pcam, tmp_path):
    with pytest.raises(ConfigError, match="--image-size"):
        P.pretrain("vae", tiny_pcam, tmp_path / "r", image_size=64, **TINY)


@pytest.mark.parametrize("size", [0, -3])
def test_an_image_size_that_is_no_size_is_refused_from_python_too(tmp_path, size):
    """0 is not "the default" and −3 is no size: refused before anything is read."""
    with pytest.raises(ConfigError, match="--image-size must be a positive integer"):
        P.pretrain("vae", tmp_path / "no-data", tmp_path / "r", dataset="folder",
                   image_size=size, **TINY)
    assert not (tmp_path / "r").exists()


def test_folder_of_one_image(tmp_path):
    from PIL import Image

    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir()
    Image.new("RGB", (40, 30), "red").save(tmp_path / "data" / "a" / "one.png")
    Image.new("RGB", (20, 20), "blue").save(tmp_path / "data" / "b" / "two.png")
    # Mixed sizes are fine: the folder reader resizes every image to --image-size.
    with pytest.raises(ConfigError, match=r"holds 2 image\(s\), fewer than one batch "
                                          r"\(--batch-size 8\)"):
        P.pretrain("vae", tmp_path / "data", tmp_path / "r", dataset="folder", images="all",
                   image_size=32, **TINY)


def test_non_finite_loss_stops_and_keeps_the_last_good_epoch(tiny_pcam, cache, tmp_path,
                                                             monkeypatch):
    out = tmp_path / "run"
    plain = pretrain_data.fetch

    def poisoned(pool, positions):
        images = plain(pool, positions)
        if (out / "checkpoint.json").is_file():  # from epoch 2 on
            images[:] = np.nan
        return images

    monkeypatch.setattr(pretrain_data, "fetch", poisoned)
    said = []
    metrics = P.pretrain("vae", tiny_pcam, out, epochs=3, cache_dir=cache, log=said.append,
                         **TINY)
    assert metrics["status"] == "stopped" and metrics["stopped_epoch"] == 2
    assert metrics["epochs_run"] == 1 and "epoch 2" in metrics["stopped"]
    assert any(line.startswith("error: ") and "epoch 2" in line for line in said)
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 1
    assert json.loads((out / "dcgan_small.json").read_text())["epochs"] == 1
    assert np.isfinite(metrics["loss"])  # the last good epoch's
    assert not (out / "samples" / "epoch_002.png").exists()


def test_mode_collapse_is_warned(tiny_pcam, cache, tmp_path, monkeypatch):
    from kandel_repro.models import generative_nets

    def constant(self, n, seed=0):
        return np.zeros((n, 32, 32, 3), np.float32)

    def varied(self, n, seed=0):
        return np.random.default_rng(seed).uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32)

    said = []
    monkeypatch.setattr(generative_nets.DCGAN, "sample", varied)
    P.pretrain("dcgan", tiny_pcam, tmp_path / "varied", epochs=1, cache_dir=cache,
               log=said.append, **TINY)
    assert not any("mode collapse" in line for line in said)
    monkeypatch.setattr(generative_nets.DCGAN, "sample", constant)
    metrics = P.pretrain("dcgan", tiny_pcam, tmp_path / "constant", epochs=1,
                         cache_dir=cache, log=said.append, **TINY)
    import pandas as pd

    history = pd.read_csv(tmp_path / "constant" / "history.csv")
    assert history["warning"].iloc[0].startswith("mode collapse: ")
    assert history["sample_diversity"].iloc[0] == 0.0
    assert any(line.startswith("warning: epoch 1: mode collapse") for line in said)
    assert metrics["warnings"] == 1

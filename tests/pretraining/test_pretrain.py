"""Pretraining runs (kandel_repro.pretraining.pretrain): the run folder, exact resume after a
stop between epochs (kill -9 mid-epoch: test_pretrain_kill.py), the refusal of other
settings, and what the judge reads back."""
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import same_weights_files as _same

from kandel_repro.core.errors import ConfigError
from kandel_repro.pretraining import pretrain as P

TINY = dict(batch_size=8, widths=(8, 16, 16, 16), latent=8, verbose=0, workers=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def straight(tiny_pcam, cache, tmp_path_factory):
    """A DCGAN pretrained for 2 epochs in one call."""
    out = tmp_path_factory.mktemp("straight") / "run"
    metrics = P.pretrain("dcgan", tiny_pcam, out, epochs=2, cache_dir=cache, **TINY)
    return out, metrics


def test_run_folder(straight, tiny_pcam):
    out, metrics = straight
    config = json.loads((out / "config.json").read_text())
    assert config["pretrain"] == config["kind"] == "dcgan"
    assert config["data_dir"] == str(Path(tiny_pcam).resolve()) and config["synthetic"] is True
    assert config["n_images"] == 48 and config["images"] == "train"  # 80 % of 60
    assert config["latent"] == 8 and config["learning_rate"] == 2e-4
    import pandas as pd

    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "seconds", "warning",
            "sample_diversity"} <= set(history.columns)
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 2 and metrics["stopped"] is None
    assert json.loads((out / "metrics.json").read_text())["g_loss"] == pytest.approx(
        history["g_loss"].iloc[-1])
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_001.png",
                                                                   "epoch_002.png"]
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))
    trunk = json.loads((out / "dcgan_small.json").read_text())
    assert trunk["backbone"] == "dcgan_small" and trunk["epochs"] == 2
    assert trunk["source_run"] == str(out.resolve()) and trunk["kind"] == "dcgan"
    assert [p.name for p in out.glob("checkpoint-epoch*")] == ["checkpoint-epoch002.weights.h5"]
    assert not (out / ".lock").exists()
    # The trunk loads into the same trunk built at another size (its weights are size-free).
    from kandel_repro.models.generative import build_trunk

    other = build_trunk((48, 48, 3), TINY["widths"])
    other.load_weights(P.trunk_weights_file(out))


def test_resume_between_epochs_equals_one_call(straight, tiny_pcam, cache, tmp_path):
    out = tmp_path / "run"
    P.pretrain("dcgan", tiny_pcam, out, epochs=1, cache_dir=cache, **TINY)
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1
    said = []
    metrics = P.pretrain("dcgan", tiny_pcam, out, epochs=2, cache_dir=cache, log=said.append,
                         **TINY)
    assert any("resuming after epoch 1 of 2" in line for line in said)
    assert metrics["epochs_run"] == 2
    assert _same(P.trunk_weights_file(out), P.trunk_weights_file(straight[0]))
    assert _same(out / "checkpoint-epoch002.weights.h5",
                 straight[0] / "checkpoint-epoch002.weights.h5")
    before = (out / "metrics.json").read_text()
    said.clear()
    P.pretrain("dcgan", tiny_pcam, out, epochs=2, cache_dir=cache, log=said.append, **TINY)
    assert any("finished already" in line for line in said)
    assert (out / "metrics.json").read_text() == before
    with pytest.raises(ConfigError, match="--latent 8, not 16"):
        P.pretrain("dcgan", tiny_pcam, out, epochs=3, cache_dir=cache, **dict(TINY, latent=16))


def test_judge_reads_samples_and_held_out_images(straight):
    out = straight[0]
    samples = P.sample_images(out, 5, seed=1)
    assert samples.shape == (5, 32, 32, 3) and samples.dtype == np.uint8
    assert np.array_equal(samples, P.sample_images(out, 5, seed=1))
    held = P.held_out_images(out, 30, seed=0)
    # 12 validation rows of the split, then the 20 test patches: none trained on.
    assert held.shape == (30, 32, 32, 3) and held.dtype == np.uint8
    assert P.is_pretrain_run(out) and not P.is_pretrain_run(out / "samples")
    assert P.pretrain_config(out)["kind"] == "dcgan"
    with pytest.raises(ConfigError, match="not a pretraining run"):
        P.pretrain_config(out.parent)

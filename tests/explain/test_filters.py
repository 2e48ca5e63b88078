"""The first convolution before and after training (kandel_repro.explain.filters): which
layer, how far it moved, and ``kandel-repro filters`` on finished runs."""
import json
import shutil

import numpy as np
import pytest
from test_gradcam import cli

from kandel_repro.core.errors import ConfigError
from kandel_repro.explain.filters import filter_movement, first_convolution, mosaic


def test_movement_is_relative_per_filter_and_for_the_layer():
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(3, 3, 3, 4))
    final = initial.copy()
    final[..., 1] *= 1.5  # filter 1 grows by half its norm; filter 3 is reversed
    final[..., 3] = -initial[..., 3]
    per_filter, layer = filter_movement(initial, final)
    np.testing.assert_allclose(per_filter, [0.0, 0.5, 0.0, 2.0], atol=1e-12)
    expected = np.sqrt(0.25 * np.sum(initial[..., 1] ** 2) + 4 * np.sum(initial[..., 3] ** 2))
    assert layer == pytest.approx(expected / np.linalg.norm(initial), rel=1e-12)
    zero = np.zeros((3, 3, 3, 2))
    per_filter, layer = filter_movement(zero, zero + 1)
    assert np.isnan(per_filter).all() and np.isnan(layer)
    with pytest.raises(ConfigError, match="not the same layer"):
        filter_movement(initial, final[..., :3])


def test_a_mosaic_tiles_filters_on_one_scale_grey_at_zero():
    kernel = np.zeros((2, 2, 3, 20))
    kernel[0, 0, 0, 0] = 1.0  # filter 0: one red pixel at the scale's top
    kernel[1, 1, 2, 19] = -1.0  # filter 19 (second row, fourth tile): no blue at one pixel
    tiles = mosaic(kernel, scale=1.0, per_row=16)
    assert tiles.shape == (2 * 3 + 1, 16 * 3 + 1, 3)
    np.testing.assert_allclose(tiles[1, 1], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(tiles[1 + 3 + 1, 1 + 3 * 3 + 1], [0.5, 0.5, 0.0])
    assert tiles[1, 2, 0] == 0.5 and tiles[0].min() == 1.0  # grey 0; white between tiles
    grey = mosaic(np.ones((2, 2, 1, 2)), scale=2.0)
    np.testing.assert_allclose(grey[1, 1], [0.75, 0.75, 0.75])


def test_the_first_convolution_is_the_backbones_first_conv2d():
    import keras

    inputs = keras.Input((8, 8, 3))
    stem = keras.Sequential([keras.layers.DepthwiseConv2D(3, padding="same"),
                             keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")],
                            name="stem")
    x = keras.layers.Conv2D(5, 3, padding="same", name="second")(stem(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="head_dense")(x))
    assert first_convolution(model).name == "stem_conv"  # nested; depthwise skipped
    head_only = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head_conv")(inputs))
    with pytest.raises(ConfigError, match="no Conv2D"):
        first_convolution(head_only)


@pytest.fixture(scope="module")
def runs(tiny_pcam, tmp_path_factory):
    """``{first block: finished run}``: cbr_small trained from block 1 and from block 2
    (block 1 frozen), 1 epoch each on the tiny set (read-only: copy to write into)."""
    from kandel_repro.runs.single import train_single

    root = tmp_path_factory.mktemp("filters")
    out = {}
    for first in (1, 2):
        out[first] = root / f"cbr_small_blocks{first}-4_lr1e-03"
        train_single(out[first], tiny_pcam, "cbr_small", first, 1e-3, workers=1, verbose=0,
                     weights="none", max_epochs=1, batch_size=16)
    return out


@pytest.mark.slow
def test_a_trained_first_block_moved_and_a_frozen_one_did_not(runs, tmp_path, capsys):
    assert cli(["filters", str(runs[1]), str(runs[2]), "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "filters.png").stat().st_size > 0
    record = json.loads((tmp_path / "filters.json").read_text())
    trained, frozen = record["runs"]
    assert trained["run"] == str(runs[1]) and frozen["run"] == str(runs[2])
    for entry in (trained, frozen):
        assert entry["layer"] == "block1_conv" and entry["kernel_shape"] == [7, 7, 3, 32]
        assert len(entry["filter_relative_l2"]) == 32
    assert trained["first_trainable_block"] == 1 and frozen["first_trainable_block"] == 2
    assert trained["layer_relative_l2"] > 0 and min(trained["filter_relative_l2"]) > 0
    assert frozen["layer_relative_l2"] == 0.0 and set(frozen["filter_relative_l2"]) == {0.0}


@pytest.mark.slow
def test_one_run_writes_into_its_folder_and_bad_runs_are_refused(runs, tmp_path, capsys):
    run = tmp_path / runs[2].name
    shutil.copytree(runs[2], run)
    assert cli(["filters", str(run)]) == 0
    assert (run / "filters.png").is_file()
    assert json.loads((run / "filters.json").read_text())["runs"][0]["layer_relative_l2"] == 0.0
    capsys.readouterr()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(runs[1] / "config.json", unfinished)
    out = tmp_path / "figures"
    for bad, words in ((tmp_path / "nowhere", ["no such run folder"]),
                       (tmp_path, ["not a run folder", "config.json"]),
                       (unfinished, ["not a finished run", "metrics.json"])):
        assert cli(["filters", str(runs[1]), str(bad), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("kandel-repro: error: "), err
        assert all(word in err for word in [str(bad), *words]), err
        assert not out.exists()  # refused before anything was built or written


@pytest.mark.parametrize("weights", ["imagenet", "a file gone"])
def test_a_run_whose_initial_weights_are_not_here_says_what_to_do(tmp_path, capsys,
                                                                   monkeypatch, weights):
    """filters rebuilds the weights a run started from: without their file (and no way to
    download it) the message names the file and where it goes, and does not suggest an
    option filters lacks (--weights none)."""
    import keras

    from kandel_repro.runs.config import resolve_config
    from kandel_repro.runs.train import build_network

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # no download
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    run = tmp_path / "vgg16_blocks5-5_lr1e-04"
    run.mkdir()
    config = resolve_config("vgg16", 5, 1e-4, weights="none", image_size=32, protocol="own")
    build_network(config, (32, 32, 3))[0].save(run / "best_model.keras")
    gone = str(tmp_path / "vgg16.weights.h5")
    (run / "config.json").write_text(json.dumps(
        {**config, "weights": "imagenet" if weights == "imagenet" else gone}))
    (run / "metrics.json").write_text(json.dumps({"status": "ok", "val_auc": 0.5}))
    keras.backend.clear_session()
    out = tmp_path / "figures"
    assert cli(["filters", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kandel-repro: error: "), err
    words = ([str(run), "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
              str(tmp_path / "keras"), "KERAS_HOME"] if weights == "imagenet"
             else [str(run), gone, "put that file back"])
    for word in words:
        assert word in err, (word, err)
    assert "--weights" not in err, err
    assert not out.exists()  # nothing written, not even the --out folder


def test_a_mobilenet_v2_run_at_96_pixels_names_the_file_of_96_pixels(tmp_path, monkeypatch):
    """MobileNetV2's Keras constructor reads the ImageNet file of its input size: filters
    names that file, not the 224-pixel one."""
    from kandel_repro.explain.filters import missing_initial_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    config = {"backbone": "mobilenet_v2", "weights": "imagenet", "image_size": 96}
    message = str(missing_initial_weights(tmp_path / "run", config))
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in message
    assert "_224_" not in message

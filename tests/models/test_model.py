import json

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError, WeightsUnavailable
from kandel_repro.models.backbones import REGISTRY, depth_label
from kandel_repro.models.build import build_base, build_model
from kandel_repro.models.freeze import set_trainable_blocks, trainable_layer_names

VGG16_CONVS = {1: ["block1_conv1", "block1_conv2"], 2: ["block2_conv1", "block2_conv2"],
               3: ["block3_conv1", "block3_conv2", "block3_conv3"],
               4: ["block4_conv1", "block4_conv2", "block4_conv3"],
               5: ["block5_conv1", "block5_conv2", "block5_conv3"]}
VGG19_CONVS = {1: ["block1_conv1", "block1_conv2"], 2: ["block2_conv1", "block2_conv2"],
               **{b: [f"block{b}_conv{i}" for i in range(1, 5)] for b in (3, 4, 5)}}
HEAD = ["head_dense"]  # the only head layer with weights


@pytest.fixture(scope="module")
def vgg16():
    return build_model("vgg16", (32, 32, 3), weights=None)


@pytest.mark.parametrize("first", [5, 4, 3, 2, 1])
def test_vgg16_trainable_layers_for_every_depth(vgg16, first):
    model, block_map = vgg16
    names = set_trainable_blocks(model, block_map, first)
    expected = sorted(HEAD + [n for b in range(first, 6) for n in VGG16_CONVS[b]])
    assert names == expected
    assert trainable_layer_names(model) == expected
    frozen = {l.name for l in model.layers if not l.trainable}
    assert frozen == {n for b in range(1, first) for n in block_map[b]}


@pytest.mark.parametrize("first", [5, 3, 1])
def test_vgg19_trainable_layers(first):
    model, block_map = build_model("vgg19", (32, 32, 3), weights=None)
    names = set_trainable_blocks(model, block_map, first)
    assert names == sorted(HEAD + [n for b in range(first, 6) for n in VGG19_CONVS[b]])


def test_refreezing_deeper_then_shallower(vgg16):
    model, block_map = vgg16
    set_trainable_blocks(model, block_map, 1)
    set_trainable_blocks(model, block_map, 4)
    assert not model.get_layer("block3_conv3").trainable
    assert model.get_layer("block4_conv1").trainable


def test_block_map_splits_at_pools(vgg16):
    _, block_map = vgg16
    assert list(block_map) == [1, 2, 3, 4, 5]
    for block, names in block_map.items():
        assert names[-1] == f"block{block}_pool"


@pytest.mark.parametrize("bad", [0, 6, "3", None])
def test_bad_first_block_is_named(vgg16, bad):
    model, block_map = vgg16
    with pytest.raises(ConfigError, match=repr(bad).replace("(", r"\(")):
        set_trainable_blocks(model, block_map, bad)


def test_head_is_flatten_dropout_dense_or_avg():
    model, _ = build_model("vgg16", (32, 32, 3), weights=None)
    assert model.get_layer("head_pool").__class__.__name__ == "Flatten"
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.output_shape == (None, 1)
    avg, _ = build_model("vgg16", (32, 32, 3), weights=None, head_pooling="avg")
    assert avg.get_layer("head_pool").__class__.__name__ == "GlobalAveragePooling2D"
    with pytest.raises(ConfigError, match="'max'"):
        build_model("vgg16", (32, 32, 3), weights=None, head_pooling="max")


def test_too_small_input_is_refused():
    with pytest.raises(ConfigError, match="at least 32×32"):
        build_base("vgg16", (24, 24, 3), weights=None)


def test_unavailable_imagenet_weights_name_file_and_folder(tmp_path, monkeypatch):
    # A proxy on a closed loopback port makes the download fail at once, as offline.
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    with pytest.raises(WeightsUnavailable) as err:
        build_base("vgg16", (32, 32, 3), weights="imagenet")
    message = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "kh" / "models") in message
    assert "--weights" in message


def test_weights_from_path_are_loaded(tmp_path):
    base = build_base("vgg16", (32, 32, 3), weights=None)
    path = tmp_path / "vgg16_notop.weights.h5"
    base.save_weights(path)
    again = build_base("vgg16", (32, 32, 3), weights=str(path))
    for a, b in zip(base.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(WeightsUnavailable, match="missing.h5"):
        build_base("vgg16", (32, 32, 3), weights=str(tmp_path / "missing.h5"))


def test_depth_labels():
    assert [depth_label(k, 5) for k in (5, 4, 1)] == ["5", "4–5", "1–5"]
    assert set(REGISTRY) >= {"vgg16", "vgg19"}


def test_cli_blocks_json(capsys):
    from kandel_repro.cli.main import main

    assert main(["blocks", "vgg16", "--json"]) == 0
    blocks = json.loads(capsys.readouterr().out)
    assert blocks["3"]["layers"] == VGG16_CONVS[3] + ["block3_pool"]
    assert blocks["5"]["parameters"] == 3 * (3 * 3 * 512 * 512 + 512)


# --- InceptionV3: 13 blocks -----------------------------------------------------------
# Convolutions per block, from the architecture: stem 3 + 2, mixed0–2: 7 each,
# mixed3: 4, mixed4–7: 10 each, mixed8: 6, mixed9–10: 9 each (94 in all). Every conv is
# followed by a BatchNormalization (scale=False), so a trainable block contributes two
# layers with weights per conv and two trainable weights per conv (kernel, BN beta).
INCEPTION_CONVS = [3, 2, 7, 7, 7, 4, 10, 10, 10, 10, 6, 9, 9]


@pytest.fixture(scope="module")
def inception():
    return build_model("inception_v3", (75, 75, 3), weights=None)


@pytest.mark.slow
def test_inception_has_13_blocks_ending_at_stem_pools_and_mixed(inception):
    model, block_map = inception
    assert list(block_map) == list(range(1, 14))
    ends = [names[-1] for names in block_map.values()]
    assert [model.get_layer(n).__class__.__name__ for n in ends[:2]] == ["MaxPooling2D"] * 2
    assert ends[2:] == [f"mixed{i}" for i in range(11)]
    assert sum(INCEPTION_CONVS) == 94


@pytest.mark.slow
@pytest.mark.parametrize("first", range(1, 14))
def test_inception_trainable_layers_and_weights_for_every_depth(inception, first):
    model, block_map = inception
    names = set_trainable_blocks(model, block_map, first)
    convs = sum(INCEPTION_CONVS[first - 1:])
    assert len(names) == 2 * convs + 1  # + head_dense
    assert len(model.trainable_weights) == 2 * convs + 2  # + dense kernel and bias
    frozen_bn = [l for l in model.layers
                 if l.__class__.__name__ == "BatchNormalization" and not l.trainable]
    assert len(frozen_bn) == sum(INCEPTION_CONVS[:first - 1])


@pytest.mark.slow
def test_second_inception_in_one_process_gives_the_same_map(inception):
    _, first_map = inception
    model, second_map = build_model("inception_v3", (75, 75, 3), weights=None)
    assert [len(v) for v in second_map.values()] == [len(v) for v in first_map.values()]
    assert second_map[1][0] != first_map[1][0]  # auto-generated names did change ...
    for first in (13, 6, 1):  # ... and the map still selects the same layers
        names = set_trainable_blocks(model, second_map, first)
        assert len(names) == 2 * sum(INCEPTION_CONVS[first - 1:]) + 1


@pytest.mark.slow
def test_inception_needs_75_pixels_and_takes_pcam_size():
    with pytest.raises(ConfigError, match="at least 75×75"):
        build_base("inception_v3", (74, 74, 3), weights=None)
    assert build_base("inception_v3", (96, 96, 3), weights=None).output_shape == (None, 1, 1, 2048)


@pytest.mark.slow
def test_cli_blocks_inception_json(capsys):
    from kandel_repro.cli.main import main

    assert main(["blocks", "inception_v3", "--json"]) == 0
    blocks = json.loads(capsys.readouterr().out)
    assert len(blocks) == 13 and blocks["13"]["layers"][-1] == "mixed10"
    assert blocks["3"]["layers"][-1] == "mixed0" and blocks["13"]["parameters"] > 0


# --- layer granularity and initialisers (beyond the paper) ---------------------------------

def test_vgg16_layer_map_numbers_its_13_convolutions(capsys):
    from kandel_repro.cli.main import main
    from kandel_repro.models.backbones import assign_layers
    from kandel_repro.models.build import layer_map_of

    mapping = layer_map_of("vgg16")
    assert list(mapping) == list(range(1, 14))
    assert mapping[1]["layers"] == ["block1_conv1"] and mapping[2]["layers"] == ["block1_conv2", "block1_pool"]
    assert mapping[11] == {"layers": ["block5_conv1"], "block": 5, "parameters": 3 * 3 * 512 * 512 + 512}
    assert main(["blocks", "vgg16", "--layers", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["13"]["layers"] == ["block5_conv3", "block5_pool"]
    model, _ = build_model("vgg19", (32, 32, 3), weights=None)
    assert len(assign_layers(model.layers)) == 16


@pytest.mark.parametrize("first, trainable", [
    (14, {"head_dense"}),
    (13, {"head_dense", "block5_conv3"}),
    (11, {"head_dense", "block5_conv1", "block5_conv2", "block5_conv3"}),
    (1, None)])
def test_layer_wise_depth_trains_the_last_layers(vgg16, first, trainable):
    from kandel_repro.models.backbones import assign_layers
    from kandel_repro.models.freeze import set_trainable_layers

    model, _ = vgg16
    names = set(set_trainable_layers(model, assign_layers(model.layers), first))
    every = {l.name for l in model.layers if l.trainable_weights}
    assert names == (every if trainable is None else trainable)


@pytest.mark.parametrize("init, std", [("gaussian", lambda fan_in: 0.01),
                                       ("he", lambda fan_in: np.sqrt(2 / fan_in))])
def test_initialisers_draw_the_stated_distribution(init, std):
    import keras

    from kandel_repro.models.initialise import reinitialise

    keras.utils.set_random_seed(0)
    model, _ = build_model("vgg16", (32, 32, 3), weights=None)
    reinitialise(model, init)
    kernel = model.get_layer("block4_conv1").kernel.numpy()
    fan_in = 3 * 3 * 256
    assert kernel.std() == pytest.approx(std(fan_in), rel=0.05) and abs(kernel.mean()) < 1e-3
    assert not model.get_layer("block4_conv1").bias.numpy().any()


def test_with_pretrained_weights_only_the_head_is_drawn_anew():
    import keras

    from kandel_repro.models.initialise import reinitialise

    keras.utils.set_random_seed(0)
    model, _ = build_model("vgg16", (32, 32, 3), weights=None)
    before = model.get_layer("block1_conv1").kernel.numpy().copy()
    reinitialise(model, "gaussian", head_only=True)
    np.testing.assert_array_equal(model.get_layer("block1_conv1").kernel.numpy(), before)
    assert model.get_layer("head_dense").kernel.numpy().std() == pytest.approx(0.01, rel=0.3)


# --- Transfusion: CBR networks, Mean-Var, partial transfer, exported weights ----------------

@pytest.mark.parametrize("name, blocks, widths, kernel", [
    ("cbr_large_t", 5, [32, 64, 128, 256, 512], 7), ("cbr_large_w", 4, [64, 128, 256, 512], 7),
    ("cbr_small", 4, [32, 64, 128, 256], 7), ("cbr_tiny", 4, [64, 128, 256, 512], 5)])
def test_cbr_networks_are_conv_batchnorm_relu_pool_blocks(name, blocks, widths, kernel, capsys):
    import keras

    from kandel_repro.cli.main import main

    model, block_map = build_model(name, (48, 48, 3), weights=None)
    assert list(block_map) == list(range(1, blocks + 1))
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == widths and {c.kernel_size for c in convs} == {(kernel, kernel)}
    assert {c.strides for c in convs} == {(1, 1)}
    pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert len(pools) == 4 and {(p.pool_size, p.strides) for p in pools} == {((3, 3), (2, 2))}
    kinds = [type(model.get_layer(n)).__name__ for n in block_map[1]]
    assert kinds == ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D"]
    assert model.get_layer("head_dropout").rate == 0.5 and model.output_shape == (None, 1)
    assert main(["blocks", name, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["1"]["parameters"] == kernel * kernel * 3 * widths[0] + 4 * widths[0]
    with pytest.raises(ConfigError, match="has no ImageNet weights"):
        build_base(name, (48, 48, 3), "imagenet")


def _saved_pretrained(tmp_path, backbone="vgg16", size=32):
    """A network of our own standing in for pretrained weights: random, saved."""
    import keras

    keras.utils.set_random_seed(11)
    base = build_base(backbone, (size, size, 3), "none")
    rng = np.random.default_rng(5)
    for layer in base.layers:  # give each tensor a distinct mean and spread
        for i, weight in enumerate(layer.weights):
            values = weight.numpy()
            weight.assign(values * (1 + i) + 0.05 * (i + 1)
                          + 0.02 * rng.normal(size=values.shape).astype(values.dtype))
    path = tmp_path / f"{backbone}.weights.h5"
    base.save_weights(path)
    return path, base


def test_mean_var_draws_each_tensor_with_the_pretrained_statistics(tmp_path):
    import keras

    path, source = _saved_pretrained(tmp_path)
    keras.utils.set_random_seed(0)
    model, _ = build_model("vgg16", (32, 32, 3), "meanvar", weights_from=str(path))
    for name in ("block1_conv1", "block3_conv2", "block5_conv3"):
        for drawn, reference in zip(model.get_layer(name).weights, source.get_layer(name).weights):
            drawn, reference = drawn.numpy(), reference.numpy()
            assert drawn.mean() == pytest.approx(reference.mean(), abs=3 * reference.std() / np.sqrt(drawn.size) + 1e-6)
            assert drawn.std() == pytest.approx(reference.std(), rel=0.1 if drawn.size > 500 else 0.5)
            assert not np.allclose(drawn, reference)  # drawn anew, not copied


def test_mean_var_sets_batchnorm_to_identity(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    base = build_base("cbr_tiny", (32, 32, 3), "none")
    for layer in base.layers:
        for weight in layer.weights:
            weight.assign(weight.numpy() + 0.3)
    base.save_weights(tmp_path / "cbr_tiny.weights.h5")
    model, _ = build_model("cbr_tiny", (32, 32, 3), "meanvar", weights_from=str(tmp_path))
    bn = model.get_layer("block2_bn")
    gamma, beta, mean, var = (w.numpy() for w in bn.weights)
    assert (gamma == 1).all() and (beta == 0).all() and (mean == 0).all() and (var == 1).all()


def test_partial_transfer_keeps_the_lower_blocks_only(tmp_path):
    import keras

    path, source = _saved_pretrained(tmp_path)
    keras.utils.set_random_seed(0)
    model, _ = build_model("vgg16", (32, 32, 3), str(path), transfer_blocks=2)
    np.testing.assert_array_equal(model.get_layer("block2_conv2").kernel.numpy(),
                                  source.get_layer("block2_conv2").kernel.numpy())
    assert not np.allclose(model.get_layer("block3_conv1").kernel.numpy(),
                           source.get_layer("block3_conv1").kernel.numpy())
    keras.utils.set_random_seed(0)
    fresh, _ = build_model("vgg16", (32, 32, 3), "none")
    assert model.get_layer("block3_conv1").kernel.numpy().std() == pytest.approx(
        fresh.get_layer("block3_conv1").kernel.numpy().std(), rel=0.05)  # the own initialiser


def test_transfer_settings_are_checked():
    from kandel_repro.runs.config import resolve_config

    assert resolve_config("vgg16", 1, 1e-4, weights="meanvar")["weights_from"] == "imagenet"
    with pytest.raises(ConfigError, match="--weights-from applies to --weights meanvar"):
        resolve_config("vgg16", 1, 1e-4, weights_from="imagenet")
    with pytest.raises(ConfigError, match="--transfer-blocks must be from 0 to 5"):
        resolve_config("vgg16", 1, 1e-4, transfer_blocks=6)
    with pytest.raises(ConfigError, match="takes blocks from pretrained weights"):
        resolve_config("vgg16", 1, 1e-4, weights="none", transfer_blocks=2)


def test_inception_weights_are_paired_by_position_not_by_generated_names(tmp_path):
    """InceptionV3's layer names are generated (conv2d_94 in a second copy in one process):
    exporting a run's weights and partial transfer must pair layers by position."""
    import json

    import keras

    from kandel_repro.runs.export import export_weights

    keras.utils.set_random_seed(0)
    model, _ = build_model("inception_v3", (75, 75, 3), "none")
    run = tmp_path / "inception_v3_scratch_lr1e-04"
    run.mkdir()
    model.save(run / "best_model.keras")
    (run / "config.json").write_text(json.dumps({"backbone": "inception_v3", "image_size": 75}))
    (run / "metrics.json").write_text(json.dumps({"val_auc": 0.5}))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    [path] = export_weights([run], tmp_path / "weights")  # loads the run beside a new copy
    transferred, _ = build_model("inception_v3", (75, 75, 3), str(tmp_path / "weights"),
                                 transfer_blocks=3)
    assert transferred.layers[1].name != model.layers[1].name  # the names did differ
    new_convs = [layer for layer in transferred.layers if isinstance(layer, keras.layers.Conv2D)]
    np.testing.assert_array_equal(new_convs[0].kernel.numpy(), convs[0].kernel.numpy())
    assert not np.allclose(new_convs[-1].kernel.numpy(), convs[-1].kernel.numpy())  # block 13
    with pytest.raises(ConfigError, match="not the same network"):
        from kandel_repro.models.build import same_layers

        same_layers(build_base("inception_v3", (75, 75, 3), "none"),
                    build_base("vgg16", (75, 75, 3), "none"))


# --- --weights PATH: what the file holds is checked, each problem told in one line ----------

@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """VGG16's weights (random) as `kandel-repro export-weights` writes them."""
    path = tmp_path_factory.mktemp("weights") / "vgg16.weights.h5"
    build_base("vgg16", (32, 32, 3), "none").save_weights(path)
    return path.resolve()


def _cut(path, tmp_path):
    """A truncated copy of the weights file ``path`` (a download or copy cut short)."""
    cut = (tmp_path / "cut.weights.h5").resolve()
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _one_line(err):
    message = str(err.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_weights_of_another_backbone_are_named_in_one_line(vgg16_file, tmp_path, recwarn):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    legacy = tmp_path / "vgg16_notop.h5"  # keras.applications' layout: no model name in it
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, build_base("vgg16", (32, 32, 3), "none"))
    recwarn.clear()
    for path in (vgg16_file, legacy.resolve()):
        with pytest.raises(WeightsUnavailable) as err:
            build_base("vgg19", (32, 32, 3), str(path))
        assert _one_line(err) == f"--weights {path} holds vgg16 weights; this run needs vgg19's"
    assert not [w for w in recwarn if "keras" in str(w.filename)]  # no Keras warning dump


def test_a_folder_without_the_backbones_weights_says_what_it_holds(vgg16_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsUnavailable) as err:
        build_base("vgg16", (32, 32, 3), str(empty))
    message = _one_line(err)
    assert f"--weights {empty.resolve()}: no vgg16.weights.h5" in message
    assert "holds no weights" in message
    with pytest.raises(WeightsUnavailable) as err:
        build_base("vgg19", (32, 32, 3), str(vgg16_file.parent))
    message = _one_line(err)
    assert "no vgg19.weights.h5" in message and "holds the weights of vgg16" in message


def test_a_truncated_weights_file_is_named_with_the_option_that_gave_it(vgg16_file, tmp_path):
    cut = _cut(vgg16_file, tmp_path)
    with pytest.raises(WeightsUnavailable) as err:
        build_base("vgg16", (32, 32, 3), str(cut))
    assert _one_line(err).startswith(f"--weights {cut} cannot be read: it is truncated")
    with pytest.raises(WeightsUnavailable) as err:
        build_model("vgg16", (32, 32, 3), "meanvar", weights_from=str(cut))
    assert _one_line(err).startswith(f"--weights-from {cut} cannot be read")


def test_mean_var_without_usable_weights_asks_for_weights_from(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="cbr_tiny has no ImageNet weights to draw Mean-Var's "
                                          "statistics from: give --weights-from PATH"):
        build_model("cbr_tiny", (32, 32, 3), "meanvar")
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):  # offline
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    with pytest.raises(WeightsUnavailable, match="or pass --weights-from PATH to that file"):
        build_model("vgg16", (32, 32, 3), "meanvar")


@pytest.mark.parametrize("study, bad", [
    ("table2", "cut"), ("table2", "empty folder"), ("table2", "meanvar from cut"),
    ("table3", "vgg16 file")])
def test_bad_weights_stop_the_grid_before_any_run_folder(tiny_pcam, vgg16_file, tmp_path, study,
                                                         bad):
    from kandel_repro.core.errors import KandelError
    from kandel_repro.grid import grid
    from kandel_repro.runs.settings import UserSettings

    cut = _cut(vgg16_file, tmp_path)
    (tmp_path / "empty").mkdir()
    settings = {"cut": {"weights": str(cut)}, "empty folder": {"weights": str(tmp_path / "empty")},
                "meanvar from cut": {"weights": "meanvar", "weights_from": str(cut)},
                "vgg16 file": {"weights": str(vgg16_file)}}[bad]
    runs = tmp_path / "runs"
    with pytest.raises(KandelError) as err:
        grid.run_grid(study, tiny_pcam, runs, settings=UserSettings(max_epochs=1, **settings),
                      log=lambda m: None)
    assert _one_line(err).startswith("--weights")
    assert not runs.exists()  # checked once, before the first run: no error.json per run


def test_train_checks_its_weights_before_writing_anything(tiny_pcam, vgg16_file, tmp_path):
    from kandel_repro.runs import single

    run_dir = tmp_path / "out" / "run"
    with pytest.raises(WeightsUnavailable, match="holds vgg16 weights; this run needs vgg19's"):
        single.train_single(run_dir, tiny_pcam, "vgg19", 5, 1e-4, weights=str(vgg16_file),
                          max_epochs=1)
    assert not (tmp_path / "out").exists()

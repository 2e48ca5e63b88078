"""Block maps of every keras.applications family (kandel_repro.models.families).

Each member is built once (a module-scoped fixture per member, torn down before the next),
with random weights at its minimum input size; one member per family (ResNet, ResNetV2,
DenseNet, EfficientNet, EfficientNetV2, ConvNeXt, MobileNet, MobileNetV2, MobileNetV3,
Xception, InceptionResNetV2) runs by default, the others (the largest among them:
ResNet152, DenseNet201, EfficientNetB7, EfficientNetV2L, ConvNeXtXLarge) are marked slow.
"""
import json
import re

import numpy as np
import pytest

from kandel_repro.core.errors import WeightsUnavailable
from kandel_repro.models import build as build_module
from kandel_repro.models.backbones import (ALIASES, FAMILY_CONVOLUTIONS, REGISTRY, assign_layers,
                                           get_backbone, is_convolution)
from kandel_repro.models.build import build_base, build_model
from kandel_repro.models.freeze import set_trainable_blocks

FAST = ("resnet50", "resnet50_v2", "densenet121", "efficientnet_b0", "efficientnet_v2_b0",
        "convnext_tiny", "mobilenet", "mobilenet_v2", "mobilenet_v3_small", "xception",
        "inception_resnet_v2")
FAMILIES = tuple(FAMILY_CONVOLUTIONS)
MEMBERS = [name if name in FAST else pytest.param(name, marks=pytest.mark.slow)
           for name in FAMILIES]


@pytest.fixture(scope="module", params=MEMBERS)
def member(request):
    """``(backbone, model with head, block map, base layers)`` of one family member."""
    import keras

    backbone = get_backbone(request.param)
    size = backbone.min_input_size
    model, blocks = build_model(backbone.name, (size, size, 3), weights=None)
    last = list(blocks.values())[-1][-1]
    base_layers = model.layers[:model.layers.index(model.get_layer(last)) + 1]
    yield backbone, model, blocks, base_layers
    del model, blocks, base_layers
    keras.backend.clear_session()


def _inputs(layer, members):
    """The names of the layers in ``members`` feeding ``layer``, through operations that
    are not layers (ConvNeXt's residual ``+``)."""
    found, seen = set(), set()
    stack = [t for node in layer._inbound_nodes for t in node.input_tensors]
    while stack:
        operation = stack.pop()._keras_history.operation
        if id(operation) in seen:
            continue
        seen.add(id(operation))
        if operation.name in members and members[operation.name] is operation:
            found.add(operation.name)
        elif type(operation).__name__ != "InputLayer":
            stack.extend(t for node in operation._inbound_nodes for t in node.input_tensors)
    return found


def _auto_named(layer):
    """Whether Keras generated the layer's name (``conv2d_3``, ``batch_normalization``)."""
    kind = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type(layer).__name__)  # Keras' snake case
    kind = re.sub(r"([a-z])([A-Z])", r"\1_\2", kind).lower()
    return re.sub(r"_\d+$", "", layer.name) == kind


def test_every_layer_is_in_exactly_one_block_in_layer_order(member):
    backbone, model, blocks, base_layers = member
    names = [layer.name for layer in base_layers if type(layer).__name__ != "InputLayer"]
    assert [name for block in blocks.values() for name in block] == names  # runs, each once
    assert list(blocks) == list(range(1, backbone.num_blocks + 1))
    weighted = {layer.name for layer in base_layers if layer.weights}
    assert weighted <= set(names) and len(weighted) > backbone.num_blocks
    convolutions = tuple(sum(is_convolution(model.get_layer(n)) for n in block)
                         for block in blocks.values())
    assert convolutions == FAMILY_CONVOLUTIONS[backbone.name] and all(convolutions)
    assert len(assign_layers(base_layers)) == backbone.num_layers == sum(convolutions)


def test_no_layer_feeds_an_earlier_block(member):
    """Blocks follow the graph; an auto-named layer with weights (Xception's and
    InceptionResNetV2's shortcut and branch convolutions) is in the block of every layer
    it feeds, so no block boundary rests on a generated name."""
    _, _, blocks, base_layers = member
    block_of = {name: block for block, names in blocks.items() for name in names}
    members = {layer.name: layer for layer in base_layers if layer.name in block_of}
    consumers = {name: set() for name in block_of}
    for layer in base_layers:
        if layer.name not in block_of:
            continue
        for source in _inputs(layer, members):
            assert block_of[source] <= block_of[layer.name], (source, layer.name)
            consumers[source].add(layer.name)
    later = [name for name in block_of
             if any(block_of[c] > block_of[name] for c in consumers[name])]
    assert later, "no layer feeds a later block: the graph was not read"
    for layer in base_layers:
        if layer.weights and _auto_named(layer) and layer.name in block_of:
            fed = {block_of[c] for c in consumers[layer.name]}
            assert fed <= {block_of[layer.name]}, layer.name


def test_freezing_from_block_b_trains_exactly_blocks_b_to_top_and_the_head(member):
    backbone, model, blocks, _ = member
    check_freezing_from_each_block(backbone, model, blocks)


def check_freezing_from_each_block(backbone, model, blocks):
    """Freezing from each block b trains exactly the layers of blocks b … top and the head
    (a nested model's layers too), their weights and no others (tests/models/test_vit.py
    checks the transformers with it)."""
    full = {layer.name: len(layer.trainable_weights) for layer in model.layers}
    try:
        for first in range(1, backbone.num_blocks + 1):
            trained = {n for b, names in blocks.items() if b >= first for n in names}
            expected = {n for n in trained if full[n]} | {"head_dense"}
            assert set(set_trainable_blocks(model, blocks, first)) == expected
            for b, names in blocks.items():  # nested models (ConvNeXt) with all their layers
                for name in names:
                    count = len(model.get_layer(name).trainable_weights)
                    assert count == (full[name] if b >= first else 0), (first, name)
            assert len(model.trainable_weights) == sum(full[n] for n in expected)
    finally:
        set_trainable_blocks(model, blocks, 1)


def test_frozen_batchnorm_keeps_its_statistics_in_a_training_step(member):
    """Keras 3 runs a non-trainable BatchNormalization in inference mode even under
    ``training=True``: checked here on the moving statistics, not assumed."""
    import keras

    backbone, model, blocks, _ = member
    norms = {name: block for block, names in blocks.items() for name in names
             if isinstance(model.get_layer(name), keras.layers.BatchNormalization)}
    if backbone.name.startswith("convnext"):
        assert not norms  # layer norms only: nothing runs in another mode when frozen
        return
    first = backbone.num_blocks // 2 + 1
    set_trainable_blocks(model, blocks, first)
    before = {n: model.get_layer(n).moving_mean.numpy().copy() for n in norms}
    size = backbone.min_input_size
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    try:
        model(images, training=True)
    finally:
        set_trainable_blocks(model, blocks, 1)
    changed = {n for n in norms if not np.array_equal(model.get_layer(n).moving_mean.numpy(),
                                                      before[n])}
    frozen = {n for n, block in norms.items() if block < first}
    assert frozen and changed == set(norms) - frozen  # batch statistics where trained only


def test_blocks_json_lists_blocks_layers_and_trainable_parameters(member, monkeypatch, capsys):
    import keras

    from kandel_repro.cli.main import main

    backbone, model, blocks, base_layers = member
    base = keras.Model(model.input, base_layers[-1].output)
    monkeypatch.setattr(build_module, "build_base", lambda *args, **kwargs: base)
    assert main(["blocks", backbone.name, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert list(described) == [str(b) for b in blocks]
    assert [row["layers"] for row in described.values()] == list(blocks.values())
    assert sum(row["parameters"] for row in described.values()) == base.count_params()
    depth = [row["trainable_parameters"] for row in described.values()]
    assert depth[0] == sum(int(np.prod(w.shape)) for w in base.trainable_weights)
    assert all(a > b > 0 for a, b in zip(depth, depth[1:]))
    top = blocks[backbone.num_blocks]
    assert depth[-1] == sum(int(np.prod(w.shape)) for n in top
                            for w in model.get_layer(n).trainable_weights)

    assert main(["blocks", backbone.name, "--layers", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert list(layers) == [str(k) for k in range(1, backbone.num_layers + 1)]
    assert all(row["unit"] for row in layers.values())
    assert len({row["unit"] for row in layers.values()}) > backbone.num_blocks  # finer units
    if backbone.block_layers:  # fine-tuning from a block's first layer = from the block
        first = 1
        for block, count in zip(blocks, backbone.block_layers):
            numbers = [str(k) for k in range(first, first + count)]
            assert {layers[k]["block"] for k in numbers} == {block}
            by_layer = {n for k in numbers for n in layers[k]["layers"]
                        if model.get_layer(n).weights}
            assert by_layer == {n for n in blocks[block] if model.get_layer(n).weights}
            first += count


# --- the registry: names, aliases, preprocessing, sizes, weight files (no model built) ---

def test_names_follow_the_keras_constructors_and_aliases_resolve():
    import keras

    for name in FAMILIES:
        backbone = REGISTRY[name]
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", name) and backbone.pretrained
        assert callable(getattr(keras.applications, backbone.application))
        assert callable(getattr(keras.applications, backbone.module).preprocess_input)
        assert get_backbone(backbone.application).name == name  # ResNet50V2, EfficientNetB0
    assert {"resnet50_v2", "densenet121", "efficientnet_b0", "efficientnet_v2_s",
            "convnext_tiny", "mobilenet_v2", "mobilenet_v3_large", "xception",
            "inception_resnet_v2"} <= set(REGISTRY)
    assert get_backbone("resnet50v2").name == "resnet50_v2"
    assert get_backbone("efficientnetv2-s").name == "efficientnet_v2_s"  # Keras' model name
    assert get_backbone("mobilenet_v1").name == "mobilenet" == ALIASES["mobilenet_v1"]
    assert get_backbone("vgg16").name == "vgg16" and "inception_v3" in REGISTRY


@pytest.mark.parametrize("name", FAMILIES)
def test_keras_refuses_images_below_the_minimum_size(name):
    backbone = REGISTRY[name]
    size = backbone.min_input_size - 1
    with pytest.raises(ValueError):
        backbone.constructor()(include_top=False, weights=None, input_shape=(size, size, 3))


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")  # MobileNetV3 below 224
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "convnext_tiny"])
def test_missing_weights_name_the_file_keras_downloads(name, no_download):
    size = REGISTRY[name].min_input_size
    with pytest.raises(WeightsUnavailable) as err:
        build_base(name, (size, size, 3), "imagenet")
    assert no_download == [REGISTRY[name].notop_weights_file]
    assert f"Put the file {no_download[0]} into" in str(err.value)


def test_a_second_model_in_one_process_gives_the_same_map():
    """MobileNetV3's activations are auto-named (``re_lu_12``): the map is the same."""
    built = [build_model("mobilenet_v3_small", (32, 32, 3), weights=None) for _ in range(2)]
    maps = [blocks for _, blocks in built]
    assert maps[0] != maps[1]  # the generated names differ …
    assert [len(v) for v in maps[0].values()] == [len(v) for v in maps[1].values()]
    named = [[[n for n in names if not _auto_named(model.get_layer(n))]
              for names in blocks.values()] for model, blocks in built]
    assert named[0] == named[1] and len(named[0][3]) > 20  # … the blocks do not

"""The vision transformers (kandel_repro.vit): block maps, position embeddings, the
checkpoint layouts' manifests, LoRA's targets.

Each family is built once at a small size: the tiny ViT (timm's block layout) at 32×32,
DINOv2 with registers (LayerScale, registers, class + mean pooling) at its minimum, 28×28.
The converters' files have the committed manifests' names and shapes, their position
embeddings on a 2×2 grid (a checkpoint may hold any square grid), so a network of 32×32
is built for them. ``make test-torch`` holds the networks to PyTorch's references.
"""
import json
import math

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError, WeightsUnavailable
from kandel_repro.models.backbones import REGISTRY, assign_layers, get_backbone
from kandel_repro.models.build import build_base, build_model, layer_map_of
from kandel_repro.models.convert import CONVERTERS, convert_weights, expected_tensors, manifest
from kandel_repro.models.freeze import set_trainable_blocks
from kandel_repro.training.strategies import enable_adapters
from kandel_repro.vit import architecture as vit
from kandel_repro.vit.resample import resize_grid, resize_positions
from tests.models.test_families import _inputs, check_freezing_from_each_block

TRANSFORMERS = tuple(vit.VARIANTS)
FAMILIES = {"vit_tiny_patch4": 32, "dinov2_small_reg": 28}  # one of each, at a small size


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    """``(backbone, model with head, block map, base layers)``."""
    import keras

    backbone = get_backbone(request.param)
    size = FAMILIES[request.param]
    model, blocks = build_model(backbone.name, (size, size, 3), weights=None)
    last = list(blocks.values())[-1][-1]
    base_layers = model.layers[:model.layers.index(model.get_layer(last)) + 1]
    yield backbone, model, blocks, base_layers
    keras.backend.clear_session()


def test_every_layer_is_in_exactly_one_block_in_graph_order(family):
    backbone, model, blocks, base_layers = family
    names = [layer.name for layer in base_layers if type(layer).__name__ != "InputLayer"]
    assert [name for block in blocks.values() for name in block] == names  # runs, each once
    assert list(blocks) == list(range(1, backbone.num_blocks + 1))
    assert backbone.num_blocks == {"vit_tiny_patch4": 5, "dinov2_small_reg": 13}[backbone.name]
    weights = {id(w) for layer in base_layers for w in layer.weights}
    base = {id(w) for w in model.weights} - {id(w) for w in model.get_layer("head_dense").weights}
    assert weights == base  # every weight of the backbone is in a layer of a block
    assert blocks[1][0] == "patch_embed" and blocks[backbone.num_blocks][-1] == "final_norm"
    block_of = {name: block for block, names in blocks.items() for name in names}
    members = {layer.name: layer for layer in base_layers if layer.name in block_of}
    fed_later = False
    for layer in base_layers:
        if layer.name in block_of:
            for source in _inputs(layer, members):  # through the attention's operations
                assert block_of[source] <= block_of[layer.name], (source, layer.name)
                fed_later |= block_of[source] < block_of[layer.name]
    assert fed_later


def test_freezing_from_block_b_trains_exactly_blocks_b_to_top_and_the_head(family):
    backbone, model, blocks, _ = family
    check_freezing_from_each_block(backbone, model, blocks)


def test_the_layer_granularity_is_the_blocks(family):
    backbone, model, blocks, base_layers = family
    layers = assign_layers(base_layers)
    assert len(layers) == backbone.num_layers == sum(backbone.block_layers)
    assert [layers[k] for k in layers] == [blocks[b] for b in blocks]  # one layer per block


def test_blocks_json_and_layers_json(capsys):
    from kandel_repro.cli.main import main

    assert main(["blocks", "vit_tiny_patch4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    width, per_block = 64, 4 * (64 * 64 + 64) + 2 * 2 * 64 + (64 * 256 + 256) + (256 * 64 + 64)
    assert [row["parameters"] for row in rows.values()] == [
        4 * 4 * 3 * width + width + width + (1 + 64) * width, per_block, per_block, per_block,
        per_block + 2 * width]
    assert rows["5"]["trainable_parameters"] == per_block + 2 * width
    assert main(["blocks", "vit_tiny_patch4", "--layers", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert [row["block"] for row in layers.values()] == [1, 2, 3, 4, 5]
    assert main(["blocks", "vit_tiny_patch4", "--layers"]) == 0
    assert "5 layers (convolutions, a transformer's blocks" in capsys.readouterr().out


def _parameters(name, grid):
    """A ViT's parameters by hand: the patch embedding, tokens, positions, each block
    (2 LayerNorms, query, key, value, projection, MLP, LayerScale) and the final norm."""
    v = vit.VARIANTS[name]
    d = v.width
    block = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    block += 2 * d if v.layer_scale else 0
    embedding = v.patch * v.patch * 3 * d + d + d + (1 + grid * grid) * d + v.registers * d
    return embedding + v.depth * block + 2 * d


@pytest.mark.parametrize("name", [n if vit.VARIANTS[n].depth <= 12 else
                                  pytest.param(n, marks=pytest.mark.slow) for n in TRANSFORMERS])
def test_each_variant_has_its_parameters_at_its_smallest_size(name):
    import keras

    backbone = REGISTRY[name]
    size = backbone.min_input_size
    base = build_base(name, (size, size, 3), "none")
    assert base.count_params() == _parameters(name, 2)
    v = vit.VARIANTS[name]
    assert base.output.shape[-1] == (2 if v.pooling == "class+mean" else 1) * v.width
    blocks = backbone.assign_blocks(base.layers)
    assert len(blocks) == backbone.num_blocks <= 13
    keras.backend.clear_session()


def test_the_registry_entries_and_the_grouping_rule():
    assert vit.block_layers("dinov2_large") == (1,) + (2,) * 12  # 24 blocks, two per block
    assert [vit.block_of(f"transformer{i}_fc1", "vit_large_patch16_ls") for i in (1, 2, 3, 24)] \
        == [2, 2, 3, 13]
    assert vit.block_of("final_norm", "dinov2_large") == 13
    for name in TRANSFORMERS:
        backbone = get_backbone(name)
        v = vit.VARIANTS[name]
        assert backbone.num_blocks == 1 + min(v.depth, 12) and backbone.num_layers == v.depth + 1
        assert backbone.min_input_size % v.patch == 0 and backbone.pretrained == bool(v.layout)
        assert get_backbone(backbone.application).name == name
    with pytest.raises(ValueError, match="belongs to no block"):
        vit.block_of("dense_3", "vit_tiny_patch4")


def test_position_embeddings_resample_and_stay_when_the_grid_is_unchanged():
    rng = np.random.default_rng(0)
    positions = rng.standard_normal((1 + 14 * 14, 6)).astype(np.float32)
    same = resize_positions(positions, 1, 14, 14)
    np.testing.assert_array_equal(same, positions)
    for antialias in (False, True):
        smaller = resize_positions(positions, 1, 3, 5, antialias=antialias)
        assert smaller.shape == (1 + 15, 6) and smaller.dtype == np.float32
        np.testing.assert_array_equal(smaller[0], positions[0])  # the class token's kept
    grid = rng.standard_normal((4, 4, 2))
    for antialias in (False, True):  # the references' weights sum to 1 along a line
        assert np.allclose(resize_grid(np.ones((5, 5, 1)), 9, 3, antialias), 1.0)
        np.testing.assert_allclose(resize_grid(grid, 4, 4, antialias), grid)
    with pytest.raises(ValueError, match="not a square grid"):
        resize_positions(positions[:-1], 1, 3, 3)


def test_weights_of_another_size_load_with_their_positions_resampled(tmp_path):
    import keras

    small = build_base("vit_tiny_patch4", (32, 32, 3), "none")
    path = tmp_path / "tiny.weights.h5"
    small.save_weights(path)
    assert vit.stored_positions(path) == (1 + 8 * 8, 64)
    large = build_base("vit_tiny_patch4", (48, 48, 3), weights=str(path))  # --weights PATH
    stored = small.get_layer("position_embedding").embeddings.numpy()
    np.testing.assert_allclose(large.get_layer("position_embedding").embeddings.numpy(),
                               resize_positions(stored, 1, 12, 12, antialias=True), rtol=1e-6)
    np.testing.assert_array_equal(large.get_layer("transformer3_query").kernel.numpy(),
                                  small.get_layer("transformer3_query").kernel.numpy())
    again = build_base("vit_tiny_patch4", (32, 32, 3), "none")  # same size: as it is
    vit.load_weights(again, path, "vit_tiny_patch4")
    for a, b in zip(again.weights, small.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # a saved model is Keras' own layers and operations: it loads as any Keras model
    assert all(type(layer).__module__.startswith("keras.") for layer in small.layers)
    small.save(tmp_path / "tiny.keras")
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "tiny.keras").predict(
        images, verbose=0), small.predict(images, verbose=0), atol=1e-6)


def test_another_networks_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    build_base("vit_tiny_patch4", (32, 32, 3), "none").save_weights(path)
    with pytest.raises(WeightsUnavailable) as err:
        build_base("dinov2_small_reg", (28, 28, 3), weights=str(path))
    message = str(err.value)
    assert message.startswith(f"--weights {path}: could not load its weights into "
                              "dinov2_small_reg") and "\n" not in message


def test_an_input_past_whole_patches_is_cut_as_the_references_cut_it():
    base = build_base("dinov2_small", (32, 32, 3), "none")  # 32 = 2 × 14 + 4
    assert base.get_layer("position_embedding").embeddings.shape == (1 + 2 * 2, 384)


# --- the checkpoint layouts: timm's and transformers' Dinov2Model ---------------------------

def _checkpoint(name, path, grid=2, change=None):
    """A safetensors file of the manifest's names and shapes (positions on a ``grid``²),
    random values."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    positions = CONVERTERS[name].positions
    tensors = {}
    for tensor, shape in manifest(name).items():
        if tensor == positions:
            shape = (1, 1 + grid * grid, shape[2])
        tensors[tensor] = rng.standard_normal(shape).astype(np.float32)
    if change:
        change(tensors)
    save_file(tensors, str(path))
    return tensors


@pytest.mark.parametrize("name", [n if vit.VARIANTS[n].depth <= 12 else
                                  pytest.param(n, marks=pytest.mark.slow)
                                  for n in TRANSFORMERS if vit.VARIANTS[n].layout])
def test_the_committed_manifest_is_what_the_converter_fills(name):
    layout = CONVERTERS[name]
    kept = {t: s for t, s in manifest(name).items() if not layout.dropped(t)}
    assert dict(expected_tensors(name)) == kept
    dropped = [t for t in manifest(name) if layout.dropped(t)]
    assert dropped == (["head.weight", "head.bias"] if vit.VARIANTS[name].layout == "timm"
                       else ["embeddings.mask_token"])
    side = vit.VARIANTS[name].grid
    assert kept[layout.positions] == (1, 1 + side * side, vit.VARIANTS[name].width)


def test_a_timm_checkpoint_converts_its_fused_query_key_value_into_three_layers(tmp_path):
    tensors = _checkpoint("vit_small_patch16", tmp_path / "vit.safetensors")
    written = convert_weights("vit_small_patch16", tmp_path / "vit.safetensors",
                              out=tmp_path / "vit.weights.h5")
    base = build_base("vit_small_patch16", (32, 32, 3), weights=str(written))
    qkv, bias = tensors["blocks.4.attn.qkv.weight"], tensors["blocks.4.attn.qkv.bias"]
    for index, part in enumerate(("query", "key", "value")):
        layer = base.get_layer(f"transformer5_{part}")
        np.testing.assert_array_equal(layer.kernel.numpy(), qkv[384 * index:384 * (index + 1)].T)
        np.testing.assert_array_equal(layer.bias.numpy(), bias[384 * index:384 * (index + 1)])
    np.testing.assert_array_equal(base.get_layer("patch_embed").kernel.numpy(),
                                  tensors["patch_embed.proj.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(base.get_layer("transformer12_fc2").kernel.numpy(),
                                  tensors["blocks.11.mlp.fc2.weight"].T)
    np.testing.assert_array_equal(base.get_layer("position_embedding").embeddings.numpy(),
                                  tensors["pos_embed"][0])
    np.testing.assert_array_equal(base.get_layer("final_norm").gamma.numpy(),
                                  tensors["norm.weight"])


def test_a_dinov2_checkpoint_converts_with_registers_and_layer_scale(tmp_path):
    tensors = _checkpoint("dinov2_small_reg", tmp_path / "model.safetensors")
    written = convert_weights("dinov2_small_reg", tmp_path / "model.safetensors",
                              out=tmp_path / "d.weights.h5")
    base = build_base("dinov2_small_reg", (42, 42, 3), weights=str(written))  # a 3×3 grid
    np.testing.assert_array_equal(base.get_layer("register_tokens").embeddings.numpy(),
                                  tensors["embeddings.register_tokens"][0])
    np.testing.assert_array_equal(base.get_layer("transformer7_scale2").embeddings.numpy()[0],
                                  tensors["encoder.layer.6.layer_scale2.lambda1"])
    np.testing.assert_array_equal(base.get_layer("transformer1_value").kernel.numpy(),
                                  tensors["encoder.layer.0.attention.attention.value.weight"].T)
    np.testing.assert_array_equal(base.get_layer("transformer2_proj").kernel.numpy(),
                                  tensors["encoder.layer.1.attention.output.dense.weight"].T)
    positions = tensors["embeddings.position_embeddings"][0]
    np.testing.assert_allclose(base.get_layer("position_embedding").embeddings.numpy(),
                               resize_positions(positions, 1, 3, 3, antialias=True), rtol=1e-6)
    assert vit.VARIANTS["dinov2_small_reg"].antialias and not vit.VARIANTS["dinov2_small"].antialias


def test_a_wrong_missing_or_unexpected_tensor_is_refused_by_name(tmp_path):
    def wrong(t):
        t["blocks.3.attn.qkv.weight"] = np.zeros((384, 384), np.float32)

    def missing(t):
        del t["blocks.11.norm2.bias"]

    def extra(t):
        t["blocks.12.attn.qkv.weight"] = np.zeros((1,), np.float32)

    def not_square(t):
        t["pos_embed"] = np.zeros((1, 1 + 6, 384), np.float32)

    for change, words in ((wrong, "tensor blocks.3.attn.qkv.weight has shape [384, 384]"),
                          (missing, "no tensor blocks.11.norm2.bias"),
                          (extra, "unexpected tensor blocks.12.attn.qkv.weight"),
                          (not_square, "tensor pos_embed has shape [1, 7, 384]")):
        path = tmp_path / "vit.safetensors"
        _checkpoint("vit_small_patch16", path, change=change)
        with pytest.raises(WeightsUnavailable) as err:
            convert_weights("vit_small_patch16", path, out=tmp_path / "w.weights.h5")
        message = str(err.value)
        assert words in message and str(path) in message and "\n" not in message
        assert not (tmp_path / "w.weights.h5").exists()
    with pytest.raises(ConfigError, match="no converter for vit_tiny_patch4"):
        convert_weights("vit_tiny_patch4", path)


def test_missing_converted_weights_say_how_to_make_them(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match=r"convert-weights dinov2_base FILE"):
        build_base("dinov2_base", (28, 28, 3), "imagenet")
    with pytest.raises(ConfigError, match="vit_tiny_patch4 has no ImageNet weights"):
        build_base("vit_tiny_patch4", (32, 32, 3), "imagenet")


# --- LoRA on the attention's query and value projections -----------------------------------

@pytest.mark.parametrize("first,rank", [(1, 4), (3, 2)])
def test_lora_adapts_the_query_and_value_of_the_trainable_blocks(first, rank):
    model, blocks = build_model("vit_tiny_patch4", (32, 32, 3), weights="none")
    set_trainable_blocks(model, blocks, first)
    added = enable_adapters(model, blocks, first, rank)
    width, adapted_blocks = 64, 5 - max(first, 2) + 1  # transformer blocks from `first`
    # rank r on a 64 → 64 Dense: A (64, r) and B (r, 64); two (query, value) per block
    assert added == adapted_blocks * 2 * rank * (width + width)
    assert added == {(1, 4): 4096, (3, 2): 1536}[first, rank]
    adapters = [v.path for v in model.trainable_weights if "lora" in v.path]
    assert len(adapters) == 4 * adapted_blocks
    assert {p.split("/")[0].rsplit("_", 1)[1] for p in adapters} == {"query", "value"}
    head = width + 1
    assert sum(math.prod(v.shape) for v in model.trainable_weights) == added + head
    assert not model.get_layer("transformer4_key").trainable_weights


def test_lora_targets_every_dense_layer_where_the_backbone_names_none():
    model, blocks = build_model("vit_tiny_patch4", (32, 32, 3), weights="none")
    model.adapter_targets = None
    added = enable_adapters(model, blocks, 5, 1)  # the top block's six dense layers
    assert added == 4 * (64 + 64) + (64 + 256) + (256 + 64)


def test_auto_rgn_measures_the_sparse_gradients_of_the_token_tables():
    """An Embedding's gradient is an IndexedSlices (class token, positions, LayerScale)."""
    from tests.training.test_strategies import _models

    _, model, trainer, callback, _, _ = _models("auto-rgn", backbone="vit_tiny_patch4")
    callback.on_epoch_begin(0)
    positions = model.get_layer("position_embedding").embeddings
    assert 0 < float(trainer.optimizer.scales[id(positions)].numpy()) <= 1
    assert set(callback.scales) == {0, 1, 2, 3, 4, 5}

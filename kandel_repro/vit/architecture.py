"""Vision transformers (Dosovitskiy et al. 2021; DeiT, Touvron et al. 2021; DINOv2, Oquab
et al. 2024) as Keras functional models of our own, and their block maps.

**Why our own, not keras-hub.** keras-hub has ``ViTBackbone`` and ``DINOV2Backbone`` and
loads Hugging Face checkpoints, but its newest release on PyPI when checked (keras-hub
0.32.0, 2026-12) requires ``keras>=3.15``, Python ≥ 3.11 and, off Windows,
``tensorflow-text>=2.20.1``, each of whose releases pins one TensorFlow minor version
(tensorflow-text 2.20.1: ``tensorflow>=2.20.0,<2.21``): this package must keep running on
the TensorFlow and Keras of Kaggle's image (``keras>=3``, ``tensorflow>=2.16``,
``setup.cfg``). The networks are short written out (this module), their checkpoints
convert without PyTorch (:mod:`kandel_repro.vit.layouts`), and the block map, the layer
names LoRA targets and the resampling of position embeddings stay ours to document and
test. ``docs/how-to/transformers.md`` gives the versions checked.

**The network.** Pre-norm transformer blocks as timm's ``VisionTransformer`` and Hugging
Face's ``Dinov2Model`` compute them: a patch embedding (a ``P×P`` convolution of stride
``P``: pixels past the last whole patch are not seen, as in the references), a class
token, learnt position embeddings added to the class token and the patches (DINOv2 with
registers: 4 register tokens inserted after the class token, without position), then per
block ``x + LayerScale(proj(attention(LN(x))))`` and ``x + LayerScale(fc2(GELU(fc1(LN(x)))))``
(LayerScale for DINOv2 and UNI only), LayerNorm ε = 1e-6, exact (erf) GELU, attention
with separate ``query``, ``key`` and ``value`` Dense layers, scaled by head_dim^−½, its
softmax in float32. Written with Keras layers and ``keras.ops`` only, so that a saved
model loads with nothing of this package imported; the class token, registers, position
embeddings and LayerScale factors are ``Embedding`` tables read at fixed indices.

**What the head reads** (the model's output, 2-D): the class token after the final
LayerNorm for ViT (timm's ``global_pool="token"``, DeiT's and UNI's); for DINOv2 the class
token concatenated with the mean of the patch tokens (registers excluded), DINOv2's linear
evaluation (and transformers' ``Dinov2ForImageClassification``): 2 × width features.

**Blocks** (fine-tuning depth): block 1 is the patch embedding, class token, registers
and position embeddings; then each transformer block is a block of its own, up to 12 of
them; a deeper network groups ⌈depth / 12⌉ consecutive transformer blocks into one (ViT-L's
24: two per block), so that every variant has at most 13 blocks. The final LayerNorm is in
the top block. The layer granularity (``--first-layer``) is the transformer blocks
themselves: a transformer block's first layer (``transformer{i}_norm1``) counts as a
convolution does in a CNN (:func:`opens_layer`).

**Input sizes.** A model is built for one input size; its position embeddings have that
size's grid. Weights of another grid (a checkpoint of 224 or 518 pixels, a model of 32)
are resampled when loaded (:func:`load_weights`): the class token's kept, the patch grid
resized bicubically as the checkpoint's own code does (:mod:`kandel_repro.vit.resample`:
antialiased as timm and transformers' ``Dinov2WithRegistersModel`` do it, not antialiased
as ``Dinov2Model`` and DINOv2's own code do).
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a model is built
    import keras
    import numpy as np
    import tensorflow as tf


class Variant(NamedTuple):
    application: str  # as tables and titles name it
    patch: int
    width: int
    depth: int  # transformer blocks
    heads: int
    layer_scale: bool = False  # LayerScale after attention and MLP (DINOv2, UNI)
    registers: int = 0  # register tokens (Darcet et al. 2024)
    pooling: str = "class"  # "class", or "class+mean" (DINOv2's linear evaluation)
    layout: str | None = None  # the checkpoints convert-weights takes: "timm" or "dinov2"
    grid: int = 14  # the checkpoint's grid of patches (224 / 16; DINOv2's 518 / 14 = 37)
    converted_from: str | None = None
    # how the reference resamples its positions: bicubic, antialiased (timm's, transformers'
    # Dinov2WithRegistersModel) or not (transformers' Dinov2Model)
    antialias: bool = True


TIMM = ("timm's {model} checkpoint (its model.safetensors or pytorch_model.bin; "
        "convert-weights reads either without PyTorch)")
HF = ("Hugging Face's {model} model.safetensors (transformers' {kind} layout)")
VARIANTS = {
    # for tests and demos on a CPU: 32×32 images are 8×8 patches
    "vit_tiny_patch4": Variant("ViT-Tiny/4", 4, 64, 4, 2, grid=8),
    "vit_small_patch16": Variant("ViT-S/16", 16, 384, 12, 6, layout="timm",
                                 converted_from=TIMM.format(model="deit_small_patch16_224 (or "
                                                            "another ViT-S/16 of its layout)")),
    "vit_base_patch16": Variant("ViT-B/16", 16, 768, 12, 12, layout="timm",
                                converted_from=TIMM.format(model="deit_base_patch16_224 (or "
                                                           "another ViT-B/16 of its layout)")),
    "vit_large_patch16_ls": Variant(
        "ViT-L/16 LayerScale", 16, 1024, 24, 16, layer_scale=True, layout="timm",
        converted_from=TIMM.format(model="ViT-L/16 with LayerScale (UNI's: MahmoodLab/UNI)")),
    "dinov2_small": Variant("DINOv2 ViT-S/14", 14, 384, 12, 6, layer_scale=True,
                            pooling="class+mean", layout="dinov2", grid=37, antialias=False,
                            converted_from=HF.format(model="facebook/dinov2-small",
                                                     kind="Dinov2Model")),
    "dinov2_base": Variant("DINOv2 ViT-B/14", 14, 768, 12, 12, layer_scale=True,
                           pooling="class+mean", layout="dinov2", grid=37, antialias=False,
                           converted_from=HF.format(model="facebook/dinov2-base",
                                                    kind="Dinov2Model")),
    "dinov2_large": Variant("DINOv2 ViT-L/14", 14, 1024, 24, 16, layer_scale=True,
                            pooling="class+mean", layout="dinov2", grid=37, antialias=False,
                            converted_from=HF.format(
                                model="facebook/dinov2-large (or Phikon-v2's: owkin/phikon-v2)",
                                kind="Dinov2Model")),
    "dinov2_small_reg": Variant("DINOv2 ViT-S/14 registers", 14, 384, 12, 6, layer_scale=True,
                                registers=4, pooling="class+mean", layout="dinov2", grid=37,
                                converted_from=HF.format(
                                    model="facebook/dinov2-with-registers-small",
                                    kind="Dinov2WithRegistersModel")),
}
MAX_GROUPS = 12  # transformer blocks of a deeper network are grouped into at most 12 blocks
LN_EPSILON = 1e-6  # timm's and DINOv2's LayerNorm
MLP_RATIO = 4
LAYER_SCALE_INIT = 1e-5  # DINOv2's and UNI's LayerScale at initialisation (random weights)
# ImageNet's normalisation of pixels in [0, 1] (DeiT's, DINOv2's, UNI's)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# The layers of block 1, in order (register_tokens and tokens_registers with registers only)
EMBEDDING = ("patch_embed", "patch_tokens", "class_token", "tokens", "position_embedding",
             "position_add", "register_tokens", "tokens_registers")
FINAL_NORM = "final_norm"
POSITIONS = "position_embedding"
ADAPTED = ("query", "value")  # the projections LoRA adapts (Hu et al. 2022's W_q and W_v)
TRANSFORMER = re.compile(r"transformer(\d+)_")
FIRST_LAYER = re.compile(r"transformer\d+_norm1")


def per_block(name: str) -> int:
    """Transformer blocks per block: ⌈depth / 12⌉ (1 up to 12 blocks, 2 for ViT-L's 24)."""
    return math.ceil(VARIANTS[name].depth / MAX_GROUPS)


def num_blocks(name: str) -> int:
    """Block 1 (the embedding) and the groups of transformer blocks."""
    return 1 + math.ceil(VARIANTS[name].depth / per_block(name))


def block_layers(name: str) -> tuple[int, ...]:
    """Units of the layer granularity per block: the patch embedding's convolution, then
    the transformer blocks of each block."""
    depth, per = VARIANTS[name].depth, per_block(name)
    return (1, *(min(per, depth - start) for start in range(0, depth, per)))


def min_input_size(name: str) -> int:
    """Two patches a side (a 2×2 grid)."""
    return 2 * VARIANTS[name].patch


def opens_layer(layer_name: str) -> bool:
    """Whether a layer opens a unit of the layer granularity: a transformer block's first
    LayerNormalization (:func:`kandel_repro.models.backbones.assign_layers`)."""
    return FIRST_LAYER.fullmatch(layer_name) is not None


def is_adapter_target(layer: keras.layers.Layer) -> bool:
    """The layers ``--strategy lora`` adapts: each attention's query and value
    projections (:data:`ADAPTED`)."""
    return layer.name.rsplit("_", 1)[-1] in ADAPTED and TRANSFORMER.match(layer.name) is not None


def preprocess_input(images: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """Pixel values 0–255 to the references' input: x / 255, minus the ImageNet mean,
    over its standard deviation, per RGB channel."""
    import numpy as np

    mean = np.asarray(MEAN, dtype="float32") * 255.0
    std = np.asarray(STD, dtype="float32") * 255.0
    return (images - mean) / std


def grid_of(input_shape: Iterable[int], name: str) -> tuple[int, int]:
    """The grid of whole patches of an input (rows, columns)."""
    height, width = tuple(input_shape)[:2]
    patch = VARIANTS[name].patch
    return height // patch, width // patch


def build(input_shape: tuple[int, ...], name: str = "vit_tiny_patch4") -> keras.Model:
    """The headless network for inputs of ``input_shape`` (output: the pooled features)."""
    import keras
    from keras import layers, ops

    v = VARIANTS[name]
    rows, columns = grid_of(input_shape, name)
    if rows < 1 or columns < 1:
        raise ValueError(f"{name} needs inputs of at least {v.patch}×{v.patch}, got "
                         f"{tuple(input_shape)}")
    patches, width, head_width = rows * columns, v.width, v.width // v.heads
    tokens = 1 + v.registers + patches
    small = keras.initializers.TruncatedNormal(stddev=0.02)
    dense = {"kernel_initializer": small, "bias_initializer": "zeros"}

    def indices(x, count):
        """(batch, count) indices 0 … count − 1, taken from ``x`` so that the Embedding
        reading them sits where ``x`` is in the graph (in its block)."""
        zeros = ops.zeros_like(x[:, :1, 0], dtype="int32")
        ones = ops.ones_like(ops.repeat(zeros, count, axis=1) if count > 1 else zeros)
        return ops.cumsum(ones, axis=1) - 1

    def scaled(x, prefix):
        """LayerScale: each channel times its learnt factor (DINOv2, UNI)."""
        if not v.layer_scale:
            return x
        factor = layers.Embedding(1, width, name=prefix, embeddings_initializer=(
            keras.initializers.Constant(LAYER_SCALE_INIT)))(indices(x, 1))
        return ops.multiply(x, factor)

    def split(x):  # (batch, tokens, width) → (batch, heads, tokens, head width)
        return ops.transpose(ops.reshape(x, (-1, tokens, v.heads, head_width)), (0, 2, 1, 3))

    def attention(x, prefix):
        query, key, value = (layers.Dense(width, name=f"{prefix}_{part}", **dense)(x)
                             for part in ("query", "key", "value"))
        logits = ops.matmul(split(query), ops.transpose(split(key), (0, 1, 3, 2)))
        logits = ops.cast(logits, "float32") * (head_width ** -0.5)
        weights = ops.cast(ops.softmax(logits, axis=-1), value.dtype)
        out = ops.transpose(ops.matmul(weights, split(value)), (0, 2, 1, 3))
        out = ops.reshape(out, (-1, tokens, width))
        return layers.Dense(width, name=f"{prefix}_proj", **dense)(out)

    inputs = keras.Input(tuple(input_shape), name="images_in")
    x = layers.Conv2D(width, v.patch, strides=v.patch, name="patch_embed")(inputs)
    x = layers.Reshape((patches, width), name="patch_tokens")(x)
    cls = layers.Embedding(1, width, name="class_token",
                           embeddings_initializer=keras.initializers.RandomNormal(stddev=1e-6))
    x = layers.Concatenate(axis=1, name="tokens")([cls(indices(x, 1)), x])
    positions = layers.Embedding(1 + patches, width, embeddings_initializer=small, name=POSITIONS)
    x = layers.Add(name="position_add")([x, positions(indices(x, 1 + patches))])
    if v.registers:
        registers = layers.Embedding(v.registers, width, embeddings_initializer=small,
                                     name="register_tokens")(indices(x, v.registers))
        x = layers.Concatenate(axis=1, name="tokens_registers")([x[:, :1], registers, x[:, 1:]])
    for index in range(1, v.depth + 1):
        prefix = f"transformer{index}"
        y = layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{prefix}_norm1")(x)
        y = scaled(attention(y, prefix), f"{prefix}_scale1")
        x = layers.Add(name=f"{prefix}_add1")([x, y])
        y = layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{prefix}_norm2")(x)
        y = layers.Dense(MLP_RATIO * width, name=f"{prefix}_fc1", **dense)(y)
        y = layers.Activation("gelu", name=f"{prefix}_gelu")(y)
        y = layers.Dense(width, name=f"{prefix}_fc2", **dense)(y)
        x = layers.Add(name=f"{prefix}_add2")([x, scaled(y, f"{prefix}_scale2")])
    x = layers.LayerNormalization(epsilon=LN_EPSILON, name=FINAL_NORM)(x)
    pooled = x[:, 0]
    if v.pooling == "class+mean":
        pooled = ops.concatenate([pooled, ops.mean(x[:, 1 + v.registers:], axis=1)], axis=-1)
    return keras.Model(inputs, pooled, name=name)


def block_of(layer_name: str, name: str) -> int:
    """The block of a layer of ``name``'s network, told by its name (set here, never
    generated, so a second model in one process maps the same)."""
    found = TRANSFORMER.match(layer_name)
    if found:
        return 2 + (int(found.group(1)) - 1) // per_block(name)
    if layer_name == FINAL_NORM:
        return num_blocks(name)
    if layer_name in EMBEDDING:
        return 1
    raise ValueError(f"{name} layer {layer_name!r} belongs to no block")


def assign_blocks(layers: Iterable[keras.layers.Layer],
                  name: str = "vit_tiny_patch4") -> OrderedDict[int, list[str]]:
    """``{block: [layer names]}`` in the model's layer order; the operations between
    layers (attention's products, the pooling) have no weights and no place in it."""
    blocks = OrderedDict()
    for layer in layers:
        if type(layer).__name__ != "InputLayer":
            blocks.setdefault(block_of(layer.name, name), []).append(layer.name)
    expected = list(range(1, num_blocks(name) + 1))
    if list(blocks) != expected:
        raise ValueError(f"{name} block map has blocks {list(blocks)}, expected 1–{expected[-1]}")
    return blocks


def stored_positions(path: str | Path) -> tuple[int, ...] | None:
    """The shape of the position embeddings a Keras weights file of these networks holds
    (None: it holds no Embedding table). Keras names a file's tables by their class
    (``layers/embedding_1/vars/0``), not by layer: the positions are the largest table,
    1 + rows × columns ≥ 5 entries where the class token and each LayerScale have 1 and
    the registers 4."""
    import h5py

    shapes = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda key, item: shapes.append(tuple(item.shape))
                     if isinstance(item, h5py.Dataset) and key.split("/")[-3].startswith(
                         "embedding") and len(item.shape) == 2 else None)
    return max(shapes, default=None)


def load_weights(model: keras.Model, path: str | Path, name: str) -> None:
    """Load a weights file of ``name``'s network into ``model``, whatever the input size
    the file was written at: where its grid of position embeddings differs from the
    model's, the file is loaded into a network of its own size and the positions are
    resampled (:func:`kandel_repro.vit.resample.resize_positions`), antialiased or not as
    the variant's reference does (:attr:`Variant.antialias`)."""
    from .resample import resize_positions

    stored = stored_positions(path)
    target = model.get_layer(POSITIONS).embeddings
    if stored is None or stored == tuple(target.shape):
        model.load_weights(path)
        return
    side = math.isqrt(stored[0] - 1)
    patch = VARIANTS[name].patch
    source = build((side * patch, side * patch, 3), name)
    source.load_weights(path)
    rows, columns = grid_of(model.input.shape[1:], name)
    for layer in model.layers:
        if not layer.weights:
            continue
        values = source.get_layer(layer.name).get_weights()
        if layer.name == POSITIONS:
            values = [resize_positions(values[0], 1, rows, columns,
                                       antialias=VARIANTS[name].antialias)]
        layer.set_weights(values)

"""Block maps of the keras.applications families past VGG and InceptionV3.

Each ``*_blocks`` function takes the layers of a headless ``keras.applications`` model in
the model's order and returns ``{block: [layer names]}``, block 1 nearest the input;
each ``*_units`` function returns the family's finer units (``{"conv3_block2": [layer
names]}``: a residual unit, a dense layer, an MBConv block), which ``blocks NAME
--layers`` shows beside each convolution. Where the natural unit is too fine to grid
(ResNet152 has 50 residual units), the block is the stage and the units stay at the
layer granularity.

Boundaries come from Keras' own layer names (``conv3_block1_``, ``block4a_``,
``mixed_6a``) and the layer order only, never from auto-generated names (``conv2d_57``,
``re_lu_3``): those depend on how many models the process has built. A layer without a
family name (an auto-named activation, pooling or shortcut convolution) joins the block
of the layer before it (:func:`carry`).

NOTE: the layers of a functional model are in topological order, so every block is a
run of consecutive layers and no layer of a block feeds a layer of an earlier one
(tests/models/test_families.py checks both on the graph).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a model is built
    import keras


def carry(layers: Sequence[keras.layers.Layer], label_of: Callable[[str], Hashable | None],
          first: Hashable, family: str) -> OrderedDict:
    """``{label: [layer names]}``: each layer under ``label_of(its name)``, or, where that
    is None, under the label of the layer before it (``first`` for the leading ones).
    A label met again after another one is an error: labels are runs of layers."""
    out = OrderedDict()
    label = first
    for layer in layers:
        if type(layer).__name__ == "InputLayer":
            continue
        named = label_of(layer.name)
        if named is not None and named != label:
            if named in out:
                raise ValueError(f"{family} layer {layer.name!r} returns to {named!r} after "
                                 f"{label!r}")
            label = named
        out.setdefault(label, []).append(layer.name)
    return out


def blocks_by_name(layers: Sequence[keras.layers.Layer], block_of: Callable[[str], int | None],
                   num_blocks: int, family: str) -> OrderedDict[int, list[str]]:
    """:func:`carry` with block numbers, checked to be 1 … ``num_blocks`` in order."""
    blocks = carry(layers, block_of, 1, family)
    if list(blocks) != list(range(1, num_blocks + 1)):
        raise ValueError(f"{family} block map has blocks {list(blocks)}, expected 1 to "
                         f"{num_blocks} in order")
    return blocks


def _matched(pattern: str, name: str, group: int = 1) -> str | None:
    match = re.search(pattern, name)
    return match.group(group) if match else None


# --- ResNet, ResNetV2, DenseNet: stem, then Keras' stages conv2 … conv5 ------------------

def _stage_of(name):
    """``conv{N}_…`` and ``pool{N}_…`` are stage N (1: the stem); DenseNet's transition
    ``pool{N}_…`` (after dense block N-1, i.e. stage N) ends stage N."""
    stage = _matched(r"^(?:conv|pool)([1-5])_", name)
    return int(stage) if stage else None


def resnet_blocks(layers):
    """ResNet50/101/152 and their V2s: 5 blocks, the stem (``conv1``, ``pool1``) and the
    stages ``conv2`` … ``conv5`` (V2: the final ``post_bn``/``post_relu`` with conv5)."""
    return blocks_by_name(layers, _stage_of, 5, "ResNet")


def resnet_units(layers):
    """The residual units ``conv{N}_block{M}``, after the ``stem``."""
    return carry(layers, lambda name: _matched(r"^(conv[2-5]_block\d+)_", name), "stem",
                 "ResNet")


def densenet_blocks(layers):
    """DenseNet121/169/201: 5 blocks, the stem (``conv1``, ``pool1``), then dense blocks 1–4
    (Keras' ``conv2`` … ``conv5``), each with the transition that ends it: ``pool2_*``
    (BN, ReLU, 1×1 conv, average pool) is in block 2 with dense block 1, … ``pool4_*`` in
    block 4; the final ``bn``/``relu`` are in block 5 with dense block 4."""
    return blocks_by_name(layers, _stage_of, 5, "DenseNet")


def densenet_units(layers):
    """The dense layers ``conv{N}_block{M}`` and the transitions ``pool{N}``."""
    return carry(layers, lambda name: _matched(r"^(conv[2-5]_block\d+|pool[2-4])_", name),
                 "stem", "DenseNet")


# --- InceptionV3: the paper's 13 blocks -------------------------------------------------

def inception_v3_blocks(layers):
    """InceptionV3: 13 blocks, as the paper's inception-module blocks (§4.1).

    Blocks 1–2 are the stem, each ending at one of its two max-pool layers; blocks
    3–13 are the eleven inception modules, each ending at its output concatenation
    ``mixed0`` … ``mixed10``. Boundaries come from layer order, layer type and the
    stable ``mixedN`` names only: auto-generated names (``conv2d_57``,
    ``max_pooling2d_1``) depend on how many models the process has built.

    NOTE: the layers of a functional model are in topological order, and every layer
    of module N lies between ``mixed{N-1}`` (its ancestor) and ``mixedN`` (the
    concatenation of all its branches), so cutting the order at those names is exact.
    """
    blocks = OrderedDict()
    block = 1
    for layer in layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if block > 13:
            raise ValueError(f"InceptionV3 layer {layer.name!r} ({kind}) after mixed10")
        blocks.setdefault(block, []).append(layer.name)
        if block <= 2 and kind == "MaxPooling2D":
            block += 1
        elif block >= 3 and layer.name == f"mixed{block - 3}":
            block += 1
    if block != 14:
        raise ValueError(f"InceptionV3 block map ended in block {block}, expected 13 blocks")
    return blocks


# --- EfficientNet, EfficientNetV2: stem, Keras' stages block1 …, top --------------------

def efficientnet_blocks(layers, stages: int = 7):
    """EfficientNetB0–B7 (7 stages) and EfficientNetV2 (B0–B3 and S: 6, M and L: 7):
    block 1 the stem (the model's own rescaling/normalisation and ``stem_*``), blocks
    2 … ``stages`` + 1 Keras' stages ``block1*`` … (``block3a_`` … ``block3d_`` are stage
    3, block 4), the last block the ``top_*`` 1×1 convolution."""
    def block_of(name):
        if name.startswith("stem_"):
            return 1
        if name.startswith("top_"):
            return stages + 2
        stage = _matched(r"^block(\d+)[a-z]+_", name)
        return int(stage) + 1 if stage else None

    return blocks_by_name(layers, block_of, stages + 2, "EfficientNet")


def efficientnet_units(layers):
    """The MBConv (V2: also Fused-MBConv) blocks ``block{N}{letter}``, ``stem``, ``top``."""
    return carry(layers, lambda name: _matched(r"^(block\d+[a-z]+|stem|top)_", name), "stem",
                 "EfficientNet")


# --- ConvNeXt: stem, four stages, nested stem and downsampling models --------------------

def _convnext_block_of(name):
    stage = _matched(r"_stage_([0-3])_block_\d+_", name)
    if stage:
        return int(stage) + 2
    down = _matched(r"_downsampling_block_([0-2])$", name)
    if down:
        return int(down) + 3
    if name.endswith(("_stem", "_prestem_normalization")):
        return 1
    return None


def convnext_blocks(layers):
    """ConvNeXt Tiny … XLarge: 5 blocks, the stem, then the four stages (Keras'
    ``stage_0`` … ``stage_3``, blocks 2–5). The stem and the three downsampling layers
    are nested Keras models (``…_stem``, ``…_downsampling_block_{i}``): each is one layer
    of the block map, frozen or trained as a whole with the stage it feeds (the stem
    alone in block 1, ``downsampling_block_0`` in block 3 with ``stage_1``, …). Each
    ConvNeXt block's layer norm, pointwise Dense layers and LayerScale are named with
    its stage; the final layer norm (auto-named) is in block 5."""
    return blocks_by_name(layers, _convnext_block_of, 5, "ConvNeXt")


def convnext_units(layers):
    """The ConvNeXt blocks ``stage_{i}_block_{j}``, ``stem``, ``downsampling_block_{i}``."""
    def unit_of(name):
        return _matched(r"_(stage_\d_block_\d+)_", name) or _matched(
            r"_(downsampling_block_\d)$", name)

    return carry(layers, unit_of, "stem", "ConvNeXt")


# --- MobileNet, MobileNetV2, MobileNetV3: stages by resolution --------------------------

def mobilenet_blocks(layers, id_pattern: str, starts: tuple[int, ...], family: str):
    """MobileNet (v1), MobileNetV2, MobileNetV3Small/Large: 5 blocks by resolution, at
    1/2, 1/4, 1/8, 1/16 and 1/32 of the input, each opened by a stride-2 unit of Keras'
    numbering (``starts``: V2's ``block_1``, ``block_3``, ``block_6``, ``block_13``).
    Block 1 is the stem convolution with the units at 1/2 (none in V3Small, whose first
    unit has stride 2); the last holds the final 1×1 convolution (``Conv_1``, ``conv_1``,
    ``conv_pw_13``). Keras' 11–17 units are too many to grid one by one; the stages by
    resolution are where the network changes scale."""
    def block_of(name):
        unit = _matched(id_pattern, name, 0)
        if unit is None:
            return None
        digits = re.search(r"\d+", unit)  # none: V2's and V3's unit 0, ``expanded_conv_``
        number = int(digits.group()) if digits else 0
        return 1 + sum(number >= start for start in starts)  # the stride-2 units up to it

    return blocks_by_name(layers, block_of, 5, family)


# Each MobileNet's unit names (Keras' prefixes) and the stride-2 units among them
MOBILENET_V1 = dict(id_pattern=r"^conv_(?:dw|pw|pad)_\d+", starts=(2, 4, 6, 12),
                    family="MobileNet")
MOBILENET_V2 = dict(id_pattern=r"^(?:block_\d+|expanded_conv)_", starts=(1, 3, 6, 13),
                    family="MobileNetV2")
MOBILENET_V3_SMALL = dict(id_pattern=r"^expanded_conv(?:_\d+)?_", starts=(0, 1, 3, 8),
                          family="MobileNetV3Small")
MOBILENET_V3_LARGE = dict(id_pattern=r"^expanded_conv(?:_\d+)?_", starts=(1, 3, 6, 12),
                          family="MobileNetV3Large")
mobilenet_v1_blocks = partial(mobilenet_blocks, **MOBILENET_V1)
mobilenet_v2_blocks = partial(mobilenet_blocks, **MOBILENET_V2)
mobilenet_v3_small_blocks = partial(mobilenet_blocks, **MOBILENET_V3_SMALL)
mobilenet_v3_large_blocks = partial(mobilenet_blocks, **MOBILENET_V3_LARGE)


def mobilenet_v1_units(layers):
    """The depthwise-separable units ``conv_{N}`` (``conv_dw_N`` and ``conv_pw_N``)."""
    def unit_of(name):
        number = _matched(r"^conv_(?:dw|pw|pad)_(\d+)", name)
        return f"conv_{number}" if number else None

    return carry(layers, unit_of, "stem", "MobileNet")


def mobilenet_v2_units(layers):
    """The inverted residual units ``expanded_conv``, ``block_{N}``, then ``Conv_1``."""
    return carry(layers, lambda name: _matched(r"^(block_\d+|expanded_conv|Conv_1)(?:_|$)",
                                               name), "stem", "MobileNetV2")


def mobilenet_v3_units(layers):
    """The inverted residual units ``expanded_conv``, ``expanded_conv_{N}``, ``conv_1``."""
    return carry(layers, lambda name: _matched(r"^(expanded_conv(?:_\d+)?|conv_1)(?:_|$)",
                                               name), "stem", "MobileNetV3")


# --- Xception: entry flow, middle flow, exit flow --------------------------------------

# Keras' block N → our block: the entry flow's four (block1 the two plain convolutions,
# block2–4 its residual modules), the middle flow's eight repeats in two blocks of four,
# the exit flow (block13, block14) in one.
XCEPTION_BLOCKS = {1: 1, 2: 2, 3: 3, 4: 4, **dict.fromkeys(range(5, 9), 5),
                   **dict.fromkeys(range(9, 13), 6), 13: 7, 14: 7}


def xception_blocks(layers):
    """Xception: 7 blocks by Keras' ``block{N}_`` prefixes (:data:`XCEPTION_BLOCKS`).
    The middle flow is two blocks of four repeats: its 8 × 3 separable convolutions hold
    12.9 M of the 20.9 M parameters, so one block would jump from 6.8 M trainable
    (exit flow) to 19.7 M, eight would double the grid; two of 6.5 M each step evenly.
    Each entry and exit module's auto-named shortcut (1×1 conv, BN, add) lies between
    its ``blockN_sepconv2_bn`` and the next module in Keras' order, so it joins its
    module (checked on the graph by tests/models/test_families.py)."""
    def block_of(name):
        number = _matched(r"^block(\d+)_", name)
        return XCEPTION_BLOCKS[int(number)] if number else None

    return blocks_by_name(layers, block_of, 7, "Xception")


def xception_units(layers):
    """Keras' 14 blocks ``block{N}``."""
    return carry(layers, lambda name: _matched(r"^(block\d+)_", name), "block1", "Xception")


# --- InceptionResNetV2: stem, mixed_5b, the three repeats with their reductions ----------

INCEPTION_RESNET_V2_ENDS = {2: "mixed_5b", 3: "mixed_6a", 4: "mixed_7a"}


def inception_resnet_v2_blocks(layers):
    """InceptionResNetV2: 5 blocks, cut at layers (as InceptionV3's map): block 1 the
    stem, ending at its second max-pool; block 2 ``mixed_5b``; block 3 the ten
    ``block35_*`` repeats and the ``mixed_6a`` reduction; block 4 the twenty
    ``block17_*`` and ``mixed_7a``; block 5 the ten ``block8_*`` and ``conv_7b``.

    NOTE: the branch convolutions are auto-named, but every layer of a module lies
    between the module before it (its ancestor) and its closing concatenation, so
    cutting the layer order at ``mixed_5b``, ``mixed_6a``, ``mixed_7a`` is exact."""
    blocks = OrderedDict()
    block, pools = 1, 0
    for layer in layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        blocks.setdefault(block, []).append(layer.name)
        if block == 1 and kind == "MaxPooling2D":
            pools += 1
            block += pools == 2
        elif layer.name == INCEPTION_RESNET_V2_ENDS.get(block):
            block += 1
    last = list(blocks.values())[-1][-1]
    if list(blocks) != [1, 2, 3, 4, 5] or last != "conv_7b_ac":
        raise ValueError(f"InceptionResNetV2 block map has blocks {list(blocks)} ending at "
                         f"{last!r}, expected 5 blocks ending at 'conv_7b_ac'")
    return blocks


def inception_resnet_v2_units(layers):
    """The ``stem``, ``mixed_5b``, each repeat ``block35_{N}``, ``block17_{N}``,
    ``block8_{N}`` with its reduction ``mixed_6a``/``mixed_7a``, and ``conv_7b``; a
    unit ends at its named output (``block35_3_ac``), its auto-named branches before."""
    units = OrderedDict()
    pending, pools = [], 0
    for layer in layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        pending.append(layer.name)
        label = _matched(r"^(mixed_\d[a-z]|block(?:35|17|8)_\d+|conv_7b)(?:_ac)?$", layer.name)
        if not units and kind == "MaxPooling2D":
            pools += 1
            label = "stem" if pools == 2 else None
        if label == "conv_7b" and not layer.name.endswith("_ac"):
            label = None  # conv_7b ends at its activation
        if label:
            units.setdefault(label, []).extend(pending)
            pending = []
    if pending:
        raise ValueError(f"InceptionResNetV2 layers after the last unit: {pending[:3]}")
    return units


"""InceptionV4 (Szegedy et al. 2016), as a Keras functional model, and its block map.

"Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning"
(arXiv:1602.07261): a stem, 4 × Inception-A, Reduction-A, 7 × Inception-B, Reduction-B
and 3 × Inception-C. It is in neither ``keras.applications`` nor keras-hub, so it is
written here, unit for unit as timm's ``inception_v4`` (``timm/models/inception_v4.py``)
implements it, so that timm's ImageNet weights (``inception_v4.tf_in1k``, ported from
Google's TF-slim checkpoint) fit it: :func:`kandel_repro.models.convert.convert_weights`.

Every convolution is a unit Conv2D (no bias) → BatchNormalization (ε = 1e-3, as timm's)
→ ReLU, named ``{module}_{branch}``, ``…_bn``, ``…_relu``; each module ends at its
output concatenation, named after the module (``mixed_3a``, ``inception_a1``, …,
``inception_c3``), as ``mixedN`` ends the modules of Keras' InceptionV3. timm's padding
is explicit; here a stride-1 convolution it pads to keep the size is ``"same"`` (odd
kernels, so the padding is symmetric and equal) and every other one ``"valid"``.

Blocks (fine-tuning depth): block 1 is the stem's three plain convolutions, blocks 2–4
the stem's mixed modules (``mixed_3a``, ``mixed_4a``, ``mixed_5a``), blocks 5–20 the
sixteen Inception and Reduction modules — timm's own grouping (``group_matcher``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a model is built
    import keras
    import numpy as np
    import tensorflow as tf

BN_EPSILON = 1e-3  # timm's norm_eps for inception_v4 (TF-slim's)

# timm's ``features.{i}`` modules, in order: the Keras name of each.
MODULES = ("stem_conv1", "stem_conv2", "stem_conv3", "mixed_3a", "mixed_4a", "mixed_5a",
           *(f"inception_a{i}" for i in range(1, 5)), "reduction_a",
           *(f"inception_b{i}" for i in range(1, 8)), "reduction_b",
           *(f"inception_c{i}" for i in range(1, 4)))
BLOCK_OF_MODULE = {name: max(1, index - 1) for index, name in enumerate(MODULES)}
NUM_BLOCKS = 20
# Convolutions per block: stem 3, 1, 6, 1; Inception-A 7 each; Reduction-A 4;
# Inception-B 10 each; Reduction-B 6; Inception-C 10 each.
CONVOLUTIONS = (3, 1, 6, 1, 7, 7, 7, 7, 4, *(10,) * 7, 6, 10, 10, 10)
NUM_CONVOLUTIONS = sum(CONVOLUTIONS)  # 149
MIN_INPUT_SIZE = 75  # 75 → 37 → 35 → 35 → 17 → 15 → 7 (Reduction-A) 3 → (Reduction-B) 1
FEATURES = 1536  # channels of the last Inception-C (8 × 8 at 299 × 299)


def preprocess_input(images: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """Pixel values 0–255 to [−1, 1] (timm's mean 0.5, std 0.5 of TF-slim's Inception)."""
    return images / 127.5 - 1.0


def build(input_shape: tuple[int, ...]) -> keras.Model:
    """The headless InceptionV4 (output: the last Inception-C's feature map)."""
    return build_mapped(input_shape)[0]


def build_mapped(input_shape: tuple[int, ...]) -> tuple[keras.Model, dict[str, str]]:
    """``(model, {Keras name of each convolution: timm's module path})``, e.g.
    ``"inception_a1_branch1_0"`` → ``"features.6.branch1.0"`` (whose tensors are
    ``….conv.weight`` and ``….bn.weight``, ``.bias``, ``.running_mean``, ``.running_var``)."""
    import keras
    from keras import layers

    timm_paths = {}

    def module(index):
        name = MODULES[index]

        def unit(x, path, filters, kernel, strides=1, padding="valid"):
            keras_name = f"{name}_{path.replace('.', '_')}" if path else name
            timm_paths[keras_name] = f"features.{index}.{path}" if path else f"features.{index}"
            x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                              name=keras_name)(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{keras_name}_bn")(x)
            return layers.ReLU(name=f"{keras_name}_relu")(x)

        return name, unit

    def max_pool(x, name):
        return layers.MaxPooling2D(3, strides=2, name=name)(x)

    def avg_pool(x, name):  # NOTE: TF's "same" average excludes the padding, as timm's
        return layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)

    def concat(parts, name):
        return layers.Concatenate(name=name)(parts)

    def inception_a(x, index):
        name, unit = module(index)
        b0 = unit(x, "branch0", 96, 1)
        b1 = unit(unit(x, "branch1.0", 64, 1), "branch1.1", 96, 3, padding="same")
        b2 = unit(x, "branch2.0", 64, 1)
        b2 = unit(unit(b2, "branch2.1", 96, 3, padding="same"), "branch2.2", 96, 3,
                  padding="same")
        b3 = unit(avg_pool(x, f"{name}_branch3_pool"), "branch3.1", 96, 1)
        return concat([b0, b1, b2, b3], name)

    def reduction_a(x, index):
        name, unit = module(index)
        b0 = unit(x, "branch0", 384, 3, strides=2)
        b1 = unit(x, "branch1.0", 192, 1)
        b1 = unit(unit(b1, "branch1.1", 224, 3, padding="same"), "branch1.2", 256, 3, strides=2)
        return concat([b0, b1, max_pool(x, f"{name}_branch2_pool")], name)

    def inception_b(x, index):
        name, unit = module(index)
        b0 = unit(x, "branch0", 384, 1)
        b1 = unit(x, "branch1.0", 192, 1)
        b1 = unit(b1, "branch1.1", 224, (1, 7), padding="same")
        b1 = unit(b1, "branch1.2", 256, (7, 1), padding="same")
        b2 = unit(x, "branch2.0", 192, 1)
        for path, filters, kernel in (("branch2.1", 192, (7, 1)), ("branch2.2", 224, (1, 7)),
                                      ("branch2.3", 224, (7, 1)), ("branch2.4", 256, (1, 7))):
            b2 = unit(b2, path, filters, kernel, padding="same")
        b3 = unit(avg_pool(x, f"{name}_branch3_pool"), "branch3.1", 128, 1)
        return concat([b0, b1, b2, b3], name)

    def reduction_b(x, index):
        name, unit = module(index)
        b0 = unit(unit(x, "branch0.0", 192, 1), "branch0.1", 192, 3, strides=2)
        b1 = unit(x, "branch1.0", 256, 1)
        b1 = unit(b1, "branch1.1", 256, (1, 7), padding="same")
        b1 = unit(b1, "branch1.2", 320, (7, 1), padding="same")
        b1 = unit(b1, "branch1.3", 320, 3, strides=2)
        return concat([b0, b1, max_pool(x, f"{name}_branch2_pool")], name)

    def inception_c(x, index):
        name, unit = module(index)
        b0 = unit(x, "branch0", 256, 1)
        b1 = unit(x, "branch1_0", 384, 1)
        b1 = concat([unit(b1, "branch1_1a", 256, (1, 3), padding="same"),
                     unit(b1, "branch1_1b", 256, (3, 1), padding="same")], f"{name}_branch1")
        b2 = unit(x, "branch2_0", 384, 1)
        b2 = unit(b2, "branch2_1", 448, (3, 1), padding="same")
        b2 = unit(b2, "branch2_2", 512, (1, 3), padding="same")
        b2 = concat([unit(b2, "branch2_3a", 256, (1, 3), padding="same"),
                     unit(b2, "branch2_3b", 256, (3, 1), padding="same")], f"{name}_branch2")
        b3 = unit(avg_pool(x, f"{name}_branch3_pool"), "branch3.1", 256, 1)
        return concat([b0, b1, b2, b3], name)

    inputs = keras.Input(tuple(input_shape), name="images_in")
    x = module(0)[1](inputs, "", 32, 3, strides=2)
    x = module(1)[1](x, "", 32, 3)
    x = module(2)[1](x, "", 64, 3, padding="same")
    name, unit = module(3)  # Mixed3a: pool, then convolution
    x = concat([max_pool(x, f"{name}_pool"), unit(x, "conv", 96, 3, strides=2)], name)
    name, unit = module(4)  # Mixed4a
    b0 = unit(unit(x, "branch0.0", 64, 1), "branch0.1", 96, 3)
    b1 = unit(x, "branch1.0", 64, 1)
    b1 = unit(b1, "branch1.1", 64, (1, 7), padding="same")
    b1 = unit(b1, "branch1.2", 64, (7, 1), padding="same")
    x = concat([b0, unit(b1, "branch1.3", 96, 3)], name)
    name, unit = module(5)  # Mixed5a: convolution, then pool
    x = concat([unit(x, "conv", 192, 3, strides=2), max_pool(x, f"{name}_pool")], name)
    index = 6
    for make, repeats in ((inception_a, 4), (reduction_a, 1), (inception_b, 7),
                          (reduction_b, 1), (inception_c, 3)):
        for _ in range(repeats):
            x = make(x, index)
            index += 1
    return keras.Model(inputs, x, name="inception_v4"), timm_paths


def assign_blocks(layers: Iterable[keras.layers.Layer]) -> OrderedDict[int, list[str]]:
    """``{block: [layer names]}`` by each layer's module, told by its name (names are
    set here, never generated, so a second model in one process maps the same)."""
    by_length = sorted(MODULES, key=len, reverse=True)
    blocks = OrderedDict()
    for layer in layers:
        if type(layer).__name__ == "InputLayer":
            continue
        module = next((m for m in by_length
                       if layer.name == m or layer.name.startswith(f"{m}_")), None)
        if module is None:
            raise ValueError(f"InceptionV4 layer {layer.name!r} belongs to no module")
        blocks.setdefault(BLOCK_OF_MODULE[module], []).append(layer.name)
    if list(blocks) != list(range(1, NUM_BLOCKS + 1)):
        raise ValueError(f"InceptionV4 block map has blocks {list(blocks)}, "
                         f"expected 1–{NUM_BLOCKS}")
    return blocks

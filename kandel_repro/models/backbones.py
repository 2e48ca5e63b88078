"""Backbone registry: which keras.applications model, its preprocessing, its blocks.

A backbone is an entry, not a branch: adding one means adding a :class:`Backbone`
to :data:`REGISTRY` with a function that assigns each layer of the built base model
to a block. Blocks are numbered from the input (1) to the top (``num_blocks``), as in
the paper (§4.1): "fine-tune blocks 3–5" of VGG16 means every layer of blocks 3, 4 and
5 trains and every layer of blocks 1 and 2 is frozen.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from ..core.errors import ConfigError

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a model is built
    import keras
    import numpy as np
    import tensorflow as tf


def _vgg_blocks(layers):
    """VGG: five blocks split at the max-pool layers, named ``blockN_*`` by Keras."""
    blocks = OrderedDict()
    for layer in layers:
        match = re.match(r"block(\d+)_", layer.name)
        if match:
            blocks.setdefault(int(match.group(1)), []).append(layer.name)
    return blocks


def _inception_v3_blocks(layers):
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


def assign_layers(layers: Iterable[keras.layers.Layer]) -> OrderedDict[int, list[str]]:
    """The layer granularity of a backbone: ``{number: [layer names]}`` where layer
    ``k`` is the k-th convolution from the input (1 …), with the layers after it that
    have no convolution of their own (its BatchNormalization, activation, pooling) —
    fine-tuning "from layer k" trains those and everything above."""
    out = OrderedDict()
    number = 0
    for layer in layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if "Conv" in kind:
            number += 1
        out.setdefault(max(number, 1), []).append(layer.name)
    return out


@dataclass(frozen=True)
class Backbone:
    name: str
    application: str  # class name in keras.applications
    module: str | None  # keras.applications submodule with preprocess_input
    num_blocks: int
    num_layers: int  # convolutions, for layer-wise depth (assign_layers)
    min_input_size: int
    notop_weights_file: str | None  # what keras.applications downloads for include_top=False
    assign_blocks: Callable  # list of layers -> OrderedDict{block: [layer names]}
    block_layers: tuple = ()  # convolutions per block, where blocks are runs of them (VGG)
    build: Callable | None = None  # our own architecture: input shape -> headless keras Model

    @property
    def pretrained(self) -> bool:
        """Whether ImageNet weights exist for it (keras.applications ones do)."""
        return self.build is None

    def constructor(self) -> Callable[..., keras.Model]:
        """``(include_top=False, weights=…, input_shape=…) -> keras Model``."""
        import keras

        if self.build is None:
            return getattr(keras.applications, self.application)

        def construct(include_top=False, weights=None, input_shape=None):
            if weights == "imagenet":
                raise ConfigError(f"{self.name} has no ImageNet weights: train it from scratch "
                                  "(--weights none) or from weights a run made here "
                                  "(--weights PATH, see `kandel-repro export-weights`)")
            model = self.build(tuple(input_shape))
            if weights is not None:
                model.load_weights(weights)
            return model

        return construct

    def preprocess_input(self) -> Callable[[tf.Tensor], tf.Tensor]:
        import keras

        if self.module is None:
            return scale_to_unit
        return getattr(keras.applications, self.module).preprocess_input


def scale_to_unit(images: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """The CBR networks' preprocessing (our choice): pixel values to [0, 1]."""
    return images / 255.0


def _cbr(name, kernel, widths, final=None):
    """A CBR network of Raghu et al. 2019 (Transfusion): per block a convolution (stride
    1) → BatchNorm → ReLU → 3×3 max-pool with stride 2; ``final``: one more conv → BN →
    ReLU block without pool; then global average pooling (the head follows)."""
    def build(input_shape):
        import keras
        from keras import layers

        inputs = keras.Input(input_shape, name="images_in")
        x = inputs
        units = [(width, True) for width in widths] + ([(final, False)] if final else [])
        for block, (width, pool) in enumerate(units, 1):
            x = layers.Conv2D(width, kernel, padding="same", use_bias=False,
                              name=f"block{block}_conv")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn")(x)
            x = layers.ReLU(name=f"block{block}_relu")(x)
            if pool:
                x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        x = layers.GlobalAveragePooling2D(name=f"block{len(units)}_gap")(x)
        return keras.Model(inputs, x, name=name)

    blocks = len(widths) + (1 if final else 0)
    label = {"cbr_large_t": "CBR-LargeT", "cbr_large_w": "CBR-LargeW", "cbr_small": "CBR-Small",
             "cbr_tiny": "CBR-Tiny"}[name]
    return Backbone(name=name, application=label, module=None, num_blocks=blocks,
                    num_layers=blocks, min_input_size=16, notop_weights_file=None,
                    assign_blocks=_vgg_blocks, block_layers=(1,) * blocks, build=build)


def _vgg(depth):
    return Backbone(
        name=f"vgg{depth}",
        application=f"VGG{depth}",
        module=f"vgg{depth}",
        num_blocks=5,
        num_layers={16: 13, 19: 16}[depth],
        block_layers={16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}[depth],
        min_input_size=32,
        notop_weights_file=f"vgg{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        assign_blocks=_vgg_blocks,
    )


REGISTRY = {
    "vgg16": _vgg(16),
    "vgg19": _vgg(19),
    "inception_v3": Backbone(
        name="inception_v3",
        application="InceptionV3",
        module="inception_v3",
        num_blocks=13,
        num_layers=94,
        min_input_size=75,
        notop_weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        assign_blocks=_inception_v3_blocks,
    ),
}


# Transfusion's small networks (Raghu et al. 2019), trained from scratch.
REGISTRY.update({b.name: b for b in (
    _cbr("cbr_large_t", 7, (32, 64, 128, 256), final=512),
    _cbr("cbr_large_w", 7, (64, 128, 256, 512)),
    _cbr("cbr_small", 7, (32, 64, 128, 256)),
    _cbr("cbr_tiny", 5, (64, 128, 256, 512)),
)})

ALIASES = {"inceptionv3": "inception_v3", "inception": "inception_v3",
           "cbr-larget": "cbr_large_t", "cbr-largew": "cbr_large_w", "cbr-small": "cbr_small",
           "cbr-tiny": "cbr_tiny"}


def get_backbone(name: str) -> Backbone:
    try:
        key = str(name).lower()
        return REGISTRY[ALIASES.get(key, key)]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}; available: {', '.join(sorted(REGISTRY))}"
        ) from None


def check_input_size(backbone: Backbone | str, height: int, width: int, what: str) -> None:
    """Refuse images smaller than ``backbone``'s minimum input size (its smaller side).

    The one check behind each place that meets a size: the model's input shape
    (:func:`kandel_repro.models.build.build_base`), ``--image-size``
    (:func:`kandel_repro.runs.config.resolve_config`) and the data a grid loaded.
    ``what`` says what was given, size included (``"--image-size 10"``,
    ``"inputs of 24×24"``): the :class:`ConfigError` reads ``"{what}: vgg16 needs images
    of at least 32×32"``.
    """
    if isinstance(backbone, str):
        backbone = get_backbone(backbone)
    size = backbone.min_input_size
    if min(height, width) < size:
        raise ConfigError(f"{what}: {backbone.name} needs images of at least {size}×{size}")


def layer_label(first_trainable_layer: int, num_layers: int) -> str:
    """A layer-wise depth's label: ``"head only"``, ``"13"``, ``"11–13"``…"""
    if first_trainable_layer > num_layers:
        return "head only"
    return depth_label(first_trainable_layer, num_layers)


def depth_label(first_trainable_block: int, num_blocks: int) -> str:
    """The paper's row label: ``"5"`` for the top block only, ``"3–5"`` for blocks 3 to 5."""
    if first_trainable_block == num_blocks:
        return str(num_blocks)
    return f"{first_trainable_block}–{num_blocks}"


HEAD_LAYERS = ("head_pool", "head_dropout", "head_dense")

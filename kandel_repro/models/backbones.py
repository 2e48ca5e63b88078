"""Backbone registry: which keras.applications model, its preprocessing, its blocks.

A backbone is an entry, not a branch: adding one means adding a :class:`Backbone`
to :data:`REGISTRY` with a function that assigns each layer of the built base model
to a block. Blocks are numbered from the input (1) to the top (``num_blocks``), as in
the paper (§4.1): "fine-tune blocks 3–5" of VGG16 means every layer of blocks 3, 4 and
5 trains and every layer of blocks 1 and 2 is frozen.

:func:`get_backbone` finds an entry under any spelling of its name: the registry's
(``inception_v4``), the Keras constructor's (``InceptionV4``, ``ResNet50V2``), the
aliases of :data:`ALIASES`, in any case and with or without ``_``, ``-`` or spaces
(``inceptionv4``, ``efficientnet-v2-s``); an unknown name is refused with the close ones.

An architecture of ours is an entry's ``build``: the function itself, or its name
(``"module:function"`` in :mod:`kandel_repro.models`), imported when a model is first
built, so that the registry, which settings, studies and the public API consult without
building anything, does not import the networks' code.
"""
from __future__ import annotations

import difflib
import importlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..core.errors import ConfigError, WeightsUnavailable
from . import efficientnet_lite as _lite, families, inception_v4 as _inception_v4, \
    resnet_torchvision as _resnet_tv
from .weights import keras_models_dir
from ..vit import architecture as _vit

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


def is_convolution(layer: keras.layers.Layer) -> bool:
    """A convolution layer (Conv2D, DepthwiseConv2D, SeparableConv2D…), or a nested
    model holding one (ConvNeXt's stem and downsampling layers), which counts as one."""
    if "Conv" in type(layer).__name__:
        return True
    return any(is_convolution(inner) for inner in getattr(layer, "layers", ()))


def assign_layers(layers: Iterable[keras.layers.Layer]) -> OrderedDict[int, list[str]]:
    """The layer granularity of a backbone: ``{number: [layer names]}`` where layer
    ``k`` is the k-th convolution from the input (1 …; :func:`is_convolution`), with the
    layers after it that have no convolution of their own (its BatchNormalization,
    activation, pooling) — fine-tuning "from layer k" trains those and everything above.
    A vision transformer's block opens a layer as a convolution does (its first layer,
    :func:`kandel_repro.vit.architecture.opens_layer`): its layers are its blocks."""
    out = OrderedDict()
    number = 0
    for layer in layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if is_convolution(layer) or _vit.opens_layer(layer.name):
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
    assign_units: Callable | None = None  # layers -> {unit: [layer names]}, finer than blocks
    # our own architecture: input shape -> headless keras Model; or its "module:function"
    # name in kandel_repro.models, imported on first build (builder)
    build: Callable | str | None = None
    preprocess: Callable | None = None  # images -> model inputs, where module is None
    converted_from: str | None = None  # ImageNet checkpoint `convert-weights` converts (build=)
    # Keras' ImageNet files per input size (MobileNet, MobileNetV2): the file name with
    # "{size}" and the sizes that have a file; notop_weights_file is then the 224 one.
    sized_weights: tuple[str, tuple[int, ...]] | None = None
    # (model, weights file) -> None where a file may differ from the model (a ViT's grid)
    load: Callable | None = None
    # the layers --strategy lora adapts (None: every convolution and dense layer)
    adapter_targets: Callable[[keras.layers.Layer], bool] | None = None

    @property
    def pretrained(self) -> bool:
        """Whether ImageNet weights exist for it (keras.applications ones do; ours where
        a checkpoint of another framework converts into them)."""
        return self.build is None or self.converted_from is not None

    def builder(self) -> Callable[..., keras.Model]:
        """Our own architecture's builder (``input shape -> headless Model``), its module
        imported the first time where the entry names it (``"module:function"``)."""
        if not isinstance(self.build, str):
            return self.build
        module, _, name = self.build.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)

    def constructor(self) -> Callable[..., keras.Model]:
        """``(include_top=False, weights=…, input_shape=…) -> keras Model``."""
        import keras

        if self.build is None:
            return getattr(keras.applications, self.application)

        def construct(include_top=False, weights=None, input_shape=None):
            if weights == "imagenet" and self.converted_from:
                weights = self._converted_weights()
            elif weights == "imagenet":
                raise ConfigError(f"{self.name} has no ImageNet weights: train it from scratch "
                                  "(--weights none) or from weights a run made here "
                                  "(--weights PATH, see `kandel-repro export-weights`)")
            model = self.builder()(tuple(input_shape))
            if weights is not None:
                (self.load or type(model).load_weights)(model, weights)
            return model

        return construct

    def notop_file(self, image_size: int | None = None) -> str | None:
        """The name of the ImageNet notop file that a model of ``image_size`` ×
        ``image_size`` loads: ``notop_weights_file`` (None: it has no ImageNet weights),
        but for MobileNet and MobileNetV2, whose Keras constructors load the file of the
        input size where there is one (``sized_weights``) and the 224 one at any other
        size (Keras' rule: keras/src/applications/mobilenet.py, mobilenet_v2.py)."""
        if self.sized_weights is None or image_size is None:
            return self.notop_weights_file
        template, sizes = self.sized_weights
        return template.format(size=image_size if image_size in sizes else KERAS_DEFAULT_SIZE)

    def imagenet_weights_file(self, image_size: int | None = None) -> Path | None:
        """Where this backbone's ImageNet weights lie when they are on this machine: its
        notop file for inputs of ``image_size`` (:meth:`notop_file`; None: the file of
        Keras' default size, 224) in the Keras models folder (``KERAS_HOME``; for a
        converted one, where ``convert-weights`` writes it); None when it has no ImageNet
        weights at all."""
        name = self.notop_file(image_size)
        return keras_models_dir() / name if name else None

    def converted_weights_file(self) -> Path:
        """Where ``convert-weights`` writes this backbone's ImageNet weights by default and
        ``--weights imagenet`` reads them: the Keras models folder (``KERAS_HOME``)."""
        return keras_models_dir() / self.notop_weights_file

    def _converted_weights(self):
        """The file ``convert-weights`` wrote, or why it is not there (one line)."""
        path = self.converted_weights_file()
        if not path.is_file():
            raise WeightsUnavailable(
                f"no ImageNet weights of {self.name} in {path.parent}/: download "
                f"{self.converted_from} and run `kandel-repro convert-weights {self.name} "
                f"FILE` (it writes {path.name} there), or pass --weights none to train "
                "from random weights (a different experiment)")
        return path

    def preprocess_input(self) -> Callable[[tf.Tensor], tf.Tensor]:
        import keras

        if self.preprocess is not None:
            return self.preprocess
        if self.module is None:
            return scale_to_unit
        return getattr(keras.applications, self.module).preprocess_input


def scale_to_unit(images: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """The CBR networks' preprocessing (our choice): pixel values to [0, 1]."""
    return images / 255.0


def scale_to_symmetric(images: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """The generative networks' preprocessing (``dcgan_small``): pixel values to [-1, 1],
    the range of the generator's tanh."""
    return images / 127.5 - 1.0


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


KERAS_DEFAULT_SIZE = 224  # the input size of Keras' ImageNet files where they have several

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
        assign_blocks=families.inception_v3_blocks,
    ),
}


# Transfusion's small networks (Raghu et al. 2019), trained from scratch.
REGISTRY.update({b.name: b for b in (
    _cbr("cbr_large_t", 7, (32, 64, 128, 256), final=512),
    _cbr("cbr_large_w", 7, (64, 128, 256, 512)),
    _cbr("cbr_small", 7, (32, 64, 128, 256)),
    _cbr("cbr_tiny", 5, (64, 128, 256, 512)),
)})

# The DCGAN discriminator's trunk (Radford et al. 2016), shared with the VAE's encoder:
# pretrained here on unlabelled images (`kandel-repro pretrain`), not on ImageNet.
# NOTE: named, not imported: the registry stands without the generative networks' code.
REGISTRY["dcgan_small"] = Backbone(
    name="dcgan_small", application="DCGAN-D", module=None, num_blocks=4, num_layers=4,
    min_input_size=16, notop_weights_file=None, assign_blocks=_vgg_blocks,
    block_layers=(1, 1, 1, 1), build="generative:build_trunk", preprocess=scale_to_symmetric)

# InceptionV4 (Szegedy et al. 2016): ours; its ImageNet weights convert from timm's.
REGISTRY["inception_v4"] = Backbone(
    name="inception_v4", application="InceptionV4", module=None,
    num_blocks=_inception_v4.NUM_BLOCKS, num_layers=_inception_v4.NUM_CONVOLUTIONS,
    min_input_size=_inception_v4.MIN_INPUT_SIZE,
    notop_weights_file="inception_v4_tf_in1k_notop.weights.h5",
    assign_blocks=_inception_v4.assign_blocks, build=_inception_v4.build,
    preprocess=_inception_v4.preprocess_input,
    converted_from="timm's inception_v4.tf_in1k model.safetensors "
                   "(https://huggingface.co/timm/inception_v4.tf_in1k)")

# EfficientNet-Lite0 … Lite4 (Google 2020) and torchvision's ResNet-50 (v1.5): ours, named
# as Keras' EfficientNet and ResNet50, so their block maps; weights from PyTorch files.
REGISTRY.update({name: Backbone(
    name=name, application=f"EfficientNetLite{name[-1]}", module=None, num_blocks=9,
    num_layers=sum(_lite.convolutions(name)), min_input_size=_lite.MIN_INPUT_SIZE,
    notop_weights_file=f"{name}_notop.weights.h5", assign_blocks=families.efficientnet_blocks,
    assign_units=families.efficientnet_units, block_layers=_lite.convolutions(name),
    build=partial(_lite.build, name=name), preprocess=_lite.preprocess_input,
    converted_from=_lite.CONVERTED_FROM.get(name)) for name in _lite.VARIANTS})
REGISTRY["resnet50_torchvision"] = Backbone(
    name="resnet50_torchvision", application="ResNet50 (torchvision v1.5)", module=None,
    num_blocks=5, num_layers=53, min_input_size=32,
    notop_weights_file="resnet50_torchvision_notop.weights.h5",
    assign_blocks=families.resnet_blocks, assign_units=families.resnet_units,
    block_layers=(1, 10, 13, 19, 10), build=_resnet_tv.build,
    preprocess=_resnet_tv.preprocess_input, converted_from=_resnet_tv.CONVERTED_FROM)

# Vision transformers (ViT, DeiT, DINOv2): ours (kandel_repro.vit); weights from timm's
# and transformers' checkpoints; layers = blocks (each transformer block opens one).
REGISTRY.update({name: Backbone(
    name=name, application=v.application, module=None, num_blocks=_vit.num_blocks(name),
    num_layers=v.depth + 1, min_input_size=_vit.min_input_size(name),
    notop_weights_file=f"{name}_notop.weights.h5" if v.layout else None,
    assign_blocks=partial(_vit.assign_blocks, name=name), block_layers=_vit.block_layers(name),
    build=partial(_vit.build, name=name), preprocess=_vit.preprocess_input,
    converted_from=v.converted_from, load=partial(_vit.load_weights, name=name),
    adapter_targets=_vit.is_adapter_target) for name, v in _vit.VARIANTS.items()})

# Names that are neither an entry's nor its Keras constructor's (those resolve by
# themselves in any spelling: get_backbone)
ALIASES = {"inception": "inception_v3", "mobilenet_v1": "mobilenet"}


# --- every other keras.applications family (block maps: kandel_repro.models.families) ----

# Convolutions per block (assign_layers' count, nested models as one), as the models
# build; tests/models/test_families.py checks them against the built models.
FAMILY_CONVOLUTIONS = {
    "resnet50": (1, 10, 13, 19, 10), "resnet101": (1, 10, 13, 70, 10),
    "resnet152": (1, 10, 25, 109, 10),
    "resnet50_v2": (1, 10, 13, 19, 10), "resnet101_v2": (1, 10, 13, 70, 10),
    "resnet152_v2": (1, 10, 25, 109, 10),
    "densenet121": (1, 13, 25, 49, 32), "densenet169": (1, 13, 25, 65, 64),
    "densenet201": (1, 13, 25, 97, 64),
    "efficientnet_b0": (1, 4, 10, 10, 15, 15, 20, 5, 1),
    "efficientnet_b1": (1, 8, 15, 15, 20, 20, 25, 10, 1),
    "efficientnet_b2": (1, 8, 15, 15, 20, 20, 25, 10, 1),
    "efficientnet_b3": (1, 8, 15, 15, 25, 25, 30, 10, 1),
    "efficientnet_b4": (1, 8, 20, 20, 30, 30, 40, 10, 1),
    "efficientnet_b5": (1, 12, 25, 25, 35, 35, 45, 15, 1),
    "efficientnet_b6": (1, 12, 30, 30, 40, 40, 55, 15, 1),
    "efficientnet_b7": (1, 16, 35, 35, 50, 50, 65, 20, 1),
    "efficientnet_v2_b0": (1, 1, 4, 4, 15, 25, 40, 1),
    "efficientnet_v2_b1": (1, 2, 6, 6, 20, 30, 45, 1),
    "efficientnet_v2_b2": (1, 2, 6, 6, 20, 30, 50, 1),
    "efficientnet_v2_b3": (1, 2, 6, 6, 25, 35, 60, 1),
    "efficientnet_v2_s": (1, 2, 8, 8, 30, 45, 75, 1),
    "efficientnet_v2_m": (1, 3, 10, 10, 35, 70, 90, 25, 1),
    "efficientnet_v2_l": (1, 4, 14, 14, 50, 95, 125, 35, 1),
    "convnext_tiny": (1, 3, 4, 10, 4), "convnext_small": (1, 3, 4, 28, 4),
    "convnext_base": (1, 3, 4, 28, 4), "convnext_large": (1, 3, 4, 28, 4),
    "convnext_xlarge": (1, 3, 4, 28, 4),
    "mobilenet": (3, 4, 4, 12, 4), "mobilenet_v2": (3, 6, 9, 21, 13),
    "mobilenet_v3_small": (1, 4, 6, 25, 16), "mobilenet_v3_large": (3, 6, 15, 22, 16),
    "xception": (2, 3, 3, 3, 12, 12, 5),
    "inception_resnet_v2": (5, 7, 74, 107, 51),
}


def _family(name, application, module, notop, assign_blocks, assign_units, min_input_size=32,
            runs_of_convolutions=True, sizes=()):
    """A keras.applications backbone. ``runs_of_convolutions``: whether each block's
    layers with weights are exactly those of its convolutions at the layer granularity
    (:func:`assign_layers`); not so where a block opens with a BatchNormalization before
    its first convolution (ResNetV2's pre-activation, DenseNet's dense layers): there
    ``block_layers`` stays empty and no layer-wise depth is said to equal a block-wise one.
    ``sizes``: the input sizes with an ImageNet file of their own, ``notop`` then naming
    them with ``{size}`` (:attr:`Backbone.sized_weights`)."""
    convolutions = FAMILY_CONVOLUTIONS[name]
    return Backbone(name=name, application=application, module=module,
                    num_blocks=len(convolutions), num_layers=sum(convolutions),
                    min_input_size=min_input_size,
                    notop_weights_file=notop.format(size=KERAS_DEFAULT_SIZE),
                    assign_blocks=assign_blocks, assign_units=assign_units,
                    block_layers=convolutions if runs_of_convolutions else (),
                    sized_weights=(notop, tuple(sizes)) if sizes else None)


def _families():
    f = families
    keras_file = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
    for depth in (50, 101, 152):
        yield _family(f"resnet{depth}", f"ResNet{depth}", "resnet", f"resnet{depth}{keras_file}",
                      f.resnet_blocks, f.resnet_units)
    for depth in (50, 101, 152):
        yield _family(f"resnet{depth}_v2", f"ResNet{depth}V2", "resnet_v2",
                      f"resnet{depth}v2{keras_file}", f.resnet_blocks, f.resnet_units,
                      runs_of_convolutions=False)
    for depth in (121, 169, 201):
        yield _family(f"densenet{depth}", f"DenseNet{depth}", "densenet",
                      f"densenet{depth}{keras_file}", f.densenet_blocks, f.densenet_units,
                      runs_of_convolutions=False)
    for k in range(8):
        yield _family(f"efficientnet_b{k}", f"EfficientNetB{k}", "efficientnet",
                      f"efficientnetb{k}_notop.h5", f.efficientnet_blocks, f.efficientnet_units)
    for size in ("b0", "b1", "b2", "b3", "s", "m", "l"):
        yield _family(f"efficientnet_v2_{size}", f"EfficientNetV2{size.upper()}",
                      "efficientnet_v2", f"efficientnetv2-{size}_notop.h5",
                      partial(f.efficientnet_blocks, stages=7 if size in ("m", "l") else 6),
                      f.efficientnet_units)
    for size in ("Tiny", "Small", "Base", "Large", "XLarge"):
        yield _family(f"convnext_{size.lower()}", f"ConvNeXt{size}", "convnext",
                      f"convnext_{size.lower()}_notop.h5", f.convnext_blocks, f.convnext_units)
    # NOTE: MobileNet and MobileNetV2 have ImageNet weights per input size (MobileNet
    # 128 … 224, MobileNetV2 96 … 224, as Keras' constructors list them); Keras fetches
    # the file of the model's size, or the 224 one for any other size.
    yield _family("mobilenet", "MobileNet", "mobilenet", "mobilenet_1_0_{size}_tf_no_top.h5",
                  f.mobilenet_v1_blocks, f.mobilenet_v1_units, sizes=(128, 160, 192, 224))
    yield _family("mobilenet_v2", "MobileNetV2", "mobilenet_v2",
                  "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
                  f.mobilenet_v2_blocks, f.mobilenet_v2_units, sizes=(96, 128, 160, 192, 224))
    for size in ("small", "large"):
        yield _family(f"mobilenet_v3_{size}", f"MobileNetV3{size.title()}", "mobilenet_v3",
                      f"weights_mobilenet_v3_{size}_224_1.0_float_no_top_v2.h5",
                      getattr(f, f"mobilenet_v3_{size}_blocks"), f.mobilenet_v3_units)
    yield _family("xception", "Xception", "xception", f"xception{keras_file}",
                  f.xception_blocks, f.xception_units, min_input_size=71)
    yield _family("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2",
                  f"inception_resnet_v2{keras_file}", f.inception_resnet_v2_blocks,
                  f.inception_resnet_v2_units, min_input_size=75)


REGISTRY.update({b.name: b for b in _families()})


def spelling_key(name: str) -> str:
    """A backbone's name as :func:`get_backbone` compares it: lower case, without ``_``,
    ``-``, ``.`` or spaces (``Inception-V4`` → ``inceptionv4``; Keras' own model names
    such as ``efficientnetv2-s`` and the constructors' ``ResNet50V2`` so meet the
    registry's ``efficientnet_v2_s`` and ``resnet50_v2``)."""
    return re.sub(r"[\s_.\-]", "", str(name).lower())


def _spellings() -> dict[str, str]:
    """``{spelling key: registry name}`` of every name, Keras constructor and alias.

    NOTE: built and checked at import, so that a new entry whose spelling would stand
    for two backbones fails at once instead of resolving to either."""
    names = {}
    pairs = [(b.name, b.name) for b in REGISTRY.values()]
    pairs += [(b.application, b.name) for b in REGISTRY.values()]
    pairs += list(ALIASES.items())
    for spelling, name in pairs:
        key = spelling_key(spelling)
        if names.setdefault(key, name) != name:
            raise ValueError(f"backbone spelling {spelling!r} stands for both {names[key]} "
                             f"and {name}")
    return names


SPELLINGS = _spellings()


def get_backbone(name: str) -> Backbone:
    """The registry's entry for ``name``, under any of its spellings (module docstring);
    an unknown name is a :class:`ConfigError` naming the close ones (``difflib``)."""
    key = spelling_key(name)
    if key in SPELLINGS:
        return REGISTRY[SPELLINGS[key]]
    close = list(dict.fromkeys(SPELLINGS[match] for match in
                               difflib.get_close_matches(key, list(SPELLINGS), n=6, cutoff=0.6)))
    if close:
        raise ConfigError(f"unknown backbone {name!r}; did you mean {', '.join(close[:3])}? "
                          f"(`kandel-repro blocks --help` lists all {len(REGISTRY)})")
    raise ConfigError(f"unknown backbone {name!r}; available: {', '.join(sorted(REGISTRY))}")


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

"""Backbone registry: which keras.applications model, its preprocessing, its blocks.

A backbone is an entry, not a branch: adding one means adding a :class:`Backbone`
to :data:`REGISTRY` with a function that assigns each layer of the built base model
to a block. Blocks are numbered from the input (1) to the top (``num_blocks``), as in
the paper (§4.1): "fine-tune blocks 3–5" of VGG16 means every layer of blocks 3, 4 and
5 trains and every layer of blocks 1 and 2 is frozen.
"""
from __future__ import annotations

import importlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError


def _vgg_blocks(layers):
    """VGG: five blocks split at the max-pool layers, named ``blockN_*`` by Keras."""
    blocks = OrderedDict()
    for layer in layers:
        match = re.match(r"block(\d+)_", layer.name)
        if match:
            blocks.setdefault(int(match.group(1)), []).append(layer.name)
    return blocks


@dataclass(frozen=True)
class Backbone:
    name: str
    application: str  # class name in keras.applications
    module: str  # keras.applications submodule with preprocess_input
    num_blocks: int
    min_input_size: int
    notop_weights_file: str  # what keras.applications downloads for include_top=False
    assign_blocks: Callable  # list of layers -> OrderedDict{block: [layer names]}

    def constructor(self):
        import keras

        return getattr(keras.applications, self.application)

    def preprocess_input(self):
        import keras

        return getattr(keras.applications, self.module).preprocess_input


def _vgg(depth):
    return Backbone(
        name=f"vgg{depth}",
        application=f"VGG{depth}",
        module=f"vgg{depth}",
        num_blocks=5,
        min_input_size=32,
        notop_weights_file=f"vgg{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        assign_blocks=_vgg_blocks,
    )


REGISTRY = {"vgg16": _vgg(16), "vgg19": _vgg(19)}


def get_backbone(name):
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}; available: {', '.join(sorted(REGISTRY))}"
        ) from None


def depth_label(first_trainable_block, num_blocks):
    """The paper's row label: ``"5"`` for the top block only, ``"3–5"`` for blocks 3 to 5."""
    if first_trainable_block == num_blocks:
        return str(num_blocks)
    return f"{first_trainable_block}–{num_blocks}"


def check_first_block(backbone, first_trainable_block):
    if not isinstance(first_trainable_block, int) or not (
        1 <= first_trainable_block <= backbone.num_blocks
    ):
        raise ConfigError(
            f"first trainable block must be an integer from 1 to {backbone.num_blocks} "
            f"for {backbone.name}, got {first_trainable_block!r}"
        )

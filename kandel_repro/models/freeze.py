"""Freezing: which layers of a built model train, by block or by layer.

A block map (:mod:`kandel_repro.models.backbones`) names the layers of each block; freezing
from block b leaves blocks b … top and the head trainable. BatchNorm layers of frozen
blocks stay in inference mode (Keras' rule for a non-trainable BatchNormalization).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from .backbones import HEAD_LAYERS

if TYPE_CHECKING:
    import keras


def set_trainable_layers(model: keras.Model, layer_map: dict[int, list[str]],
                         first_trainable_layer: int) -> list[str]:
    """Freeze the layers numbered below ``first_trainable_layer``, train the rest and the
    head (``layer_map``: :func:`kandel_repro.models.backbones.assign_layers` of the model's
    backbone); the trainable layers that hold weights, sorted.

    NOTE: the model must be compiled after this call (Keras reads ``trainable`` at
    compile time).
    """
    for number, names in layer_map.items():
        for name in names:
            if name not in HEAD_LAYERS:
                model.get_layer(name).trainable = number >= first_trainable_layer
    for name in HEAD_LAYERS:
        model.get_layer(name).trainable = True
    return trainable_layer_names(model)


def set_trainable_blocks(model: keras.Model, block_map: dict[int, list[str]],
                         first_trainable_block: int, num_blocks: int | None = None) -> list[str]:
    """Freeze every block below ``first_trainable_block``; train it and all above.

    Layers named in ``block_map`` are frozen or unfrozen by name; the head always
    trains. Returns the sorted names of the trainable layers that hold weights.

    NOTE: the model must be compiled after this call (Keras reads ``trainable`` at
    compile time).
    """
    num_blocks = num_blocks or max(block_map)
    if not isinstance(first_trainable_block, int) or not 1 <= first_trainable_block <= num_blocks:
        raise ConfigError(
            f"first trainable block must be an integer from 1 to {num_blocks}, "
            f"got {first_trainable_block!r}"
        )
    for block, names in block_map.items():
        for name in names:
            model.get_layer(name).trainable = block >= first_trainable_block
    for name in HEAD_LAYERS:
        model.get_layer(name).trainable = True
    return trainable_layer_names(model)


def trainable_layer_names(model: keras.Model) -> list[str]:
    return sorted(
        layer.name for layer in model.layers if layer.trainable and layer.trainable_weights
    )

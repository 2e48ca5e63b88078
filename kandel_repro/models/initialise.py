"""Initialisation of random weights: Glorot, He or Gaussian σ = 0.01 (Tajbakhsh et al.).

With pretrained weights only the head is drawn anew; from scratch, every layer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .backbones import HEAD_LAYERS

if TYPE_CHECKING:
    import keras

INITIALISERS = {
    "glorot": lambda: _initializer("GlorotUniform"),
    "he": lambda: _initializer("HeNormal"),
    "gaussian": lambda: _initializer("RandomNormal", stddev=0.01),
}


def _initializer(name, **kwargs):
    import keras

    return getattr(keras.initializers, name)(**kwargs)


def reinitialise(model: keras.Model, init: str, head_only: bool = False) -> None:
    """Draw every convolution's and dense layer's kernel anew with ``init`` (glorot, he,
    gaussian: N(0, 0.01²)), their biases 0; only the head's with ``head_only`` (the
    backbone keeps its pretrained weights). Draws from Keras' global seed."""
    import keras

    initializer = INITIALISERS[init]()
    for layer in model.layers:
        if head_only and layer.name not in HEAD_LAYERS:
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            continue
        kernel.assign(initializer(kernel.shape, dtype=kernel.dtype))
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(keras.ops.zeros(layer.bias.shape, dtype=layer.bias.dtype))

"""The generative networks' parts for pretraining on unlabelled images: the trunk, the
upsampler, the losses; the VAE and DCGAN built of them are in
:mod:`kandel_repro.models.generative_nets`.

Both networks share one trunk, the DCGAN discriminator of Radford et al. 2016 (per block
a 4×4 convolution of stride 2 → BatchNorm (not in block 1) → LeakyReLU(0.2), then global
average pooling): the VAE's encoder is that trunk with two dense layers for the Gaussian
latent's mean and log-variance, the DCGAN's discriminator is that trunk with one logit.
The trunk is also the backbone ``dcgan_small`` of the registry
(:mod:`kandel_repro.models.backbones`), with blocks 1 … 4, so a trunk saved with
``trunk.save_weights(RUN / "dcgan_small.weights.h5")`` initialises a classifier
(``--weights RUN --backbone dcgan_small``) and the depth grid applies to it. The VAE's
decoder and the DCGAN's generator are one upsampler (:func:`build_upsampler`).

All networks take and give images in [-1, 1] (:func:`kandel_repro.models.backbones.
scale_to_symmetric`; :func:`to_uint8` back to pixels).

NOTE: importing this module does not import Keras (the registry imports it for the
trunk): each function that needs Keras imports it when called. The model classes, which
subclass ``keras.Model``, are in a module of their own for that reason.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..core.errors import ConfigError

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a network is built
    import keras

TRUNK = "dcgan_small"
TRUNK_WIDTHS = (64, 128, 256, 512)
# BatchNorm's moving averages keep 0.9 of their value per step (PyTorch's default, which
# the DCGAN reference uses; Keras' 0.99 leaves them near their start for the first hundreds
# of steps, so that a small data set's samples, drawn in inference mode, come out flat).
BN_MOMENTUM = 0.9
INIT_STDDEV = 0.02  # DCGAN's initialisation: weights ~ N(0, 0.02)
LEAK = 0.2


def initializer(seed: int | None, index: int) -> keras.initializers.Initializer:
    """DCGAN's N(0, 0.02) initialiser; seeded per layer where a seed is given, else
    drawn from Keras' global seed (the registry's backbone trained from scratch)."""
    import keras

    return keras.initializers.RandomNormal(
        0.0, INIT_STDDEV, seed=None if seed is None else seed * 1000 + index)


def build_trunk(input_shape: Sequence[int], widths: Sequence[int] = TRUNK_WIDTHS,
                name: str = TRUNK, seed: int | None = None) -> keras.Model:
    """The DCGAN discriminator's convolutional trunk: images in [-1, 1] → pooled features.

    Per block k: Conv2D(w, 4, stride 2, "same", bias only in block 1) ``block{k}_conv`` →
    (k > 1) BatchNormalization ``block{k}_bn`` → LeakyReLU(0.2) ``block{k}_lrelu``; then
    GlobalAveragePooling2D ``block{n}_gap``. ``seed``: seeded initialisers (the VAE's and
    DCGAN's builders pass theirs); None draws from Keras' global seed.
    """
    import keras
    from keras import layers

    inputs = keras.Input(tuple(input_shape), name="images_in")
    x = inputs
    for block, width in enumerate(widths, 1):
        x = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=block == 1,
                          kernel_initializer=initializer(seed, block),
                          name=f"block{block}_conv")(x)
        if block > 1:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn")(x)
        x = layers.LeakyReLU(LEAK, name=f"block{block}_lrelu")(x)
    x = layers.GlobalAveragePooling2D(name=f"block{len(widths)}_gap")(x)
    return keras.Model(inputs, x, name=name)


def build_upsampler(image_size: int, latent: int, widths: Sequence[int], seed: int | None,
                    prefix: str, name: str) -> keras.Model:
    """DCGAN's generator (the VAE's decoder): z → Dense → reshape to s×s×widths[-1]
    (s = image_size / 2^len(widths)) → BN → ReLU → per block Conv2DTranspose(4×4, stride
    2) → BN → ReLU with widths[-2] … widths[0] → Conv2DTranspose to 3 channels → tanh.
    Its layers' names begin with ``prefix`` ("dec" in the VAE, "gen" in the DCGAN)."""
    import keras
    from keras import layers

    side = base_side(image_size, widths)
    inputs = keras.Input((latent,), name="z")
    x = layers.Dense(side * side * widths[-1], use_bias=False,
                     kernel_initializer=initializer(seed, 100),
                     name=f"{prefix}_dense")(inputs)
    x = layers.Reshape((side, side, widths[-1]), name=f"{prefix}_reshape")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn0")(x)
    x = layers.ReLU(name=f"{prefix}_relu0")(x)
    for block, width in enumerate(reversed(widths[:-1]), 1):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=initializer(seed, 100 + block),
                                   name=f"{prefix}_block{block}_deconv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_block{block}_bn")(x)
        x = layers.ReLU(name=f"{prefix}_block{block}_relu")(x)
    x = layers.Conv2DTranspose(3, 4, strides=2, padding="same",
                               kernel_initializer=initializer(seed, 199),
                               name=f"{prefix}_out")(x)
    outputs = layers.Activation("tanh", name=f"{prefix}_tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def base_side(image_size: int, widths: Sequence[int]) -> int:
    """The side of the smallest feature map (``image_size`` halved once per block); a
    :class:`ConfigError` naming the size where the blocks do not divide it."""
    steps = 2 ** len(widths)
    if not isinstance(image_size, int) or image_size < steps or image_size % steps:
        raise ConfigError(f"image size {image_size!r} must be a multiple of {steps} for the "
                          f"generative networks ({len(widths)} stride-2 blocks): resize the "
                          f"images (--image-size) to e.g. {max(steps, 32)}")
    return image_size // steps


def to_uint8(images) -> np.ndarray:
    """Images in [-1, 1] (floats) → uint8 pixels 0..255, rounded and clipped."""
    values = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((values + 1.0) * 127.5), 0, 255).astype(np.uint8)


def elbo_terms(x, x_hat, mu, logvar):
    """The negative ELBO's two terms per example, tensors of shape (batch,):
    reconstruction = 0.5 · Σ_pixels (x − x̂)² (Gaussian likelihood, σ = 1, constants
    dropped), kl = −0.5 · Σ (1 + log σ² − μ² − σ²) (KL of N(μ, σ²) from N(0, 1)).
    The VAE's loss is mean(reconstruction + β · kl)."""
    from keras import ops

    x = ops.cast(x, "float32")
    x_hat = ops.cast(x_hat, "float32")
    batch = ops.shape(x)[0]
    diff = ops.reshape(x - x_hat, (batch, -1))
    reconstruction = 0.5 * ops.sum(ops.square(diff), axis=1)
    kl = -0.5 * ops.sum(1.0 + logvar - ops.square(mu) - ops.exp(logvar), axis=1)
    return reconstruction, kl


def discriminator_loss(real_logits, fake_logits):
    """Binary cross-entropy on logits, real labelled 1 and generated 0: the mean of the
    real images' mean and the generated images' mean (log 2 at logits 0)."""
    from keras import ops

    real = ops.mean(ops.softplus(-ops.cast(real_logits, "float32")))
    fake = ops.mean(ops.softplus(ops.cast(fake_logits, "float32")))
    return 0.5 * (real + fake)


def generator_loss(fake_logits):
    """The non-saturating generator loss: BCE of the generated images labelled real,
    mean −log σ(logit) (log 2 at logits 0)."""
    from keras import ops

    return ops.mean(ops.softplus(-ops.cast(fake_logits, "float32")))

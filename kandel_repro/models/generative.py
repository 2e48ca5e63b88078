"""Generative networks for pretraining on unlabelled images: a VAE and a DCGAN.

Both share one trunk, the DCGAN discriminator of Radford et al. 2016 (per block a 4×4
convolution of stride 2 → BatchNorm (not in block 1) → LeakyReLU(0.2), then global
average pooling): the VAE's encoder is that trunk with two dense layers for the Gaussian
latent's mean and log-variance, the DCGAN's discriminator is that trunk with one logit.
The trunk is also the backbone ``dcgan_small`` of the registry
(:mod:`kandel_repro.models.backbones`), with blocks 1 … 4, so a trunk saved with
``trunk.save_weights(RUN / "dcgan_small.weights.h5")`` initialises a classifier
(``--weights RUN --backbone dcgan_small``) and the depth grid applies to it.

All networks take and give images in [-1, 1] (:func:`kandel_repro.models.backbones.
scale_to_symmetric`; :func:`to_uint8` back to pixels).

Exact resume: the noise each ``train_step`` draws (the VAE's ε, the GAN's z) is a
stateless function of the model's seed and the optimizer's iteration count, and
``model.save_weights`` writes the optimizers' variables (Adam's moments, the iteration
count) beside the networks' weights (Keras 3: ``optimizer/vars``, or ``d_optimizer/`` and
``g_optimizer/`` for the DCGAN). A checkpoint is ``model.save_weights(path)``; to resume,
build the model with the same arguments, ``compile`` it as before, then
``model.load_weights(path)`` (it builds the optimizers first, so that their state loads:
Keras makes optimizer variables only at the first step): the next step equals the
uninterrupted training's. Keep the data order too (shuffle with the epoch's seed).
NOTE: a ``keras.random.SeedGenerator`` attribute would not do: ``save_weights`` does not
write its state (Keras 3.15).
"""
from __future__ import annotations

from functools import lru_cache
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


def _init(seed: int | None, index: int):
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
                          kernel_initializer=_init(seed, block), name=f"block{block}_conv")(x)
        if block > 1:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn")(x)
        x = layers.LeakyReLU(LEAK, name=f"block{block}_lrelu")(x)
    x = layers.GlobalAveragePooling2D(name=f"block{len(widths)}_gap")(x)
    return keras.Model(inputs, x, name=name)


def _upsampler(image_size, latent, widths, seed, prefix, name):
    """DCGAN's generator (the VAE's decoder): z → Dense → reshape to s×s×widths[-1]
    (s = image_size / 2^len(widths)) → BN → ReLU → per block Conv2DTranspose(4×4, stride
    2) → BN → ReLU with widths[-2] … widths[0] → Conv2DTranspose to 3 channels → tanh."""
    import keras
    from keras import layers

    side = _base_side(image_size, widths)
    inputs = keras.Input((latent,), name="z")
    x = layers.Dense(side * side * widths[-1], use_bias=False,
                     kernel_initializer=_init(seed, 100), name=f"{prefix}_dense")(inputs)
    x = layers.Reshape((side, side, widths[-1]), name=f"{prefix}_reshape")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn0")(x)
    x = layers.ReLU(name=f"{prefix}_relu0")(x)
    for block, width in enumerate(reversed(widths[:-1]), 1):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=_init(seed, 100 + block),
                                   name=f"{prefix}_block{block}_deconv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_block{block}_bn")(x)
        x = layers.ReLU(name=f"{prefix}_block{block}_relu")(x)
    x = layers.Conv2DTranspose(3, 4, strides=2, padding="same",
                               kernel_initializer=_init(seed, 199), name=f"{prefix}_out")(x)
    outputs = layers.Activation("tanh", name=f"{prefix}_tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def _base_side(image_size, widths):
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


def build_vae(image_size: int, latent: int = 64, beta: float = 1.0,
              widths: Sequence[int] = TRUNK_WIDTHS, seed: int = 0) -> keras.Model:
    """A convolutional VAE on image_size × image_size × 3 images in [-1, 1] (see
    :class:`VAE`, a keras.Model subclass); ``compile()`` (Adam 1e-3 unless an optimizer is
    given) before ``fit``."""
    return _classes()[0](image_size, latent=latent, beta=beta, widths=widths, seed=seed)


def build_dcgan(image_size: int, latent: int = 100, widths: Sequence[int] = TRUNK_WIDTHS,
                seed: int = 0) -> keras.Model:
    """A DCGAN on image_size × image_size × 3 images in [-1, 1] (see :class:`DCGAN`, a
    keras.Model subclass); ``compile()`` (Adam 2e-4, β1 0.5 for both networks) before
    ``fit``."""
    return _classes()[1](image_size, latent=latent, widths=widths, seed=seed)


def __getattr__(name):
    """``VAE`` and ``DCGAN``, the classes, made when first asked for (they need Keras)."""
    if name in ("VAE", "DCGAN"):
        return _classes()[("VAE", "DCGAN").index(name)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _draw_prior(n, latent, seed):
    return np.random.default_rng(seed).standard_normal((n, latent)).astype(np.float32)


def _in_batches(network, inputs, batch=256):
    """``network`` in inference mode on ``inputs`` in batches, as one numpy array."""
    import keras

    parts = [keras.ops.convert_to_numpy(network(inputs[i:i + batch], training=False))
             for i in range(0, len(inputs), batch)]
    if not parts:
        return np.zeros((0, *network.output.shape[1:]), np.float32)
    return np.concatenate(parts)


@lru_cache(maxsize=None)
def _classes():
    """Define the Keras model classes once (here, so that importing this module does not
    import Keras)."""
    import keras
    import tensorflow as tf
    from keras import ops

    def images_of(data):
        return data[0] if isinstance(data, (tuple, list)) else data

    class _Generative(keras.Model):
        """What both networks share: their seed, the noise, sampling, resume."""

        def _setup(self, seed):
            self.seed = int(seed)

        def _normal(self, shape, step, stream):
            """N(0, 1) noise, a function of (seed, step, stream) only: ``step`` is the
            optimizer's iteration count (saved with the weights), so a resumed training
            draws what the uninterrupted one drew, with no generator state to save."""
            step = tf.cast(step, tf.int64)
            seed = tf.stack([tf.constant(self.seed, tf.int64), step * 4 + stream])
            return tf.random.stateless_normal(shape, seed=seed)

        def _optimizers(self):
            return [self.optimizer]

        def build_optimizers(self) -> None:
            """Create the optimizers' variables (Keras makes them at the first step), so
            that ``load_weights`` of a checkpoint restores their state too."""
            for optimizer, variables in zip(self._optimizers(), self._optimized_variables()):
                if not optimizer.built:
                    optimizer.build(variables)

        def load_weights(self, filepath, *args, **kwargs):
            """Keras' load_weights, with the optimizers built first where the model is
            compiled, so that their state (moments, iteration count) loads too."""
            if getattr(self, "optimizer", None) is not None:
                self.build_optimizers()
            return super().load_weights(filepath, *args, **kwargs)

        def sample(self, n: int, seed: int = 0) -> np.ndarray:
            """``n`` generated images in [-1, 1]: the generator (decoder) on z ~ N(0, 1)
            drawn from ``numpy.random.default_rng(seed)``."""
            return _in_batches(self._generator(), _draw_prior(n, self.latent, seed))

    @keras.saving.register_keras_serializable(package="kandel_repro")
    class VAE(_Generative):
        """Convolutional VAE: ``encoder`` (the trunk → Dense ``mu``, Dense ``logvar``),
        reparameterisation z = μ + σ·ε, ``decoder`` (z → images in [-1, 1]); loss
        mean(reconstruction + β·kl) (:func:`elbo_terms`). Metrics: loss, reconstruction,
        kl (per-example means)."""

        def __init__(self, image_size, latent=64, beta=1.0, widths=TRUNK_WIDTHS, seed=0,
                     **kwargs):
            widths = tuple(int(w) for w in widths)
            _base_side(image_size, widths)
            super().__init__(name=kwargs.pop("name", "vae"), **kwargs)
            self._setup(seed)
            self.image_size, self.latent, self.beta, self.widths = (
                int(image_size), int(latent), float(beta), widths)
            self.trunk = build_trunk((image_size, image_size, 3), widths, seed=self.seed)
            features = self.trunk.output
            mu = keras.layers.Dense(latent, kernel_initializer=_init(self.seed, 50),
                                    name="mu")(features)
            logvar = keras.layers.Dense(latent, kernel_initializer=_init(self.seed, 51),
                                        name="logvar")(features)
            self.encoder = keras.Model(self.trunk.input, [mu, logvar], name="encoder")
            self.decoder = _upsampler(image_size, latent, widths, self.seed, "dec", "decoder")
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
            self.kl_tracker = keras.metrics.Mean(name="kl")
            self.built = True

        def get_config(self):
            return {"image_size": self.image_size, "latent": self.latent, "beta": self.beta,
                    "widths": list(self.widths), "seed": self.seed, "name": self.name}

        def compile(self, optimizer=None, **kwargs):
            """``optimizer``: None gives Adam(1e-3)."""
            super().compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), **kwargs)

        @property
        def metrics(self):
            return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

        def _generator(self):
            return self.decoder

        def _optimized_variables(self):
            return [self.trainable_variables]

        def call(self, x, training=False):
            mu, _ = self.encoder(x, training=training)
            return self.decoder(mu, training=training)

        def reconstruct(self, x) -> np.ndarray:
            """decoder(μ(x)): the reconstruction without noise, in [-1, 1]."""
            x = np.asarray(x, dtype=np.float32)
            mu = [keras.ops.convert_to_numpy(self.encoder(x[i:i + 256], training=False)[0])
                  for i in range(0, len(x), 256)]
            return _in_batches(self.decoder, np.concatenate(mu) if mu else
                               np.zeros((0, self.latent), np.float32))

        def _terms(self, x, step, training):
            mu, logvar = self.encoder(x, training=training)
            mu, logvar = ops.cast(mu, "float32"), ops.cast(logvar, "float32")
            eps = self._normal(tf.shape(mu), step, 0)
            x_hat = self.decoder(mu + ops.exp(0.5 * logvar) * eps, training=training)
            reconstruction, kl = elbo_terms(x, x_hat, mu, logvar)
            return reconstruction, kl, ops.mean(reconstruction + self.beta * kl)

        def _record(self, reconstruction, kl, loss):
            self.loss_tracker.update_state(loss)
            self.reconstruction_tracker.update_state(ops.mean(reconstruction))
            self.kl_tracker.update_state(ops.mean(kl))
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data):
            x = images_of(data)
            with tf.GradientTape() as tape:
                reconstruction, kl, loss = self._terms(x, self.optimizer.iterations, True)
            variables = self.trainable_variables
            gradients = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(gradients, variables))
            return self._record(reconstruction, kl, loss)

        def test_step(self, data):
            # NOTE: step -1: the same ε for a batch at each evaluation
            return self._record(*self._terms(images_of(data), -1, False))

    @keras.saving.register_keras_serializable(package="kandel_repro")
    class DCGAN(_Generative):
        """DCGAN (Radford et al. 2016): ``generator`` (z → images in [-1, 1]) and
        ``discriminator`` (the trunk → Dense ``logit``), trained in turn each step with
        their own optimizers (:meth:`compile`). Metrics: d_loss, g_loss, d_real and
        d_fake (mean σ(logit) on real and on generated images)."""

        def __init__(self, image_size, latent=100, widths=TRUNK_WIDTHS, seed=0, **kwargs):
            widths = tuple(int(w) for w in widths)
            _base_side(image_size, widths)
            super().__init__(name=kwargs.pop("name", "dcgan"), **kwargs)
            self._setup(seed)
            self.image_size, self.latent, self.widths = int(image_size), int(latent), widths
            self.trunk = build_trunk((image_size, image_size, 3), widths, seed=self.seed)
            logit = keras.layers.Dense(1, kernel_initializer=_init(self.seed, 60),
                                       name="logit", dtype="float32")(self.trunk.output)
            self.discriminator = keras.Model(self.trunk.input, logit, name="discriminator")
            self.generator = _upsampler(image_size, latent, widths, self.seed, "gen",
                                        "generator")
            self.trackers = {name: keras.metrics.Mean(name=name)
                             for name in ("d_loss", "g_loss", "d_real", "d_fake")}
            self.built = True

        def get_config(self):
            return {"image_size": self.image_size, "latent": self.latent,
                    "widths": list(self.widths), "seed": self.seed, "name": self.name}

        def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
            """Each network its optimizer; None: Adam(2e-4, β1 = 0.5) (DCGAN's)."""
            self.d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5,
                                                                    name="d_adam")
            self.g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5,
                                                                    name="g_adam")
            super().compile(optimizer=self.d_optimizer, **kwargs)

        @property
        def metrics(self):
            return list(self.trackers.values())

        def _generator(self):
            return self.generator

        def _optimizers(self):
            return [self.d_optimizer, self.g_optimizer]

        def _optimized_variables(self):
            return [self.discriminator.trainable_variables,
                    self.generator.trainable_variables]

        def call(self, x, training=False):
            return self.discriminator(x, training=training)

        def train_step(self, data):
            real = ops.cast(images_of(data), "float32")
            n = tf.shape(real)[0]
            z = self._normal((n, self.latent), self.d_optimizer.iterations, 1)
            d_vars = self.discriminator.trainable_variables
            with tf.GradientTape() as tape:
                fake = self.generator(z, training=True)
                real_logits = self.discriminator(real, training=True)
                fake_logits = self.discriminator(fake, training=True)
                d_loss = discriminator_loss(real_logits, fake_logits)
            self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, d_vars), d_vars))
            z = self._normal((n, self.latent), self.g_optimizer.iterations, 2)
            g_vars = self.generator.trainable_variables
            with tf.GradientTape() as tape:
                g_loss = generator_loss(self.discriminator(self.generator(z, training=True),
                                                           training=True))
            self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars))
            values = {"d_loss": d_loss, "g_loss": g_loss,
                      "d_real": ops.mean(ops.sigmoid(real_logits)),
                      "d_fake": ops.mean(ops.sigmoid(fake_logits))}
            for name, value in values.items():
                self.trackers[name].update_state(value)
            return {name: t.result() for name, t in self.trackers.items()}

    return VAE, DCGAN

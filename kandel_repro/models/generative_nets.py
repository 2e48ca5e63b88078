"""The generative networks' Keras model classes, :class:`VAE` and :class:`DCGAN`, and
their builders :func:`build_vae` and :func:`build_dcgan`.

Their parts (the trunk, the upsampler, the losses) are in
:mod:`kandel_repro.models.generative`, which Keras is not imported with; this module
imports Keras at its top, since the classes subclass ``keras.Model``: import it where a
network is built (as :mod:`kandel_repro.pretraining.pretrain` does, in a function), not
where only the registry or the constants are needed. Both classes are registered with
Keras as ``kandel_repro>VAE`` and ``kandel_repro>DCGAN`` (their names and package: a
saved model finds its class by them).

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

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from .generative import (TRUNK_WIDTHS, base_side, build_trunk, build_upsampler, discriminator_loss,
                         elbo_terms, generator_loss, initializer)


def build_vae(image_size: int, latent: int = 64, beta: float = 1.0,
              widths: Sequence[int] = TRUNK_WIDTHS, seed: int = 0) -> VAE:
    """A convolutional VAE on image_size × image_size × 3 images in [-1, 1] (see
    :class:`VAE`); ``compile()`` (Adam 1e-3 unless an optimizer is given) before ``fit``."""
    return VAE(image_size, latent=latent, beta=beta, widths=widths, seed=seed)


def build_dcgan(image_size: int, latent: int = 100, widths: Sequence[int] = TRUNK_WIDTHS,
                seed: int = 0) -> DCGAN:
    """A DCGAN on image_size × image_size × 3 images in [-1, 1] (see :class:`DCGAN`);
    ``compile()`` (Adam 2e-4, β1 0.5 for both networks) before ``fit``."""
    return DCGAN(image_size, latent=latent, widths=widths, seed=seed)


def _images_of(data):
    return data[0] if isinstance(data, (tuple, list)) else data


def _draw_prior(n, latent, seed):
    return np.random.default_rng(seed).standard_normal((n, latent)).astype(np.float32)


def _in_batches(network, inputs, batch=256):
    """``network`` in inference mode on ``inputs`` in batches, as one numpy array."""
    parts = [keras.ops.convert_to_numpy(network(inputs[i:i + batch], training=False))
             for i in range(0, len(inputs), batch)]
    if not parts:
        return np.zeros((0, *network.output.shape[1:]), np.float32)
    return np.concatenate(parts)


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
        base_side(image_size, widths)
        super().__init__(name=kwargs.pop("name", "vae"), **kwargs)
        self._setup(seed)
        self.image_size, self.latent, self.beta, self.widths = (
            int(image_size), int(latent), float(beta), widths)
        self.trunk = build_trunk((image_size, image_size, 3), widths, seed=self.seed)
        features = self.trunk.output
        mu = keras.layers.Dense(latent, kernel_initializer=initializer(self.seed, 50),
                                name="mu")(features)
        logvar = keras.layers.Dense(latent, kernel_initializer=initializer(self.seed, 51),
                                    name="logvar")(features)
        self.encoder = keras.Model(self.trunk.input, [mu, logvar], name="encoder")
        self.decoder = build_upsampler(image_size, latent, widths, self.seed, "dec", "decoder")
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
        x = _images_of(data)
        with tf.GradientTape() as tape:
            reconstruction, kl, loss = self._terms(x, self.optimizer.iterations, True)
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._record(reconstruction, kl, loss)

    def test_step(self, data):
        # NOTE: step -1: the same ε for a batch at each evaluation
        return self._record(*self._terms(_images_of(data), -1, False))


@keras.saving.register_keras_serializable(package="kandel_repro")
class DCGAN(_Generative):
    """DCGAN (Radford et al. 2016): ``generator`` (z → images in [-1, 1]) and
    ``discriminator`` (the trunk → Dense ``logit``), trained in turn each step with
    their own optimizers (:meth:`compile`). Metrics: d_loss, g_loss, d_real and
    d_fake (mean σ(logit) on real and on generated images)."""

    def __init__(self, image_size, latent=100, widths=TRUNK_WIDTHS, seed=0, **kwargs):
        widths = tuple(int(w) for w in widths)
        base_side(image_size, widths)
        super().__init__(name=kwargs.pop("name", "dcgan"), **kwargs)
        self._setup(seed)
        self.image_size, self.latent, self.widths = int(image_size), int(latent), widths
        self.trunk = build_trunk((image_size, image_size, 3), widths, seed=self.seed)
        logit = keras.layers.Dense(1, kernel_initializer=initializer(self.seed, 60),
                                   name="logit", dtype="float32")(self.trunk.output)
        self.discriminator = keras.Model(self.trunk.input, logit, name="discriminator")
        self.generator = build_upsampler(image_size, latent, widths, self.seed, "gen",
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
        real = ops.cast(_images_of(data), "float32")
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

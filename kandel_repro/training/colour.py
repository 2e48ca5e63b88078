"""Colour and stain augmentation in TensorFlow: the colour ops of the fused transform.

:func:`kandel_repro.training.augment.make_input_stage` applies these to each training
batch after the geometric warp (and the crop folded into it), in this fixed order, each
skipped entirely when its setting is off (``--brightness`` … ``--stain-jitter``; their
meaning: the protocol's fields):

1. HED stain jitter (Tellez et al. 2019): first, as stain variation is physical (it
   happens on the slide, before the scanner's brightness and colour response);
2. brightness, then contrast (``tf.image.adjust_brightness``/``adjust_contrast``'s rules);
3. saturation, then hue, in one HSV round trip (``tf.image.adjust_saturation``/
   ``adjust_hue``'s rules); values are clipped to [0, 255] before it (HSV is defined on
   non-negative values) and the result is clipped to [0, 255].

Every factor is drawn per image (per image and stain for the jitter) and applied to the
whole batch at once: TF's ``adjust_*`` take one factor per call, so the same rules are
written here vectorised over the batch, on the 0–255 scale, in float32, and compiled
with XLA after the warp (:func:`kandel_repro.training.augment.augment`). Parity with
TF's ops for a fixed factor and with scikit-image's ``rgb2hed``/``hed2rgb`` is tested
(``tests/training/test_colour.py``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a pipeline is built
    import tensorflow as tf

# The stain matrix of haematoxylin, eosin and DAB: row i is stain i's optical density in
# R, G and B. From A. C. Ruifrok and D. A. Johnston, "Quantification of histochemical
# staining by color deconvolution", Anal. Quant. Cytol. Histol. 23(4):291-299, 2001, as
# scikit-image's skimage.color.colorconv.rgb_from_hed (unnormalised rows), whose inverse
# hed_from_rgb separates the stains.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
# scikit-image's floor on the intensities before the logarithm (avoiding log(0)); the
# stains are optical densities divided by −log(FLOOR), the floor's optical density.
FLOOR = 1e-6
LOG_ADJUST = -math.log(FLOOR)
# What Tellez et al.'s stain jitter adds to RGB in [0, 1] before the logarithm (their
# augmenter's colour deconvolution, scikit-image's before 0.19): σ is in those units.
TELLEZ_OFFSET = 2.0
LANES = 32  # pixels summed side by side in channel_means
TINY = 1e-20  # the chroma's floor in the HSV ops' divisions (a grey pixel has none)
# The colour and stain settings of the fused augmentation, as run settings (their
# meaning: the protocol's fields and the ops here); the paper's value of each turns it off.
COLOUR_KEYS = ("brightness", "contrast", "saturation", "hue", "crop", "stain_jitter")
# Each one's value when off: no crop (the whole side), every other 0.
COLOUR_OFF = {key: 1.0 if key == "crop" else 0.0 for key in COLOUR_KEYS}
# --stain-jitter's names for Tellez et al.'s (2019) two settings of σ.
STAIN_JITTER = {"light": 0.05, "strong": 0.2}
# The colour ops' settings (COLOUR_KEYS less the crop, which the warp applies), in the
# order they are applied.
COLOUR_OPS = ("stain_jitter", "brightness", "contrast", "saturation", "hue")


def rgb_to_hed(rgb: tf.Tensor) -> tf.Tensor:
    """Haematoxylin, eosin and DAB of RGB ``rgb`` in [0, 1] (last axis: channels), as
    scikit-image's ``rgb2hed``: negative stain amounts clipped to 0."""
    import tensorflow as tf

    rgb = tf.convert_to_tensor(rgb, tf.float32)
    stains = _dot(tf.math.log(tf.maximum(rgb, FLOOR)) / -LOG_ADJUST, HED_FROM_RGB)
    return tf.maximum(stains, 0.0)


def hed_to_rgb(hed: tf.Tensor) -> tf.Tensor:
    """RGB in [0, 1] of stain amounts ``hed``, as scikit-image's ``hed2rgb`` (clipped)."""
    import tensorflow as tf

    hed = tf.convert_to_tensor(hed, tf.float32)
    return tf.clip_by_value(tf.exp(_dot(hed * -LOG_ADJUST, RGB_FROM_HED)), 0.0, 1.0)


def _dot(x, matrix):
    """``x @ matrix`` over the last axis (3 channels), as a sum of broadcast products:
    XLA fuses it with the elementwise ops around it."""
    channels = [x[..., i:i + 1] for i in range(3)]
    return sum(channels[i] * matrix[i].astype(np.float32) for i in range(3))


def stain_jitter(images: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """Images ``[n, h, w, 3]`` on the 0–255 scale with each stain s of image k made
    ``s·alpha[k] + beta[k]`` (``alpha``, ``beta``: ``[n, 3]``, in H, E, D order), clipped.

    The stains are in the units Tellez et al. (2019) drew their σ in: their augmenter's
    colour deconvolution (that of scikit-image before 0.19), ``s = −ln(x + 2) ·
    HED_FROM_RGB`` for RGB ``x`` in [0, 1], and back ``x = exp(−s · RGB_FROM_HED) − 2``.
    (Today's :func:`rgb_to_hed` takes ``−ln(max(x, 10⁻⁶)) / −ln(10⁻⁶)`` instead: there the
    same σ would shift colours about twice as far, clipping a fifth of the channels of H&E
    colours at σ = 0.05.) Neither way is clipped at 0 before going back, so
    ``alpha = 1, beta = 0`` is the identity. Computed as one affine map per image of the
    logarithms, ``ln(x' + 2) = ln(x + 2) · HED_FROM_RGB · diag(alpha) · RGB_FROM_HED −
    beta · RGB_FROM_HED``: a logarithm, a 3×3 product and an exponential per channel.
    """
    import tensorflow as tf

    alpha = tf.convert_to_tensor(alpha, tf.float32)
    beta = tf.convert_to_tensor(beta, tf.float32)
    to_hed = tf.constant(HED_FROM_RGB, tf.float32)
    to_rgb = tf.constant(RGB_FROM_HED, tf.float32)
    # [n, 3, 3]: M · diag(alpha) · R, and [n, 3]: beta · R.
    matrices = tf.matmul(to_hed[None] * alpha[:, None, :], to_rgb)
    offsets = tf.matmul(beta, to_rgb)
    log = tf.math.log(tf.cast(images, tf.float32) / 255.0 + TELLEZ_OFFSET)  # −s · R
    log = sum(log[..., i:i + 1] * matrices[:, None, None, i, :] for i in range(3))
    return tf.clip_by_value(255.0 * (tf.exp(log - offsets[:, None, None, :]) - TELLEZ_OFFSET),
                            0.0, 255.0)


def random_stain_jitter(generator: tf.random.Generator, images: tf.Tensor,
                        sigma: float) -> tf.Tensor:
    """:func:`stain_jitter` of ``images`` ``[n, h, w, 3]`` (0–255) with Tellez et al.'s
    draws, ``alpha`` ~ U(1 − σ, 1 + σ) and ``beta`` ~ U(−σ, σ) per image and stain."""
    import tensorflow as tf

    params = random_colour_parameters(generator, tf.shape(images)[0], {"stain_jitter": sigma})
    if not params:  # σ = 0
        return tf.cast(images, tf.float32)
    return stain_jitter(images, params["stain_alpha"], params["stain_beta"])


def adjust_brightness(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """``images + delta[k]·255`` for image k (``tf.image.adjust_brightness`` on 0–255)."""
    return images + 255.0 * delta[:, None, None, None]


def adjust_contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """``(x − mean)·factor[k] + mean`` with the mean of each image and channel
    (``tf.image.adjust_contrast``)."""
    mean = channel_means(images)
    return (images - mean) * factor[:, None, None, None] + mean


def channel_means(images: tf.Tensor) -> tf.Tensor:
    """``[n, 1, 1, 3]`` means of each image and channel of ``images`` ``[n, h, w, 3]``.

    NOTE: as sums over rows of ``LANES`` pixels' channels side by side, then over the
    lanes: XLA's CPU reduction of ``[n, h, w, 3]`` over h and w is 5× slower (4.4 ms
    against 0.8 ms for 64 images at 96×96, 2 cores).
    """
    import tensorflow as tf

    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    if height is None or width is None:
        return tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    pixels = height * width
    lanes = math.gcd(pixels, LANES)
    sums = tf.reduce_sum(tf.reshape(images, [-1, pixels // lanes, lanes * channels]), axis=1)
    sums = tf.reduce_sum(tf.reshape(sums, [-1, lanes, channels]), axis=1)
    return tf.reshape(sums / pixels, [-1, 1, 1, channels])


def adjust_saturation_hue(images: tf.Tensor, saturation: tf.Tensor | None = None,
                          hue: tf.Tensor | None = None) -> tf.Tensor:
    """HSV saturation × ``saturation[k]`` (clipped to [0, 1]) and hue + ``hue[k]`` (a
    share of the colour circle, wrapped) of non-negative RGB images ``[n, h, w, 3]``
    (``tf.image.adjust_saturation`` then ``adjust_hue``; either may be None: unchanged).

    Both keep the HSV value V = max(R, G, B); with C = V·S = max − min the chroma, a
    channel is ``V − C·w(H)`` where w depends on the hue only (``hsv_to_rgb``'s
    ``V − V·S·clip(min(k, 4 − k), 0, 1)``, ``k = (n + 6H) mod 6``, n = 5, 3, 1 for R, G,
    B). The saturation scales C to ``min(C·f, V)``; without a hue shift that scales
    each channel's distance from V alike, and w(H) is never computed.
    """
    import tensorflow as tf

    # NOTE: maxima of slices, not reduce_max over the channels: XLA's CPU reduction over
    # a minor axis of 3 is several times slower, and duplicated into its consumers.
    r, g, b = images[..., 0:1], images[..., 1:2], images[..., 2:3]
    value = tf.maximum(tf.maximum(r, g), b)
    chroma = value - tf.minimum(tf.minimum(r, g), b)
    scaled = chroma if saturation is None else tf.minimum(
        chroma * saturation[:, None, None, None], value)
    # (a grey pixel, chroma 0, has scaled 0 too: it stays V whatever its hue reads as)
    inverse = 1.0 / tf.maximum(chroma, TINY)
    if hue is None:
        return value - scaled * inverse * (value - images)
    # The hexcone hue in sixths of the circle, in [−1, 5), as rgb_to_hsv (R first on
    # ties, then G), shifted, then k = (n + 6H) mod 6 for the three channels at once.
    sixths = tf.where(value == r, (g - b) * inverse,
                      tf.where(value == g, 2.0 + (b - r) * inverse, 4.0 + (r - g) * inverse))
    k = tf.constant([5.0, 3.0, 1.0]) + (sixths + 6.0 + 6.0 * hue[:, None, None, None])
    k = k - 6.0 * tf.floor(k / 6.0)
    return value - scaled * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0)


def random_colour_parameters(generator: tf.random.Generator, n: int | tf.Tensor,
                             colour: dict) -> dict[str, tf.Tensor]:
    """Per-image draws of the colour ops that ``colour`` turns on (keys of
    :data:`COLOUR_OPS` at a value above 0; others absent): ``stain_alpha``/``stain_beta``
    ``[n, 3]`` ~ U(1 − σ, 1 + σ) and U(−σ, σ); ``brightness`` ~ U(−b, b); ``contrast``
    and ``saturation`` ~ U(1 − c, 1 + c); ``hue`` ~ U(−h, h) (each ``[n]``, float32),
    drawn in that order."""
    import tensorflow as tf

    def symmetric(shape, value):
        return generator.uniform(shape, -value, value, dtype=tf.float32)

    params = {}
    sigma = colour.get("stain_jitter", 0.0)
    if sigma > 0:
        params["stain_alpha"] = 1.0 + symmetric([n, 3], sigma)
        params["stain_beta"] = symmetric([n, 3], sigma)
    for key in ("brightness", "contrast", "saturation", "hue"):
        value = colour.get(key, 0.0)
        if value > 0:
            centre = 1.0 if key in ("contrast", "saturation") else 0.0  # a factor or a shift
            params[key] = centre + symmetric([n], value)
    return params


def apply_colour(images: tf.Tensor, params: dict[str, tf.Tensor]) -> tf.Tensor:
    """The colour ops of ``params`` (:func:`random_colour_parameters`'s keys, or fixed
    values of the same shapes) applied to float32 images on the 0–255 scale, in the
    module's order; the result is in [0, 255]."""
    import tensorflow as tf

    if "stain_alpha" in params:
        images = stain_jitter(images, params["stain_alpha"], params["stain_beta"])
    if "brightness" in params:
        images = adjust_brightness(images, params["brightness"])
    if "contrast" in params:
        images = adjust_contrast(images, params["contrast"])
    images = tf.clip_by_value(images, 0.0, 255.0)
    if "saturation" in params or "hue" in params:
        images = adjust_saturation_hue(images, params.get("saturation"), params.get("hue"))
        images = tf.clip_by_value(images, 0.0, 255.0)  # (float error only)
    return images

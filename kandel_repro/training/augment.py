"""Training-split augmentation (the batches it feeds: :mod:`kandel_repro.training.pipeline`).

Two implementations of the paper's augmentation (§4.1), chosen with ``--augmenter``:

``fast`` (default)
    :class:`InputStage` draws each image's parameters with the same distributions as
    ``ImageDataGenerator.get_random_transform`` (rotation and shear in degrees, shifts as
    fractions of the side, independent x/y zoom, flips with probability ½), composes
    rotation, shift, shear, zoom *and the flips* into one 3×3 matrix per image exactly as
    ``ImageDataGenerator.apply_affine_transform`` does, and resamples each image once
    (bilinear, ``fill_mode="nearest"``) inside the TF graph — on the GPU when there is
    one. The resampler is compiled with XLA on its own (≈5× faster on a CPU than without),
    whether or not ``--jit`` compiles the whole training step. Parity with
    ``apply_transform`` for fixed parameters is tested (``tests/training/test_augment.py``).
    Beyond the paper, ``--crop`` folds a random crop into the same matrix (one resample
    still), and the colour and stain ops of :mod:`kandel_repro.training.colour`
    (``--brightness`` … ``--stain-jitter``) follow the warp, compiled with XLA too.

``imagedatagenerator``
    The paper's own pipeline: the legacy ``ImageDataGenerator`` from
    ``tensorflow.keras.preprocessing.image`` (Keras 3 dropped it from ``keras``), one
    ``get_random_transform`` + ``apply_transform`` per image — what ``flow`` does — on
    the host, batch by batch from the uint8 array (``flow`` itself would first copy the
    whole training set to float32: 19 GB for PCam).

Either way the packed uint8 images stay in host memory, a ``tf.data`` pipeline with
prefetching hands the training step one uint8 (or, for ``imagedatagenerator``, float32)
batch at a time, and the cast and the backbone's ``preprocess_input`` run on the device
as the first layer of the training model. Validation and test sets are predicted in
large uint8 batches through the same stage with augmentation off.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError
from .colour import COLOUR_OPS

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a pipeline is built
    import keras
    import tensorflow as tf
    from numpy.typing import ArrayLike
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

# The implementations of the augmentation (`--augmenter`), described in this docstring.
AUGMENTERS = ("fast", "imagedatagenerator")
# ImageDataGenerator arguments the fused transform implements.
FAST_KEYS = {"horizontal_flip", "vertical_flip", "rotation_range", "width_shift_range",
             "height_shift_range", "shear_range", "zoom_range", "fill_mode"}


def image_data_generator(augmentation: dict) -> ImageDataGenerator:
    """The legacy ``ImageDataGenerator`` with the protocol's parameters."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(**augmentation)


def check_fast(augmentation: dict) -> dict:
    """Refuse settings the fused transform does not implement, naming them."""
    unknown = set(augmentation) - FAST_KEYS
    if unknown:
        raise ConfigError(f"--augmenter fast does not implement {', '.join(sorted(unknown))}; "
                          "use --augmenter imagedatagenerator")
    if augmentation.get("fill_mode", "nearest") != "nearest":
        raise ConfigError(f"--augmenter fast implements fill_mode='nearest' only, got "
                          f"{augmentation['fill_mode']!r}; use --augmenter imagedatagenerator")
    for key in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range"):
        value = augmentation.get(key, 0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"--augmenter fast needs augmentation.{key} to be a number ≥ 0, "
                              f"got {value!r}")
        if key.endswith("shift_range") and isinstance(value, int) and value >= 1:
            # NOTE: ImageDataGenerator draws an int shift from range(value) (a discrete
            # choice), a float one uniformly; only the latter is implemented here.
            raise ConfigError(f"augmentation.{key}={value!r} (an int) means a discrete pixel "
                              "shift in ImageDataGenerator; give a float for --augmenter fast")
    zoom_range(augmentation.get("zoom_range", 0.0))
    return augmentation


def zoom_range(zoom: float | Sequence[float]) -> tuple[float, float]:
    """``ImageDataGenerator``'s reading of ``zoom_range``: a float z → [1 − z, 1 + z]."""
    if isinstance(zoom, (int, float)) and not isinstance(zoom, bool):
        return 1.0 - zoom, 1.0 + zoom
    if isinstance(zoom, (list, tuple)) and len(zoom) == 2:
        return float(zoom[0]), float(zoom[1])
    raise ConfigError(f"zoom_range must be a float or [lower, upper], got {zoom!r}")


# --- the fused transform ---------------------------------------------------------------

def random_parameters(generator: tf.random.Generator, n: int | tf.Tensor, augmentation: dict,
                      height: int, width: int, crop: float = 1.0) -> dict[str, tf.Tensor]:
    """Per-image parameters of ``n`` transforms, as ``get_random_transform`` draws them.

    Returns a dict of float32 tensors of shape ``[n]``: ``theta``, ``tx``, ``ty``,
    ``shear`` (degrees and pixels, ``ImageDataGenerator``'s names and units), ``zx``,
    ``zy`` and ``flip_horizontal``/``flip_vertical`` (0 or 1); with ``crop`` below 1,
    also ``crop`` (the crop's share of each side) and ``crop_x``, ``crop_y`` (the
    window's left and top edges in pixels, uniform over the positions inside the image),
    drawn after the others (a seed draws the same geometric parameters with or without).
    """
    import tensorflow as tf

    def uniform(low, high):
        return generator.uniform([n], low, high, dtype=tf.float32)

    def symmetric(value):
        return uniform(-value, value) if value else tf.zeros([n])

    def shift(value, side):
        return symmetric(value) * (side if value < 1 else 1.0)

    low, high = zoom_range(augmentation.get("zoom_range", 0.0))
    zoomed = not (low == 1 and high == 1)

    def flip(on):
        return tf.cast(uniform(0.0, 1.0) < 0.5, tf.float32) if on else tf.zeros([n])

    params = {
        "theta": symmetric(augmentation.get("rotation_range", 0)),
        # NOTE: ImageDataGenerator calls the height shift tx (scaled by the rows) and
        # the width shift ty (scaled by the columns); the names are kept.
        "tx": shift(augmentation.get("height_shift_range", 0), height),
        "ty": shift(augmentation.get("width_shift_range", 0), width),
        "shear": symmetric(augmentation.get("shear_range", 0)),
        "zx": uniform(low, high) if zoomed else tf.ones([n]),
        "zy": uniform(low, high) if zoomed else tf.ones([n]),
        "flip_horizontal": flip(augmentation.get("horizontal_flip", False)),
        "flip_vertical": flip(augmentation.get("vertical_flip", False)),
    }
    if crop < 1:
        params.update(crop=tf.fill([n], float(crop)), crop_x=uniform(0.0, (1 - crop) * width),
                      crop_y=uniform(0.0, (1 - crop) * height))
    return params


def transform_matrices(params: dict[str, tf.Tensor], height: int, width: int) -> tf.Tensor:
    """``[n, 6]`` sampling transforms ``(a0, a1, a2, b0, b1, b2)`` of ``params``.

    The output pixel at column x, row y samples the input at column
    ``a0·x + a1·y + a2``, row ``b0·x + b1·y + b2`` (TF's projective-transform
    convention). The matrix is ``apply_affine_transform``'s: rotation · shift · shear ·
    zoom about the image centre, with its swap of x and y; the flips that
    ``apply_transform`` applies afterwards are folded in as a further factor, and the
    crop (``params["crop"]``, if there) as the last: the output pixel x of the window of
    side c·W at ``crop_x`` resized back to W (bilinear, pixel centres at half-integers,
    as ``tf.image.resize``) samples the warped image at ``c·x + crop_x + c/2 − 1/2``
    (rows likewise), a zoom by 1/c of the warped image, whose edges it never passes.
    """
    import tensorflow as tf

    def mat(rows):
        return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)

    zero, one = tf.zeros_like(params["theta"]), tf.ones_like(params["theta"])
    theta = params["theta"] * (math.pi / 180.0)
    shear = params["shear"] * (math.pi / 180.0)
    c, s = tf.cos(theta), tf.sin(theta)
    rotation = mat([[c, -s, zero], [s, c, zero], [zero, zero, one]])
    shift = mat([[one, zero, params["tx"]], [zero, one, params["ty"]], [zero, zero, one]])
    shear_m = mat([[one, -tf.sin(shear), zero], [zero, tf.cos(shear), zero], [zero, zero, one]])
    zoom = mat([[params["zx"], zero, zero], [zero, params["zy"], zero], [zero, zero, one]])
    # NOTE: ImageDataGenerator centres with (rows/2 − 0.5) on the first coordinate and
    # (cols/2 − 0.5) on the second before its x/y swap; kept as is for parity.
    oh, ow = height / 2 - 0.5, width / 2 - 0.5
    offset = mat([[one, zero, oh + zero], [zero, one, ow + zero], [zero, zero, one]])
    reset = mat([[one, zero, -oh + zero], [zero, one, -ow + zero], [zero, zero, one]])
    m = offset @ rotation @ shift @ shear_m @ zoom @ reset
    # Flips: output column x reads the pre-flip column (width − 1 − x); row likewise.
    fh, fv = params["flip_horizontal"], params["flip_vertical"]
    flips = mat([[1 - 2 * fh, zero, fh * (width - 1)],
                 [zero, 1 - 2 * fv, fv * (height - 1)],
                 [zero, zero, one]])
    m = m @ flips
    if "crop" in params:
        c = params["crop"]
        window = mat([[c, zero, params["crop_x"] + c / 2 - 0.5],
                      [zero, c, params["crop_y"] + c / 2 - 0.5], [zero, zero, one]])
        m = m @ window
    return tf.reshape(m[:, :2, :], [-1, 6])


def _warp(images, transforms):
    """Bilinear resampling of float32 ``images`` ``[n, h, w, c]``; edges extended (nearest).

    Gathers the four neighbours of every sampling point; unlike
    ``ImageProjectiveTransformV3`` this compiles with XLA.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    n, h, w, channels = shape[0], shape[1], shape[2], images.shape[-1]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ys, xs = tf.meshgrid(tf.range(hf), tf.range(wf), indexing="ij")
    t = transforms[:, :, None, None]
    sx = tf.clip_by_value(t[:, 0] * xs + t[:, 1] * ys + t[:, 2], 0.0, wf - 1)
    sy = tf.clip_by_value(t[:, 3] * xs + t[:, 4] * ys + t[:, 5], 0.0, hf - 1)
    x0, y0 = tf.floor(sx), tf.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, w - 1), tf.minimum(y0 + 1, h - 1)
    flat = tf.reshape(images, [-1, channels])
    base = (tf.range(n) * h * w)[:, None, None]

    def at(yy, xx):
        return tf.gather(flat, base + yy * w + xx)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


_WARP = None
_COLOUR = None


def warp(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """:func:`_warp` compiled with XLA (one compiled function per process)."""
    global _WARP
    if _WARP is None:
        import tensorflow as tf

        _WARP = tf.function(_warp, jit_compile=True, reduce_retracing=True)
    return _WARP(images, transforms)


def augment(images: tf.Tensor, transforms: tf.Tensor | None,
            colour_params: dict[str, tf.Tensor]) -> tf.Tensor:
    """The warp by ``transforms`` (None: none), then the colour ops of ``colour_params``
    (:func:`kandel_repro.training.colour.apply_colour`; empty: none), each compiled with
    XLA (one function per process, traced once per set of colour ops).

    NOTE: two compiled functions, not one: compiled together, XLA's CPU backend fuses
    the resampling into the saturation and hue ops and recomputes it there (up to 4×
    slower than the two apart: saturation alone at 96×96, 2 CPU cores); under ``--jit
    on`` (and ``auto`` on a GPU) both are inlined into the compiled step anyway.
    """
    global _COLOUR
    if transforms is not None:
        images = warp(images, transforms)
    if not colour_params:
        return images
    if _COLOUR is None:
        import tensorflow as tf

        from .colour import apply_colour

        _COLOUR = tf.function(apply_colour, jit_compile=True, reduce_retracing=True)
    return _COLOUR(images, colour_params)


def apply_parameters(images: ArrayLike, params: dict[str, ArrayLike]) -> tf.Tensor:
    """Apply fixed per-image ``params`` (see :func:`random_parameters`) to float images."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    params = {k: tf.convert_to_tensor(np.broadcast_to(np.asarray(v, np.float32), (len(images),)))
              for k, v in params.items()}
    return warp(images, transform_matrices(params, height, width))


def make_input_stage(augmentation: dict | None, preprocess: Callable[[tf.Tensor], tf.Tensor],
                     seed: int = 0, name: str = "input_stage",
                     colour: dict | None = None) -> keras.layers.Layer:
    """The first layer of the training (and inference) model: cast, augment, preprocess.

    ``augmentation`` is the ``ImageDataGenerator`` dict of the fused transform (None: no
    augmentation, as for the ``imagedatagenerator`` mode, whose batches arrive
    augmented, and for prediction). ``preprocess`` is the backbone's
    ``preprocess_input``. ``colour`` is None or the run's colour and stain settings
    (:func:`kandel_repro.runs.config.colour_of`: ``crop`` 1 and the others 0 are off):
    the crop is folded into the warp's matrix (with ``augmentation`` None and a crop,
    the warp runs with the crop alone), the colour ops of
    :mod:`kandel_repro.training.colour` follow it (:func:`augment`), each image's
    parameters drawn from the stage's generator (seeded by ``seed``; the geometric ones
    first, so a seed gives the same transforms with colour on or off).
    Augmentation runs only when the layer is called with ``training=True``; the stage
    always computes in float32.
    """
    import keras
    import tensorflow as tf

    from .colour import random_colour_parameters

    # NOTE: ``augmentation`` and ``colour`` were checked when the run's config was
    # resolved (kandel_repro.runs.config), the one place settings are validated.
    colour = dict(colour or {})
    crop = float(colour.get("crop", 1.0))
    warped = augmentation is not None or crop < 1
    coloured = any(colour.get(key, 0.0) > 0 for key in COLOUR_OPS)

    class InputStage(keras.layers.Layer):
        def __init__(self):
            super().__init__(name=name, dtype="float32", trainable=False)
            # NOTE: tf.random.Generator, not a keras SeedGenerator: created under a
            # distribution strategy it gives each replica its own stream.
            self.generator = (tf.random.Generator.from_seed(seed)
                              if warped or coloured else None)

        def call(self, images, training=False):
            images = tf.cast(images, tf.float32)
            if training and self.generator is not None:
                height, width = images.shape[1], images.shape[2]
                n = tf.shape(images)[0]
                transforms = None
                if warped:
                    params = random_parameters(self.generator, n, augmentation or {}, height,
                                               width, crop=crop)
                    transforms = transform_matrices(params, height, width)
                colour_params = (random_colour_parameters(self.generator, n, colour)
                                 if coloured else {})
                images = augment(images, transforms, colour_params)
            return preprocess(images)

        def compute_output_shape(self, input_shape):
            return input_shape

    return InputStage()


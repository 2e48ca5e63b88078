"""Training-split augmentation and the input pipeline.

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
    ``apply_transform`` for fixed parameters is tested (``tests/test_augment.py``).

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

import numpy as np

from .errors import ConfigError

# The implementations of the augmentation (`--augmenter`), described in this docstring.
AUGMENTERS = ("fast", "imagedatagenerator")
# ImageDataGenerator arguments the fused transform implements.
FAST_KEYS = {"horizontal_flip", "vertical_flip", "rotation_range", "width_shift_range",
             "height_shift_range", "shear_range", "zoom_range", "fill_mode"}


def image_data_generator(augmentation):
    """The legacy ``ImageDataGenerator`` with the protocol's parameters."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(**augmentation)


def check_fast(augmentation):
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


def zoom_range(zoom):
    """``ImageDataGenerator``'s reading of ``zoom_range``: a float z → [1 − z, 1 + z]."""
    if isinstance(zoom, (int, float)) and not isinstance(zoom, bool):
        return 1.0 - zoom, 1.0 + zoom
    if isinstance(zoom, (list, tuple)) and len(zoom) == 2:
        return float(zoom[0]), float(zoom[1])
    raise ConfigError(f"zoom_range must be a float or [lower, upper], got {zoom!r}")


# --- the fused transform ---------------------------------------------------------------

def random_parameters(generator, n, augmentation, height, width):
    """Per-image parameters of ``n`` transforms, as ``get_random_transform`` draws them.

    Returns a dict of float32 tensors of shape ``[n]``: ``theta``, ``tx``, ``ty``,
    ``shear`` (degrees and pixels, ``ImageDataGenerator``'s names and units), ``zx``,
    ``zy`` and ``flip_horizontal``/``flip_vertical`` (0 or 1).
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

    return {
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


def transform_matrices(params, height, width):
    """``[n, 6]`` sampling transforms ``(a0, a1, a2, b0, b1, b2)`` of ``params``.

    The output pixel at column x, row y samples the input at column
    ``a0·x + a1·y + a2``, row ``b0·x + b1·y + b2`` (TF's projective-transform
    convention). The matrix is ``apply_affine_transform``'s: rotation · shift · shear ·
    zoom about the image centre, with its swap of x and y; the flips that
    ``apply_transform`` applies afterwards are folded in as a last factor.
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


def warp(images, transforms):
    """:func:`_warp` compiled with XLA (one compiled function per process)."""
    global _WARP
    if _WARP is None:
        import tensorflow as tf

        _WARP = tf.function(_warp, jit_compile=True, reduce_retracing=True)
    return _WARP(images, transforms)


def apply_parameters(images, params):
    """Apply fixed per-image ``params`` (see :func:`random_parameters`) to float images."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    params = {k: tf.convert_to_tensor(np.broadcast_to(np.asarray(v, np.float32), (len(images),)))
              for k, v in params.items()}
    return warp(images, transform_matrices(params, height, width))


def make_input_stage(augmentation, preprocess, seed=0, name="input_stage"):
    """The first layer of the training (and inference) model: cast, augment, preprocess.

    ``augmentation`` is the ``ImageDataGenerator`` dict of the fused transform (None: no
    augmentation, as for the ``imagedatagenerator`` mode, whose batches arrive
    augmented, and for prediction). ``preprocess`` is the backbone's
    ``preprocess_input``. Augmentation runs only when the layer is called with
    ``training=True``; the stage always computes in float32.
    """
    import keras
    import tensorflow as tf

    # NOTE: ``augmentation`` was checked with check_fast when the run's config was
    # resolved (kandel_repro.config), the one place settings are validated.

    class InputStage(keras.layers.Layer):
        def __init__(self):
            super().__init__(name=name, dtype="float32", trainable=False)
            # NOTE: tf.random.Generator, not a keras SeedGenerator: created under a
            # distribution strategy it gives each replica its own stream.
            self.generator = (tf.random.Generator.from_seed(seed)
                              if augmentation is not None else None)

        def call(self, images, training=False):
            images = tf.cast(images, tf.float32)
            if training and self.generator is not None:
                height, width = images.shape[1], images.shape[2]
                n = tf.shape(images)[0]
                params = random_parameters(self.generator, n, augmentation, height, width)
                images = warp(images, transform_matrices(params, height, width))
            return preprocess(images)

        def compute_output_shape(self, input_shape):
            return input_shape

    return InputStage()


# --- batches -------------------------------------------------------------------------------

def in_memory_dataset(x, y, indices, batch_size, seed=0, shuffle=True):
    """A ``tf.data`` pipeline of uint8 image batches (and float32 labels) from RAM.

    Rows ``indices`` of ``x`` are taken batch by batch (no copy of the split is made),
    reshuffled every epoch from ``seed``, and prefetched.
    """
    import tensorflow as tf

    indices = np.asarray(indices, dtype=np.int64)
    shape = (None,) + tuple(x.shape[1:])

    def fetch(rows):
        rows = np.sort(rows)
        return x[rows], y[rows].astype(np.float32)

    def take(rows):
        images, labels = tf.numpy_function(fetch, [rows], (tf.uint8, tf.float32), stateful=False)
        images.set_shape(shape)
        labels.set_shape((None,))
        return images, labels

    ds = tf.data.Dataset.from_tensor_slices(indices)
    if shuffle:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(take).prefetch(tf.data.AUTOTUNE)


def idg_batches(x, y, batch_size, augmentation, seed=0, shuffle=True, indices=None):
    """A ``keras.utils.PyDataset`` of ``ImageDataGenerator``-augmented float32 batches.

    Not preprocessed: the model's input stage does that. ``indices`` selects the rows
    of ``x``/``y`` (the training split) without copying them out of the full array.
    """
    import keras

    indices = np.arange(len(x)) if indices is None else np.asarray(indices)

    class AugmentedBatches(keras.utils.PyDataset):
        def __init__(self):
            # NOTE: one worker thread: batches are prepared ahead of the training step
            # and the global NumPy random state that ImageDataGenerator draws from is
            # seeded per batch, so the augmentation is reproducible.
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=8)
            self.generator = image_data_generator(augmentation) if augmentation else None
            self.epoch = 0
            self.order = self._order()

        def _order(self):
            if not shuffle:
                return indices
            return np.random.default_rng([seed, self.epoch]).permutation(indices)

        def __len__(self):
            return int(np.ceil(len(indices) / batch_size))

        def __getitem__(self, index):
            rows = np.sort(self.order[index * batch_size:(index + 1) * batch_size])
            batch = x[rows].astype(np.float32)
            if self.generator is not None:
                np.random.seed((seed * 1_000_003 + self.epoch * 10_007 + index) % 2**32)
                for i in range(len(batch)):
                    params = self.generator.get_random_transform(batch[i].shape)
                    batch[i] = self.generator.apply_transform(batch[i], params)
            if y is None:
                return (batch,)
            return batch, y[rows].astype(np.float32)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return AugmentedBatches()


def predict_uint8(predictor, x, batch_size=256, indices=None):
    """Probabilities for uint8 images (rows ``indices`` of ``x``) in large batches.

    ``predictor`` takes uint8 batches (its input stage casts and preprocesses).
    """
    n = len(x) if indices is None else len(indices)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size) if indices is None else indices[start:start + batch_size]
        chunk = np.asarray(x[rows])
        size = len(chunk)
        if size < batch_size and n > batch_size:
            # NOTE: pad the last batch to the full size so the predict function keeps
            # one input shape and is not traced again for the remainder.
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - size, axis=0)])
        out[start:start + size] = np.asarray(predictor.predict_on_batch(chunk)).reshape(-1)[:size]
    return out

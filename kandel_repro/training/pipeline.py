"""The input pipeline: uint8 batches from the packed arrays, and prediction.

:func:`in_memory_dataset` feeds the fused augmentation (:mod:`kandel_repro.training.augment`)
from the memory-mapped cache without copying it; :func:`idg_batches` is the paper's own
``ImageDataGenerator.flow``; :func:`predict_uint8` scores uint8 images in batches.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .augment import image_data_generator

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a pipeline is built
    import keras
    import tensorflow as tf
    from numpy.typing import ArrayLike


def in_memory_dataset(x: np.ndarray, y: np.ndarray, indices: ArrayLike, batch_size: int,
                      seed: int = 0, shuffle: bool = True) -> tf.data.Dataset:
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


def idg_batches(x: np.ndarray, y: np.ndarray | None, batch_size: int, augmentation: dict | None,
                seed: int = 0, shuffle: bool = True,
                indices: ArrayLike | None = None) -> keras.utils.PyDataset:
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
            self.start_at(self.epoch + 1)

        def start_at(self, epoch):
            """Serve epoch ``epoch`` + 1 next (0: the first), as an uninterrupted run
            would: a paused run resumed (kandel_repro.runs.epochs.fast_forward)."""
            self.epoch = epoch
            self.order = self._order()

    return AugmentedBatches()


def predict_uint8(predictor: keras.Model, x: np.ndarray, batch_size: int = 256,
                  indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Probabilities for uint8 images (rows ``indices`` of ``x``) in large batches: one
    per image for a one-unit (sigmoid) head, an (n, k) array for a k-unit (softmax) one.

    ``predictor`` takes uint8 batches (its input stage casts and preprocesses).
    """
    n = len(x) if indices is None else len(indices)
    units = int(predictor.outputs[0].shape[-1] or 1)
    out = np.empty(n if units == 1 else (n, units), dtype=np.float64)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size) if indices is None else indices[start:start + batch_size]
        chunk = np.asarray(x[rows])
        size = len(chunk)
        if size < batch_size and n > batch_size:
            # NOTE: pad the last batch to the full size so the predict function keeps
            # one input shape and is not traced again for the remainder.
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - size, axis=0)])
        scores = np.asarray(predictor.predict_on_batch(chunk))
        out[start:start + size] = (scores.reshape(-1) if units == 1 else scores)[:size]
    return out

"""Training-split augmentation with Keras' ``ImageDataGenerator`` (the paper's pipeline).

Keras 3 removed ``keras.preprocessing.image.ImageDataGenerator``; the TF compatibility
namespace ``tensorflow.keras.preprocessing.image`` still exports the legacy class, and
that is the one used here, so each image gets exactly the paper-era random transform.

:class:`AugmentedBatches` draws each image's transform with
``ImageDataGenerator.get_random_transform`` and applies it with ``apply_transform``
— what ``ImageDataGenerator.flow`` does per image — but reads the uint8 images batch by
batch instead of converting the whole training set to float32 first (``flow`` would
hold a float32 copy of all 176k PCam training images, 19 GB).
"""
from __future__ import annotations

import numpy as np


def image_data_generator(augmentation):
    """The legacy ``ImageDataGenerator`` with the protocol's parameters."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(**augmentation)


def make_batches(x, y, batch_size, preprocess, augmentation=None, seed=0, shuffle=True,
                 indices=None):
    """A ``keras.utils.PyDataset`` of preprocessed float32 batches from uint8 arrays.

    ``indices`` selects the rows of ``x``/``y`` to use (the training split) without
    copying them out of the full array.
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
            batch = preprocess(batch)
            if y is None:
                return (batch,)
            return batch, y[rows].astype(np.float32)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return AugmentedBatches()


def predict_uint8(model, x, preprocess, batch_size=256, indices=None):
    """Predict probabilities for uint8 images (rows ``indices`` of ``x``) in large batches."""
    n = len(x) if indices is None else len(indices)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size) if indices is None else indices[start:start + batch_size]
        chunk = preprocess(x[rows].astype(np.float32))
        size = len(chunk)
        if size < batch_size and n > batch_size:
            # NOTE: pad the last batch to the full size so the predict function keeps
            # one input shape and is not traced again for the remainder.
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - size, axis=0)])
        out[start:start + size] = np.asarray(model.predict_on_batch(chunk)).reshape(-1)[:size]
    return out

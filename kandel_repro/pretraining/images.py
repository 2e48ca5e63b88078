"""What a pretraining run (:mod:`kandel_repro.pretraining.pretrain`) reads and shows: the images
it trains on without their labels, their batches, and its per-epoch figures.

:func:`select_images` picks the images of ``--images train|test|all`` from packed data
(:class:`~kandel_repro.data.packed.PackedData`) as an :class:`ImagePool` — rows of one or
two arrays (PCam's labelled ``x`` and its unlabelled ``test_x``), never copied out;
:func:`held_out_pool` the real images the run did not see. :func:`epoch_batches` feeds
the networks float batches in [-1, 1], each epoch's order drawn from ``(seed, epoch)``
alone, so a run resumed at epoch k sees the batches an uninterrupted run sees.
:func:`write_grid` draws images as one PNG (PIL: no plotting library needed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError
from ..core.files import atomic_path

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a run starts
    import tensorflow as tf

    from ..data.packed import PackedData

IMAGES = ("train", "test", "all")


@dataclass
class ImagePool:
    """Images as rows of arrays: ``parts`` is ``[(array, rows), …]``; position ``i`` of
    the pool is the ``i``-th row, counting through the parts in order."""

    parts: list
    what: str  # how messages name these images

    def __len__(self) -> int:
        return int(sum(len(rows) for _, rows in self.parts))

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The uint8 images at ``positions`` (in that order)."""
        positions = np.asarray(positions, dtype=np.int64)
        first = self.parts[0][0]
        out = np.empty((len(positions), *first.shape[1:]), dtype=np.uint8)
        start = 0
        for array, rows in self.parts:
            inside = (positions >= start) & (positions < start + len(rows))
            if inside.any():
                wanted = rows[positions[inside] - start]
                order = np.argsort(wanted, kind="stable")  # sorted reads of a memory map
                picked = np.empty((len(wanted), *array.shape[1:]), dtype=np.uint8)
                picked[order] = array[wanted[order]]
                out[inside] = picked
            start += len(rows)
        return out


def _test_part(data: PackedData, config: dict):
    """``(array, rows)`` of the data set's test images: PCam's unlabelled test patches
    (the Kaggle layout), else the labelled test split's rows."""
    test = data.split(config).test
    rows = np.arange(len(test.x)) if test.indices is None else np.asarray(test.indices)
    return test.x, rows.astype(np.int64)


def select_images(data: PackedData, images: str, config: dict) -> ImagePool:
    """The images of ``--images``: ``train``, the split's training rows (those a labelled
    run of these data trains on, ``config`` the split's settings); ``test``, the data
    set's test images; ``all``, every image (PCam: train/ and test/ both)."""
    if images not in IMAGES:
        raise ConfigError(f"--images must be one of {', '.join(IMAGES)}, got {images!r}")
    root = Path(data.root)
    if images == "train":
        return ImagePool([(data.x, np.asarray(data.split(config).train, np.int64))],
                         f"the training split of {root}")
    if images == "test":
        array, rows = _test_part(data, config)
        if not len(rows):
            raise ConfigError(f"{root} has no test images for --images test; use --images "
                              "train or all")
        return ImagePool([(array, rows)], f"the test images of {root}")
    parts = [(data.x, np.arange(len(data.x), dtype=np.int64))]
    extra = getattr(data, "test_x", None)  # PCam: the unlabelled test/ patches
    if extra is not None and len(extra):
        parts.append((extra, np.arange(len(extra), dtype=np.int64)))
    return ImagePool(parts, f"every image of {root}")


def held_out_pool(data: PackedData, images: str, config: dict) -> ImagePool:
    """Real images of the data set a run of ``--images`` did not train on: for ``train``
    the split's validation rows, then the test images; for ``test`` the split's
    validation rows; ``all`` has none (:class:`ConfigError`)."""
    root = Path(data.root)
    if images == "all":
        raise ConfigError(f"a run on --images all trained on every image of {root}: there "
                          "are no held-out images; pretrain on --images train to keep some")
    parts = [(data.x, np.asarray(data.split(config).val, np.int64))]
    if images == "train":
        parts.append(_test_part(data, config))
    return ImagePool([(a, r) for a, r in parts if len(r)], f"the held-out images of {root}")


def fixed_rows(count: int, n: int, seed: int) -> np.ndarray:
    """``n`` positions of a pool of ``count`` drawn once from ``seed`` (sorted): the same
    real images in every epoch's figure."""
    rng = np.random.default_rng([seed, 53])
    return np.sort(rng.choice(count, size=min(n, count), replace=False))


def to_symmetric(images: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in [-1, 1] (the networks' input)."""
    from ..models.backbones import scale_to_symmetric

    return scale_to_symmetric(images.astype(np.float32))


def fetch(pool: ImagePool, positions: np.ndarray) -> np.ndarray:
    """One batch as the networks take it: the images at ``positions``, in [-1, 1]."""
    return to_symmetric(pool.take(positions))


def epoch_order(count: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The positions epoch ``epoch`` (0-based) trains on, ``(steps, batch_size)``: a
    permutation drawn from ``(seed, epoch)`` alone, cut to whole batches (the last,
    partial one is left out; a different one each epoch)."""
    steps = count // batch_size
    order = np.random.default_rng([seed, 41, epoch]).permutation(count)
    return order[:steps * batch_size].reshape(steps, batch_size)


def epoch_batches(pool: ImagePool, batch_size: int, seed: int, first_epoch: int,
                  epochs: int) -> tf.data.Dataset:
    """The batches of epochs ``first_epoch`` … ``epochs - 1`` one after another, as
    ``fit(…, steps_per_epoch=len(pool) // batch_size)`` reads them."""
    import tensorflow as tf

    orders = np.concatenate([epoch_order(len(pool), batch_size, seed, e)
                             for e in range(first_epoch, epochs)])
    shape = (batch_size, *pool.parts[0][0].shape[1:])

    def load(positions):
        # NOTE: looked up at each call, so a test can put another fetch in its place.
        return fetch(pool, positions)

    def take(positions):
        images = tf.numpy_function(load, [positions], tf.float32, stateful=False)
        images.set_shape(shape)
        return images

    return (tf.data.Dataset.from_tensor_slices(orders).map(take)
            .prefetch(2))


def mean_pairwise_distance(images: np.ndarray) -> float:
    """The mean L2 distance between every two of ``images`` (flattened): how varied they
    are (0 for identical images)."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if len(flat) < 2:
        return 0.0
    squares = np.sum(flat ** 2, axis=1)
    d2 = np.maximum(squares[:, None] + squares[None, :] - 2.0 * flat @ flat.T, 0.0)
    upper = np.triu_indices(len(flat), k=1)
    return float(np.mean(np.sqrt(d2[upper])))


def write_grid(path: str | Path, images: np.ndarray, columns: int, min_side: int = 64,
               gap: int = 2) -> Path:
    """Tile uint8 ``images`` (n, H, W, 3) row by row, ``columns`` a row, enlarged
    (nearest neighbour) so that each is at least ``min_side`` pixels, on white; write the
    PNG atomically."""
    from PIL import Image

    images = np.asarray(images, dtype=np.uint8)
    n, height, width = images.shape[:3]
    scale = max(1, int(np.ceil(min_side / max(height, width))))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    height, width = height * scale, width * scale
    rows = int(np.ceil(n / columns))
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255,
                     dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = gap + (i // columns) * (height + gap), gap + (i % columns) * (width + gap)
        canvas[top:top + height, left:left + width] = image
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(canvas).save(tmp, format="PNG")
    return path

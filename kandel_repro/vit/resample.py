"""Bicubic resampling of a grid of position embeddings, as PyTorch's ``interpolate`` does it.

A ViT's position embeddings are one vector per patch of the grid it was trained on (and
one for the class token). A model built for another input size has another grid: the
references resample the patch part bicubically, as an image of ``width`` channels, and
keep the class token's as it is —

- Hugging Face's ``Dinov2Model`` (``interpolate_pos_encoding``) and DINOv2's own code:
  ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`` to the new
  grid's size, without antialiasing (:func:`resize_grid` with ``antialias=False``);
- timm (``resample_abs_pos_embed``, which its checkpoint filter and ``dynamic_img_size``
  call) and transformers' ``Dinov2WithRegistersModel``: the same with ``antialias=True``,
  PyTorch's separable filter (Keys' cubic, a = −0.5) that widens with the scale when
  shrinking.

Both are written here in numpy, weights per output row and column, so that the result is
the references' (``make test-torch`` compares them with PyTorch's to 1e-5); the
resampling runs once, when weights are loaded into a model of another input size, never
in the graph.
"""
from __future__ import annotations

import math

import numpy as np

CUBIC = -0.75  # PyTorch's bicubic coefficient (upsample_bicubic2d)
CUBIC_ANTIALIAS = -0.5  # its antialiased filter's (Keys'; PIL's)


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel at distances ``x`` (0 beyond 2)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def weights_1d(size_in: int, size_out: int, antialias: bool = False) -> np.ndarray:
    """The ``(size_out, size_in)`` matrix taking a line of ``size_in`` samples to
    ``size_out`` (align_corners False: pixel centres at i + 0.5)."""
    scale = size_in / size_out
    out = np.zeros((size_out, size_in))
    if not antialias:
        for i in range(size_out):
            source = (i + 0.5) * scale - 0.5
            start = math.floor(source)
            taps = _cubic(source - (start + np.arange(-1, 3)), CUBIC)
            for offset, weight in zip(range(-1, 3), taps):
                # NOTE: PyTorch clamps the taps' indices at the edges (repeats the border)
                out[i, min(max(start + offset, 0), size_in - 1)] += weight
        return out
    support = 2.0 * scale if scale >= 1 else 2.0
    inverse = 1.0 / scale if scale >= 1 else 1.0
    for i in range(size_out):
        centre = scale * (i + 0.5)
        # NOTE: C's truncation toward zero, as PyTorch's static_cast<int64_t>
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), size_in)
        taps = _cubic((np.arange(low, high) - centre + 0.5) * inverse, CUBIC_ANTIALIAS)
        total = taps.sum()
        out[i, low:high] = taps / total if total != 0 else taps
    return out


def resize_grid(grid: np.ndarray, height: int, width: int, antialias: bool = False) -> np.ndarray:
    """``grid`` (rows, columns, channels) resampled bicubically to (height, width,
    channels), in float64 and returned in ``grid``'s dtype; the same grid when the size
    is unchanged."""
    rows, columns = grid.shape[:2]
    if (rows, columns) == (height, width):
        return grid.copy()
    vertical = weights_1d(rows, height, antialias)
    horizontal = weights_1d(columns, width, antialias)
    out = np.einsum("ar,bc,rcd->abd", vertical, horizontal, grid.astype(np.float64))
    return out.astype(grid.dtype)


def resize_positions(positions: np.ndarray, prefix: int, height: int, width: int,
                     antialias: bool = False) -> np.ndarray:
    """Position embeddings ``(prefix + n·n, width)`` — the class token's first, then a
    square grid of patches in row order — for a grid of ``height × width`` patches: the
    prefix kept, the grid resampled (:func:`resize_grid`)."""
    count = positions.shape[0] - prefix
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{count} patch positions are not a square grid")
    grid = positions[prefix:].reshape(side, side, positions.shape[1])
    resized = resize_grid(grid, height, width, antialias).reshape(height * width, -1)
    return np.concatenate([positions[:prefix], resized])

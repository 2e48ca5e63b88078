"""Test-time augmentation: a finished model scored on symmetric views of each image.

A histology patch has no up, down, left or right, so the eight symmetries of the square
(the dihedral group D4) give eight equally valid views of it. ``--tta 8`` scores every
view and averages the probabilities per image; ``--tta 4`` uses identity, the two flips
and the transpose (:data:`VIEW_SETS`). Views are named as they act on an image of rows ×
columns, ``v[i, j]`` in terms of ``x`` (size ``s``):

============== ====================== ==================================================
name           ``v[i, j]``            the pixel that lands at the top-left (0, 0)
============== ====================== ==================================================
identity       ``x[i, j]``            top-left
flip_lr        ``x[i, s-1-j]``        top-right (mirror left ↔ right)
flip_ud        ``x[s-1-i, j]``        bottom-left (mirror top ↔ bottom)
transpose      ``x[j, i]``            top-left (mirror in the main diagonal)
rot90          ``x[j, s-1-i]``        top-right (90° counter-clockwise, ``np.rot90``)
rot180         ``x[s-1-i, s-1-j]``    bottom-right
rot270         ``x[s-1-j, i]``        bottom-left (90° clockwise)
antitranspose  ``x[s-1-j, s-1-i]``    bottom-right (mirror in the anti-diagonal)
============== ====================== ==================================================

:func:`tta_predictor` builds the views *in the graph* from the uint8 batch (one host →
device transfer per batch, as plain prediction), stacks them into one batch of
``views × n`` images through the predictor and averages the probabilities per image:
the mean probability of a sigmoid head, the per-class mean of a softmax head (whose
rows still sum to 1). :func:`predict_tta` scores arrays as
:func:`~kandel_repro.training.pipeline.predict_uint8` does. Everything is
deterministic: the same model and images give the same scores. :func:`tta_cost`
measures what it costs (``make bench``).

Memory: a batch of ``b`` images is ``views × b`` forward passes at once, so the
activations of a TTA batch are ``views`` times those of a plain batch of the same
images. Runs keep the forward batch at their ``eval_batch_size`` by giving
:func:`predict_tta` ``eval_batch_size // views`` images per batch
(:func:`images_per_batch`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError
from .pipeline import predict_uint8

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a model is scored
    import keras

# The eight symmetries of the square, each as (transpose first?, flip rows?, flip
# columns?) applied in that order to a batch [n, rows, columns, channels].
VIEWS = {
    "identity": (False, False, False),
    "flip_lr": (False, False, True),
    "flip_ud": (False, True, False),
    "transpose": (True, False, False),
    "rot90": (True, True, False),
    "rot180": (False, True, True),
    "rot270": (True, False, True),
    "antitranspose": (True, True, True),
}
# --tta N: the views scored and averaged (1: the plain prediction only).
VIEW_SETS = {
    1: ("identity",),
    4: ("identity", "flip_lr", "flip_ud", "transpose"),
    8: ("identity", "flip_lr", "flip_ud", "transpose", "rot90", "rot180", "rot270",
        "antitranspose"),
}


def view_names(views: int | Sequence[str]) -> tuple[str, ...]:
    """The view names of ``views``: a count of :data:`VIEW_SETS` (1, 4, 8) or names of
    :data:`VIEWS`."""
    if isinstance(views, (int, np.integer)) and not isinstance(views, bool):
        if int(views) not in VIEW_SETS:
            raise ConfigError(f"--tta must be one of {', '.join(map(str, VIEW_SETS))}, got {views!r}")
        return VIEW_SETS[int(views)]
    names = tuple(views) if not isinstance(views, str) else (views,)
    unknown = [name for name in names if name not in VIEWS]
    if unknown or not names:
        raise ConfigError(f"unknown test-time view(s) {', '.join(map(repr, unknown)) or '(none)'}; "
                          f"the views are {', '.join(VIEWS)}")
    return names


def apply_view(images, name: str):
    """View ``name`` of a batch [n, rows, columns, channels] (a tensor or a NumPy array)."""
    import keras

    transpose, flip_rows, flip_columns = VIEWS[name]
    if transpose:
        images = keras.ops.transpose(images, (0, 2, 1, 3))
    if flip_rows:
        images = keras.ops.flip(images, axis=1)
    if flip_columns:
        images = keras.ops.flip(images, axis=2)
    return images


def images_per_batch(eval_batch_size: int, views: int | Sequence[str]) -> int:
    """How many images a TTA batch holds so that its forward batch (images × views) is
    at most ``eval_batch_size`` (at least one image)."""
    return max(1, int(eval_batch_size) // len(view_names(views)))


def tta_predictor(predictor: keras.Model, views: int | Sequence[str]) -> keras.Model:
    """A model taking uint8 batches [n, s, s, c] of square images: each image's views
    (:data:`VIEWS`) through ``predictor`` (a model on uint8 batches, its input stage
    casting and preprocessing) in one batch, and the mean of their probabilities per
    image — an output of ``predictor``'s shape. Build it in the strategy scope the
    predictor was built in to spread its batches over the same devices."""
    import keras

    names = view_names(views)
    shape = tuple(predictor.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1]:
        sides = "×".join("?" if s is None else str(s) for s in shape[:2])
        raise ConfigError(f"test-time augmentation takes square images (the dihedral views "
                          f"of a square); this model takes {sides} images: use --tta 1")
    units = int(predictor.outputs[0].shape[-1] or 1)

    def stack(images):
        return keras.ops.concatenate([apply_view(images, name) for name in names], axis=0)

    def average(scores):
        per_view = keras.ops.reshape(scores, (len(names), -1, units))
        return keras.ops.mean(keras.ops.cast(per_view, "float32"), axis=0)

    images = keras.Input(shape, dtype=predictor.inputs[0].dtype, name="images")
    views_batch = keras.layers.Lambda(stack, name="dihedral_views")(images)
    scores = keras.layers.Lambda(average, name="view_mean", dtype="float32")(predictor(views_batch))
    model = keras.Model(images, scores, name=f"tta{len(names)}_{predictor.name}")
    if getattr(predictor, "compiled", False):
        model.compile(jit_compile=predictor.jit_compile)
    return model


def predict_tta(predictor: keras.Model, x: np.ndarray, views: int | Sequence[str],
                batch_size: int = 256,
                indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Probabilities averaged over ``views`` for uint8 images (rows ``indices`` of
    ``x``), as :func:`~kandel_repro.training.pipeline.predict_uint8` gives them (one per
    image, or (n, k)); ``batch_size`` counts images, each ``len(views)`` forward passes
    (:func:`images_per_batch` keeps the forward batch at a given size). The last batch is
    padded, so the model is traced once. One view (``views=1``) is ``predict_uint8``
    itself."""
    names = view_names(views)
    if names == ("identity",):
        return predict_uint8(predictor, x, batch_size, indices=indices)
    return predict_uint8(tta_predictor(predictor, names), x, batch_size, indices=indices)


def tta_cost(predictor: keras.Model, x: np.ndarray, batch_size: int = 64,
             views: Sequence[int] = (4, 8), rounds: int = 2) -> dict[str, float]:
    """Inference images/s of ``predictor`` on the uint8 images ``x``: plain
    (:func:`~kandel_repro.training.pipeline.predict_uint8`, ``batch_size`` images a
    batch) and with each count of ``views`` (:func:`predict_tta`, a forward batch of
    ``batch_size`` as runs score: :func:`images_per_batch`), and the cost of each as a
    ratio of times to the plain one. Keys: ``plain_images_per_second``,
    ``tta{N}_images_per_second``, ``tta{N}_cost_ratio`` (about N where the model's
    forward pass dominates). Each figure is the best of ``rounds`` timed passes over
    ``x``, after one untimed batch (tracing)."""
    def rate(model, per_batch):
        predict_uint8(model, x[:per_batch], per_batch)  # trace, compile, warm up
        best = np.inf
        for _ in range(max(1, rounds)):
            started = time.perf_counter()
            predict_uint8(model, x, per_batch)
            best = min(best, time.perf_counter() - started)
        return len(x) / best

    out = {"plain_images_per_second": rate(predictor, batch_size)}
    for count in views:
        per_second = rate(tta_predictor(predictor, count), images_per_batch(batch_size, count))
        out[f"tta{count}_images_per_second"] = per_second
        out[f"tta{count}_cost_ratio"] = out["plain_images_per_second"] / per_second
    return {key: round(float(value), 3) for key, value in out.items()}


def tta_metrics(views: int, val_labels: np.ndarray, val_scores: np.ndarray,
                test_labels: np.ndarray | None = None, test_scores: np.ndarray | None = None,
                test_key: str = "test_auc", bootstrap: int | None = None,
                names: list[str] | None = None) -> dict:
    """What a run records of its TTA scores, beside its plain figures: ``tta_views``,
    ``val_auc_tta`` and ``<test_key>_tta`` (where the test labels are known), and their
    95 % intervals ``val_auc_tta_ci``, ``<test_key>_tta_ci`` as
    :func:`~kandel_repro.core.stats.summary_of` gives them for plain scores (DeLong's for
    two classes, the stratified bootstrap for more); no intervals where a score is not
    finite (an AUC of None); an interval not assessable (a split too small) is
    ``[NaN, NaN]`` with its reason in ``intervals_not_assessable_tta``. The threshold
    measures stay those of the plain scores."""
    from ..core.stats import auc_of, summary_of

    def auc(labels, scores):
        return auc_of(labels, scores) if np.all(np.isfinite(scores)) else None

    out = {"tta_views": int(views), "val_auc_tta": auc(val_labels, val_scores)}
    if test_labels is not None:
        out[f"{test_key}_tta"] = auc(test_labels, test_scores)
    if out["val_auc_tta"] is not None and out.get(f"{test_key}_tta", 0.0) is not None:
        summary = summary_of(val_labels, val_scores, test_labels, test_scores, test_key,
                             bootstrap=bootstrap, names=names)
        for key in ("val_auc", test_key):
            if f"{key}_ci" in summary:
                out[f"{key}_tta_ci"] = summary[f"{key}_ci"]
        notes = summary.get("intervals_not_assessable")
        if notes:
            out["intervals_not_assessable_tta"] = {f"{key}_tta": note
                                                   for key, note in notes.items()}
    return out

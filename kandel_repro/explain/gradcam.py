"""Where a run's network looks: Grad-CAM of its most confident right and wrong answers.

Grad-CAM (Selvaraju et al. 2017) explains one score of a network by one of its
convolutional layers: with ``A`` the layer's activations (``h × w × K``) and ``g`` the
gradient of the score with respect to them, each channel weighs ``w_k = mean(g_k)``
over space and the map is ``ReLU(Σ_k w_k A_k)``, upsampled bilinearly to the image and
scaled to [0, 1] per image (a map with no positive evidence stays all zero).

The score is the classifier's *logit*, before its sigmoid (softmax): the standard choice,
whose gradient does not vanish where the probability saturates. For a binary network
(one sigmoid unit) ``negative=True`` explains ``−logit``, the evidence for the negative
class, so a true negative's map shows what made the network say "negative".

:func:`explain_command` (``kandel-repro explain RUN``) draws, from the run's prediction
file of the validation (or labelled test) split, the most confident true positives,
false positives, false negatives and true negatives — for k ≥ 3 classes the most
confident correct and wrong predictions, each explained for its predicted class — each
image beside its map at the end of the backbone's last block (:func:`cam_layer`), and
writes ``gradcam.png`` and ``gradcam.json`` (what was drawn) into the run folder.

A synthetic PCam's test split is labelled (``synthetic_test_labels.csv``, what
``synthetic_test_auc`` used): ``--split test`` reads the run's ``submission.csv`` with
those labels and says so. ``--threshold``, a score from 0 to 1 or ``youden``, applies to
binary runs only (refused for k classes). Images are titled by their ids as recorded
(class folder and file name), long ones shortened from the left (:func:`image_label`).
"""
from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..core.errors import ConfigError, DataError
from ..runs import rundir

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a network is explained
    import keras

SPLITS = {"val": rundir.VAL_PREDICTIONS, "test": rundir.TEST_PREDICTIONS}
DEFAULT_COUNT = 4
DEFAULT_THRESHOLD = 0.5  # binary runs: predicted positive at a score ≥ this
ID_WIDTH = 24  # characters of an id a panel's title holds on one line (at 7 points)
# The groups of a binary run: (name, label, predicted positive, explained as negative).
BINARY_GROUPS = (("true positives", 1, True, False), ("false positives", 0, True, False),
                 ("false negatives", 1, False, True), ("true negatives", 0, False, True))


def _classifier_logits(model):
    """The classifier layer whose pre-activation is the logit (the last layer, a Dense
    with a sigmoid or softmax), or None where the model ends otherwise (its output is
    then the score)."""
    import keras

    head = model.layers[-1]
    if isinstance(head, keras.layers.Dense) and \
            getattr(head.activation, "__name__", "") in ("sigmoid", "softmax"):
        return head
    return None


def grad_cam(model: keras.Model, images: ArrayLike, layer: str | keras.layers.Layer,
             class_index: int | Sequence[int] | None = None, negative: bool = False,
             batch: int = 32) -> np.ndarray:
    """Grad-CAM maps ``[n, h, w]`` in [0, 1] of ``model`` on ``images`` (its inputs,
    already preprocessed), at ``layer`` (a name, or a layer, with a spatial output).

    The score explained is the logit of the classifier (a last Dense layer with a
    sigmoid or softmax; the model's output otherwise): the one unit of a binary model
    (``negative``: its negation, the evidence for the negative class); for k units,
    ``class_index`` (one for all images, or one per image; default: each image's
    predicted class). The gradient is taken with ``tf.GradientTape``, in inference mode.
    """
    import keras
    import tensorflow as tf

    target = model.get_layer(layer) if isinstance(layer, str) else layer
    if len(target.output.shape) != 4:
        raise ConfigError(f"layer {target.name} has output shape {tuple(target.output.shape)}: "
                          "Grad-CAM needs a spatial (height × width × channels) one")
    head = _classifier_logits(model)
    probe = keras.Model(model.inputs, [target.output, head.input if head else model.output])
    images = np.asarray(images, dtype=np.float32)
    size = images.shape[1:3]
    classes = None if class_index is None else np.broadcast_to(
        np.asarray(class_index, dtype=np.int64), (len(images),))
    maps = [np.zeros((0, *size), dtype=np.float32)]
    for start in range(0, len(images), batch):
        x = tf.convert_to_tensor(images[start:start + batch])
        with tf.GradientTape() as tape:
            activations, last = probe(x, training=False)
            scores = tf.cast(last, tf.float32)
            if head is not None:
                scores = tf.matmul(scores, tf.cast(head.kernel, tf.float32))
                if head.use_bias:
                    scores = scores + tf.cast(head.bias, tf.float32)
            if scores.shape[-1] == 1:
                score = scores[:, 0]
            else:
                chosen = (tf.argmax(scores, axis=-1) if classes is None
                          else tf.constant(classes[start:start + batch]))
                score = tf.gather(scores, chosen, axis=1, batch_dims=1)
            if negative:
                score = -score
        gradients = tf.cast(tape.gradient(score, activations), tf.float32)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(activations, tf.float32), axis=-1))
        cam = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        maps.append(np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0))
    return np.concatenate(maps)


def _is_pooling(layer):
    return "Pooling" in type(layer).__name__


def _block_layer(model, names):
    """A block's Grad-CAM layer: its last layer with a spatial output that is not a
    pooling (the output of its last convolution, normalised and activated), a pooling
    layer only where it has nothing else; None where no layer of it is spatial."""
    spatial = [n for n in names if len(model.get_layer(n).output.shape) == 4]
    unpooled = [n for n in spatial if not _is_pooling(model.get_layer(n))]
    return (unpooled or spatial or [None])[-1]


def cam_layer(model: keras.Model, backbone: str,
              layer: str | int | None = None) -> tuple[str, int | None]:
    """``(layer name, block)`` that Grad-CAM reads in ``model`` (a run's network of
    ``backbone``): by default the last block's; ``layer`` a block number (that block's)
    or the name of a backbone layer with a spatial output (its block, None if in none).

    A block's layer is its last spatial layer that is not a pooling: the end of its last
    convolution (after normalisation and activation), as Selvaraju et al. read the last
    convolutional layer; the block map (:mod:`kandel_repro.models.backbones`) finds it in
    every backbone (a CBR network's last block ends in a global pooling: not spatial)."""
    from ..models.backbones import get_backbone

    layers = [l for l in model.layers if not l.name.startswith("head_")]
    blocks = get_backbone(backbone).assign_blocks(layers)
    ends = {b: name for b, names in blocks.items() if (name := _block_layer(model, names))}
    if not ends:
        raise ConfigError(f"no layer of {backbone}'s network has a spatial output: Grad-CAM "
                          "needs one")
    if layer is None:
        block = max(ends)
        return ends[block], block
    text = str(layer).strip()
    if text.isdigit() and int(text) in ends:
        return ends[int(text)], int(text)
    spatial = {l.name for l in layers if len(l.output.shape) == 4
               and type(l).__name__ != "InputLayer"}
    if text in spatial:
        return text, next((b for b, names in blocks.items() if text in names), None)
    shown = ", ".join(f"{b}: {name}" for b, name in ends.items())
    raise ConfigError(f"--layer {text!r} is neither a block of {backbone} nor one of its layers "
                      f"with a spatial output; give a block ({shown}) or a layer name "
                      f"(`kandel-repro blocks {backbone} --layers` lists them)")


def explanation_groups(labels: ArrayLike, scores: ArrayLike, count: int = DEFAULT_COUNT,
                       threshold: float = 0.5) -> list[dict]:
    """The images ``explain`` draws: ``[{"name", "rows", "negative", "classes"}]`` with
    ``rows`` positions in the prediction file, most confident first (ties: file order).

    Binary scores (the positive class's probability, predicted positive at
    ≥ ``threshold``): the true positives and false positives with the highest scores,
    the false negatives and true negatives with the lowest; the first two explained
    for the positive class, the last two for the negative one (``negative``). k ≥ 3
    classes (``[n, k]`` scores, prediction: the most probable class): the correct and
    the wrong predictions of highest probability, each explained for its predicted
    class (``classes``)."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    if scores.ndim == 2:
        predicted, confidence = scores.argmax(axis=1), scores.max(axis=1)
        out = []
        for name, right in (("most confident correct", True), ("most confident wrong", False)):
            rows = np.flatnonzero((predicted == labels) == right)
            rows = rows[np.argsort(-confidence[rows], kind="stable")][:count]
            out.append({"name": name, "rows": rows, "negative": False,
                        "classes": predicted[rows]})
        return out
    out = []
    for name, label, positive, negative in BINARY_GROUPS:
        rows = np.flatnonzero((labels == label) & ((scores >= threshold) == positive))
        order = -scores[rows] if positive else scores[rows]
        rows = rows[np.argsort(order, kind="stable")][:count]
        out.append({"name": name, "rows": rows, "negative": negative, "classes": None})
    return out


def run_data(config: dict, data_dir: str | Path | None = None):
    """``(data, folder)``: a run's packed data (:class:`~kandel_repro.data.packed.PackedData`)
    from ``data_dir``, default the folder it was trained on."""
    from ..readers.registry import get_reader

    folder = data_dir or config.get("data_dir")
    if not folder or not Path(folder).exists():
        raise DataError(f"the run's data folder {folder} is not there: give --data DIR, "
                        "where the data is now")
    reader = get_reader(config.get("dataset", "pcam"))
    return reader.load(folder, image_size=config.get("image_size"), progress=False,
                       **reader.options_of(config)), folder


def split_images(config: dict, ids: Sequence[str], split: str = "val",
                 data_dir: str | Path | None = None, data=None) -> np.ndarray:
    """The uint8 images of ``ids`` in a run's data (``data_dir``, default the folder it
    was trained on; ``data``: those data, already loaded), from its labelled images
    (``split="val"``) or its test set."""
    if data is None:
        data, folder = run_data(config, data_dir)
    else:
        folder = data_dir or config.get("data_dir")
    if split == "val":
        x, known = data.x, data.ids
    else:
        test = data.split(config).test
        x = test.x if test.indices is None else test.x[test.indices]
        known = test.selected_ids()
    where = {str(i): k for k, i in enumerate(known)}
    missing = [i for i in ids if str(i) not in where]
    if missing:
        raise DataError(f"{len(missing)} id(s) of the run's {SPLITS[split]} are not in the data "
                        f"in {folder} (e.g. {missing[0]}): give --data, the folder the run "
                        "was trained on")
    return x[[where[str(i)] for i in ids]]


def _threshold(run_dir, threshold):
    """``--threshold``: a score from 0 to 1, ``youden`` (the run's threshold of Youden's J)
    or None (the default, :data:`DEFAULT_THRESHOLD`)."""
    if threshold is None:
        return DEFAULT_THRESHOLD
    if str(threshold).strip().lower() != "youden":
        try:
            value = float(threshold)
        except ValueError:
            raise ConfigError(f"--threshold must be a number or youden, got {threshold!r}") \
                from None
        # NOTE: a score is a probability: a cut outside [0, 1] (or NaN) puts every image
        # on one side, and the figure would show empty groups as if that were an answer.
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise ConfigError(f"--threshold {threshold}: a threshold is a score from 0 to 1 "
                              "(or youden, the run's threshold of Youden's J)")
        return value
    value = (rundir.read_metrics(run_dir) or {}).get("youden_threshold")
    if value is None:
        raise ConfigError(f"--threshold youden: {run_dir / rundir.METRICS} records no "
                          "youden_threshold; give a number")
    return float(value)


# What gradcam.json says of the labels of the synthetic PCam's test split.
HIDDEN_LABELS_NOTE = ("the synthetic set's hidden test labels ({file}, which "
                      "synthetic_test_auc was computed from)")


def _synthetic_test_predictions(run, config, data, folder):
    """``(ids, labels, scores)`` of a synthetic PCam run's test split: its scores in
    ``submission.csv``, its labels those the synthetic set keeps beside the images (the
    ones ``synthetic_test_auc`` used)."""
    import pandas as pd

    from ..data.layouts import HIDDEN_LABELS

    test = data.split(config).test
    if test.labels is None:
        raise DataError(f"the synthetic set in {folder} has no {HIDDEN_LABELS}, the labels of "
                        "its test split: give --data, the folder the run was trained on, or "
                        "use --split val")
    known = dict(zip((str(i) for i in test.selected_ids()), test.labels))
    frame = pd.read_csv(run / rundir.SUBMISSION, dtype={"id": str})
    missing = [i for i in frame["id"] if i not in known or not np.isfinite(known[i])]
    if missing:
        raise DataError(f"{len(missing)} id(s) of {run / rundir.SUBMISSION} have no label in "
                        f"{Path(folder) / HIDDEN_LABELS} (e.g. {missing[0]}): give --data, the "
                        "folder the run was trained on")
    labels = np.array([int(known[i]) for i in frame["id"]])
    return frame["id"].to_numpy(), labels, frame["label"].to_numpy(dtype=float)


def explain_command(run: str | Path, split: str = "val", layer: str | None = None,
                    count: int = DEFAULT_COUNT, data_dir: str | Path | None = None,
                    out: str | Path | None = None, threshold: float | str | None = None,
                    log: Callable[[str], None] = print) -> list[Path]:
    """What ``kandel-repro explain`` does: the Grad-CAM figure of a finished run's most
    confident right and wrong answers on ``split`` (``val`` or ``test``), written as
    ``gradcam[_<layer>][_test].png`` and ``.json`` into ``out`` (default: the run
    folder); returns their paths. ``threshold`` (binary runs only; default 0.5): a score
    from 0 to 1, or ``youden``."""
    import keras

    from ..core.files import check_writable, write_json
    from ..data.layouts import HIDDEN_LABELS
    from ..models.backbones import get_backbone

    run = Path(run)
    config = rundir.finished_config(run, "RUN", "explain")
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    predictions = run / SPLITS[split]
    # NOTE: a synthetic PCam's test split is scored into submission.csv as Kaggle's is, but
    # its labels are known (the generator keeps them beside the images).
    hidden = split == "test" and not predictions.is_file() and bool(config.get("synthetic")) \
        and (run / rundir.SUBMISSION).is_file()
    if not predictions.is_file() and not hidden:
        raise ConfigError(f"RUN {run} has no {SPLITS[split]}"
                          + (": its data set has no labelled test split; use --split val"
                             if split == "test" else ""))
    data = None
    if not hidden:
        ids, labels, scores = rundir.read_predictions(predictions)
    binary = hidden or scores.ndim == 1  # (PCam is binary)
    if not binary and threshold is not None:  # (nothing it could change: refused, not ignored)
        raise ConfigError(f"--threshold {threshold} applies to binary runs: {run} has "
                          f"{scores.shape[1]} classes, whose prediction is the most probable "
                          "class; leave --threshold out")
    cut = _threshold(run, threshold) if binary else None
    if hidden:
        data, folder = run_data(config, data_dir)
        ids, labels, scores = _synthetic_test_predictions(run, config, data, folder)
    out = check_writable(Path(out) if out else run, "--out")
    groups = explanation_groups(labels, scores, count,
                                DEFAULT_THRESHOLD if cut is None else cut)
    model = keras.saving.load_model(run / rundir.BEST_MODEL, compile=False)
    name, block = cam_layer(model, config["backbone"], layer)
    chosen = np.concatenate([g["rows"] for g in groups]).astype(int)
    images = split_images(config, list(ids[chosen]), split, data_dir, data)
    if images.shape[1:3] != tuple(model.input_shape[1:3]):
        raise DataError(f"the images of {data_dir or config.get('data_dir')} are "
                        f"{images.shape[1]}×{images.shape[2]}, the run's network takes "
                        f"{model.input_shape[1]}×{model.input_shape[2]}: give --data, the "
                        "folder the run was trained on")
    preprocess = get_backbone(config["backbone"]).preprocess_input()
    inputs = np.asarray(preprocess(images.astype(np.float32)))
    offset, drawn = 0, []
    for group in groups:
        n = len(group["rows"])
        cams = grad_cam(model, inputs[offset:offset + n], name, class_index=group["classes"],
                        negative=group["negative"]) if n else np.zeros((0, *images.shape[1:3]))
        drawn.append((group, images[offset:offset + n], cams))
        offset += n
    stem = "gradcam" + (f"_{_safe(name)}" if layer is not None else "") + \
        ("_test" if split == "test" else "")
    classes = [str(c) for c in config.get("classes") or []] or \
        [str(k) for k in range(2 if binary else scores.shape[1])]
    whose = HIDDEN_LABELS_NOTE.format(file=HIDDEN_LABELS) if hidden else None
    record = {"run": str(run), "backbone": config["backbone"], "split": split,
              "predictions": rundir.SUBMISSION if hidden else SPLITS[split],
              "labels": whose or f"those of {SPLITS[split]}", "layer": name, "block": block,
              "figure": f"{stem}.png",
              "score": ("logit of the sigmoid unit (negative classes: −logit)" if binary
                        else "logit of the predicted class"),
              "threshold": cut if binary else None, "classes": classes, "groups": []}
    for group, _, cams in drawn:
        rows = group["rows"]
        entries = []
        for i, row in enumerate(rows):
            peak = np.unravel_index(int(np.argmax(cams[i])), cams[i].shape)
            entry = {"id": str(ids[row]), "label": int(labels[row]),
                     "cam_peak": [int(peak[0]), int(peak[1])]}
            if binary:
                entry.update(score=float(scores[row]), predicted=int(scores[row] >= cut))
            else:
                entry.update(scores=[float(s) for s in scores[row]],
                             predicted=int(group["classes"][i]))
            entries.append(entry)
        record["groups"].append({"name": group["name"], "images": entries,
                                 "explains": ("predicted class" if not binary else
                                              "negative" if group["negative"] else "positive")})
    title = _title(run, config, split, name, block, binary, cut, hidden)
    _figure(drawn, ids, labels, scores, classes, binary, cut, title, out / f"{stem}.png")
    write_json(out / f"{stem}.json", record)
    shown = ", ".join(f"{len(g['rows'])} {g['name']}" for g in groups)
    log(f"{run.name}: Grad-CAM at {name} of {shown} ({split} split)"
        + (f"; its labels are {whose}" if whose else ""))
    return [out / f"{stem}.png", out / f"{stem}.json"]


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _title(run, config, split, layer, block, binary, cut, hidden=False):
    where = f"{layer} (block {block})" if block is not None else layer
    caveat = " — synthetic data" if config.get("synthetic") else ""
    splits = {"val": "validation", "test": "test"}
    if binary:
        rule = (f"predicted positive at score ≥ {cut:.3g}; TP/FP explain 'positive' (logit), "
                "FN/TN 'negative' (−logit)")
    else:
        rule = "prediction: the most probable class; each map explains it (its logit)"
    labels = " (labels: the synthetic set's hidden test labels)" if hidden else ""
    return (f"Grad-CAM of {run.name} ({config['backbone']}, blocks {config.get('blocks')}) at "
            f"{where}{caveat}\nmost confident answers on the {splits[split]} split{labels}; "
            f"{rule}")


def image_label(image_id: str, width: int = ID_WIDTH) -> str:
    """An image's id as a panel's title shows it: whole where it fits on a line of
    ``width`` characters; else its class folder and file name (the last two parts of the
    path) after "…/" where folders above them are left out, wrapped at its slashes onto
    lines of at most ``width`` characters (a part longer than a line is broken within)."""
    text = str(image_id)
    if len(text) <= width:
        return text
    parts = text.split("/")
    if len(parts) > 2:  # NOTE: the folders above the class folder tell images apart least
        parts = ["…", *parts[-2:]]
    lines, line = [], ""
    for piece in [p + "/" for p in parts[:-1]] + [parts[-1]]:
        if len(line) + len(piece) <= width:
            line += piece
        elif len(piece) <= width:
            lines.append(line)
            line = piece
        else:  # a part longer than a line: it continues the line, broken where it is full
            while len(line) + len(piece) > width:
                take = width - len(line)
                lines.append(line + piece[:take])
                line, piece = "", piece[take:]
            line = piece
    return "\n".join(lines + ([line] if line else []))


def _fit_title(title, width_inches, points):
    """``title``'s lines wrapped to a figure ``width_inches`` wide at ``points`` (a
    character taken as 0.55 of the font size, a little over a proportional font's mean)."""
    columns = max(20, int(width_inches * 72 / (0.55 * points)))
    return "\n".join(textwrap.fill(line, columns) for line in title.split("\n"))


def _figure(drawn, ids, labels, scores, classes, binary, cut, title, path):
    """One row per group: each image, then its map over it (jet, red: most evidence);
    each image titled by its id (:func:`image_label`) and label, the title wrapped to
    the figure's width, each row as tall as its image and its longest title."""
    from ..report.plots import load_pyplot, save_figure

    plt = load_pyplot()
    count = max([len(rows) for rows in (g["rows"] for g, _, _ in drawn)] + [1])
    titles = []  # per row: (image's title, map's title) of each image
    for group, _, _ in drawn:
        row_titles = []
        for i, row in enumerate(group["rows"]):
            score = (f"p={scores[row]:.3f}" if binary
                     else f"{classes[group['classes'][i]]} {scores[row].max():.2f}")
            label = textwrap.fill(f"label {classes[int(labels[row])]}", ID_WIDTH)
            row_titles.append((f"{image_label(ids[row])}\n{label}",
                               textwrap.fill(score, ID_WIDTH)))
        titles.append(row_titles)
    width = 1.45 * 2 * count + 0.6
    heading = _fit_title(title, width, 9)
    # NOTE: a row's height is its square panels' side and its titles' lines (7 points
    # each, with leading). The constrained layout then keeps each title off the images
    # above it (tight_layout spaces all rows alike and let a row of long ids run into
    # the images of a short row above it).
    lines = [max([t.count("\n") + 1 for pair in row for t in pair] + [1]) for row in titles]
    heights = [1.35 + 0.125 * n + 0.15 for n in lines]
    fig, axes = plt.subplots(len(drawn), 2 * count, squeeze=False,
                             figsize=(width, sum(heights) + 0.19 * (heading.count("\n") + 1)
                                      + 0.3),
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    for r, (group, images, cams) in enumerate(drawn):
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        axes[r, 0].set_ylabel(group["name"], fontsize=9)
        if not len(group["rows"]):
            axes[r, 0].text(0.5, 0.5, "none", ha="center", va="center", color="dimgrey",
                            transform=axes[r, 0].transAxes)
        for i, (image_title, map_title) in enumerate(titles[r]):
            image, overlay = axes[r, 2 * i], axes[r, 2 * i + 1]
            image.imshow(images[i])
            overlay.imshow(images[i])
            overlay.imshow(cams[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            image.set_title(image_title, fontsize=7)
            overlay.set_title(map_title, fontsize=7)
    fig.suptitle(heading, fontsize=9)
    return save_figure(fig, path)

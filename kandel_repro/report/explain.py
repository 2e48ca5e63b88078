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
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..core.errors import ConfigError, DataError
from ..runs import rundir
from .similarity import finished_run

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a network is explained
    import keras

SPLITS = {"val": rundir.VAL_PREDICTIONS, "test": rundir.TEST_PREDICTIONS}
DEFAULT_COUNT = 4
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


def split_images(config: dict, ids: Sequence[str], split: str = "val",
                 data_dir: str | Path | None = None) -> np.ndarray:
    """The uint8 images of ``ids`` in a run's data (``data_dir``, default the folder it
    was trained on), from its labelled images (``split="val"``) or its test set."""
    from ..data.readers import get_reader

    folder = data_dir or config.get("data_dir")
    if not folder or not Path(folder).exists():
        raise DataError(f"the run's data folder {folder} is not there: give --data DIR, "
                        "where the data is now")
    reader = get_reader(config.get("dataset", "pcam"))
    data = reader.load(folder, image_size=config.get("image_size"), progress=False,
                       **reader.options_of(config))
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
    """``--threshold``: a number, or ``youden`` (the run's threshold of Youden's J)."""
    if str(threshold).strip().lower() != "youden":
        try:
            return float(threshold)
        except ValueError:
            raise ConfigError(f"--threshold must be a number or youden, got {threshold!r}") \
                from None
    value = (rundir.read_metrics(run_dir) or {}).get("youden_threshold")
    if value is None:
        raise ConfigError(f"--threshold youden: {run_dir / rundir.METRICS} records no "
                          "youden_threshold; give a number")
    return float(value)


def explain_command(run: str | Path, split: str = "val", layer: str | None = None,
                    count: int = DEFAULT_COUNT, data_dir: str | Path | None = None,
                    out: str | Path | None = None, threshold: float | str = 0.5,
                    log: Callable[[str], None] = print) -> list[Path]:
    """What ``kandel-repro explain`` does: the Grad-CAM figure of a finished run's most
    confident right and wrong answers on ``split`` (``val`` or ``test``), written as
    ``gradcam[_<layer>][_test].png`` and ``.json`` into ``out`` (default: the run
    folder); returns their paths."""
    import keras

    from ..core.files import check_writable, write_json
    from ..models.backbones import get_backbone

    run = Path(run)
    config = finished_run(run)
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    predictions = run / SPLITS[split]
    if not predictions.is_file():
        raise ConfigError(f"RUN {run} has no {SPLITS[split]}"
                          + (": its data set has no labelled test split; use --split val"
                             if split == "test" else ""))
    cut = _threshold(run, threshold)
    out = check_writable(Path(out) if out else run, "--out")
    ids, labels, scores = rundir.read_predictions(predictions)
    groups = explanation_groups(labels, scores, count, cut)
    model = keras.saving.load_model(run / rundir.BEST_MODEL, compile=False)
    name, block = cam_layer(model, config["backbone"], layer)
    chosen = np.concatenate([g["rows"] for g in groups]).astype(int)
    images = split_images(config, list(ids[chosen]), split, data_dir)
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
    binary = scores.ndim == 1
    classes = [str(c) for c in config.get("classes") or []] or \
        [str(k) for k in range(2 if binary else scores.shape[1])]
    record = {"run": str(run), "backbone": config["backbone"], "split": split,
              "predictions": SPLITS[split], "layer": name, "block": block,
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
    title = _title(run, config, split, name, block, binary, cut)
    _figure(drawn, ids, labels, scores, classes, binary, cut, title, out / f"{stem}.png")
    write_json(out / f"{stem}.json", record)
    shown = ", ".join(f"{len(g['rows'])} {g['name']}" for g in groups)
    log(f"{run.name}: Grad-CAM at {name} of {shown} ({split} split)")
    return [out / f"{stem}.png", out / f"{stem}.json"]


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _title(run, config, split, layer, block, binary, cut):
    where = f"{layer} (block {block})" if block is not None else layer
    caveat = " — synthetic data" if config.get("synthetic") else ""
    splits = {"val": "validation", "test": "test"}
    if binary:
        rule = (f"predicted positive at score ≥ {cut:.3g}; TP/FP explain 'positive' (logit), "
                "FN/TN 'negative' (−logit)")
    else:
        rule = "prediction: the most probable class; each map explains it (its logit)"
    return (f"Grad-CAM of {run.name} ({config['backbone']}, blocks {config.get('blocks')}) at "
            f"{where}{caveat}\nmost confident answers on the {splits[split]} split; {rule}")


def _figure(drawn, ids, labels, scores, classes, binary, cut, title, path):
    """One row per group: each image, then its map over it (jet, red: most evidence)."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    count = max([len(rows) for rows in (g["rows"] for g, _, _ in drawn)] + [1])
    fig, axes = plt.subplots(len(drawn), 2 * count, squeeze=False,
                             figsize=(1.45 * 2 * count + 0.6, 1.9 * len(drawn) + 0.9))
    for r, (group, images, cams) in enumerate(drawn):
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        axes[r, 0].set_ylabel(group["name"], fontsize=9)
        if not len(group["rows"]):
            axes[r, 0].text(0.5, 0.5, "none", ha="center", va="center", color="dimgrey",
                            transform=axes[r, 0].transAxes)
        for i, row in enumerate(group["rows"]):
            image, overlay = axes[r, 2 * i], axes[r, 2 * i + 1]
            image.imshow(images[i])
            overlay.imshow(images[i])
            overlay.imshow(cams[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if binary:
                score = f"p={scores[row]:.3f}"
            else:
                score = f"{classes[group['classes'][i]]} {scores[row].max():.2f}"
            name = str(ids[row]).rsplit("/", 1)[-1]  # a path's file name
            image.set_title(f"{name[:11] + '…' if len(name) > 12 else name}\n"
                            f"label {classes[int(labels[row])]}", fontsize=7)
            overlay.set_title(score, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)

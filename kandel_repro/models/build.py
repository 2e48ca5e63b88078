"""Model construction: a backbone, its weights and the paper's head.

The model is the ``keras.applications`` backbone with ``include_top=False``, then
Flatten (or global average pooling), Dropout(0.5) and Dense(1, sigmoid) — paper §4.1;
for k ≥ 3 classes (a user's own data) Dense(k, softmax).
The backbone's layers stay top-level layers of the model (no nested sub-model), so a
block map of layer names addresses them directly.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, WeightsUnavailable
from .backbones import REGISTRY, assign_layers, check_input_size, depth_label, get_backbone
from .generative import TRUNK
from .weights import keras_models_dir, normalise_weights

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a model is built
    import keras


def build_base(backbone_name: str, input_shape: Sequence[int],
               weights: str | Path | None = "imagenet", option: str = "--weights") -> keras.Model:
    """Build the headless backbone, turning a failed weight download into a clear error.

    ``weights``: ``"imagenet"``, ``"none"`` (or None) for random weights, a file, or a
    folder holding ``<backbone>.weights.h5`` (:func:`export_weights`); a file is checked
    to hold this backbone's weights before they are loaded (:func:`_load_file`).
    ``option``: the command-line option that chose them (``--weights``, or
    ``--weights-from`` for Mean-Var's source), which errors name.

    ImageNet weights that cannot be had (no download) or that Keras cannot load (a file
    of that name cut short) are one line naming the file a model of this input size
    needs (:meth:`~kandel_repro.models.backbones.Backbone.notop_file`: MobileNet and
    MobileNetV2 have one per size) and the folder Keras looks in.
    """
    backbone = get_backbone(backbone_name)
    height, width = input_shape[:2]
    check_input_size(backbone, height, width, f"inputs of {height}×{width}")
    weights = normalise_weights(weights)
    if weights == "meanvar":
        raise ConfigError("Mean-Var weights are drawn by build_model, not loaded")
    if weights == "imagenet" and not backbone.pretrained and option != "--weights":
        raise ConfigError(f"{backbone.name} has no ImageNet weights to draw Mean-Var's "
                          f"statistics from: give {option} PATH, weights a run made here "
                          "(see `kandel-repro export-weights`)")
    constructor = backbone.constructor()
    if weights not in ("none", "imagenet"):
        return _load_file(backbone, constructor, tuple(input_shape), weights, option)
    try:
        return constructor(include_top=False, weights=None if weights == "none" else weights,
                           input_shape=tuple(input_shape))
    except Exception as exc:  # keras raises a bare Exception on URL fetch failure
        if weights != "imagenet" or backbone.build is not None:
            raise
        # NOTE: Keras picks MobileNet's file by the input size when it is square only
        name = backbone.notop_file(height if height == width else None)
        folder = keras_models_dir()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "fetch failure" in first.lower():
            raise WeightsUnavailable(
                f"could not download the ImageNet weights of {backbone.name} ({first}). "
                f"Put the file {name} into {folder}/ "
                f"(Keras looks there first; set KERAS_HOME to use another folder), "
                f"or pass {option} PATH to that file, or --weights none to train "
                f"from random weights (a different experiment)."
            ) from None
        if (folder / name).is_file():
            raise WeightsUnavailable(
                f"the ImageNet weights of {backbone.name} in {folder / name} cannot be "
                f"loaded ({first}): a download cut short, or another file of that name; "
                "delete it so that Keras downloads it again, or put the right file there"
            ) from None
        raise


WEIGHTS_SUFFIX = ".weights.h5"  # what export_weights writes: <backbone>.weights.h5


def _load_file(backbone, constructor, input_shape, path, option):
    """The backbone with the weights of ``path`` (a file, or a folder of
    ``<backbone>.weights.h5``): built with random weights, checked to match the file's
    tensors, then loaded. Each problem is one :class:`WeightsUnavailable` line naming the
    file: no file for this backbone in the folder, an unreadable (truncated) file, the
    weights of another backbone (named when the file tells), a failed load.

    NOTE: Keras' own report of a mismatch is a page of warnings and tensor values; its
    warnings are silenced here and its error cut to its first line."""
    path = Path(path)
    if path.is_dir():
        folder, path = path, path / f"{backbone.name}{WEIGHTS_SUFFIX}"
        if not path.is_file():
            raise WeightsUnavailable(_no_weights_in(folder, path.name, backbone.name, option))
    found = _file_shapes(path, option)
    model = constructor(include_top=False, weights=None, input_shape=input_shape)
    needed = _shapes(model)
    # NOTE: a backbone that loads files itself takes weights of other input sizes (a ViT
    # resamples its position embeddings); it refuses another network's file in loading
    if found != needed and backbone.load is None:
        held = _backbone_of(path, found, backbone.name)
        if held:
            raise WeightsUnavailable(f"{option} {path} holds {held} weights; this run needs "
                                     f"{backbone.name}'s")
        hint = (f"; a file with the classifier on top? use the notop one "
                f"({backbone.notop_file(input_shape[0])})" if backbone.notop_weights_file
                and not needed - found else "")
        raise WeightsUnavailable(f"{option} {path} does not hold {backbone.name} weights: its "
                                 f"{sum(found.values())} tensors match none of "
                                 f"{', '.join(_candidates(backbone.name))}{hint}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (backbone.load or type(model).load_weights)(model, path)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds; all mean "unusable"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsUnavailable(f"{option} {path}: could not load its weights into "
                                 f"{backbone.name} ({first})") from None
    return model


def _no_weights_in(folder, name, backbone_name, option):
    """Why the folder ``folder`` given as weights has no ``name`` for ``backbone_name``:
    the backbones whose weights it holds (a pretrain run's checkpoints, which are no
    backbone's, left out), and where the wanted file comes from."""
    held = sorted(b for b in (p.name[:-len(WEIGHTS_SUFFIX)]
                              for p in folder.glob(f"*{WEIGHTS_SUFFIX}")) if b in REGISTRY)
    holds = f"the weights of {', '.join(held)}" if held else "no weights of any backbone"
    if TRUNK in held:
        hint = f"a pretrain run's trunk initialises --backbone {TRUNK} only, not {backbone_name}"
    else:
        hint = f"`kandel-repro export-weights` of a finished {backbone_name} run writes it"
    return f"{option} {folder}: no {name} in that folder (it holds {holds}); {hint}"


def _file_shapes(path, option):
    """The shapes of the weight tensors a Keras weights file holds, as a multiset: those
    under ``layers/`` of a ``.weights.h5`` (Keras 3), or of the layers a legacy ``.h5``
    (keras.applications, Keras 2) names."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layer_names" not in f.attrs and "model_weights" in f:  # a whole legacy model
                f = f["model_weights"]
            if "layer_names" in f.attrs:
                groups = [f[_text(name)] for name in f.attrs["layer_names"]]
            else:
                groups = [f["layers"]] if "layers" in f else [f]
            shapes = Counter()
            for group in groups:
                group.visititems(lambda _, item: shapes.update(
                    [tuple(item.shape)] if isinstance(item, h5py.Dataset) else []))
            return shapes
    except (OSError, KeyError) as exc:
        reason = str(exc).removeprefix("Unable to synchronously open file ").strip("()")
        hint = ("; a run's best_model.keras is a whole model: `kandel-repro export-weights` "
                "writes its backbone's weights" if path.suffix == ".keras" else "")
        raise WeightsUnavailable(f"{option} {path} cannot be read: it is truncated or not a "
                                 f"Keras weights file (HDF5: {reason}){hint}") from None


def _text(name):
    return name.decode() if isinstance(name, bytes) else str(name)


def _shapes(model):
    return Counter(tuple(weight.shape) for weight in model.weights)


@lru_cache(maxsize=None)
def _backbone_shapes(name):
    """The weight shapes of a backbone (built with random weights, at its smallest size)."""
    size = get_backbone(name).min_input_size
    return _shapes(build_base(name, (size, size, 3), "none"))


def _backbone_of(path, shapes, expected):
    """Which backbone the weights file ``path`` holds, or None: told by the
    ``<backbone>.json`` :func:`export_weights` writes beside it, by the model name a
    ``.weights.h5`` records, or by its tensors' shapes matching those of a backbone."""
    if path.name.endswith(WEIGHTS_SUFFIX):
        note = path.with_name(path.name[:-len(WEIGHTS_SUFFIX)] + ".json")
        try:
            told = get_backbone(json.loads(note.read_text())["backbone"]).name
        except (OSError, ValueError, KeyError, TypeError, ConfigError):
            told = None
        if told not in (None, expected):
            return told
    import h5py

    with h5py.File(path, "r") as f:
        told = _text(f["vars"].attrs.get("name", "")).lower() if "vars" in f else ""
    if told in REGISTRY and told != expected:
        return told
    for candidate in _candidates(expected):  # NOTE: builds each once, on this error path only
        if candidate != expected and _backbone_shapes(candidate) == shapes:
            return candidate
    return None


# The backbones a mismatched weights file is compared with besides the expected one's
# family: the paper's and the CBR networks (building all 40-odd entries, ConvNeXt-XLarge
# and EfficientNetV2-L among them, would take minutes on this error path).
_ALWAYS_COMPARED = ("vgg16", "vgg19", "inception_v3", "cbr_large_t", "cbr_large_w",
                    "cbr_small", "cbr_tiny", "dcgan_small")


def _family(name):
    """``resnet50_v2`` → ``resnet``, ``efficientnet_v2_s`` → ``efficientnet``."""
    return re.match(r"[a-z]+", name).group(0)


def _candidates(expected):
    """The backbones whose weights a file meant for ``expected`` is compared with."""
    return [name for name in REGISTRY
            if name in _ALWAYS_COMPARED or _family(name) == _family(expected)]


def build_model(backbone_name: str, input_shape: Sequence[int] = (96, 96, 3),
                weights: str | Path | None = "imagenet", head_pooling: str = "flatten",
                dropout: float = 0.5, weights_from: str | Path | None = None,
                transfer_blocks: int | None = None,
                classes: int = 2) -> tuple[keras.Model, dict[int, list[str]]]:
    """Return ``(model, block_map)`` for one backbone.

    ``classes``: 2 gives the paper's head, one sigmoid unit (the positive class's
    probability); k ≥ 3 a softmax of k units.
    ``block_map`` is an ordered dict ``{block number: [layer names]}``.
    ``weights="meanvar"``: random weights with each tensor's mean and variance from
    ``weights_from`` (:func:`mean_var`); ``transfer_blocks=k``: ``weights`` for blocks
    1..k, the backbone's own initialisation above (:func:`partial_transfer`).
    """
    import keras

    backbone = get_backbone(backbone_name)
    if weights == "meanvar":
        base = build_base(backbone_name, input_shape, "none")
        mean_var(base, build_base(backbone_name, input_shape, weights_from or "imagenet",
                                  option="--weights-from"))
    else:
        base = build_base(backbone_name, input_shape, weights)
        if transfer_blocks is not None:
            partial_transfer(base, build_base(backbone_name, input_shape, "none"),
                             backbone.assign_blocks(base.layers), transfer_blocks)
    if len(base.output.shape) == 2:  # pooled by the architecture itself (CBR networks)
        pool = keras.layers.Flatten(name="head_pool")
    elif head_pooling == "flatten":
        pool = keras.layers.Flatten(name="head_pool")
    elif head_pooling == "avg":
        pool = keras.layers.GlobalAveragePooling2D(name="head_pool")
    else:
        raise ConfigError(f"head pooling must be 'flatten' or 'avg', got {head_pooling!r}")
    x = pool(base.output)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if not isinstance(classes, int) or classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {classes!r}")
    # NOTE: float32 output keeps the sigmoid (softmax) and the loss in full precision.
    out = (keras.layers.Dense(1, activation="sigmoid", name="head_dense", dtype="float32")(x)
           if classes == 2 else
           keras.layers.Dense(classes, activation="softmax", name="head_dense", dtype="float32")(x))
    model = keras.Model(base.input, out, name=f"{backbone.name}_finetune")
    # NOTE: which layers --strategy lora adapts (training.strategies.enable_adapters)
    model.adapter_targets = backbone.adapter_targets
    block_map = backbone.assign_blocks(base.layers)
    return model, block_map


def mean_var(base: keras.Model, source: keras.Model) -> None:
    """Mean-Var initialisation (Raghu et al. 2019): every weight tensor of ``base`` drawn
    i.i.d. from a normal with the mean and standard deviation of the same tensor of
    ``source`` (the pretrained network); BatchNormalization set to identity (γ 1, β 0,
    moving mean 0, moving variance 1). Draws from Keras' global seed."""
    import keras

    for layer, pretrained in zip(base.layers, source.layers):
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight in layer.weights:
                name = weight.path.split("/")[-1]
                fill = 1.0 if name in ("gamma", "moving_variance") else 0.0
                weight.assign(keras.ops.full(weight.shape, fill, dtype=weight.dtype))
            continue
        for weight, reference in zip(layer.weights, pretrained.weights):
            values = keras.ops.convert_to_numpy(reference)
            weight.assign(keras.random.normal(weight.shape, mean=float(values.mean()),
                                              stddev=float(values.std()), dtype=weight.dtype))


def partial_transfer(base: keras.Model, fresh: keras.Model, block_map: dict[int, list[str]],
                     transfer_blocks: int) -> None:
    """Keep ``base``'s (pretrained) weights in blocks 1..``transfer_blocks``; give the
    blocks above ``fresh``'s (the backbone's own random initialisation)."""
    twin = same_layers(base, fresh)
    for block, names in block_map.items():
        if block > transfer_blocks:
            for name in names:
                layer = base.get_layer(name)
                if layer.weights:
                    layer.set_weights(twin[name].get_weights())


def same_layers(model: keras.Model, other: keras.Model) -> dict[str, keras.layers.Layer]:
    """``{layer name in model: the layer at the same position in other}``, by position, not
    name: Keras numbers generated names per process (InceptionV3's ``conv2d`` is
    ``conv2d_94`` in a second copy built or loaded beside the first). ``other`` may have
    more layers after ``model``'s (a whole model beside its backbone); the pairs are
    checked to be the same kind of layer with weights of the same shapes."""
    if len(other.layers) < len(model.layers):
        raise ConfigError(f"{other.name} has fewer layers ({len(other.layers)}) than "
                          f"{model.name} ({len(model.layers)}): not the same network")
    pairs = {}
    for layer, twin in zip(model.layers, other.layers):
        shapes = [tuple(w.shape) for w in layer.weights]
        if type(layer) is not type(twin) or shapes != [tuple(w.shape) for w in twin.weights]:
            raise ConfigError(f"layer {layer.name} ({type(layer).__name__}, {shapes}) does not "
                              f"match {twin.name} of {other.name}: not the same network")
        pairs[layer.name] = twin
    return pairs


def block_map_of(backbone_name: str,
                 input_shape: Sequence[int] | None = None) -> dict[int, list[str]]:
    """The block map of a backbone, built with random weights (no download)."""
    backbone = get_backbone(backbone_name)
    size = max(backbone.min_input_size, 32)
    shape = input_shape or (size, size, 3)
    base = build_base(backbone_name, shape, weights=None)
    return backbone.assign_blocks(base.layers)


def _trainable_parameters(base, names):
    return int(sum(math.prod(w.shape) for n in names for w in base.get_layer(n).trainable_weights))


def layer_map_of(backbone_name: str) -> dict[int, dict]:
    """``{layer number: {"layers": names, "block": block, "parameters": count}}``: the
    layer granularity of a backbone (:func:`kandel_repro.models.backbones.assign_layers`);
    for a family with finer units than its blocks (ResNet's residual units), also
    ``"unit"``: the unit of the layer's convolution (``"conv4_block17"``)."""
    backbone = get_backbone(backbone_name)
    size = max(backbone.min_input_size, 32)
    base = build_base(backbone_name, (size, size, 3), weights=None)
    block_of = {name: block for block, names in backbone.assign_blocks(base.layers).items()
                for name in names}
    unit_of = ({name: unit for unit, names in backbone.assign_units(base.layers).items()
                for name in names} if backbone.assign_units else {})
    mapping = {number: {"layers": names, "block": block_of[names[0]],
                        "parameters": int(sum(base.get_layer(n).count_params() for n in names))}
               for number, names in assign_layers(base.layers).items()}
    if unit_of:
        for entry in mapping.values():
            entry["unit"] = unit_of[entry["layers"][0]]
    return mapping


def describe_blocks(backbone_name: str, as_json: bool = False, layers: bool = False) -> str:
    """What ``kandel-repro blocks`` prints: block number → layer names, parameters and
    ``trainable_parameters`` (those of blocks k … top, the backbone's parameters that
    fine-tuning from block k trains; the head adds its own), or with ``layers`` layer
    number → layer names, block and parameters, as text or JSON."""
    backbone = get_backbone(backbone_name)
    if layers:
        mapping = layer_map_of(backbone.name)
        if as_json:
            return json.dumps({str(k): v for k, v in mapping.items()}, indent=2)
        lines = [f"{backbone.name}: {backbone.num_layers} layers (convolutions, a "
                 "transformer's blocks; 1 is nearest the input)"]
        lines += [f"  layer {k:3d} (block {v['block']}{', ' + v['unit'] if 'unit' in v else ''}"
                  f"): {', '.join(v['layers'])} — {v['parameters']:,} parameters"
                  for k, v in mapping.items()]
        lines.append(f"fine-tuning 'from layer k' (--first-layer k) trains layers "
                     f"k..{backbone.num_layers} and the head; k = {backbone.num_layers + 1} "
                     "trains the head only")
        return "\n".join(lines)
    size = max(backbone.min_input_size, 32)
    base = build_base(backbone.name, (size, size, 3), weights=None)
    blocks = backbone.assign_blocks(base.layers)
    trainable = {k: _trainable_parameters(base, v) for k, v in blocks.items()}
    rows = {str(k): {"layers": v, "parameters": int(sum(base.get_layer(n).count_params()
                                                        for n in v)),
                     "trainable_parameters": sum(t for j, t in trainable.items() if j >= k)}
            for k, v in blocks.items()}
    if as_json:
        return json.dumps(rows, indent=2)
    lines = [f"{backbone.name}: {backbone.num_blocks} blocks (block 1 is nearest the input)"]
    lines += [f"  block {k} ({row['parameters']:,} parameters; from it "
              f"{row['trainable_parameters']:,} trainable): {', '.join(row['layers'])}"
              for k, row in rows.items()]
    lines.append(f"fine-tuning 'from block k' trains blocks k..{backbone.num_blocks} and the "
                 f"head; e.g. depth {depth_label(3, backbone.num_blocks)} trains blocks 3 to "
                 f"{backbone.num_blocks}")
    return "\n".join(lines)

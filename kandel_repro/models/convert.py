"""Converting ImageNet checkpoints of other frameworks into Keras weights files.

InceptionV4 is in neither ``keras.applications`` nor keras-hub; its ImageNet weights
are timm's ``inception_v4.tf_in1k`` (Google's TF-slim checkpoint, ported), published as
a ``model.safetensors`` (https://huggingface.co/timm/inception_v4.tf_in1k).
:func:`convert_weights` reads that file with the ``safetensors`` package's numpy API
(no PyTorch), gives every tensor to the Keras weight it belongs to and writes a Keras
weights file where ``--weights imagenet`` looks for it (:meth:`~kandel_repro.models.backbones.Backbone.converted_weights_file`).

A file that is not that checkpoint is refused before anything is written, naming the
first tensor that does not fit: one the model needs and the file lacks, one of the
wrong shape, one the model has no place for, one of integers (quantised weights, which
a float model cannot take without their scales), one holding NaN or infinity. timm's
classifier (``last_linear``) and BatchNorm's ``num_batches_tracked`` counters have no
Keras weight and are dropped: the file written is headless ("notop"), as the package's
other backbones' ImageNet files. A PyTorch checkpoint (``torch.save``'s zip or pickle,
told by its first bytes, whatever its name) is refused with the two lines of PyTorch
that turn it into a safetensors file: reading a pickle would run its code.

``--out`` names the file to write (``*.weights.h5``), or a folder to hold the backbone's
notop file under the name ``--weights imagenet`` reads: an existing folder, or a new one
given with a trailing ``/``, created when the file is written.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..core.errors import ConfigError, WeightsUnavailable
from ..core.files import atomic_path, check_writable
from .backbones import get_backbone

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a model is built
    import keras

WEIGHTS_SUFFIX = ".weights.h5"  # Keras 3 writes weights files only under this suffix

# PyTorch's convolution kernels are (out, in, height, width); Keras' (height, width, in, out).
OIHW_TO_HWIO = (2, 3, 1, 0)
HWIO_TO_OIHW = (3, 2, 0, 1)

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


# backbone name -> (its plan, the test of the checkpoint's tensors it drops)
CONVERTERS = {"inception_v4": (_inception_v4_plan, _inception_v4_dropped)}


@lru_cache(maxsize=None)
def expected_tensors(backbone_name: str) -> Mapping[str, tuple[int, ...]]:
    """``{tensor name: shape}`` that :func:`convert_weights` needs in the checkpoint (the
    tensors it drops not included), in the checkpoint's order."""
    _, plan = _converter(backbone_name)[0]()
    return MappingProxyType({name: _source_shape(variable, axes)
                             for name, (variable, axes) in plan.items()})


def convert_weights(backbone_name: str, safetensors_file: str | Path,
                    out: str | Path | None = None) -> Path:
    """Convert ``safetensors_file`` (timm's checkpoint of the backbone) into the Keras
    weights file ``out`` (a ``*.weights.h5`` file, or a folder to hold the backbone's
    notop file; default ``Backbone.converted_weights_file()``), written atomically; its path."""
    backbone = get_backbone(backbone_name)
    _converter(backbone.name)
    target = _target(backbone, out)
    path = Path(safetensors_file)
    tensors = _read(path, backbone)
    # NOTE: checked against the cached names and shapes, before a model is built for it
    _check(path, backbone.name, tensors, expected_tensors(backbone.name),
           _converter(backbone.name)[1])
    _check_values(path, tensors, expected_tensors(backbone.name), backbone.converted_from)
    model, plan = _converter(backbone.name)[0]()
    for name, (variable, axes) in plan.items():
        values = tensors[name].astype(np.float32)
        variable.assign(values if axes is None else np.transpose(values, axes))
    check_writable(target.parent, "--out")  # a new folder is made now, once all is checked
    with atomic_path(target, suffix=WEIGHTS_SUFFIX) as tmp:
        model.save_weights(tmp)
    return target


def _converter(backbone_name):
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
        pytorch = _pytorch_format(path)
        if pytorch:
            raise WeightsUnavailable(
                f"{path} is a PyTorch checkpoint ({pytorch}), which this "
                "package reads only as safetensors (loading a pickle runs its code): on a "
                f"machine with PyTorch, `state_dict = torch.load(\"{path.name}\", "
                "map_location=\"cpu\")` (its [\"state_dict\"] if it holds one), then "
                "`safetensors.torch.save_file(state_dict, \"model.safetensors\")`, and "
                "convert that file") from None
        raise WeightsUnavailable(f"{path} cannot be read as a safetensors file ({first}): "
                                 "truncated, or not a checkpoint") from None


# torch.save writes a zip archive (PyTorch ≥ 1.6) or, before, pickles (protocol 2 on)
PYTORCH_MAGIC = {b"PK\x03\x04": "torch.save's zip format", b"\x80": "torch.save's pickle format"}
PYTORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def _pytorch_format(path):
    """How the file shows itself a PyTorch checkpoint: by its first bytes (``torch.save``'s
    zip or pickle, whatever its name), else by its name (``.pth``…); None if it does not."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    kind = next((kind for magic, kind in PYTORCH_MAGIC.items() if head.startswith(magic)), None)
    if kind is None and path.suffix.lower() in PYTORCH_SUFFIXES:
        kind = f"by its name, {path.suffix}"
    return kind


def _source_shape(variable, axes):
    shape = tuple(int(n) for n in variable.shape)
    return shape if axes is None else tuple(shape[a] for a in HWIO_TO_OIHW)


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
                    f"{name} needs {list(needed)}: not the checkpoint of timm's {name}")
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

"""The checkpoint layouts the vision transformers' weights convert from, tensor by tensor.

Two layouts, each a state dict of PyTorch's names (read without PyTorch by
:func:`kandel_repro.models.convert.convert_weights`, which checks the file against the
layout's committed manifest first):

- **timm** (``VisionTransformer``: DeiT's, UNI's): ``cls_token`` (1, 1, D), ``pos_embed``
  (1, 1 + n², D), ``patch_embed.proj.weight``/``.bias``, per block ``blocks.N.norm1``,
  ``blocks.N.attn.qkv`` (query, key and value fused: 3D rows, split here into the three
  Dense layers), ``blocks.N.attn.proj``, ``blocks.N.ls1.gamma`` (LayerScale, where the
  network has it), ``blocks.N.norm2``, ``blocks.N.mlp.fc1``, ``blocks.N.mlp.fc2``,
  ``blocks.N.ls2.gamma``, then ``norm``; the classifier ``head.*`` is dropped.
- **dinov2** (transformers' ``Dinov2Model``, ``Dinov2WithRegistersModel``: Phikon-v2's):
  ``embeddings.cls_token``, ``embeddings.position_embeddings``,
  ``embeddings.patch_embeddings.projection``, ``embeddings.register_tokens`` (registers
  only), per layer ``encoder.layer.N.norm1``, ``….attention.attention.query``/``key``/
  ``value``, ``….attention.output.dense``, ``….layer_scale1.lambda1``, ``….norm2``,
  ``….mlp.fc1``, ``….mlp.fc2``, ``….layer_scale2.lambda1``, then ``layernorm``; the
  masked-modelling token ``embeddings.mask_token`` is dropped.

A linear layer's weight is PyTorch's (out, in), a Dense kernel Keras' (in, out); the patch
embedding's (out, in, height, width) becomes (height, width, in, out); the tokens' and
LayerScale's tensors are reshaped to the Embedding tables that hold them. The position
embeddings may be of any square grid (a checkpoint trained at 224 or at 518 pixels): the
network is built for that grid (:func:`plan`), and loading the weights into a model of
another input size resamples them (:func:`kandel_repro.vit.architecture.load_weights`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from .architecture import VARIANTS, build

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a model is built
    import keras

# {tensor name: (the Keras variables it fills, its shape in the checkpoint, values → the
# variables' values)}
Plan = dict[str, tuple[tuple, tuple[int, ...], Callable[[np.ndarray], tuple]]]
OIHW_TO_HWIO = (2, 3, 1, 0)
POSITIONS = {"timm": "pos_embed", "dinov2": "embeddings.position_embeddings"}
LAYOUTS = {"timm": "timm's layout", "dinov2": "transformers' Dinov2Model layout"}


def positions_tensor(name: str) -> str:
    """The name of the position embeddings in ``name``'s checkpoint layout."""
    return POSITIONS[VARIANTS[name].layout]


def grid_of_positions(shape: tuple[int, ...]) -> int | None:
    """The side of the square grid a position tensor (1, 1 + n², D) holds; None when it
    holds none."""
    if len(shape) != 3 or shape[0] != 1 or shape[1] < 2:
        return None
    side = math.isqrt(shape[1] - 1)
    return side if side * side == shape[1] - 1 else None


def dropped(name: str) -> Callable[[str], bool]:
    """The tensors of ``name``'s layout with no Keras weight (a classifier, DINOv2's mask
    token)."""
    if VARIANTS[name].layout == "timm":
        return lambda tensor: tensor.startswith("head.")
    return lambda tensor: tensor == "embeddings.mask_token"


def _as_is(variable):
    return (variable,), tuple(int(n) for n in variable.shape), lambda values: (values,)


def _linear(layer):
    """A Dense layer's kernel and bias from PyTorch's weight (out, in) and bias."""
    out, inputs = (int(n) for n in reversed(layer.kernel.shape))
    return {"weight": ((layer.kernel,), (out, inputs), lambda values: (values.T,)),
            "bias": _as_is(layer.bias)}


def _norm(layer):
    return {"weight": _as_is(layer.gamma), "bias": _as_is(layer.beta)}


def _reshaped(variable, shape):
    """A table (an Embedding's) filled from a tensor of ``shape`` with its values."""
    target = tuple(int(n) for n in variable.shape)
    return (variable,), tuple(shape), lambda values: (values.reshape(target),)


def _fused(layers, width):
    """timm's fused query-key-value projection (3·width rows: query, key, value) into
    the three Dense layers."""
    kernels = tuple(layer.kernel for layer in layers)
    biases = tuple(layer.bias for layer in layers)
    return {"weight": (kernels, (3 * width, width),
                       lambda values: tuple(part.T for part in np.split(values, 3))),
            "bias": (biases, (3 * width,), lambda values: tuple(np.split(values, 3)))}


def _prefixed(prefix, entries):
    return {f"{prefix}.{key}": value for key, value in entries.items()}


def plan(name: str, grid: int | None = None) -> tuple[keras.Model, Plan]:
    """``name``'s network, built for a ``grid`` × ``grid`` of patches (default: its
    checkpoint's), and the plan of its checkpoint layout (module docstring)."""
    v = VARIANTS[name]
    grid = grid or v.grid
    model = build((grid * v.patch, grid * v.patch, 3), name)
    layer = model.get_layer
    width = v.width
    timm = v.layout == "timm"
    if v.layout not in ("timm", "dinov2"):
        raise ValueError(f"{name} has no checkpoint layout")
    plan = {}
    embed = "" if timm else "embeddings."
    tokens = {"cls_token": ("class_token", (1, 1, width)),
              ("pos_embed" if timm else "position_embeddings"):
                  ("position_embedding", (1, 1 + grid * grid, width))}
    if v.registers:
        tokens["register_tokens"] = ("register_tokens", (1, v.registers, width))
    for tensor, (keras_name, shape) in tokens.items():
        plan[f"{embed}{tensor}"] = _reshaped(layer(keras_name).embeddings, shape)
    conv = layer("patch_embed")
    projection = "patch_embed.proj" if timm else "embeddings.patch_embeddings.projection"
    plan.update(_prefixed(projection, {
        "weight": ((conv.kernel,), (width, 3, v.patch, v.patch),
                   lambda values: (np.transpose(values, OIHW_TO_HWIO),)),
        "bias": _as_is(conv.bias)}))
    for index in range(v.depth):
        keras_prefix = f"transformer{index + 1}"
        prefix = f"blocks.{index}" if timm else f"encoder.layer.{index}"

        def part(suffix):
            return layer(f"{keras_prefix}_{suffix}")

        block = {"norm1": _norm(part("norm1")), "norm2": _norm(part("norm2")),
                 "mlp.fc1": _linear(part("fc1")), "mlp.fc2": _linear(part("fc2"))}
        if timm:
            block["attn.qkv"] = _fused([part(p) for p in ("query", "key", "value")], width)
            block["attn.proj"] = _linear(part("proj"))
        else:
            for p in ("query", "key", "value"):
                block[f"attention.attention.{p}"] = _linear(part(p))
            block["attention.output.dense"] = _linear(part("proj"))
        if v.layer_scale:
            for number in (1, 2):
                table = part(f"scale{number}").embeddings
                key, tensor = (f"ls{number}", "gamma") if timm else (f"layer_scale{number}",
                                                                      "lambda1")
                block[key] = {tensor: _reshaped(table, (width,))}
        for module, entries in block.items():
            plan.update(_prefixed(f"{prefix}.{module}", entries))
    plan.update(_prefixed("norm" if timm else "layernorm", _norm(layer("final_norm"))))
    return model, plan

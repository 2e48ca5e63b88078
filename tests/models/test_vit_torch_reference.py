"""The vision transformers against PyTorch's references (``make test-torch``: needs PyTorch,
timm and transformers; skipped without them, as in ``make test``).

- timm's ``vit_small_patch16_224`` and ``vit_large_patch16_224`` with LayerScale (UNI's
  construction), random weights saved as safetensors and converted: the pooled features
  (the class token after the final norm: timm's ``forward_head(pre_logits=True)``) equal to
  1e-4 at 224 × 224, and at 160 × 160 against timm's own resampling of the position
  embeddings (its checkpoint filter: bicubic, antialiased).
- transformers' ``Dinov2Model`` (and ``Dinov2WithRegistersModel``), random weights written
  by ``save_pretrained`` (the published files' layout): the class token concatenated with
  the mean patch token equal to 1e-4 at the checkpoint's 518 × 518 (37 × 37 patches) and
  at 224 × 224, where transformers resamples the positions itself.
- The resampling of :mod:`kandel_repro.vit.resample` against ``F.interpolate``, and the
  committed manifests against the references' own state dicts and files.
"""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

pytestmark = pytest.mark.torch

# NOTE: PyTorch loaded after TensorFlow crashes the process (their native libraries
# clash), so these run alone, torch first: `make test-torch` sets the variable
if os.environ.get("KANDEL_TORCH_TESTS") != "1":
    pytest.skip("PyTorch's references run alone: make test-torch", allow_module_level=True)

torch = pytest.importorskip("torch")


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


timm = _optional("timm")  # NOTE: imported here, before anything loads TensorFlow
transformers = _optional("transformers")

from kandel_repro.models.build import build_base  # noqa: E402
from kandel_repro.models.convert import convert_weights, manifest  # noqa: E402
from kandel_repro.vit.architecture import preprocess_input  # noqa: E402
from kandel_repro.vit.resample import resize_grid  # noqa: E402

TOLERANCE = 1e-4
needs_timm = pytest.mark.skipif(timm is None, reason="needs timm (pip install timm)")
needs_transformers = pytest.mark.skipif(transformers is None,
                                        reason="needs transformers (pip install transformers)")


def _randomise(model, seed=0):
    """Every parameter drawn away from its initialisation (LayerScale's 1e-5 and the
    tokens' 1e-6 would hide a misplaced tensor): N(0, 0.05²), norms' scales around 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            values = torch.randn(parameter.shape, generator=generator) * 0.05
            if "norm" in name and name.endswith("weight"):
                values += 1.0
            parameter.copy_(values)
    return model.eval()


def _images(size, count=2, seed=0):
    rng = np.random.default_rng(seed)
    return preprocess_input(rng.uniform(0, 255, (count, size, size, 3))).astype(np.float32)


def _nchw(images):
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _ours(name, path, size, images):
    base = build_base(name, (size, size, 3), weights=str(path))
    return base.predict(images, verbose=0)


def _report(what, ours, theirs):
    difference = float(np.abs(ours - theirs).max())
    print(f"{what}: max |pooled feature difference| {difference:.2e} "
          f"(features' scale {np.abs(theirs).max():.2f})")
    assert ours.shape == theirs.shape
    assert difference <= TOLERANCE


@needs_timm
@pytest.mark.parametrize("name,timm_name,kwargs", [
    ("vit_small_patch16", "vit_small_patch16_224", {}),
    ("vit_large_patch16_ls", "vit_large_patch16_224", {"init_values": 1e-5})])
def test_a_timm_vit_equals_timms(tmp_path, name, timm_name, kwargs):
    from safetensors.torch import save_file
    from timm.models.vision_transformer import checkpoint_filter_fn

    reference = _randomise(timm.create_model(timm_name, pretrained=False, **kwargs))
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    assert manifest(name) == {k: tuple(v.shape) for k, v in state.items()}
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    written = convert_weights(name, path, out=tmp_path / "w.weights.h5")
    for size in (224, 160):
        if size == 224:
            model = reference
        else:  # timm's own resampling of the positions (bicubic, antialiased)
            model = timm.create_model(timm_name, pretrained=False, img_size=size, **kwargs)
            model.load_state_dict(checkpoint_filter_fn(state, model))
            model.eval()
        images = _images(size)
        with torch.no_grad():
            theirs = model.forward_head(model.forward_features(_nchw(images)),
                                        pre_logits=True).numpy()
        _report(f"{name} at {size}×{size}", _ours(name, written, size, images), theirs)


@needs_transformers
@pytest.mark.parametrize("name", ["dinov2_small", "dinov2_small_reg"])
def test_dinov2_equals_transformers(tmp_path, name):
    from transformers import (Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig,
                              Dinov2WithRegistersModel)

    registers = name.endswith("_reg")
    config = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                  image_size=518, patch_size=14)
    reference = (Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4,
                                                                    **config))
                 if registers else Dinov2Model(Dinov2Config(**config)))
    _randomise(reference)
    reference.save_pretrained(tmp_path / "hf")  # model.safetensors, the published layout
    path = tmp_path / "hf" / "model.safetensors"
    from safetensors.numpy import load_file

    saved = load_file(str(path))
    assert manifest(name) == {k: tuple(v.shape) for k, v in saved.items()}
    written = convert_weights(name, path, out=tmp_path / "w.weights.h5")
    skip = 1 + (4 if registers else 0)
    for size in (518, 224):  # 224: transformers resamples the positions itself
        images = _images(size)
        with torch.no_grad():
            hidden = reference(pixel_values=_nchw(images)).last_hidden_state
        theirs = torch.cat([hidden[:, 0], hidden[:, skip:].mean(dim=1)], dim=-1).numpy()
        _report(f"{name} at {size}×{size}", _ours(name, written, size, images), theirs)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("source,target", [(7, 5), (7, 11), (37, 16), (14, 2)])
def test_the_resampling_equals_torch_interpolate(source, target, antialias):
    grid = np.random.default_rng(source).standard_normal((source, source, 8)).astype(np.float32)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(grid.transpose(2, 0, 1))[None], size=(target, target), mode="bicubic",
        align_corners=False, antialias=antialias)[0].numpy().transpose(1, 2, 0)
    ours = resize_grid(grid, target, target, antialias=antialias)
    difference = float(np.abs(ours - theirs).max())
    print(f"resampling {source}→{target} (antialias {antialias}): max |difference| "
          f"{difference:.2e}")
    assert difference <= 1e-5


@needs_timm
@needs_transformers
def test_the_full_size_manifests_are_the_references_state_dicts():
    from transformers import Dinov2Config, Dinov2Model

    with torch.device("meta"):
        for name, timm_name in (("vit_base_patch16", "vit_base_patch16_224"),):
            state = timm.create_model(timm_name, pretrained=False).state_dict()
            assert manifest(name) == {k: tuple(v.shape) for k, v in state.items()}
        state = Dinov2Model(Dinov2Config(hidden_size=768, num_hidden_layers=12,
                                         num_attention_heads=12, image_size=518,
                                         patch_size=14)).state_dict()
    renamed = {k.replace("attention.q_proj", "attention.attention.query")
               .replace("attention.k_proj", "attention.attention.key")
               .replace("attention.v_proj", "attention.attention.value")
               .replace("attention.o_proj", "attention.output.dense"): tuple(v.shape)
               for k, v in state.items()}
    assert manifest("dinov2_base") == renamed

"""The Keras networks against PyTorch's, and the checkpoint reader against ``torch.load``
(``make test-torch``: needs PyTorch, torchvision and efficientnet-lite-pytorch; skipped
without them, as in ``make test``).

- EfficientNet-Lite0 with the real ImageNet checkpoint: the Keras network's logits on the
  same inputs as the PyTorch reference's (``efficientnet_lite_pytorch``), max |difference|
  ≤ 1e-4, on the sample photos and on random images.
- torchvision's ResNet-50 with random weights (and BatchNorm statistics drawn away from
  0 and 1, so that a swapped statistic shows), saved by ``torch.save`` (zip format) and
  converted: the same logits to 1e-4.
- The reader (no PyTorch) against ``torch.load`` on files ``torch.save`` writes, zip and
  legacy: every tensor equal, bit for bit.
- The committed ResNet-50 manifest against torchvision's own state dict.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.torch

# NOTE: PyTorch loaded after TensorFlow crashes the process (their native libraries
# clash), so these run alone, torch first: `make test-torch` sets the variable
if os.environ.get("KANDEL_TORCH_TESTS") != "1":
    pytest.skip("PyTorch's references run alone: make test-torch", allow_module_level=True)

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from kandel_repro.models import efficientnet_lite as lite  # noqa: E402
from kandel_repro.models import resnet_torchvision  # noqa: E402
from kandel_repro.models.build import build_base  # noqa: E402
from kandel_repro.models.convert import (convert_weights, installed_checkpoint,  # noqa: E402
                                         manifest)
from kandel_repro.models.torch_checkpoint import read_checkpoint  # noqa: E402

TOLERANCE = 1e-4


def _head(base, images, fc_weight, fc_bias):
    features = base.predict(images, verbose=0).mean(axis=(1, 2))
    return features @ fc_weight.T + fc_bias


def _torch_logits(model, images_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(
            images_nhwc.transpose(0, 3, 1, 2)))).numpy()


def _inputs(size, count=4, seed=0):
    from tests.models.test_efficientnet_lite import _photos

    photos = np.stack(list(_photos().values())) if size == 224 else None
    noise = np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype(np.float32)
    return noise if photos is None else np.concatenate([photos, noise])


def test_lite0_equals_the_pytorch_reference(tmp_path):
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    checkpoint = installed_checkpoint("efficientnet_lite0")
    reference = reference_module.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(checkpoint)).eval()
    written = convert_weights("efficientnet_lite0", out=tmp_path / "lite0.weights.h5")
    base = build_base("efficientnet_lite0", (224, 224, 3), weights=str(written))
    images = _inputs(224)
    tensors = read_checkpoint(checkpoint)
    ours = _head(base, lite.preprocess_input(images), tensors["_fc.weight"], tensors["_fc.bias"])
    theirs = _torch_logits(reference, lite.preprocess_input(images).astype(np.float32))
    difference = float(np.abs(ours - theirs).max())
    print(f"EfficientNet-Lite0 max |logit difference| {difference:.2e}")
    assert difference <= TOLERANCE
    assert (ours.argmax(1) == theirs.argmax(1)).all()


@pytest.mark.parametrize("legacy", [False, True])
def test_resnet50_equals_torchvisions(tmp_path, legacy):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None)
    with torch.no_grad():  # statistics and affine parameters away from their initial values
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.3, 0.9)
                module.bias.uniform_(-0.2, 0.2)
    reference.eval()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    written = convert_weights("resnet50_torchvision", path, out=tmp_path / "r.weights.h5")
    base = build_base("resnet50_torchvision", (96, 96, 3), weights=str(written))
    images = _inputs(96)
    preprocessed = resnet_torchvision.preprocess_input(images).astype(np.float32)
    state = reference.state_dict()
    ours = _head(base, preprocessed, state["fc.weight"].numpy(), state["fc.bias"].numpy())
    theirs = _torch_logits(reference, preprocessed)
    difference = float(np.abs(ours - theirs).max())
    print(f"ResNet-50 ({'legacy' if legacy else 'zip'} file) max |logit difference| "
          f"{difference:.2e} (logits' scale {np.abs(theirs).max():.2f})")
    assert difference <= TOLERANCE


@pytest.mark.parametrize("legacy", [False, True])
def test_the_reader_equals_torch_load(tmp_path, legacy):
    state = {"a": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),  # not contiguous
             "b": torch.randn(2, 3, dtype=torch.float64),
             "c": torch.tensor([1, 2, 3], dtype=torch.int64),
             "d": torch.randn(5).half(),
             "e": torch.randn(4, 4).bfloat16()}
    shared = torch.randn(10)
    state["f"], state["g"] = shared[2:6], shared[5:]  # one storage, two views
    path = tmp_path / "state.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    ours = read_checkpoint(path)
    loaded = torch.load(path, weights_only=True)
    assert list(ours) == list(loaded)
    for name, tensor in loaded.items():
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert ours[name].shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(ours[name], expected, err_msg=name)


def test_the_resnet50_manifest_is_torchvisions_state_dict():
    state = torchvision.models.resnet50(weights=None).state_dict()
    assert manifest("resnet50_torchvision") == {k: tuple(v.shape) for k, v in state.items()}
    assert list(manifest("resnet50_torchvision")) == list(state)

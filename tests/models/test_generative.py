"""The VAE and DCGAN (kandel_repro.models.generative_nets) and their parts
(kandel_repro.models.generative): their losses on known values, a training step, the
shared trunk as the backbone ``dcgan_small`` (block map, freezing, weights), output shapes,
determinism, exact resume from a checkpoint, the names a saved model is found by, and a
parts module that loads without Keras."""
import json
import math

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.models.backbones import get_backbone, scale_to_symmetric
from kandel_repro.models.build import build_model
from kandel_repro.models.freeze import set_trainable_blocks
from kandel_repro.models.generative import (TRUNK_WIDTHS, build_trunk, discriminator_loss,
                                            elbo_terms, generator_loss, to_uint8)
from kandel_repro.models.generative_nets import build_dcgan, build_vae

SMALL = (8, 16)  # two blocks: quick networks for the training tests
LATENT = 8


def _batch(n=8, size=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def _model(kind, seed=3, size=16, eager=True):
    """A small compiled VAE or DCGAN; eager: no tf.function tracing (seconds per model),
    which one test checks to give the same step."""
    if kind == "vae":
        model = build_vae(size, latent=LATENT, widths=SMALL, seed=seed)
    else:
        model = build_dcgan(size, latent=LATENT, widths=SMALL, seed=seed)
    model.compile(run_eagerly=eager)
    return model


def _arrays(variables):
    return [v.numpy() for v in variables]


def _equal(model, other):
    assert len(model.weights) == len(other.weights)
    for mine, theirs in zip(model.weights, other.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


# --- the losses on known values ------------------------------------------------------------

def test_elbo_terms_on_known_values():
    from keras import ops

    x = _batch(4, 8)
    latent = 5
    zeros = np.zeros((4, latent), "float32")
    reconstruction, kl = (ops.convert_to_numpy(t) for t in elbo_terms(x, x, zeros, zeros))
    assert reconstruction.shape == kl.shape == (4,)
    np.testing.assert_allclose(reconstruction, 0.0, atol=1e-6)
    np.testing.assert_allclose(kl, 0.0, atol=1e-6)
    _, kl = elbo_terms(x, x, zeros + 1.0, zeros)  # μ = 1, σ = 1: KL = latent / 2
    np.testing.assert_allclose(ops.convert_to_numpy(kl), latent / 2, rtol=1e-6)
    # σ² = 4, μ = 0: −½ Σ (1 + log 4 − 4) per dimension; x̂ = x + 1: ½ per pixel value
    reconstruction, kl = elbo_terms(x, x + 1.0, zeros, zeros + math.log(4.0))
    np.testing.assert_allclose(ops.convert_to_numpy(kl), latent * 0.5 * (3 - math.log(4)),
                               rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(reconstruction), 0.5 * 8 * 8 * 3, rtol=1e-6)


def test_the_vae_loss_is_reconstruction_plus_beta_kl():
    vae = build_vae(16, latent=LATENT, beta=4.0, widths=SMALL, seed=1)
    vae.compile()
    metrics = vae.evaluate(_batch(), batch_size=8, verbose=0, return_dict=True)
    assert metrics["kl"] > 0 and metrics["reconstruction"] > 0
    assert metrics["loss"] == pytest.approx(metrics["reconstruction"] + 4.0 * metrics["kl"],
                                            rel=1e-5)


def test_gan_losses_fall_the_right_way_and_equal_log_2_at_zero():
    from keras import ops

    def d(real, fake):
        return float(ops.convert_to_numpy(discriminator_loss(np.full(4, real, "float32"),
                                                             np.full(4, fake, "float32"))))

    def g(fake):
        return float(ops.convert_to_numpy(generator_loss(np.full(4, fake, "float32"))))

    assert d(0.0, 0.0) == pytest.approx(math.log(2)) and g(0.0) == pytest.approx(math.log(2))
    assert d(2.0, 0.0) < d(0.0, 0.0) < d(-2.0, 0.0)  # real logits up: D's loss down
    assert d(0.0, -2.0) < d(0.0, 0.0) < d(0.0, 2.0)  # fake logits down: D's loss down
    assert g(2.0) < g(0.0) < g(-2.0)  # fake logits up: G's loss down
    assert g(-20.0) == pytest.approx(20.0, rel=1e-3)  # non-saturating: −log σ(−20) ≈ 20


# --- one training step -------------------------------------------------------------------

@pytest.mark.parametrize("kind, networks", [("vae", ("encoder", "decoder")),
                                            ("dcgan", ("discriminator", "generator"))])
def test_one_training_step_changes_both_networks(kind, networks):
    model = _model(kind)
    before = {name: _arrays(getattr(model, name).trainable_variables) for name in networks}
    history = model.fit(_batch(), batch_size=8, epochs=1, verbose=0, shuffle=False).history
    expected = ({"loss", "reconstruction", "kl"} if kind == "vae"
                else {"d_loss", "g_loss", "d_real", "d_fake"})
    assert set(history) == expected and all(np.isfinite(v[0]) for v in history.values())
    for name in networks:
        variables = getattr(model, name).trainable_variables
        assert variables
        for old, new in zip(before[name], variables):
            assert not np.array_equal(old, new.numpy()), f"{name}: {new.path} did not train"


# --- the trunk as the backbone dcgan_small -------------------------------------------------

@pytest.fixture(scope="module")
def finetune():
    return build_model("dcgan_small", (32, 32, 3), "none")


def test_the_trunk_is_strided_conv_batchnorm_leaky_relu_blocks(finetune):
    import keras

    model, block_map = finetune
    assert list(block_map) == [1, 2, 3, 4]
    assert block_map[1] == ["block1_conv", "block1_lrelu"]
    for k in (2, 3):
        assert block_map[k] == [f"block{k}_conv", f"block{k}_bn", f"block{k}_lrelu"]
    assert block_map[4] == ["block4_conv", "block4_bn", "block4_lrelu", "block4_gap"]
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == list(TRUNK_WIDTHS)
    assert {(c.kernel_size, c.strides) for c in convs} == {((4, 4), (2, 2))}
    assert [c.use_bias for c in convs] == [True, False, False, False]
    assert model.get_layer("block2_lrelu").negative_slope == pytest.approx(0.2)
    assert model.get_layer("head_dropout").rate == 0.5 and model.output_shape == (None, 1)
    assert get_backbone("dcgan-small").name == "dcgan_small"
    trunk = build_trunk((32, 32, 3))
    assert get_backbone("dcgan_small").assign_blocks(trunk.layers) == block_map


def test_freezing_from_block_3_leaves_blocks_1_and_2_frozen(finetune):
    model, block_map = finetune
    names = set_trainable_blocks(model, block_map, 3)
    assert names == sorted(["block3_conv", "block3_bn", "block4_conv", "block4_bn", "head_dense"])
    frozen = {l.name for l in model.layers if not l.trainable}
    assert frozen == set(block_map[1] + block_map[2])


def test_cli_blocks_prints_the_block_map(capsys):
    from kandel_repro.cli.main import main

    assert main(["blocks", "dcgan_small", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert list(described) == ["1", "2", "3", "4"]
    assert described["1"]["parameters"] == 4 * 4 * 3 * 64 + 64  # conv with bias, no BN
    assert described["2"]["parameters"] == 4 * 4 * 64 * 128 + 4 * 128  # conv, BN
    assert main(["blocks", "dcgan_small"]) == 0
    assert "dcgan_small: 4 blocks" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["vae", "dcgan"])
def test_a_saved_trunk_initialises_the_backbone(kind, tmp_path):
    model = build_vae(32, seed=5) if kind == "vae" else build_dcgan(32, seed=5)
    model.trunk.save_weights(tmp_path / "dcgan_small.weights.h5")
    finetune, _ = build_model("dcgan_small", (48, 48, 3), str(tmp_path))  # any size ≥ 16
    for layer in model.trunk.layers:
        for mine, loaded in zip(layer.weights, finetune.get_layer(layer.name).weights):
            np.testing.assert_array_equal(mine.numpy(), loaded.numpy())
    fresh, _ = build_model("dcgan_small", (48, 48, 3), "none")
    kernel = model.trunk.get_layer("block2_conv").kernel.numpy()
    assert not np.array_equal(kernel, fresh.get_layer("block2_conv").kernel.numpy())


def test_symmetric_scaling_and_back_to_pixels():
    pixels = np.arange(256, dtype="float32")
    scaled = scale_to_symmetric(pixels)
    assert scaled[0] == -1.0 and scaled[-1] == 1.0
    np.testing.assert_array_equal(to_uint8(scaled), pixels.astype("uint8"))
    assert to_uint8(np.array([-3.0, -1.0, 0.0, 1.0, 2.5])).tolist() == [0, 0, 128, 255, 255]
    assert get_backbone("dcgan_small").preprocess_input() is scale_to_symmetric


# --- shapes and sizes ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["vae", "dcgan"])
def test_generated_images_have_the_image_size_and_lie_in_minus_one_one(kind):
    model = _model(kind, size=32)
    images = model.sample(5, seed=7)
    assert images.shape == (5, 32, 32, 3) and images.min() >= -1 and images.max() <= 1
    np.testing.assert_array_equal(images, model.sample(5, seed=7))
    assert not np.array_equal(images, model.sample(5, seed=8))
    if kind == "vae":
        x = _batch(3, 32)
        assert model.reconstruct(x).shape == (3, 32, 32, 3)
        mu, logvar = model.encoder(x)
        assert tuple(mu.shape) == tuple(logvar.shape) == (3, LATENT)
    else:
        assert tuple(model.discriminator(_batch(3, 32)).shape) == (3, 1)
    assert model.sample(0).shape == (0, 32, 32, 3)


@pytest.mark.parametrize("build", [build_vae, build_dcgan])
def test_an_image_size_the_blocks_do_not_divide_is_refused(build):
    with pytest.raises(ConfigError, match="image size 30 must be a multiple of 4"):
        build(30, widths=SMALL)
    with pytest.raises(ConfigError, match="image size 24 must be a multiple of 16"):
        build(24)


@pytest.mark.parametrize("kind", ["vae", "dcgan"])
def test_the_compiled_step_equals_the_eager_one(kind):
    """fit's tf.function (what a pretraining run uses) draws the same noise and takes the
    same step as the eager one the other tests use."""
    models = [_model(kind, eager=eager) for eager in (True, False)]
    for model in models:
        model.fit(_batch(), batch_size=8, epochs=1, verbose=0, shuffle=False)
    for mine, theirs in zip(*(model.weights for model in models)):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-6)


# --- determinism and exact resume ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["vae", "dcgan"])
def test_the_same_seed_trains_the_same_weights(kind):
    models = [_model(kind) for _ in range(2)]
    for model in models:
        model.fit(_batch(), batch_size=8, epochs=1, verbose=0, shuffle=False)
    _equal(*models)
    assert not np.array_equal(models[0].trunk.get_layer("block1_conv").kernel.numpy(),
                              _model(kind, seed=4).trunk.get_layer("block1_conv").kernel.numpy())


@pytest.mark.parametrize("kind", ["vae", "dcgan"])
def test_resuming_from_a_checkpoint_equals_training_straight(kind, tmp_path):
    x = _batch()
    straight = _model(kind)
    straight.fit(x, batch_size=8, epochs=2, verbose=0, shuffle=False)
    first = _model(kind)
    first.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
    first.save_weights(tmp_path / "checkpoint.weights.h5")
    resumed = _model(kind)  # a fresh process would build it the same way
    resumed.load_weights(tmp_path / "checkpoint.weights.h5")
    assert [int(o.iterations) for o in resumed._optimizers()] == [1] * len(resumed._optimizers())
    resumed.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
    _equal(straight, resumed)
    for optimizer, twin in zip(straight._optimizers(), resumed._optimizers()):
        for mine, theirs in zip(optimizer.variables, twin.variables):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


# --- saved models and imports --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["vae", "dcgan"])
def test_a_saved_network_loads_back_under_its_registered_name(kind, tmp_path):
    import keras

    from kandel_repro.models import generative_nets

    model = _model(kind)
    cls = type(model)
    # NOTE: the names a saved model finds its class by: runs saved before must still load
    assert keras.saving.get_registered_name(cls) == f"kandel_repro>{kind.upper()}"
    assert cls is getattr(generative_nets, kind.upper())
    model.save(tmp_path / "net.keras")
    loaded = keras.saving.load_model(tmp_path / "net.keras", compile=False)
    assert type(loaded) is cls and loaded.get_config() == model.get_config()
    _equal(model, loaded)


def test_importing_the_parts_does_not_import_keras():
    import subprocess
    import sys

    code = ("import sys, kandel_repro.models.generative, kandel_repro.models.backbones; "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

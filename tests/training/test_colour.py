"""The colour, crop and HED stain ops of the fused transform (kandel_repro.training.colour)
against scikit-image's stain separation and TF's tf.image.adjust_* for fixed factors."""
import json

import numpy as np
import pytest

from kandel_repro.training.augment import apply_parameters, make_input_stage
from kandel_repro.training.colour import (adjust_brightness, adjust_contrast,
                                          adjust_saturation_hue, apply_colour, channel_means,
                                          hed_to_rgb, random_colour_parameters,
                                          random_stain_jitter, rgb_to_hed, stain_jitter)

IDENTITY = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0,
                flip_horizontal=0, flip_vertical=0)
ALL_ON = dict(brightness=0.1, contrast=0.2, saturation=0.2, hue=0.05, crop=0.875,
              stain_jitter=0.2)
OFF = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, crop=1.0, stain_jitter=0.0)
# Our ops on the 0-255 scale in float32 against TF's: within this of each other.
TF_ATOL = 2e-3


def _images(n=4, side=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3)).astype(np.float32)


def _close(ours, reference, rel=1e-5):
    """Agreement within ``rel`` of the reference values' range (float32 against float64)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    worst = np.abs(ours - reference).max()
    scale = max(np.ptp(reference), 1e-12)
    assert worst <= rel * scale, f"max |difference| {worst:.3g} > {rel} × range {scale:.3g}"


def test_rgb_to_hed_and_back_match_scikit_image():
    from skimage.color import hed2rgb, rgb2hed

    rgb = np.random.default_rng(1).uniform(0, 1, (3, 20, 20, 3))
    rgb[0, 0, :4] = [[0, 0, 0], [1, 1, 1], [0, 0.5, 1], [1e-7, 1, 0.2]]  # edges, the floor
    hed = rgb2hed(rgb)
    assert (hed == 0).any() and (hed > 0).any()  # the clip at 0 is exercised
    _close(rgb_to_hed(rgb.astype(np.float32)).numpy(), hed)
    _close(hed_to_rgb(hed.astype(np.float32)).numpy(), hed2rgb(hed))
    # any stain amounts, negative ones and ones that saturate the RGB range included
    stains = np.random.default_rng(2).uniform(-0.2, 0.4, (2, 20, 20, 3))
    _close(hed_to_rgb(stains.astype(np.float32)).numpy(), hed2rgb(stains))


def test_stain_jitter_at_sigma_zero_is_the_identity():
    x = _images(6)
    x[0, 0, 0] = [0, 0, 0]
    x[0, 0, 1] = [255, 255, 255]
    ones, zeros = np.ones((6, 3), np.float32), np.zeros((6, 3), np.float32)
    out = stain_jitter(x, ones, zeros).numpy()
    worst = np.abs(out - x).max()
    assert worst < 0.5, f"max |Δ| {worst:.3g} on the 0-255 scale"
    # (rgb2hed's stains, clipped at 0, would not give the identity)
    from skimage.color import hed2rgb, rgb2hed

    assert np.abs(hed2rgb(rgb2hed(x / 255.0)) * 255 - x).max() > 0.5


def test_random_stain_jitter_changes_the_image_and_stays_in_range():
    import tensorflow as tf

    x = _images(8)
    params = random_colour_parameters(tf.random.Generator.from_seed(0), 8, {"stain_jitter": 0.2})
    assert set(params) == {"stain_alpha", "stain_beta"}
    alpha, beta = params["stain_alpha"].numpy(), params["stain_beta"].numpy()
    assert alpha.shape == beta.shape == (8, 3)
    assert (np.abs(alpha - 1) <= 0.2).all() and (np.abs(beta) <= 0.2).all()
    assert len(np.unique(alpha)) == 24  # per image and stain
    out = apply_colour(tf.constant(x), params).numpy()
    assert out.min() >= 0 and out.max() <= 255
    assert np.abs(out - x).mean(axis=(1, 2, 3)).min() > 1  # every image changed
    again = random_stain_jitter(tf.random.Generator.from_seed(0), tf.constant(x), 0.2).numpy()
    np.testing.assert_allclose(again, out, atol=1e-3)  # the same draws, the same images
    unchanged = random_stain_jitter(tf.random.Generator.from_seed(0), tf.constant(x), 0.0)
    np.testing.assert_array_equal(unchanged.numpy(), x)


def test_more_haematoxylin_is_darker_and_bluer_more_eosin_pinker():
    # a pale pink H&E-like colour, the same for every pixel
    x = np.broadcast_to(np.array([230.0, 170.0, 210.0], np.float32), (1, 8, 8, 3)).copy()
    ones = np.ones((1, 3), np.float32)
    more_h = stain_jitter(x, ones, np.array([[0.02, 0, 0]], np.float32)).numpy()[0, 0, 0]
    more_e = stain_jitter(x, ones, np.array([[0, 0.02, 0]], np.float32)).numpy()[0, 0, 0]
    base = x[0, 0, 0]
    assert more_h.sum() < base.sum()  # darker
    assert more_h[2] / more_h[0] > base[2] / base[0]  # bluer: red falls more than blue
    assert (base - more_e).argmax() == 1  # eosin takes the green most: pinker


def test_stain_jitter_is_tellez_et_als_rule_in_their_units():
    """Against the rule written out in NumPy: their colour deconvolution (−ln(x + 2) on
    the stain vectors), s·α + β, and back; one α, β per image and stain."""
    from kandel_repro.training.colour import HED_FROM_RGB, RGB_FROM_HED

    x = _images(4)
    rng = np.random.default_rng(5)
    alpha = rng.uniform(0.8, 1.2, (4, 3)).astype(np.float32)
    beta = rng.uniform(-0.2, 0.2, (4, 3)).astype(np.float32)
    stains = -np.log(x / 255.0 + 2) @ HED_FROM_RGB
    stains = stains * alpha[:, None, None] + beta[:, None, None]
    expected = np.clip(255 * (np.exp(-stains @ RGB_FROM_HED) - 2), 0, 255)
    np.testing.assert_allclose(stain_jitter(x, alpha, beta).numpy(), expected, atol=0.05)
    # light and strong, on an H&E-like pink: the mean change grows with σ
    import tensorflow as tf

    pink = np.broadcast_to(np.array([230.0, 150.0, 200.0], np.float32), (64, 4, 4, 3)).copy()
    change = {sigma: float(np.abs(random_stain_jitter(tf.random.Generator.from_seed(1),
                                                      tf.constant(pink), sigma).numpy()
                                  - pink).mean()) for sigma in (0.05, 0.2)}
    assert 1 < change[0.05] < change[0.2], change


@pytest.mark.parametrize("factor", [0.7, 1.25])
def test_contrast_and_brightness_match_tf_image(factor):
    import tensorflow as tf

    x = _images()
    n = len(x)
    ours = adjust_contrast(tf.constant(x), tf.fill([n], factor)).numpy()
    np.testing.assert_allclose(ours, tf.image.adjust_contrast(x, factor).numpy(), atol=TF_ATOL)
    delta = factor - 1  # a fraction of the 0-255 range
    ours = adjust_brightness(tf.constant(x), tf.fill([n], delta)).numpy()
    np.testing.assert_allclose(ours, tf.image.adjust_brightness(x, delta * 255).numpy(),
                               atol=TF_ATOL)


@pytest.mark.parametrize("shape", [(24, 24), (7, 5), (None, None)], ids=["24x24", "7x5", "unknown"])
def test_channel_means_at_any_size(shape):
    import tensorflow as tf

    x = np.random.default_rng(4).uniform(0, 255, (3, 7 if shape[0] is None else shape[0],
                                                  5 if shape[1] is None else shape[1], 3))
    expected = x.mean(axis=(1, 2), keepdims=True)
    means = tf.function(channel_means, input_signature=[
        tf.TensorSpec((None,) + shape + (3,), tf.float32)])
    _close(means(x.astype(np.float32)).numpy(), expected)


@pytest.mark.parametrize("saturation,hue", [(0.6, None), (1.4, None), (None, -0.3),
                                            (None, 0.05), (None, 0.45), (1.2, -0.04)])
def test_saturation_and_hue_match_tf_image(saturation, hue):
    import tensorflow as tf

    x = _images()
    x[0, 0, :3] = [[40, 40, 40], [200, 200, 10], [0, 0, 0]]  # grey, a tie, black
    n = len(x)
    expected = x
    if saturation is not None:
        expected = tf.image.adjust_saturation(expected, saturation)
    if hue is not None:
        expected = tf.image.adjust_hue(expected, hue)
    ours = adjust_saturation_hue(tf.constant(x),
                                 None if saturation is None else tf.fill([n], saturation),
                                 None if hue is None else tf.fill([n], hue)).numpy()
    assert np.abs(ours - x).max() > 1  # the case changes the image
    np.testing.assert_allclose(ours, np.asarray(expected), atol=TF_ATOL)


def test_each_image_gets_its_own_factors():
    import tensorflow as tf

    x = _images(5)
    factors = np.array([0.8, 0.9, 1.0, 1.1, 1.2], np.float32)
    ours = adjust_saturation_hue(tf.constant(x), tf.constant(factors), tf.constant(factors - 1))
    for i, f in enumerate(factors):
        expected = tf.image.adjust_hue(tf.image.adjust_saturation(x[i], f), f - 1)
        np.testing.assert_allclose(ours[i].numpy(), expected.numpy(), atol=TF_ATOL)
    params = random_colour_parameters(tf.random.Generator.from_seed(1), 10_000, ALL_ON)
    assert list(params) == ["stain_alpha", "stain_beta", "brightness", "contrast",
                            "saturation", "hue"]  # (crop is the warp's)
    for key, low, high in [("brightness", -0.1, 0.1), ("contrast", 0.8, 1.2),
                           ("saturation", 0.8, 1.2), ("hue", -0.05, 0.05)]:
        value = params[key].numpy()
        assert value.shape == (10_000,) and low <= value.min() < low + 0.01, key
        assert high - 0.01 < value.max() <= high, key


@pytest.mark.parametrize("flip", [0, 1], ids=["crop", "flip_then_crop"])
def test_crop_folded_into_the_warp_is_a_crop_resized_back(flip):
    import tensorflow as tf

    side, crop, left, top = 32, 0.75, 5.0, 3.0
    image = _images(1, side, seed=3)
    params = dict(IDENTITY, flip_horizontal=flip, crop=crop, crop_x=left, crop_y=top)
    ours = apply_parameters(image, params).numpy()
    source = image[:, :, ::-1] if flip else image  # the crop is of the warped image
    window = source[:, int(top):int(top) + 24, int(left):int(left) + 24]
    expected = tf.image.resize(window, (side, side), method="bilinear").numpy()
    assert np.abs(ours - image).max() > 10
    # the outermost pixels: the resize clamps to the window, the warp reads beyond it
    np.testing.assert_allclose(ours[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-3)


def _stage(colour, seed=0, augmentation=None):
    return make_input_stage(augmentation, lambda t: t, seed=seed, colour=colour)


def test_input_stage_colour_is_deterministic_and_off_outside_training():
    import tensorflow as tf

    from kandel_repro.core.protocol import PCAM

    x = tf.constant(_images(4, 32).astype(np.uint8))
    aug = PCAM.augmentation.to_kwargs()
    first = _stage(ALL_ON, 3, aug)(x, training=True).numpy()
    again = _stage(ALL_ON, 3, aug)(x, training=True).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.min() >= 0 and first.max() <= 255
    assert not np.allclose(first, _stage(ALL_ON, 4, aug)(x, training=True).numpy())
    np.testing.assert_array_equal(_stage(ALL_ON, 3, aug)(x, training=False).numpy(),
                                  x.numpy().astype(np.float32))
    # all off: as the paper's stage, draw for draw
    plain = make_input_stage(aug, lambda t: t, seed=3)(x, training=True).numpy()
    np.testing.assert_allclose(_stage(OFF, 3, aug)(x, training=True).numpy(), plain)


def test_without_geometric_augmentation_the_stage_applies_colour_or_crop_alone():
    import tensorflow as tf

    x = np.random.default_rng(0).integers(30, 200, (6, 32, 32, 3)).astype(np.uint8)
    out = _stage(dict(OFF, brightness=0.1))(tf.constant(x), training=True).numpy()
    shift = out - x  # no warp: each image shifted by its own constant, within ±25.5
    per_image = shift.reshape(6, -1)
    np.testing.assert_allclose(per_image, per_image[:, :1].repeat(per_image.shape[1], 1),
                               atol=1e-3)
    assert np.abs(per_image[:, 0]).max() <= 25.5 and len(np.unique(per_image[:, 0])) == 6
    cropped = _stage(dict(OFF, crop=0.5))(tf.constant(x), training=True).numpy()
    assert np.abs(cropped - x).max() > 10
    # a zoom by 2 of a random 16×16 window: neighbouring pixels pairwise alike
    smoothness = np.abs(np.diff(cropped, axis=2)).mean()
    assert smoothness < 0.75 * np.abs(np.diff(x.astype(float), axis=2)).mean()


def test_compiles_with_xla_under_mixed_precision():
    import keras
    import tensorflow as tf

    from kandel_repro.core.protocol import PCAM

    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_float16")
    try:
        stage = make_input_stage(PCAM.augmentation.to_kwargs(), lambda t: t - 127.5, seed=0,
                                 colour=ALL_ON)
        step = tf.function(lambda b: stage(b, training=True), jit_compile=True)
        out = step(tf.constant(_images(4, 32).astype(np.uint8)))
    finally:
        keras.config.set_dtype_policy(before)
    assert out.dtype == tf.float32 and stage.compute_dtype == "float32"
    out = out.numpy()
    assert np.isfinite(out).all() and -127.5 <= out.min() <= out.max() <= 127.5


def test_a_run_trains_with_every_colour_op_and_records_them(tiny_pcam, tmp_path):
    from kandel_repro.runs.single import train_single

    run = tmp_path / "run"
    metrics = train_single(run, tiny_pcam, "cbr_small", 1, 1e-3, workers=1, verbose=0,
                           weights="none", max_epochs=1, batch_size=16, **ALL_ON)
    config = json.loads((run / "config.json").read_text())
    assert {key: config[key] for key in ALL_ON} == ALL_ON
    assert metrics["val_auc"] is not None and np.isfinite(metrics["val_auc"])

"""The fused augmentation against the legacy ImageDataGenerator, and the input pipeline."""
import json
import subprocess
import sys

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.core.protocol import PCAM
from kandel_repro.training.augment import (apply_parameters, check_fast, image_data_generator,
                                           make_input_stage, random_parameters)
from kandel_repro.training.pipeline import idg_batches, in_memory_dataset

AUG = PCAM.augmentation.to_kwargs()
# Stated tolerance of the parity with ImageDataGenerator.apply_transform: images on the
# 0-255 scale agree to within 0.01 everywhere (float32 here, float64 coordinates there).
PARITY_ATOL = 0.01
IDENTITY = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0,
                flip_horizontal=0, flip_vertical=0)
CASES = {
    "rotation": dict(theta=37.0),
    "rotation_large": dict(theta=-171.5),
    "height_shift": dict(tx=5.3),
    "width_shift": dict(ty=-7.1),
    "shear": dict(shear=5.0),
    "zoom": dict(zx=0.93, zy=1.08),
    "flip_horizontal": dict(flip_horizontal=1),
    "flip_vertical": dict(flip_vertical=1),
    "combined": dict(theta=-123.0, tx=3.2, ty=-4.4, shear=-4.0, zx=1.07, zy=0.91,
                     flip_horizontal=1, flip_vertical=1),
    "combined_no_flip": dict(theta=64.0, tx=-2.0, ty=6.5, shear=5.7, zx=0.9, zy=1.1),
}


def _reference(image, params):
    idg = image_data_generator(AUG)
    params = dict(params, flip_horizontal=bool(params["flip_horizontal"]),
                  flip_vertical=bool(params["flip_vertical"]))
    return idg.apply_transform(image.copy(), params)


@pytest.mark.parametrize("shape", [(96, 96), (40, 64)], ids=["96x96", "40x64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_parameters_match_apply_transform(case, shape):
    image = np.random.default_rng(1).integers(0, 256, shape + (3,)).astype(np.float32)
    params = dict(IDENTITY, **CASES[case])
    ours = apply_parameters(image[None], params).numpy()[0]
    reference = _reference(image, params)
    assert not np.allclose(reference, image)  # the case does transform the image
    np.testing.assert_allclose(ours, reference, atol=PARITY_ATOL, rtol=0)


def test_random_parameters_follow_imagedatagenerator_distributions():
    import tensorflow as tf

    n, side = 20_000, 96
    ours = {k: v.numpy() for k, v in
            random_parameters(tf.random.Generator.from_seed(5), n, AUG, side, side).items()}
    idg = image_data_generator(AUG)
    np.random.seed(5)
    draws = [idg.get_random_transform((side, side, 3)) for _ in range(n)]
    theirs = {k: np.array([d[k] for d in draws], dtype=np.float64) for k in ours}
    ranges = {"theta": (-180, 180), "tx": (-9.6, 9.6), "ty": (-9.6, 9.6),
              "shear": (-AUG["shear_range"], AUG["shear_range"]), "zx": (0.9, 1.1),
              "zy": (0.9, 1.1)}
    for key in ("flip_horizontal", "flip_vertical"):
        assert set(np.unique(ours[key])) == {0.0, 1.0}
        assert abs(ours[key].mean() - 0.5) < 0.02 and abs(theirs[key].mean() - 0.5) < 0.02
    for key, (low, high) in ranges.items():
        width = high - low
        for sample in (ours[key], theirs[key]):
            assert sample.min() >= low - 1e-6 and sample.max() <= high + 1e-6, key
            assert sample.min() < low + 0.01 * width and sample.max() > high - 0.01 * width, key
        quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
        np.testing.assert_allclose(np.quantile(ours[key], quantiles),
                                   np.quantile(theirs[key], quantiles),
                                   atol=0.02 * width, err_msg=key)
    assert np.corrcoef(ours["zx"], ours["zy"])[0, 1] < 0.05  # independent, as in IDG


def test_input_stage_augments_in_training_only():
    import keras
    import tensorflow as tf

    preprocess = keras.applications.vgg16.preprocess_input
    stage = make_input_stage(AUG, preprocess, seed=3)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    plain = preprocess(x.astype(np.float32))
    np.testing.assert_allclose(stage(tf.constant(x), training=False).numpy(), plain, rtol=1e-6)
    first = stage(tf.constant(x), training=True).numpy()
    second = stage(tf.constant(x), training=True).numpy()
    assert not np.allclose(first, plain) and not np.allclose(first, second)
    # fill_mode="nearest": a constant image stays constant under any transform.
    flat = np.full((4, 32, 32, 3), 77, dtype=np.uint8)
    out = stage(tf.constant(flat), training=True).numpy()
    np.testing.assert_allclose(out, preprocess(flat.astype(np.float32)), atol=1e-3)


def test_fast_mode_refuses_what_it_does_not_implement():
    with pytest.raises(ConfigError, match="fill_mode='nearest' only.*'reflect'"):
        check_fast(dict(AUG, fill_mode="reflect"))
    with pytest.raises(ConfigError, match="does not implement channel_shift_range"):
        check_fast(dict(AUG, channel_shift_range=10.0))
    with pytest.raises(ConfigError, match="width_shift_range=4 .*discrete"):
        check_fast(dict(AUG, width_shift_range=4))
    from kandel_repro.runs.config import resolve_config

    config = resolve_config("vgg16", 5, 1e-4, augmenter="imagedatagenerator",
                            augmentation=dict(AUG, fill_mode="reflect"))
    assert config["augmentation"]["fill_mode"] == "reflect"  # the paper's pipeline takes it


def test_imagedatagenerator_batches_are_the_legacy_transform():
    """--augment imagedatagenerator: each image is get_random_transform + apply_transform."""
    x = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8) % 2
    plain = idg_batches(x, y, 8, None, shuffle=False)[0][0]
    np.testing.assert_array_equal(plain, x.astype(np.float32))
    batches = idg_batches(x, y, 8, AUG, seed=4, shuffle=False)
    augmented, labels = batches[0]
    assert not np.array_equal(augmented, plain)
    idg = image_data_generator(AUG)
    np.random.seed((4 * 1_000_003) % 2**32)  # the batch's seed: epoch 0, batch 0
    for i in range(8):
        expected = idg.apply_transform(x[i].astype(np.float32),
                                       idg.get_random_transform((32, 32, 3)))
        np.testing.assert_array_equal(augmented[i], expected)
    np.testing.assert_array_equal(labels, y)


def test_imagedatagenerator_mode_does_not_augment_twice():
    from kandel_repro.runs.config import resolve_config
    from kandel_repro.runs.train import build_run_models

    config = resolve_config("vgg16", 5, 1e-4, weights="none", augmenter="imagedatagenerator",
                            precision="float32")
    model, trainer, predictor, _ = build_run_models(config, (32, 32, 3))
    stage = trainer.get_layer("input_stage")
    assert trainer.input.dtype == "float32" and predictor.input.dtype == "uint8"
    batch = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(stage(batch, training=True).numpy(),
                               stage(batch, training=False).numpy())


def test_in_memory_dataset_keeps_images_and_labels_together_and_reshuffles():
    n = 50
    x = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    y = (np.arange(n) % 3 == 0).astype(np.int64)
    indices = np.arange(5, n)  # a split: rows 0-4 must never appear
    ds = in_memory_dataset(x, y, indices, batch_size=16, seed=1)
    epochs = []
    for _ in range(2):
        seen = []
        for images, labels in ds:
            assert images.dtype.name == "uint8"
            ids = images.numpy()[:, 0, 0, 0].astype(int)
            np.testing.assert_array_equal(labels.numpy(), y[ids])
            seen += list(ids)
        assert sorted(seen) == list(indices)
        epochs.append(seen)
    assert epochs[0] != epochs[1]
    again = [int(i) for images, _ in in_memory_dataset(x, y, indices, 16, seed=1)
             for i in images.numpy()[:, 0, 0, 0]]
    assert again == epochs[0]  # the same seed gives the same order


def test_mixed_precision_keeps_head_and_loss_in_float32_and_scales_the_loss():
    import keras

    from kandel_repro.runs.config import resolve_config
    from kandel_repro.runs.train import build_run_models

    before = keras.config.dtype_policy().name
    config = resolve_config("vgg16", 5, 1e-4, weights="none", precision="mixed_float16")
    model, trainer, predictor, _ = build_run_models(config, (32, 32, 3))
    assert keras.config.dtype_policy().name == before  # the global policy is restored
    assert model.get_layer("block5_conv1").compute_dtype == "float16"
    assert model.get_layer("head_dense").compute_dtype == "float32"
    assert trainer.get_layer("input_stage").compute_dtype == "float32"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    history = trainer.fit(x, (np.arange(8) % 2).astype(np.float32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    out = predictor.predict_on_batch(x)
    assert out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.slow
def test_jit_compiles_the_training_step(tiny_pcam, tmp_path):
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.config import resolve_config
    from kandel_repro.runs.train import train_run

    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    # a small backbone: what is checked is that the step compiles (XLA takes half the time)
    config = resolve_config("cbr_small", 4, 1e-4, weights="none", max_epochs=1, batch_size=16,
                            jit="on")
    config = config.updated(data_fingerprint=data.fingerprint)
    metrics = train_run(tmp_path / "run", data, config, verbose=0)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["jit"] == "on"
    assert metrics["val_auc"] is not None and np.isfinite(metrics["val_auc"])


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kandel_repro.readers.registry import get_reader
from kandel_repro.training.runtime import make_strategy
from kandel_repro.runs.config import resolve_config
from kandel_repro.runs.train import train_run
assert make_strategy("mirrored").num_replicas_in_sync == 2
data = get_reader("pcam").load(sys.argv[1], progress=False, workers=1)
config = resolve_config("cbr_small", 4, 1e-4, weights="none", max_epochs=1, batch_size=16,
                        distribute="mirrored")
config = config.updated(data_fingerprint=data.fingerprint)
metrics = train_run(sys.argv[2], data, config, verbose=0)
print("RESULT", json.dumps(metrics))
"""


@pytest.mark.slow
def test_mirrored_strategy_trains_over_two_devices(tiny_pcam, tmp_path):
    """Two logical CPU devices stand in for two GPUs (a fresh process: TF's devices are
    fixed at start-up); a small backbone, as the strategy is what is checked."""
    run = subprocess.run([sys.executable, "-c", MIRRORED, str(tiny_pcam), str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads(run.stdout.split("RESULT", 1)[1])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["replicas"] == 2 and config["batch_size"] == 16
    assert metrics["val_auc"] is not None and np.isfinite(metrics["val_auc"])


def test_crop_draws_follow_the_geometric_ones_and_stay_inside_the_image():
    import tensorflow as tf

    plain = random_parameters(tf.random.Generator.from_seed(2), 5000, AUG, 40, 64)
    cropped = random_parameters(tf.random.Generator.from_seed(2), 5000, AUG, 40, 64, crop=0.75)
    for key, value in plain.items():  # a seed draws the same transforms with a crop or not
        np.testing.assert_array_equal(cropped[key].numpy(), value.numpy(), err_msg=key)
    assert set(cropped) - set(plain) == {"crop", "crop_x", "crop_y"}
    np.testing.assert_array_equal(cropped["crop"].numpy(), 0.75)
    for key, room in (("crop_x", 0.25 * 64), ("crop_y", 0.25 * 40)):
        value = cropped[key].numpy()
        assert 0 <= value.min() < 0.01 * room and room * 0.99 < value.max() <= room, key

"""The optimiser of a run: SGD/Adam, per-epoch decay, per-group learning-rate multipliers
(kandel_repro.training.optim)."""
import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.runs.config import resolve_config, resolve_runtime
from kandel_repro.runs.train import build_run_models


def close(actual, expected):
    """Equal up to float32 arithmetic (two separately built models sum in other orders)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-3,
                               atol=1e-3 * float(np.abs(expected).max()))


def _one_step(optimizer, head_mult=1.0, bias_mult=1.0, **extra):
    """Weights before and after one training step on a fixed batch (dropout off)."""
    import keras

    keras.utils.set_random_seed(0)
    config = resolve_runtime(resolve_config(
        "vgg16", 5, 1e-3, weights="none", optimizer=optimizer, head_lr_mult=head_mult,
        bias_lr_mult=bias_mult, augmentation=None, dropout=0.0, **extra))
    model, trainer, _, _ = build_run_models(config, (32, 32, 3))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1] * 4, dtype=np.float32)
    names = ("head_dense", "block5_conv3")
    before = {n: [w.copy() for w in model.get_layer(n).get_weights()] for n in names}
    trainer.train_on_batch(x, y)
    after = {n: model.get_layer(n).get_weights() for n in names}
    return {n: [a - b for a, b in zip(after[n], before[n])] for n in names}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_head_multiplier_moves_the_head_that_many_times_as_far(optimizer):
    plain = _one_step(optimizer)
    fast = _one_step(optimizer, head_mult=10.0)
    kernel, bias = fast["head_dense"][0], fast["head_dense"][1]
    close(kernel, 10 * plain["head_dense"][0])
    close(bias, 10 * plain["head_dense"][1])
    # the backbone's layers keep the base rate
    close(fast["block5_conv3"][0], plain["block5_conv3"][0])
    assert np.abs(plain["head_dense"][0]).max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_bias_multiplier_applies_to_every_bias_and_composes_with_the_heads(optimizer):
    plain = _one_step(optimizer)
    both = _one_step(optimizer, head_mult=10.0, bias_mult=2.0)
    close(both["block5_conv3"][1], 2 * plain["block5_conv3"][1])
    close(both["block5_conv3"][0], plain["block5_conv3"][0])
    close(both["head_dense"][1], 20 * plain["head_dense"][1])


def test_scaling_gradients_would_not_do_it_for_adam():
    """Why one optimiser per group: Adam's first step does not grow with the gradient."""
    import keras

    steps = []
    for scale in (1.0, 10.0):
        variable = keras.Variable(np.zeros(3, np.float32))
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.apply([keras.ops.convert_to_tensor(np.array([0.5, -1.0, 2.0], np.float32) * scale)],
                        [variable])
        steps.append(variable.numpy())
    np.testing.assert_allclose(steps[0], steps[1], rtol=1e-4)


def test_optimiser_settings_are_checked():
    with pytest.raises(ConfigError, match="--momentum applies to --optimizer sgd"):
        resolve_config("vgg16", 5, 1e-4, momentum=0.9)
    with pytest.raises(ConfigError, match="--lr-decay must be in"):
        resolve_config("vgg16", 5, 1e-4, lr_decay=1.5)
    with pytest.raises(ConfigError, match="--head-lr-mult must be a number above 0"):
        resolve_config("vgg16", 5, 1e-4, head_lr_mult=0)
    config = resolve_config("vgg16", 5, 1e-4, optimizer="sgd", momentum=0.9, lr_decay=0.95,
                            head_lr_mult=10, bias_lr_mult=2)
    from kandel_repro.core.protocol import deviations

    assert {line.split(":")[0] for line in deviations(dict(config, image_size=96))} == {
        "optimizer", "momentum", "lr_decay", "head_lr_mult", "bias_lr_mult"}
    mixed = resolve_runtime(dict(resolve_config("vgg16", 5, 1e-4, weights="none",
                                                head_lr_mult=10), precision="mixed_float16"))
    with pytest.raises(ConfigError, match="implemented in float32"):
        build_run_models(mixed, (32, 32, 3))  # "auto" resolved to mixed precision on a GPU
    with pytest.raises(ConfigError, match="implemented in float32"):  # before TensorFlow starts
        resolve_config("vgg16", 5, 1e-4, head_lr_mult=10, precision="mixed_float16")


@pytest.mark.slow
def test_the_learning_rate_decays_every_epoch(tiny_pcam, tmp_path):
    import keras

    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.train import train_run
    from kandel_repro.training.optim import epoch_decay

    optimizers = [(keras.optimizers.SGD(1e-2), None, 1e-2), (keras.optimizers.SGD(1e-1), None, 1e-1)]
    callback = epoch_decay(optimizers, 0.5)
    rates = []
    for epoch in range(3):
        callback.on_epoch_begin(epoch)
        rates.append([float(o.learning_rate.numpy()) for o, _, _ in optimizers])
    np.testing.assert_allclose(rates, [[1e-2, 1e-1], [5e-3, 5e-2], [2.5e-3, 2.5e-2]])
    # Tajbakhsh's whole recipe trains end to end and is recorded
    config = resolve_config("vgg16", 5, 1e-3, weights="none", optimizer="sgd", momentum=0.9,
                            lr_decay=0.95, head_lr_mult=10, bias_lr_mult=2, max_epochs=2,
                            batch_size=16)
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    metrics = train_run(tmp_path / "run", data, config, verbose=0)
    import json

    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert metrics["epochs_run"] == 2 and recorded["head_lr_mult"] == 10
    assert recorded["optimizer"] == "sgd" and recorded["lr_decay"] == 0.95

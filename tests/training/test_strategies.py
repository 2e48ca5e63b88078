"""Adaptation strategies (kandel_repro.training.strategies): their plans, the per-variable
rates they set, measured from real training steps, and runs that use them."""
import numpy as np
import pandas as pd
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.models.backbones import HEAD_LAYERS
from kandel_repro.runs.config import resolve_config, resolve_runtime
from kandel_repro.runs.train import build_run_models
from kandel_repro.training.strategies import (HEAD, STRATEGIES, relative_gradient_norms,
                                              strategy_callback)

SETTINGS = {"llrd_gamma": 0.75, "probe_epochs": 2, "ft_lr_mult": 0.1}


def test_the_plans():
    llrd = STRATEGIES["llrd"].plan(0, 1, 5, SETTINGS)
    assert llrd.first == 1 and llrd.scales[HEAD] == 1.0
    assert [llrd.scales[b] for b in range(1, 6)] == pytest.approx([0.75 ** 4, 0.75 ** 3,
                                                                   0.75 ** 2, 0.75, 1.0])
    assert STRATEGIES["llrd"].plan(0, 3, 5, SETTINGS).scales.keys() == {HEAD, 3, 4, 5}
    lp_ft = STRATEGIES["lp-ft"]
    assert [lp_ft.plan(e, 1, 5, SETTINGS).first for e in range(4)] == [6, 6, 1, 1]
    assert lp_ft.plan(0, 1, 5, SETTINGS).scales == {HEAD: 1.0}
    assert set(lp_ft.plan(2, 1, 5, SETTINGS).scales.values()) == {0.1}
    gradual = STRATEGIES["gradual"]
    assert [gradual.plan(e, 2, 5, SETTINGS).first for e in range(6)] == [5, 4, 3, 2, 2, 2]
    assert gradual.plan(3, 1, 5, SETTINGS).scales[2] == pytest.approx(2.6 ** -3)
    assert not STRATEGIES["blocks"].needs_retrace(5, {"first_trainable_block": 1}, 10)
    assert STRATEGIES["gradual"].needs_retrace(5, {"first_trainable_block": 1, **SETTINGS}, 3)


def test_relative_gradient_norms_by_hand():
    """Two layers: ‖g1‖/‖w1‖ = 1/2, ‖g2‖/‖w2‖ = 5/5 = 1; over the largest: 0.5, 1."""
    w1, g1 = np.array([[2.0, 0.0]]), np.array([[0.0, 1.0]])
    w2, g2 = np.array([3.0, 4.0]), np.array([0.0, 5.0])
    assert relative_gradient_norms([g1, g2], [w1, w2]) == pytest.approx([0.5, 1.0])
    # a tensor of zeros (a fresh bias) has nothing to be relative to; no gradient: 0
    assert relative_gradient_norms([g1, g2, None], [w1, np.zeros(2), w2]) == [1.0, 0.0, 0.0]


def test_strategies_refuse_what_they_cannot_apply():
    with pytest.raises(ConfigError, match="--head-lr-mult and --bias-lr-mult apply to "
                                          "--strategy blocks"):
        resolve_config("vgg16", 1, 1e-3, strategy="llrd", head_lr_mult=10.0)
    with pytest.raises(ConfigError, match="works by block"):
        resolve_config("vgg16", 1, 1e-3, strategy="gradual", first_trainable_layer=3)
    with pytest.raises(ConfigError, match="no epoch of fine-tuning"):
        resolve_config("vgg16", 1, 1e-3, strategy="lp-ft", probe_epochs=5, max_epochs=5)
    with pytest.raises(ConfigError, match=r"--llrd-gamma must be in \(0, 1\]"):
        resolve_config("vgg16", 1, 1e-3, strategy="llrd", llrd_gamma=1.5)
    assert resolve_config("vgg16", 1, 1e-3)["strategy"] == "blocks"


def _models(strategy, backbone="vgg16", optimizer="sgd", **extra):
    import keras

    keras.utils.set_random_seed(0)
    config = resolve_runtime(resolve_config(
        backbone, 1, 0.1, weights="none", optimizer=optimizer, augmentation=None, dropout=0.0,
        strategy=strategy, precision="float32", **extra))
    model, trainer, _, _ = build_run_models(config, (32, 32, 3))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1] * 4, dtype=np.float32)
    callback = strategy_callback(trainer, model, trainer.block_map, HEAD_LAYERS, config, (x, y))
    callback.set_model(trainer)
    return config, model, trainer, callback, x, y


def _gradients(trainer, model, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = trainer.compute_loss(x=x, y=y, y_pred=trainer(x, training=True))
    return dict(zip((v.path for v in model.trainable_weights),
                    tape.gradient(loss, model.trainable_weights)))


@pytest.mark.slow
def test_llrd_rate_of_each_block_measured_from_one_sgd_step():
    config, model, trainer, callback, x, y = _models("llrd")
    callback.on_epoch_begin(0)
    gradients = _gradients(trainer, model, x, y)
    kernels = {b: f"block{b}_conv1" for b in range(1, 6)}
    before = {b: model.get_layer(n).kernel.numpy().copy() for b, n in kernels.items()}
    head_before = model.get_layer("head_dense").kernel.numpy().copy()
    trainer.train_on_batch(x, y)
    for block, name in kernels.items():
        variable = model.get_layer(name).kernel
        g = np.asarray(gradients[variable.path])
        moved = before[block] - variable.numpy()
        big = np.abs(g) > 1e-3 * np.abs(g).max()
        rate = np.median(moved[big] / g[big])  # Δw / g: SGD's step is lr × scale × g
        assert rate == pytest.approx(0.1 * 0.75 ** (5 - block), rel=1e-3), block
    head = model.get_layer("head_dense").kernel
    g = np.asarray(gradients[head.path])
    big = np.abs(g) > 1e-3 * np.abs(g).max()
    assert np.median((head_before - head.numpy())[big] / g[big]) == pytest.approx(0.1, rel=1e-3)


@pytest.mark.slow
def test_lp_ft_probe_leaves_the_backbone_bit_equal_then_fine_tunes_it():
    """EfficientNet-Lite0 has BatchNormalization: frozen, it must not move its statistics."""
    config, model, trainer, callback, x, y = _models("lp-ft", "efficientnet_lite0", "adam",
                                                     probe_epochs=1, max_epochs=3)
    head = [w.copy() for w in model.get_layer("head_dense").get_weights()]
    backbone = [w.numpy().copy() for w in model.weights if not w.path.startswith("head_")]
    callback.on_epoch_begin(0)
    trainer.train_on_batch(x, y)
    after = [w.numpy() for w in model.weights if not w.path.startswith("head_")]
    assert all(np.array_equal(a, b) for a, b in zip(after, backbone))
    assert not np.array_equal(model.get_layer("head_dense").get_weights()[0], head[0])
    callback.on_epoch_begin(1)  # fine-tuning: every block, at a tenth of the rate
    assert all(layer.trainable for layer in model.layers)
    trainer.train_on_batch(x, y)
    moved = [w.numpy() for w in model.weights if not w.path.startswith("head_")]
    assert sum(not np.array_equal(a, b) for a, b in zip(moved, backbone)) > len(backbone) // 2
    assert {round(s.numpy().item(), 6) for s in trainer.optimizer.scales.values()} == {0.1}


@pytest.mark.slow
def test_gradual_unfreezes_one_block_each_epoch_from_the_top():
    config, model, trainer, callback, x, y = _models("gradual")
    trained = []
    for epoch in range(6):
        callback.on_epoch_begin(epoch)
        trained.append(sorted({int(layer.name[5]) for layer in model.layers
                               if layer.name.startswith("block") and layer.trainable}))
        trainer.train_on_batch(x, y)  # the retraced step takes the new set
    assert trained == [[5], [4, 5], [3, 4, 5], [2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]
    logs = {}
    callback.on_epoch_end(5, logs)
    assert logs["scale_block1"] == pytest.approx(2.6 ** -4) and logs["scale_head"] == 1.0
    assert logs["trainable_parameters"] == model.count_params()


@pytest.mark.slow
def test_auto_rgn_scales_are_each_tensors_relative_gradient_norm():
    config, model, trainer, callback, x, y = _models("auto-rgn")
    callback.on_epoch_begin(0)
    import tensorflow as tf

    head = model.get_layer("head_dense").trainable_weights
    variables = [v for v in model.trainable_weights if not v.path.startswith("head_")]
    with tf.GradientTape() as tape:
        loss = trainer.compute_loss(x=x, y=y, y_pred=trainer(x, training=False))
    gradients = tape.gradient(loss, variables)
    ratios = [np.linalg.norm(g) / np.linalg.norm(v) if np.linalg.norm(v) > 0 else 0.0
              for g, v in zip(gradients, variables)]
    expected = np.array(ratios) / max(ratios)  # over the backbone's tensors
    assigned = np.array([trainer.optimizer.scales[id(v)].numpy() for v in variables])
    np.testing.assert_allclose(assigned, expected, rtol=1e-4)
    assert assigned.max() == pytest.approx(1.0) and (assigned < 1).sum() > 10
    assert [trainer.optimizer.scales[id(v)].numpy() for v in head] == [1.0, 1.0]  # the head


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["probe", "llrd", "lp-ft", "gradual", "auto-rgn", "lora"])
def test_a_run_with_a_strategy_records_what_it_trained(tiny_pcam, tmp_path, strategy):
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.train import train_run

    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 1, 1e-4, weights="none", max_epochs=3, batch_size=16,
                            strategy=strategy, probe_epochs=1)
    config = config.updated(data_dir=str(tiny_pcam), data_fingerprint=data.fingerprint)
    metrics = train_run(tmp_path / "run", data, config, verbose=0)
    assert metrics["status"] == "ok" and metrics["train_seconds"] > 0
    assert metrics["peak_gpu_memory_bytes"] is None  # a CPU: not measured
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert len(history) == 3 and "trainable_parameters" in history
    if strategy in ("llrd", "auto-rgn"):  # every block trains from the first epoch
        assert {f"scale_block{b}" for b in range(1, 6)} <= set(history.columns)
    config_written = pd.read_json(tmp_path / "run" / "config.json", typ="series")
    assert config_written["strategy"] == strategy
    if strategy == "probe":  # the head alone, every epoch: VGG16's 512 features → 1 unit
        assert history["trainable_parameters"].tolist() == [513] * 3
    if strategy in ("lp-ft", "gradual"):  # fewer parameters train in the first epoch
        assert history["trainable_parameters"].iloc[0] < history["trainable_parameters"].iloc[-1]


@pytest.mark.slow
def test_lora_keeps_the_base_kernels_and_its_saved_model_predicts_what_it_did(tmp_path):
    import keras

    config, model, trainer, callback, x, y = _models("lora", optimizer="adam", lora_rank=2)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    # rank r adds r·(k·k·in + out) parameters to a k×k convolution (r·(in + out) to a dense)
    expected = sum(2 * (int(np.prod(layer.lora_kernel_a.shape[:-1])) + layer.filters)
                   for layer in convolutions)
    adapters = sum(int(np.prod(v.shape)) for v in model.trainable_weights if "lora" in v.path)
    head = sum(int(np.prod(v.shape)) for v in model.get_layer("head_dense").trainable_weights)
    assert adapters == expected and len(convolutions) == 13
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == adapters + head
    base = {v.path: v.numpy().copy() for v in model.weights if "lora" not in v.path
            and not v.path.startswith("head_")}
    callback.on_epoch_begin(0)
    for _ in range(3):
        trainer.train_on_batch(x, y)
    assert all(np.array_equal(v.numpy(), base[v.path]) for v in model.weights if v.path in base)
    assert np.abs(model.get_layer("block5_conv3").lora_kernel_b.numpy()).max() > 0
    images = get_preprocess(config)(x.astype("float32"))
    before = model.predict(images, verbose=0)
    model.save(tmp_path / "best_model.keras")
    loaded = keras.models.load_model(tmp_path / "best_model.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), before, atol=1e-5)


def test_lora_on_a_dense_layer_adds_rank_times_in_plus_out():
    import keras

    from kandel_repro.training.strategies import enable_adapters

    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, name="dense_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head_dense")(x))
    assert enable_adapters(model, {1: ["dense_a", "bn_a"]}, 1, 3) == 3 * (6 + 5)
    assert [v.path for v in model.get_layer("dense_a").trainable_weights] == [
        "dense_a/lora_kernel_a", "dense_a/lora_kernel_b"]
    assert not model.get_layer("bn_a").trainable


def get_preprocess(config):
    from kandel_repro.models.backbones import get_backbone

    return get_backbone(config["backbone"]).preprocess_input()


@pytest.mark.slow
def test_a_strategy_run_killed_mid_way_trains_again_to_the_same_result(tiny_pcam, tmp_path,
                                                                        monkeypatch):
    """A killed run leaves no metrics.json; run again (as a grid resumes it), it trains from
    its start to the same predictions as a run never interrupted."""
    import keras

    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs import train as train_mod

    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 1, 1e-4, weights="none", max_epochs=3, batch_size=16,
                            strategy="gradual").updated(data_dir=str(tiny_pcam),
                                                        data_fingerprint=data.fingerprint)
    whole = train_mod.train_run(tmp_path / "whole", data, config, verbose=0)

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    real = train_mod.validation_callback
    monkeypatch.setattr(train_mod, "validation_callback",
                        lambda *a, **k: _chain(real(*a, **k), Kill()))
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_run(tmp_path / "killed", data, config, verbose=0)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    monkeypatch.setattr(train_mod, "validation_callback", real)
    again = train_mod.train_run(tmp_path / "killed", data, config, verbose=0)
    assert again["status"] == "ok" and again["epochs_run"] == 3
    assert (tmp_path / "killed" / "val_predictions.csv").read_bytes() == \
        (tmp_path / "whole" / "val_predictions.csv").read_bytes()
    assert again["val_auc"] == whole["val_auc"]


def _chain(first, second):
    """One callback calling two (the AUC callback, then a kill)."""
    import keras

    class Both(keras.callbacks.Callback):
        def set_model(self, model):
            first.set_model(model)
            second.set_model(model)

        def set_params(self, params):
            first.set_params(params)
            second.set_params(params)

        def on_epoch_begin(self, epoch, logs=None):
            first.on_epoch_begin(epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            first.on_epoch_end(epoch, logs)
            second.on_epoch_end(epoch, logs)

    return Both()

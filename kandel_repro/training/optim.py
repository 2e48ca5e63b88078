"""A run's optimiser: Adam (the paper's) or SGD with momentum (Tajbakhsh et al. 2016), a
per-epoch decay of the learning rate, and learning-rate multipliers for the new head and
for the biases.

Keras gives an optimiser one learning rate. Multiplying some gradients instead would not
give their layers a faster rate under Adam, which divides each step by the gradients'
own scale; so a run with multipliers gets one optimiser per group of variables, each with
its rate, applied by a train step of its own (:func:`grouped_trainer`). A run without
them keeps Keras' usual step (one optimiser, bit for bit the paper's setup).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from ..models.backbones import HEAD_LAYERS

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when an optimiser is made
    import keras


def make_optimizer(config: dict, learning_rate: float) -> keras.optimizers.Optimizer:
    import keras

    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config["momentum"])
    return keras.optimizers.Adam(learning_rate)


def variable_groups(model: keras.Model,
                    config: dict) -> list[tuple[float, list[keras.Variable]]]:
    """``[(multiplier, [variables])]`` of the model's trainable variables: the backbone's
    kernels at 1, biases at ``bias_lr_mult``, the head's at ``head_lr_mult`` (its bias at
    both multipliers' product, as Caffe's ``lr_mult`` composes); equal multipliers share
    a group. One group of multiplier 1 when no multiplier is set."""
    head = {id(v) for name in HEAD_LAYERS for v in model.get_layer(name).trainable_weights}
    groups = {}
    for variable in model.trainable_weights:
        rate = config["head_lr_mult"] if id(variable) in head else 1.0
        if variable.path.split("/")[-1].startswith("bias"):
            rate *= config["bias_lr_mult"]
        groups.setdefault(float(rate), []).append(variable)
    return sorted(groups.items(), key=lambda item: item[0])


def grouped_trainer(inputs: keras.KerasTensor, outputs: keras.KerasTensor,
                    groups: Sequence[tuple[keras.optimizers.Optimizer, list[keras.Variable]]],
                    name: str = "trainer") -> keras.Model:
    """A Keras model on ``inputs`` → ``outputs`` whose train step applies each group's
    gradients with that group's optimiser: ``groups`` is ``[(optimizer, variables)]``."""
    import keras
    import tensorflow as tf

    class GroupedTrainer(keras.Model):
        def train_step(self, data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                          training=True)
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
            variables = [v for _, group in self.groups for v in group]
            gradients = tape.gradient(loss, variables)
            start = 0
            for optimizer, group in self.groups:
                optimizer.apply(gradients[start:start + len(group)], group)
                start += len(group)
            return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    trainer = GroupedTrainer(inputs, outputs, name=name)
    trainer.groups = groups
    return trainer


def build_optimizers(model: keras.Model, config: dict
                     ) -> list[tuple[keras.optimizers.Optimizer, list[keras.Variable] | None,
                                     float]]:
    """``[(optimizer, variables, base learning rate)]`` of a resolved config (variables
    None: all trainable ones, one optimiser as Keras compiles it)."""
    groups = variable_groups(model, config)
    rate = config["learning_rate"]
    if len(groups) == 1 and groups[0][0] == 1.0:
        return [(make_optimizer(config, rate), None, rate)]
    if config["precision"] == "mixed_float16":
        raise ConfigError("--head-lr-mult and --bias-lr-mult are implemented in float32: give "
                          "--precision float32 (mixed precision's loss scaling is per optimiser)")
    out = []
    for multiplier, variables in groups:
        optimizer = make_optimizer(config, rate * multiplier)
        optimizer.build(variables)
        out.append((optimizer, variables, rate * multiplier))
    return out


def epoch_decay(optimizers: Sequence[tuple[keras.optimizers.Optimizer,
                                           list[keras.Variable] | None, float]],
                decay: float) -> keras.callbacks.Callback:
    """A callback setting each optimiser's rate to its base × ``decay`` ** epoch."""
    import keras

    class EpochDecay(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            for optimizer, _, base in optimizers:
                optimizer.learning_rate.assign(base * decay ** epoch)

    return EpochDecay()

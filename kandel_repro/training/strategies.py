"""Ways of adapting a pretrained network in one run (``--strategy``), each a registry entry.

The paper freezes the blocks below a depth and trains the rest at one rate (``blocks``,
the default: every run folder written before strategies existed reads as it). The field
has since adapted networks in ways that decide the depth, or make it soft, as they train:

- ``probe`` — a linear probe (the linear evaluation of self-supervised features, Kornblith
  et al. 2019; DINOv2): the head alone trains, every block frozen, their BatchNorm in
  inference mode — what eva and Trident measure, here beside the depths it competes with.
- ``llrd`` — layer-wise learning-rate decay by block (BEiT, MAE): block b of N learns at
  lr · γ^(N−b), the head at lr. γ = 0.75 by default (``--llrd-gamma``): transformers use
  0.65–0.75 over 12–24 layers; a CNN has 5–20 blocks, so 0.75 leaves the lowest block of
  VGG16 (5 blocks) at 0.32 lr and of EfficientNet (9) at 0.10 lr — an order of magnitude
  slower, not frozen.
- ``auto-rgn`` — Lee et al. 2023 (surgical fine-tuning): each weight tensor's rate scaled
  by its relative gradient norm ‖g‖/‖w‖, normalised by the largest, recomputed at the
  start of each epoch on a fixed batch of training images (the network in inference mode:
  the probe moves no BatchNorm statistic); the run records the scales per block and epoch.
  The new head learns at the full rate and is left out of the normalisation: in Lee et
  al.'s setting the head is pretrained too; here it is random, and its ratio, orders of
  magnitude above the backbone's, would scale every pretrained tensor to almost nothing.
- ``lp-ft`` — Kumar et al. 2022: the head alone for ``--probe-epochs`` epochs (a linear
  probe; the backbone frozen, its BatchNorm in inference mode, so bit-equal), then every
  trainable block and the head at lr × ``--ft-lr-mult`` (0.1).
- ``gradual`` — ULMFiT (Howard & Ruder 2018): epoch e trains the head and the top e + 1
  blocks (one more each epoch, down to the run's first trainable block), block b at
  lr / 2.6^(N−b) (their discriminative rates).
- ``lora`` — low-rank adapters (Hu et al. 2022) on the trainable blocks' convolutions
  and dense layers (Keras' ``enable_lora``; rank ``--lora-rank``, 4): a kernel W becomes
  W + A·B with A of shape (…, r) and B (r, out), B starting at zero; W, the biases and
  the blocks' BatchNormalization stay frozen, the head trains whole. Keras has no
  adapter for depthwise convolutions: those stay frozen. A backbone may name its targets
  (the registry's ``adapter_targets``): a vision transformer's are each attention's query
  and value projections, as Hu et al. adapt W_q and W_v. ``best_model.keras`` holds the
  merged kernels (Keras saves W + A·B), so it predicts what the adapted network did; each
  epoch's logs give ``adapter_parameters``.

Every strategy works within the run's trainable blocks (``--first-block``; 1 by default in
the strategies study): the blocks below it stay frozen. A rate is applied as a scale of
the optimiser's one learning rate, per variable (:func:`scaled_optimizer`): under Adam a
scale of a variable's gradient would change nothing, Adam dividing by its own scale.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..core.errors import ConfigError

if TYPE_CHECKING:  # NOTE: annotations only; Keras loads when a run trains
    import keras

HEAD = 0  # the head's key in a plan's scales (blocks are numbered from 1)
GRADUAL_FACTOR = 2.6  # ULMFiT's ratio between the rates of neighbouring layers


class Plan(NamedTuple):
    """What one epoch trains: blocks ``first`` … N (N + 1: the head alone) and the scale of
    each trained block's rate (``scales[b]``; ``scales[HEAD]`` the head's)."""
    first: int
    scales: Mapping[int, float]


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str  # one line, for --help and the tables
    reference: str
    plan: Callable[[int, int, int, Mapping[str, Any]], Plan]  # (epoch, first, N, settings)
    per_tensor: bool = False  # scales per weight tensor recomputed each epoch (auto-rgn)
    # low-rank adapters (enable_adapters) on the trainable blocks: what trains is set once,
    # when the model is built, and no plan freezes or scales it afterwards
    adapters: bool = False
    # how a study's row names it where it is not "<name> (every block)"
    phrase: str | None = None

    def needs_retrace(self, num_blocks: int, settings: Mapping[str, Any], epochs: int) -> bool:
        """Whether the trainable set changes between epochs (Keras retraces the step)."""
        first = settings["first_trainable_block"]
        return len({self.plan(e, first, num_blocks, settings).first
                    for e in range(epochs)}) > 1


def _uniform(first, num_blocks, scale=1.0):
    return {HEAD: scale, **{b: scale for b in range(first, num_blocks + 1)}}


def _blocks(epoch, first, num_blocks, settings):
    return Plan(first, _uniform(first, num_blocks))


def _probe(epoch, first, num_blocks, settings):
    return Plan(num_blocks + 1, {HEAD: 1.0})


def _llrd(epoch, first, num_blocks, settings):
    gamma = settings["llrd_gamma"]
    return Plan(first, {HEAD: 1.0, **{b: gamma ** (num_blocks - b)
                                      for b in range(first, num_blocks + 1)}})


def _lp_ft(epoch, first, num_blocks, settings):
    if epoch < settings["probe_epochs"]:
        return Plan(num_blocks + 1, {HEAD: 1.0})
    return Plan(first, _uniform(first, num_blocks, settings["ft_lr_mult"]))


def _gradual(epoch, first, num_blocks, settings):
    top = max(first, num_blocks - epoch)
    return Plan(top, {HEAD: 1.0, **{b: GRADUAL_FACTOR ** -(num_blocks - b)
                                    for b in range(top, num_blocks + 1)}})


STRATEGIES = {s.name: s for s in (
    Strategy("blocks", "the blocks from --first-block train at the learning rate (the paper)",
             "Kandel & Castelli 2020", _blocks),
    Strategy("probe", "a linear probe: the head alone on the frozen backbone",
             "Kornblith et al. 2019 (linear evaluation); Oquab et al. 2024 (DINOv2)", _probe,
             phrase="the head alone (a linear probe)"),
    Strategy("llrd", "layer-wise rate decay: block b of N at lr·γ^(N−b), the head at lr",
             "Bao et al. 2022 (BEiT); He et al. 2022 (MAE)", _llrd),
    Strategy("auto-rgn", "each tensor's rate × its relative gradient norm ‖g‖/‖w‖, "
             "normalised by the largest, each epoch",
             "Lee et al. 2023, Surgical Fine-Tuning Improves Adaptation to Distribution Shifts",
             _blocks, per_tensor=True),
    Strategy("lp-ft", "the head alone for --probe-epochs epochs, then every block at lr × "
             "--ft-lr-mult", "Kumar et al. 2022, Fine-Tuning can Distort Pretrained Features",
             _lp_ft),
    Strategy("gradual", "one more block each epoch from the top, block b at lr/2.6^(N−b)",
             "Howard & Ruder 2018 (ULMFiT)", _gradual),
    Strategy("lora", "rank --lora-rank adapters on the trainable blocks' convolutions and "
             "dense layers, their kernels frozen", "Hu et al. 2022 (LoRA)", _blocks,
             adapters=True),
)}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; --strategy takes "
                          f"{', '.join(STRATEGIES)}") from None


def check_strategy(settings: Mapping[str, Any]) -> None:
    """Refuse, in one line, a strategy its run cannot apply."""
    strategy = get_strategy(settings["strategy"])
    if strategy.name == "blocks":
        return
    if settings.get("first_trainable_layer") is not None:
        raise ConfigError(f"--strategy {strategy.name} works by block; --first-layer is the "
                          "blocks strategy's layer-wise depth")
    if settings["head_lr_mult"] != 1 or settings["bias_lr_mult"] != 1:
        raise ConfigError(f"--strategy {strategy.name} sets each block's rate itself; "
                          "--head-lr-mult and --bias-lr-mult apply to --strategy blocks")
    if settings.get("precision") == "mixed_float16":
        raise ConfigError(f"--strategy {strategy.name} is implemented in float32: give "
                          "--precision float32 (mixed precision wraps the optimiser)")
    if settings.get("distribute") == "mirrored":
        raise ConfigError(f"--strategy {strategy.name} runs on one device (its per-variable "
                          "rates are not mirrored); give --distribute none")
    if not 0 < settings["llrd_gamma"] <= 1:
        raise ConfigError(f"--llrd-gamma must be in (0, 1], got {settings['llrd_gamma']!r}")
    if not 0 < settings["ft_lr_mult"] <= 1:
        raise ConfigError(f"--ft-lr-mult must be in (0, 1], got {settings['ft_lr_mult']!r}")
    if not isinstance(settings["probe_epochs"], int) or settings["probe_epochs"] < 1:
        raise ConfigError(f"--probe-epochs must be a whole number ≥ 1, got "
                          f"{settings['probe_epochs']!r}")
    if not isinstance(settings["lora_rank"], int) or settings["lora_rank"] < 1:
        raise ConfigError(f"--lora-rank must be a whole number ≥ 1, got {settings['lora_rank']!r}")
    if strategy.name == "lp-ft" and settings["probe_epochs"] >= settings["max_epochs"]:
        raise ConfigError(f"--strategy lp-ft: --probe-epochs {settings['probe_epochs']} leaves "
                          f"no epoch of fine-tuning within --epochs {settings['max_epochs']}")


def scaled_optimizer(base: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """``base`` (Adam or SGD, unbuilt) as a copy whose every variable's step uses the
    learning rate × its own scale (:attr:`scales`, ``{id(variable): scale variable}``,
    1 until assigned): Keras gives an optimiser one rate."""
    import keras

    class Scaled(type(base)):
        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.scales = {}
            for index, variable in enumerate(variables):
                scale = self.add_variable((), initializer="ones", name=f"lr_scale_{index}")
                self.scales[id(variable)] = scale
                # NOTE: TensorFlow's optimiser steps the backend variable (variable.value)
                self.scales[id(getattr(variable, "value", variable))] = scale

        def update_step(self, gradient, variable, learning_rate):
            scale = self.scales.get(id(variable))
            if scale is None:
                raise RuntimeError(f"no learning-rate scale for {variable.name}: the "
                                   "optimiser was built before the strategy's variables")
            rate = keras.ops.multiply(learning_rate, keras.ops.cast(scale, learning_rate.dtype))
            return super().update_step(gradient, variable, rate)

    return Scaled.from_config(base.get_config())


def variables_by_block(model: keras.Model, block_map: Mapping[int, list[str]],
                       head_layers: Sequence[str]) -> dict[int, list[keras.Variable]]:
    """``{block: its layers' weight variables}``, the head's (``head_layers``) under
    :data:`HEAD`."""
    out = {HEAD: [v for name in head_layers for v in model.get_layer(name).weights]}
    for block, names in block_map.items():
        out[block] = [v for name in names for v in model.get_layer(name).weights]
    return out


def relative_gradient_norms(gradients, variables) -> list[float]:
    """Auto-RGN's scales: ‖g‖/‖w‖ of each tensor over the largest (a tensor of zeros, or
    with no gradient, scales 0: it has nothing to be relative to)."""
    ratios = []
    for gradient, variable in zip(gradients, variables):
        weight = float(np.linalg.norm(np.asarray(variable)))
        grad = 0.0 if gradient is None else float(np.linalg.norm(np.asarray(gradient)))
        ratios.append(grad / weight if weight > 0 else 0.0)
    largest = max(ratios, default=0.0)
    return [r / largest if largest > 0 else 0.0 for r in ratios]


def set_plan(model: keras.Model, block_map: Mapping[int, list[str]], plan: Plan,
             head_layers: Sequence[str]) -> None:
    """Freeze the blocks below ``plan.first``, train the others and the head (a frozen
    BatchNormalization runs in inference mode: Keras' rule)."""
    for block, names in block_map.items():
        for name in names:
            model.get_layer(name).trainable = block >= plan.first
    for name in head_layers:
        model.get_layer(name).trainable = True


def strategy_callback(trainer: keras.Model, model: keras.Model,
                      block_map: Mapping[int, list[str]], head_layers: Sequence[str],
                      settings: Mapping[str, Any],
                      probe: tuple | None = None) -> keras.callbacks.Callback:
    """The callback that applies a strategy's plan at the start of each epoch — which
    blocks train (the step retraced when that changes) and each variable's rate scale —
    and adds to the epoch's logs what it trained: ``trainable_parameters``, and per block
    ``scale_block{b}`` (the mean scale of its tensors; ``scale_head``). ``probe``:
    ``(images, labels)`` of the fixed batch Auto-RGN measures its gradients on. The
    optimiser (:func:`scaled_optimizer`) must be built on every variable the run may
    train (:func:`build_for_strategy`)."""
    import keras

    strategy = get_strategy(settings["strategy"])
    num_blocks, first = settings["num_blocks"], settings["first_trainable_block"]
    by_block = variables_by_block(model, block_map, head_layers)

    class ApplyStrategy(keras.callbacks.Callback):
        current = None

        def on_epoch_begin(self, epoch, logs=None):
            self.scales = {}
            if strategy.adapters:  # (its trainable set is the adapters', fixed)
                return
            plan = strategy.plan(epoch, first, num_blocks, settings)
            if plan.first != self.current:
                set_plan(model, block_map, plan, head_layers)
                if self.current is not None:  # NOTE: the first trace is fit's own
                    trainer.make_train_function(force=True)
                self.current = plan.first
            tensor_scales = self._tensor_scales() if strategy.per_tensor else {}
            self.scales = {}
            for block, variables in by_block.items():
                trained = block == HEAD or block >= plan.first
                values = []
                for variable in variables:
                    if not variable.trainable:
                        continue
                    value = (plan.scales.get(block, 0.0) if trained else 0.0) \
                        * tensor_scales.get(id(variable), 1.0)
                    scale = trainer.optimizer.scales.get(id(variable))
                    if scale is not None:
                        scale.assign(value)
                    values.append(value)
                if values:
                    self.scales[block] = float(np.mean(values))

        def _tensor_scales(self):
            import tensorflow as tf

            images, labels = probe
            head = {id(v) for v in by_block[HEAD]}
            # NOTE: the new head is not a pretrained layer to choose among: it learns at
            # the plan's rate, and the ratios are normalised among the backbone's tensors
            variables = [v for v in model.trainable_weights if id(v) not in head]
            with tf.GradientTape() as tape:
                predicted = trainer(images, training=False)
                loss = trainer.compute_loss(x=images, y=labels, y_pred=predicted)
            # NOTE: an Embedding table's gradient is sparse (a ViT's tokens, positions)
            gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                         for g in tape.gradient(loss, variables)]
            return {id(v): s for v, s in zip(variables,
                                               relative_gradient_norms(gradients, variables))}

        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            logs["trainable_parameters"] = float(sum(
                int(np.prod(v.shape)) for v in model.trainable_weights))
            if strategy.adapters:
                logs["adapter_parameters"] = float(sum(
                    int(np.prod(v.shape)) for v in model.trainable_weights if "lora" in v.path))
            for block, value in sorted(self.scales.items()):
                logs["scale_head" if block == HEAD else f"scale_block{block}"] = value

    return ApplyStrategy()


def enable_adapters(model: keras.Model, block_map: Mapping[int, list[str]], first: int,
                    rank: int, targets: Callable[[keras.layers.Layer], bool] | None = None
                    ) -> int:
    """LoRA on every convolution and dense layer of blocks ``first`` … N, or on those of
    them ``targets`` names (default: the model's ``adapter_targets``, which
    :func:`kandel_repro.models.build.build_model` sets from the backbone's registry
    entry): their kernels, biases and the blocks' other weights frozen, the adapters
    trainable; the number of adapter parameters. One line of refusal on a Keras without
    adapters for convolutions."""
    import keras

    targets = targets or getattr(model, "adapter_targets", None) or (lambda layer: True)
    if not hasattr(keras.layers.Conv2D, "enable_lora"):
        raise ConfigError(f"--strategy lora needs Keras' adapters for convolutions (Keras "
                          f"3.5 or later); this is Keras {keras.__version__}")
    added = 0
    for block, names in block_map.items():
        if block < first:
            continue
        for name in names:
            layer = model.get_layer(name)
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) \
                    and not isinstance(layer, keras.layers.DepthwiseConv2D) and targets(layer):
                layer.enable_lora(rank)
                for variable in layer.weights:
                    if "lora" not in variable.path:
                        variable.trainable = False
                added += int(np.prod(layer.lora_kernel_a.shape)) + \
                    int(np.prod(layer.lora_kernel_b.shape))
            else:
                layer.trainable = False
    return added

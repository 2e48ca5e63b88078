"""The levels studies are made of: the rows and columns of the paper's tables (depths,
learning rates, backbones from scratch) and of the studies beyond it (layer-wise depths,
training-set fractions, partial transfer, augmentation policies), each a function that
returns :class:`~kandel_repro.studies.types.Level`\\ s. The registry
(:mod:`kandel_repro.studies.registry`) assembles studies from them.
"""
from __future__ import annotations

from collections.abc import Iterable

from ..core.protocol import LEARNING_RATES, PCAM
from ..models.backbones import depth_label, get_backbone, layer_label
from ..training.colour import COLOUR_OFF, STAIN_JITTER
from .types import Level


def format_lr(lr: float) -> str:
    """``1e-4`` as the paper writes it (not ``1e-04``)."""
    return f"{lr:.0e}".replace("e-0", "e-")


# --- the levels of the paper's tables --------------------------------------------------

def depth_rows(backbone: str) -> tuple[Level, ...]:
    """Fine-tuning depths of ``backbone``: the top block only, the top two, … all."""
    bb = get_backbone(backbone)
    return tuple(Level(depth_label(first, bb.num_blocks), f"{bb.name}_blocks{first}-{bb.num_blocks}",
                       {"backbone": bb.name, "first_trainable_block": first},
                       phrase=f"blocks {depth_label(first, bb.num_blocks)}")
                 for first in range(bb.num_blocks, 0, -1))


def scratch_rows(backbones: Iterable[str]) -> tuple[Level, ...]:
    """Whole backbones trained from their random initialisation (every block trains)."""
    return tuple(Level(get_backbone(b).application, f"{get_backbone(b).name}_scratch",
                       {"backbone": get_backbone(b).name, "first_trainable_block": 1})
                 for b in backbones)


def lr_columns(learning_rates: Iterable[float] = LEARNING_RATES) -> tuple[Level, ...]:
    return tuple(Level(format_lr(lr), f"lr{lr:.0e}", {"learning_rate": lr},
                       phrase=f"lr {format_lr(lr)}")
                 for lr in learning_rates)


def layer_rows(backbone: str) -> tuple[Level, ...]:
    """Layer-wise depths (Tajbakhsh et al. 2016): the head only, then the head and the
    last convolution, the last two, … all; then the whole network from scratch. A depth
    that is also a block-wise one says so (``layers 11–13 = blocks 5``)."""
    bb = get_backbone(backbone)
    n = bb.num_layers
    starts, first = {}, 1  # first convolution of each block → block number
    for block, count in enumerate(bb.block_layers, 1):
        starts[first] = block
        first += count
    rows = [Level("head only", f"{bb.name}_head",
                  {"backbone": bb.name, "first_trainable_block": 1, "first_trainable_layer": n + 1},
                  phrase="head only")]
    for k in range(n, 0, -1):
        label = layer_label(k, n)
        same = (f" = blocks {depth_label(starts[k], bb.num_blocks)}" if k in starts else "")
        rows.append(Level(label, f"{bb.name}_layers{k}-{n}",
                          {"backbone": bb.name, "first_trainable_block": 1,
                           "first_trainable_layer": k}, phrase=f"layers {label}{same}"))
    rows.append(Level("from scratch", f"{bb.name}_scratch",
                      {"backbone": bb.name, "first_trainable_block": 1, "weights": "none"},
                      phrase="from scratch"))
    return tuple(rows)


# Training-set fractions of the datasize study (our choice: the seed names "full and
# reduced training sets" without fractions); --fractions changes them.
FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)


def fraction_rows(fractions: Iterable[float] = FRACTIONS) -> tuple[Level, ...]:
    from fractions import Fraction

    rows = []
    for fraction in fractions:
        exact = Fraction(fraction).limit_denominator(1024)
        label = str(exact) if abs(float(exact) - fraction) < 1e-9 else f"{fraction:g}"
        rows.append(Level(label, f"frac{fraction:g}", {"train_fraction": float(fraction)},
                          phrase=f"{label} of the training split"))
    return tuple(rows)


def scratch_level(backbone, label=None):
    bb = get_backbone(backbone)
    return Level(label or bb.application, f"{bb.name}_scratch",
                 {"backbone": bb.name, "first_trainable_block": 1, "weights": "none"},
                 phrase=f"{label or bb.application} from scratch")


def tuned_level(backbone, first):
    bb = get_backbone(backbone)
    blocks = depth_label(first, bb.num_blocks)
    return Level(f"{bb.application}, blocks {blocks}", f"{bb.name}_blocks{first}-{bb.num_blocks}",
                 {"backbone": bb.name, "first_trainable_block": first},
                 phrase=f"{bb.application} fine-tuned, blocks {blocks}")


def transfer_rows(backbone: str) -> tuple[Level, ...]:
    """Partial transfer (Raghu et al. 2019): pretrained blocks 1..k, k from 0 (none: from
    scratch) to all, the blocks above freshly initialised; every block trains."""
    bb = get_backbone(backbone)
    labels = {0: "0 (none)", bb.num_blocks: f"{bb.num_blocks} (all)"}
    return tuple(Level(labels.get(k, str(k)), f"{bb.name}_transfer{k}",
                       {"backbone": bb.name, "first_trainable_block": 1, "transfer_blocks": k},
                       phrase={0: "nothing transferred", 1: "block 1 transferred"}.get(
                           k, f"blocks 1–{k} transferred"))
                 for k in range(bb.num_blocks + 1))


# --- beyond the paper: does the augmentation move the best depth? ---------------------------

# The colour of the "paper + colour" policy (our choice: the doctoral plan among the sources
# names contrast and saturation; brightness and hue as in Tellez et al. 2019's colour sets).
COLOUR_POLICY = {"brightness": 0.1, "contrast": 0.2, "saturation": 0.2, "hue": 0.05}


def strategy_rows(backbone: str) -> tuple[Level, ...]:
    """The strategies study's rows: the block-wise depths (the grid's own answer, so that a
    strategy is compared with the best cell, not a strawman), then each other strategy of
    :data:`kandel_repro.training.strategies.STRATEGIES`, free to move every block."""
    from ..training.strategies import STRATEGIES

    bb = get_backbone(backbone)
    depths = tuple(Level(f"blocks {level.label}", level.folder_part,
                         {**level.settings, "strategy": "blocks"}, phrase=level.phrase)
                   for level in depth_rows(backbone))
    return depths + tuple(
        Level(name, f"{bb.name}_{name}", {"backbone": bb.name, "first_trainable_block": 1,
                                          "strategy": name},
              phrase=strategy.phrase or f"{name} (every block)")
        for name, strategy in STRATEGIES.items() if name != "blocks")


def policy_columns() -> tuple[Level, ...]:
    """The augmentation study's columns: no augmentation, the paper's (§4.1), the paper's
    with :data:`COLOUR_POLICY`, and the paper's with strong HED stain jitter. Each sets
    every augmentation setting, so that the study refuses a user's own."""
    policies = (("none", "aug-none", None, {}, "no augmentation"),
                ("paper", "aug-paper", True, {}, "the paper's augmentation"),
                ("paper + colour", "aug-colour", True, COLOUR_POLICY,
                 "the paper's augmentation with colour"),
                ("paper + HED strong", "aug-hed-strong", True,
                 {"stain_jitter": STAIN_JITTER["strong"]},
                 "the paper's augmentation with strong HED jitter"))
    return tuple(Level(label, part, {**COLOUR_OFF, **colour, "augmentation": (
        PCAM.augmentation.to_kwargs() if geometric else None)}, phrase=phrase)
                 for label, part, geometric, colour, phrase in policies)

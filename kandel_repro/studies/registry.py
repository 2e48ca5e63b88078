"""The study registry: every experiment this package runs, as data.

A :class:`Study` is a grid of runs: its rows and columns are :class:`Level`\\ s, each
setting some run settings (a depth, a backbone, a learning rate…), its ``fixed``
settings apply to every run and are part of the experiment (Table 5's random weights),
and ``dataset`` names the data its runs read (and so the paper's protocol for them).
The paper's Tables 2–8 are the first entries of :data:`STUDIES`; a new study is a new
entry, plus at most a new figure in :mod:`kandel_repro.report.tables`.

Words: a *study* is this specification; ``kandel-repro grid STUDY``
(:mod:`kandel_repro.grid.grid`) trains its runs, ``kandel-repro table STUDY``
(:mod:`kandel_repro.report.tables`) renders them. A paper table is a study.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from ..core.errors import ConfigError
from ..core.protocol import FINDINGS, LEARNING_RATES, Finding
from ..models.backbones import depth_label, get_backbone
from .levels import (depth_rows, format_lr, fraction_rows, layer_rows, lr_columns, policy_columns,
                     scratch_level, scratch_rows, strategy_rows, transfer_rows, tuned_level)
from .types import Level, Study
from .unlabelled import (FRACTIONS as UNLABELLED_FRACTIONS, LEARNING_RATE as UNLABELLED_LR, TRUNK,
                         findings_at, init_levels)
from .validation import validate_study


def _fine_tuning(name, title, backbone, dataset):
    return Study(name, title, dataset, depth_rows(backbone), lr_columns(), "Fine-tuned blocks",
                 findings=tuple(FINDINGS[name]))


# --- any backbone on any data: the paper's depth × learning-rate grid ----------------------

def depth_questions(backbone: str) -> tuple[Finding, ...]:
    """What the depth study's verdict section answers (it has no paper to check)."""
    bb = get_backbone(backbone)
    whole, top = depth_label(1, bb.num_blocks), depth_label(bb.num_blocks, bb.num_blocks)
    return (Finding("Which depths and learning rates are tied with the best cell?",
                    ("tied_with_best",)),
            Finding(f"Is fine-tuning the whole network (blocks {whole}) distinguishable from "
                    f"the top block alone (block {top}) at each learning rate?",
                    ("rows_apart", whole, top)))


DEPTH_DEFAULTS = {"backbone": "vgg16", "dataset": "folder"}


def parse_backbones(text: str | Sequence[str] | None) -> list[str]:
    """``--backbone a,b,c`` as registry names (aliases resolved, each checked, none
    twice); None → ``[]``."""
    if text is None:
        return []
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    if not names or not all(names):
        raise ConfigError(f"--backbone takes a name or a list (vgg16,inception_v3), got {text!r}")
    resolved = [get_backbone(name).name for name in names]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"--backbone names a backbone twice: {text!r}")
    return resolved


def _subject(backbone, dataset):
    """``(backbone entry, data set, the data in words)`` of a parametric study, the
    defaults where not given."""
    dataset = dataset or DEPTH_DEFAULTS["dataset"]
    data = {"folder": "your data (folder layout)", "csv": "your data (CSV manifest)"}.get(
        dataset, f"{dataset} data")
    return get_backbone(backbone or DEPTH_DEFAULTS["backbone"]), dataset, data


def depth_study(backbone: str | None = None, dataset: str | None = None,
                learning_rates: Sequence[float] | None = None) -> Study:
    """The paper's grid (depth × learning rate, Tables 2–4 and 6–8) for ``backbone`` on
    the data set ``dataset`` (a reader of :mod:`kandel_repro.readers.registry`: a user's
    ``folder`` or ``csv``, or one of the paper's), under that data set's protocol;
    ``learning_rates``: other columns than the paper's three."""
    bb, dataset, data = _subject(backbone, dataset)
    return Study("depth", f"How deeply to fine-tune {bb.application} — {data}",
                 dataset, depth_rows(bb.name), lr_columns(learning_rates or LEARNING_RATES),
                 "Fine-tuned blocks",
                 findings=depth_questions(bb.name), paper=False, parametric=True,
                 figures=("heatmap", "curves", "roc", "confusion", "radar"))


def transfer_study(backbone: str | None = None, dataset: str | None = None,
                   learning_rates: Sequence[float] | None = None) -> Study:
    """Pretrained against scratch at every depth: the depth study's rows, two columns —
    the grid's ``--weights`` (ImageNet by default; the header names them) and random
    weights (the blocks below the depth then stay at their random values: random
    features) — at one learning rate (``learning_rates``: one value; 1e-4 by default)."""
    bb, dataset, data = _subject(backbone, dataset)
    rates = tuple(learning_rates or (TRANSFER_LR,))
    if len(rates) != 1:
        raise ConfigError(f"the transfer study trains at one learning rate, got "
                          f"{', '.join(format_lr(r) for r in rates)}: give --learning-rates "
                          "with one value")
    whole, top = depth_label(1, bb.num_blocks), depth_label(bb.num_blocks, bb.num_blocks)
    columns = (Level("pretrained", "pretrained", {}, phrase="pretrained"),
               Level("scratch", "scratch", {"weights": "none"}, phrase="from scratch"))
    return Study(
        "transfer", f"Pretrained against scratch at every depth — {bb.application}, "
        f"{data}, lr {format_lr(rates[0])}", dataset, depth_rows(bb.name), columns,
        "Fine-tuned blocks", column_header="Initialisation",
        fixed={"learning_rate": rates[0]},
        findings=(Finding("Which depths and initialisations are tied with the best cell?",
                          ("tied_with_best",)),
                  Finding("Does the pretrained network beat the same network from scratch "
                          "at each depth?", ("columns_apart", "pretrained", "scratch")),
                  Finding(f"Pretrained: is the whole network (blocks {whole}) "
                          f"distinguishable from the top block alone (block {top})?",
                          ("rows_apart", whole, top))),
        paper=False, parametric=True, figures=("heatmap", "curves", "roc", "radar"))


TRANSFER_LR = 1e-4  # the paper's best trade-off (§5)


def strategies_study(backbone: str | None = None, dataset: str | None = None,
                     learning_rates: Sequence[float] | None = None) -> Study:
    """Which way of adapting reaches the best block-wise cell: the block-wise depths and the
    strategies of :mod:`kandel_repro.training.strategies` (rows) × the learning rates."""
    bb, dataset, data = _subject(backbone, dataset)
    return Study(
        "strategies", f"Adaptation strategies against block-wise depths — {bb.application}, "
        f"{data}", dataset, strategy_rows(bb.name), lr_columns(learning_rates or LEARNING_RATES),
        "Strategy",
        findings=(Finding("Which strategies and depths are tied with the best cell?",
                          ("tied_with_best",)),
                  Finding("Does the best strategy change with the learning rate?",
                          ("best_row_by_column",))),
        paper=False, parametric=True, figures=("heatmap", "cost", "scales", "curves", "radar"))


def parse_learning_rates(text: str | Sequence[float] | None) -> tuple[float, ...] | None:
    """``--learning-rates 1e-4,1e-5`` as numbers above 0, none twice; None → None."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v > 0 for v in values) \
            or len({format_lr(v) for v in values}) != len(values):
        raise ConfigError(f"--learning-rates takes rates above 0, none twice, e.g. 1e-4,1e-5; "
                          f"got {text!r}")
    return values


# --- beyond the paper: pretraining on the unlabelled images (studies/unlabelled.py) --------

def unlabelled_study(fractions: tuple[float, ...] = UNLABELLED_FRACTIONS) -> Study:
    """Initialisation × labelled fraction (the datasize study's levels of those
    fractions)."""
    columns = tuple(replace(level, settings={**level.settings, "first_trainable_block": 1})
                    for level in fraction_rows(tuple(sorted(fractions))))
    return Study("unlabelled", "Unlabelled pretraining — scratch, VAE, DCGAN, ImageNet", "pcam", init_levels(),
                 columns, "Initialisation", column_header="Labelled training fraction",
                 fixed={"learning_rate": UNLABELLED_LR}, findings=findings_at(columns[0].label),
                 paper=False, figures=("heatmap", "curves", "radar"), note=(
                     "Rows: dcgan_small (the DCGAN discriminator's trunk) from random weights, "
                     "from the encoder of the VAE and from the discriminator of the DCGAN "
                     "pretrained on the training split's images without their labels "
                     "(`kandel-repro pretrain`); the ImageNet row is VGG16, the paper's "
                     "backbone, from ImageNet's weights — another architecture, so a reference "
                     "rather than a like comparison, run only where its weights file is in "
                     "Keras' folder. Every run fine-tunes the whole network on the column's "
                     "nested, stratified fraction of the labelled training split; the "
                     "validation split is the whole one."))


def unlabelled_depth_study(fractions: tuple[float, ...] = UNLABELLED_FRACTIONS) -> Study:
    """``dcgan_small``'s depth × initialisation (scratch, VAE, DCGAN) at the smallest of
    ``fractions``."""
    smallest = fraction_rows((min(fractions),))[0]
    columns = tuple(replace(level, folder_part=level.folder_part.replace(f"{TRUNK}_", "init-"),
                            settings={"weights": level.settings["weights"]})
                    for level in init_levels(imagenet=False))
    return Study("unlabelled-depth", f"Depth after pretraining — dcgan_small, "
                 f"{smallest.label} labelled",
                 "pcam", depth_rows(TRUNK), columns, "Fine-tuned blocks",
                 column_header="Initialisation", fixed={"learning_rate": UNLABELLED_LR,
                                                         **smallest.settings},
                 findings=(Finding("Which depths and initialisations are tied with the best "
                                   "cell?", ("tied_with_best",)),
                           Finding("Does the best depth change with the initialisation?",
                                   ("best_row_by_column",))),
                 paper=False, figures=("heatmap", "curves", "radar"), note=(
                     "Columns: dcgan_small from random weights, from the VAE's encoder and from "
                     "the DCGAN's discriminator (`kandel-repro pretrain`); the blocks below the "
                     "fine-tuned ones keep those weights frozen (from scratch: random "
                     "features). Every run trains on the smallest labelled fraction of the "
                     "unlabelled study."))


# The studies made by functions of their fractions, which --fractions then gives.
FRACTION_STUDIES = {
    "unlabelled": lambda f=None: unlabelled_study(*([f] if f else [])),
    "unlabelled-depth": lambda f=None: unlabelled_depth_study(*([f] if f else []))}

# NOTE: every study in one literal, in the order `kandel-repro studies` lists them.
STUDIES = {s.name: s for s in (
    _fine_tuning("table2", "Table 2 — VGG16 fine-tuned on PCam", "vgg16", "pcam"),
    _fine_tuning("table3", "Table 3 — VGG19 fine-tuned on PCam", "vgg19", "pcam"),
    _fine_tuning("table4", "Table 4 — InceptionV3 fine-tuned on PCam", "inception_v3", "pcam"),
    Study("table5", "Table 5 — trained from scratch on PCam", "pcam",
          scratch_rows(("vgg16", "vgg19", "inception_v3")), lr_columns(),
          "Architecture (from scratch)", fixed={"weights": "none"},
          findings=tuple(FINDINGS["table5"]), marks_non_convergence=True),
    _fine_tuning("table6", "Table 6 — VGG16 fine-tuned on BreakHis", "vgg16", "breakhis"),
    _fine_tuning("table7", "Table 7 — VGG19 fine-tuned on BreakHis", "vgg19", "breakhis"),
    _fine_tuning("table8", "Table 8 — InceptionV3 fine-tuned on BreakHis", "inception_v3",
                 "breakhis"),
    # --- beyond the paper: Tajbakhsh et al. 2016's questions ----------------------------
    Study("layerwise-vgg16", "Layer-wise depth — VGG16 on PCam", "pcam", layer_rows("vgg16"),
          lr_columns((1e-4,)), "Fine-tuned layers", figures=(
              "heatmap", "curves", "params", "radar")),
    Study("layerwise-vgg19", "Layer-wise depth — VGG19 on PCam", "pcam", layer_rows("vgg19"),
          lr_columns((1e-4,)), "Fine-tuned layers", figures=(
              "heatmap", "curves", "params", "radar")),
    Study("datasize", "Training-set size — VGG16 on PCam, fine-tuned (blocks 3–5) and from "
          "scratch", "pcam", fraction_rows(),
          (Level("fine-tuned, blocks 3–5", "vgg16_blocks3-5",
                 {"backbone": "vgg16", "first_trainable_block": 3}),
           Level("from scratch", "vgg16_scratch",
                 {"backbone": "vgg16", "first_trainable_block": 1, "weights": "none"})),
          "Training-set fraction", column_header="Model", fixed={"learning_rate": 1e-4},
          figures=("heatmap", "datasize", "curves", "radar")),
    Study("init", "Initialisation — VGG16 on PCam, from scratch or fine-tuned", "pcam",
          # the grid's --weights (ImageNet by default; the header names them), so that a
          # run from other weights is never labelled ImageNet; the folder name stays
          (Level("fine-tuned, blocks 1–5", "vgg16_imagenet",
                 {"backbone": "vgg16", "first_trainable_block": 1}),
           *(Level(label, f"vgg16_{init}",
                   {"backbone": "vgg16", "first_trainable_block": 1, "weights": "none",
                    "init": init}, phrase=f"{label} from scratch")
             for init, label in (("glorot", "Glorot"), ("he", "He"),
                                 ("gaussian", "Gaussian σ=0.01")))),
          lr_columns((1e-4,)), "Initialisation", figures=("heatmap", "convergence", "radar")),
    # --- beyond the paper: Raghu et al. 2019 (Transfusion)'s questions -------------------
    Study("small-nets", "Small networks from scratch against ImageNet giants — PCam", "pcam",
          (*(scratch_level(b) for b in ("cbr_large_t", "cbr_large_w", "cbr_small", "cbr_tiny")),
           scratch_level("vgg16"), tuned_level("vgg16", 3), scratch_level("inception_v3"),
           tuned_level("inception_v3", 1)),
          lr_columns((1e-4,)), "Network", figures=("heatmap", "small-nets", "curves", "radar")),
    Study("partial-transfer", "Partial transfer — VGG16 on PCam, pretrained blocks 1..k",
          "pcam", transfer_rows("vgg16"), lr_columns((1e-4,)), "Blocks transferred",
          figures=("heatmap", "convergence", "curves", "radar")),
    # --- beyond the paper: does the augmentation move the best depth? ----------------------
    Study(
        "augmentation", "Augmentation policy — VGG16 on PCam, each depth at 1e-4", "pcam",
        depth_rows("vgg16"), policy_columns(), "Fine-tuned blocks",
        column_header="Augmentation (training split)", fixed={"learning_rate": 1e-4},
        findings=(Finding("Which depths and policies are tied with the best cell?",
                          ("tied_with_best",)),
                  Finding("Does the best depth change with the augmentation policy?",
                          ("best_row_by_column",))),
        paper=False, figures=("heatmap", "curves", "radar"), column_legend=True),
    # --- any backbone on any data: the paper's depth × learning-rate grid --------------------
    depth_study(),
    # --- any backbone on any data: does pretraining beat scratch at every depth? -----------
    transfer_study(),
    # --- any backbone on any data: the adaptation strategies against the depth grid --------
    strategies_study(),
    # --- beyond the paper: pretraining on the unlabelled images (studies/unlabelled.py) ------
    *(make() for make in FRACTION_STUDIES.values()),
)}

# the parametric studies, made anew for a backbone, a data set and learning rates
PARAMETRIC = {"depth": depth_study, "transfer": transfer_study, "strategies": strategies_study}


def with_fractions(study: Study, fractions: str | None = None) -> Study:
    """``study`` with other training-set fractions (the datasize study's rows)."""
    if fractions is None:
        return study
    if not any("train_fraction" in level.settings for level in study.rows) and \
            study.name not in FRACTION_STUDIES:
        raise ConfigError(f"--fractions applies to the datasize and unlabelled studies, not "
                          f"{study.name}")
    try:
        values = tuple(float(f) for f in str(fractions).split(",") if f.strip())
    except ValueError:
        raise ConfigError(f"--fractions takes numbers in (0, 1], e.g. 1,0.5,0.25; got "
                          f"{fractions!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise ConfigError(f"--fractions takes numbers in (0, 1], e.g. 1,0.5,0.25; got {fractions!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"--fractions names a fraction twice: {fractions!r}")
    rows = fraction_rows(values)
    seen = {}
    for value, row in zip(values, rows):
        other = seen.setdefault(row.folder_part, value)
        if other != value:
            raise ConfigError(f"--fractions {other} and {value} would share one run folder "
                              f"({row.folder_part}); give fractions that differ in their first 6 "
                              "significant digits")
    if study.name in FRACTION_STUDIES:  # (made anew: its findings name the smallest)
        return FRACTION_STUDIES[study.name](values)
    return replace(study, rows=rows)


def _learning_rates(study: Study) -> tuple[float, ...]:
    """The learning rates a study trains at: its columns' (the depth study), else its own."""
    rates = [level.settings["learning_rate"] for level in study.columns
             if "learning_rate" in level.settings]
    return tuple(rates) or (study.fixed["learning_rate"],)


def get_study(name: str | Study, fractions: str | None = None, backbone: str | None = None,
              dataset: str | None = None,
              learning_rates: str | Sequence[float] | None = None) -> Study:
    """The study ``name`` (a :class:`Study` passes through), with other training-set
    fractions when ``fractions`` is given (:func:`with_fractions`); a parametric study
    (the depth study) made for ``backbone`` on ``dataset``. A study with its own backbones
    refuses ``backbone``."""
    if isinstance(name, Study):
        study = name
    else:
        try:
            study = STUDIES[name]
        except KeyError:
            raise ConfigError(f"unknown study {name!r}; available: {', '.join(STUDIES)}") from None
    rates = parse_learning_rates(learning_rates)
    if rates is not None and not study.parametric:
        raise ConfigError(f"--learning-rates applies to the depth study; {study.name} has the "
                          "paper's columns")
    if study.parametric and (backbone is not None or dataset is not None or rates):
        names = parse_backbones(backbone) if backbone is not None else list(study.backbones)
        if len(names) > 1:
            raise ConfigError(f"{study.name}: one backbone at a time here, got {backbone!r} "
                              "(grid and table take a list and go through it)")
        study = PARAMETRIC[study.name](names[0], dataset or study.dataset,
                                       rates or _learning_rates(study))
    elif backbone is not None and not study.parametric:
        if get_backbone(backbone).name not in study.backbones:
            raise ConfigError(f"{study.name} trains {', '.join(study.backbones)} itself; "
                              "--backbone applies to the depth study (grid depth --backbone …)")
    return with_fractions(study, fractions)


# --- the registry checked at import: a typo in a study fails at once, not in a table ------


def _validate_registry() -> None:
    for study in STUDIES.values():
        validate_study(study)


_validate_registry()

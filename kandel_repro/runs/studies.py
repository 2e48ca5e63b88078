"""The study registry: every experiment this package runs, as data.

A :class:`Study` is a grid of runs: its rows and columns are :class:`Level`\\ s, each
setting some run settings (a depth, a backbone, a learning rate…), its ``fixed``
settings apply to every run and are part of the experiment (Table 5's random weights),
and ``dataset`` names the data its runs read (and so the paper's protocol for them).
The paper's Tables 2–8 are the first entries of :data:`STUDIES`; a new study is a new
entry, plus at most a new figure in :mod:`kandel_repro.report.tables`.

Words: a *study* is this specification; ``kandel-repro grid STUDY``
(:mod:`kandel_repro.runs.grid`) trains its runs, ``kandel-repro table STUDY``
(:mod:`kandel_repro.report.tables`) renders them. A paper table is a study.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from ..core.errors import ConfigError
from ..core.protocol import FINDINGS, LEARNING_RATES, PCAM, Finding
from ..models.backbones import depth_label, get_backbone, layer_label
from ..models.weights import MEANVAR
from .config import COLOUR_OFF, STAIN_JITTER, normalise, option, resolve_config
from .levels import Cell, Level, Study
from .unlabelled import unlabelled_depth_study, unlabelled_study
from .validation import validate_study

_T = TypeVar("_T")


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


def _fine_tuning(name, title, backbone, dataset):
    return Study(name, title, dataset, depth_rows(backbone), lr_columns(), "Fine-tuned blocks",
                 findings=tuple(FINDINGS[name]))


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
)}


def _scratch(backbone, label=None):
    bb = get_backbone(backbone)
    return Level(label or bb.application, f"{bb.name}_scratch",
                 {"backbone": bb.name, "first_trainable_block": 1, "weights": "none"},
                 phrase=f"{label or bb.application} from scratch")


def _tuned(backbone, first):
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


STUDIES.update({s.name: s for s in (
    # --- beyond the paper: Raghu et al. 2019 (Transfusion)'s questions -------------------
    Study("small-nets", "Small networks from scratch against ImageNet giants — PCam", "pcam",
          (*(_scratch(b) for b in ("cbr_large_t", "cbr_large_w", "cbr_small", "cbr_tiny")),
           _scratch("vgg16"), _tuned("vgg16", 3), _scratch("inception_v3"),
           _tuned("inception_v3", 1)),
          lr_columns((1e-4,)), "Network", figures=("heatmap", "small-nets", "curves", "radar")),
    Study("partial-transfer", "Partial transfer — VGG16 on PCam, pretrained blocks 1..k",
          "pcam", transfer_rows("vgg16"), lr_columns((1e-4,)), "Blocks transferred",
          figures=("heatmap", "convergence", "curves", "radar")),
)})


# --- beyond the paper: does the augmentation move the best depth? ---------------------------

# The colour of the "paper + colour" policy (our choice: the doctoral plan among the sources
# names contrast and saturation; brightness and hue as in Tellez et al. 2019's colour sets).
COLOUR_POLICY = {"brightness": 0.1, "contrast": 0.2, "saturation": 0.2, "hue": 0.05}


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


STUDIES["augmentation"] = Study(
    "augmentation", "Augmentation policy — VGG16 on PCam, each depth at 1e-4", "pcam",
    depth_rows("vgg16"), policy_columns(), "Fine-tuned blocks",
    column_header="Augmentation (training split)", fixed={"learning_rate": 1e-4},
    findings=(Finding("Which depths and policies are tied with the best cell?",
                      ("tied_with_best",)),
              Finding("Does the best depth change with the augmentation policy?",
                      ("best_row_by_column",))),
    paper=False, figures=("heatmap", "curves", "radar"), column_legend=True)


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


def depth_study(backbone: str | None = None, dataset: str | None = None,
                learning_rates: Sequence[float] | None = None) -> Study:
    """The paper's grid (depth × learning rate, Tables 2–4 and 6–8) for ``backbone`` on
    the data set ``dataset`` (a reader of :mod:`kandel_repro.data.readers`: a user's
    ``folder`` or ``csv``, or one of the paper's), under that data set's protocol;
    ``learning_rates``: other columns than the paper's three."""
    bb = get_backbone(backbone or DEPTH_DEFAULTS["backbone"])
    dataset = dataset or DEPTH_DEFAULTS["dataset"]
    data = {"folder": "your data (folder layout)", "csv": "your data (CSV manifest)"}.get(
        dataset, f"{dataset} data")
    return Study("depth", f"How deeply to fine-tune {bb.application} — {data}",
                 dataset, depth_rows(bb.name), lr_columns(learning_rates or LEARNING_RATES),
                 "Fine-tuned blocks",
                 findings=depth_questions(bb.name), paper=False, parametric=True,
                 figures=("heatmap", "curves", "roc", "confusion", "radar"))


STUDIES["depth"] = depth_study()

# --- beyond the paper: pretraining on the unlabelled images (runs/unlabelled.py) ------------
# NOTE: made by functions of their fractions, which --fractions then gives (FRACTION_STUDIES).
FRACTION_STUDIES = {
    "unlabelled": lambda f=None: unlabelled_study(fraction_rows, *([f] if f else [])),
    "unlabelled-depth": lambda f=None: unlabelled_depth_study(depth_rows, fraction_rows,
                                                              *([f] if f else []))}
STUDIES.update({name: make() for name, make in FRACTION_STUDIES.items()})


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
    from dataclasses import replace

    return replace(study, rows=rows)


def run_name(cell: Cell, seed: int = 0) -> str:
    """The folder of ``cell``'s run with ``seed``: the cell's name for seed 0 (the name
    grids have always used), ``<cell>_seed<S>`` for the others."""
    return cell.folder if int(seed) == 0 else f"{cell.folder}_seed{int(seed)}"


def seed_of(cell: Cell, folder_name: str) -> int | None:
    """The seed of ``cell``'s run in folder ``folder_name``, or None if it is not one."""
    if folder_name == cell.folder:
        return 0
    match = re.fullmatch(re.escape(cell.folder) + r"_seed(\d+)", folder_name)
    return int(match.group(1)) if match else None


# More seeds than anyone trains per cell; a typo (10000) is refused before thousands of
# run configs are built.
MAX_SEEDS = 100


def parse_seeds(seeds: int | str | Sequence[int] | None) -> tuple[int, ...]:
    """``--seeds``: ``N`` (seeds 0 … N−1) or a list ``0,3,7``; None → ``(0,)``."""
    if seeds is None:
        return (0,)
    if isinstance(seeds, int):
        text = str(seeds)
    elif isinstance(seeds, (list, tuple)):
        text = ",".join(map(str, seeds))
    else:
        text = str(seeds).strip()
    try:
        if "," in text or isinstance(seeds, (list, tuple)):
            values = tuple(int(part) for part in text.split(",") if part.strip())
        else:
            values = tuple(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3: seeds 0, 1, 2) or a list (0,3,7), got "
                          f"{seeds!r}") from None
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise ConfigError(f"--seeds needs at least one seed, each ≥ 0 and none twice, got {seeds!r}")
    if len(values) > MAX_SEEDS:
        raise ConfigError(f"--seeds {seeds}: at most {MAX_SEEDS} seeds per cell (each seed is "
                          "one more run of every cell)")
    return values


def study_runs(study: Study, seeds: Iterable[int] = (0,)) -> list[tuple[Cell, int, str]]:
    """``[(cell, seed, run name)]``: every run of the study, seed by seed (a whole table
    of seed 0 first), cell by cell, in the order a grid trains them."""
    return [(cell, seed, run_name(cell, seed)) for seed in seeds for cell in study.cells()]


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
        study = depth_study(names[0], dataset or study.dataset,
                            rates or tuple(level.settings["learning_rate"]
                                           for level in study.columns))
    elif backbone is not None and not study.parametric:
        if get_backbone(backbone).name not in study.backbones:
            raise ConfigError(f"{study.name} trains {', '.join(study.backbones)} itself; "
                              "--backbone applies to the depth study (grid depth --backbone …)")
    return with_fractions(study, fractions)


# The option that chooses a varied setting's levels, where a study has one.
LEVEL_OPTIONS = {"train_fraction": "--fractions"}


def _refuse_varied(study, settings):
    """Refuse a setting the study's rows or columns set: the study would override it.

    ``weights`` is the exception where only some rows set it (their "from scratch"): the
    option then chooses the weights of the other, pretrained rows."""
    cells = study.cells()
    for key in sorted(study.varied_keys - set(study.fixed)):
        if settings.get(key) is None and not (key == "augmentation" and key in settings):
            continue  # (--no-augmentation gives augmentation=None)
        if key == "weights" and not all("weights" in c.settings for c in cells):
            continue
        in_rows = any(key in level.settings for level in study.rows)
        levels = ", ".join(dict.fromkeys(level.label for level in (
            study.rows if in_rows else study.columns) if key in level.settings))
        header = study.row_header if in_rows else study.column_header
        controls = LEVEL_OPTIONS.get(key)
        raise ConfigError(
            f"{study.name} sets {option(key)} itself: its {'rows' if in_rows else 'columns'} "
            f"({header.lower()}) are {levels}; leave {option(key)} out"
            + (f", or choose its values with {controls}" if controls else ""))
    weights = settings.get("weights")
    if "transfer_blocks" in study.varied_keys and weights is not None and \
            normalise("weights", weights) in ("none", MEANVAR):
        raise ConfigError(f"{study.name} transfers blocks of pretrained weights: give --weights "
                          "imagenet (default) or the path of pretrained weights, not "
                          f"{weights!r}")


def study_configs(study: Study, seeds: Iterable[int] = (0,),
                  **settings: Any) -> dict[str, dict]:
    """The resolved config of every run (``{run name: config}``, see :func:`study_runs`):
    protocol ← the user's ``settings`` ← the study's fixed settings and the cell's own ←
    the run's seed. A user setting that contradicts a fixed one is refused (compared in
    its normalised spelling, so ``weights="scratch"`` agrees with Table 5's ``"none"``)."""
    for key, value in study.fixed.items():
        given = settings.get(key)
        if given is not None and normalise(key, given) != normalise(key, value):
            raise ConfigError(f"{study.name} fixes {option(key)} {value}; got {given!r}")
    _refuse_varied(study, settings)
    if settings.get("seed") is not None:
        raise ConfigError("a study's runs take their seeds from --seeds (the seed of each "
                          "run); give --seeds instead of --seed")
    return {name: resolve_config(protocol=study.protocol,
                                 **{**settings, **cell.settings, "seed": seed})
            for cell, seed, name in study_runs(study, seeds)}


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` → ``(i, n)`` with 1 ≤ i ≤ n; None → None."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 2/3), got {text!r}") from None
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {text}: i must be from 1 to n")
    return index, count


def shard_cells(cells: Iterable[_T],
                shard: tuple[int, int] | None) -> list[tuple[int, _T]]:
    """The items (cells, or runs) of shard ``(i, n)``: every n-th from the i-th, as
    ``(position, item)``.

    Round robin, so each shard gets a similar mix of shallow (fast) and deep (slow) runs;
    the shards of one table are disjoint and together cover it.
    """
    numbered = list(enumerate(cells, 1))
    if shard is None:
        return numbered
    index, count = shard
    return [(position, cell) for position, cell in numbered if (position - 1) % count == index - 1]


# --- the registry checked at import: a typo in a study fails at once, not in a table ------


def _validate_registry() -> None:
    for study in STUDIES.values():
        validate_study(study)


_validate_registry()

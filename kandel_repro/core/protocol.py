"""The paper's protocol, stated once.

Kandel I., Castelli M. (2020). *How Deeply to Fine-Tune a Convolutional Neural Network:
A Case Study Using a Histopathology Dataset.* Applied Sciences 10(10):3359.

Three protocols: :data:`PCAM` (§4.1, Tables 2–5), :data:`BREAKHIS` (§4.3, Tables 6–8) and
:data:`OWN`, the PCam protocol with BreakHis' labelled 80/10/10 split for a user's own data.
Every value used by a training run comes from its protocol unless the user overrides
it (:func:`kandel_repro.runs.config.resolve_config`). Each field is listed in :data:`SOURCES`
with where it comes from: a section of the paper, or ``"our choice"`` with the reason,
for what the paper leaves unstated. Tables compare a run's resolved config against its
protocol and print every difference in their header (:func:`deviations`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

# Learning rates of every table (paper §4.1: "10^-3, 10^-4, 10^-5").
LEARNING_RATES = (1e-3, 1e-4, 1e-5)


@dataclass(frozen=True)
class Augmentation:
    """Parameters of Keras' ``ImageDataGenerator`` for the training split.

    The paper (§4.1) lists horizontal and vertical flips, rotation of 180°, width and
    height shift, shear and zoom, without magnitudes except the rotation. Shift, shear
    and zoom magnitudes are our choice: 10 % shifts, zoom in [0.9, 1.1], and a shear of
    0.1 rad (5.73°; ``ImageDataGenerator`` takes the shear angle in degrees).
    ``fill_mode="nearest"`` is ``ImageDataGenerator``'s default.
    """

    horizontal_flip: bool = True
    vertical_flip: bool = True
    rotation_range: float = 180.0
    width_shift_range: float = 0.1
    height_shift_range: float = 0.1
    shear_range: float = 5.729577951308232  # degrees == 0.1 rad
    zoom_range: float = 0.1
    fill_mode: str = "nearest"

    def to_kwargs(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Protocol:
    """Settings of one fine-tuning run on PCam (paper §4.1 unless noted in SOURCES).

    The class attributes :attr:`splits`, :attr:`resizes`, :attr:`wsi_map_split` and
    :attr:`kept_size` are what the protocol's data sets offer, read where only the
    protocol is known (:func:`kandel_repro.runs.config.resolve_config`); they are not
    fields, so not settings a run records. Each reader checks its own data further.
    """

    # NOTE: ClassVar, not fields: dataclasses.asdict (a run's config, paper_settings)
    # leaves them out, so config.json is what it was before they existed.
    # The `split` values the protocol's readers serve, together (PCam: pcam, pcam-h5).
    splits: ClassVar[tuple[str, ...]] = ("image", "slide")
    # Whether its images are resized to `image_size` when packed (PCam's keep their own).
    resizes: ClassVar[bool] = False
    # The split `wsi_map` (the patch → slide map) serves; None where there is none.
    wsi_map_split: ClassVar[str | None] = "slide"
    # Why --image-size is refused where the images keep their own size.
    kept_size: ClassVar[str] = ("--image-size applies to BreakHis only: PCam patches are "
                                "used at their own size, not resized (paper §4.1)")

    batch_size: int = 64
    optimizer: str = "adam"
    loss: str = "binary_crossentropy"
    image_size: int = 96
    dropout: float = 0.5
    patience: int = 10
    validation_fraction: float = 0.2
    augmentation: Augmentation = field(default_factory=Augmentation)
    # --- what the paper leaves unstated: our documented choices -----------------
    max_epochs: int = 50
    monitor: str = "val_auc"
    preprocessing: str = "backbone"  # the backbone's own keras preprocess_input
    head_pooling: str = "flatten"
    stratified_split: bool = True
    seed: int = 0
    split_seed: int = 0
    split: str = "image"
    wsi_map: str = None  # PCam's patch → slide map, for split="slide"
    weights: str = "imagenet"
    # --- beyond the paper (Tajbakhsh et al. 2016): off unless asked for -------------
    momentum: float = 0.0  # SGD only
    lr_decay: float = 1.0  # learning rate × lr_decay after every epoch
    head_lr_mult: float = 1.0  # the new classifier's learning rate, × the base rate
    bias_lr_mult: float = 1.0  # every bias's learning rate, × its weights' rate
    first_trainable_layer: int = None  # layer-wise depth; None: by block
    init: str = None  # random weights' initialiser; None: each layer's own
    train_fraction: float = 1.0  # a nested, stratified share of the training split
    balance: str = "none"  # or "downsample": negatives cut to as many as positives
    # --- beyond the paper (Raghu et al. 2019, Transfusion): off unless asked for -------
    weights_from: str = None  # the pretrained weights Mean-Var takes its statistics from
    transfer_blocks: int = None  # pretrained blocks 1..k, the rest freshly initialised
    # --- beyond the paper (colour and stain augmentation): off unless asked for -------
    # Training split only, in the fused transform after the geometric one (see
    # kandel_repro.training.colour); each a deviation from the paper when set.
    brightness: float = 0.0  # add δ ~ U(−b, b) of the 0–255 range
    contrast: float = 0.0  # scale about each image's channel means by U(1 − c, 1 + c)
    saturation: float = 0.0  # scale the saturation by U(1 − s, 1 + s)
    hue: float = 0.0  # rotate the hue by U(−h, h) of the colour circle (h ≤ 0.5)
    crop: float = 1.0  # a random square crop of this share of the side, resized back
    stain_jitter: float = 0.0  # HED jitter σ (Tellez et al. 2019): light 0.05, strong 0.2
    # --- beyond the paper: how the trainable blocks adapt (kandel_repro.training.strategies)
    strategy: str = "blocks"  # the paper's: the blocks from the depth train at one rate
    llrd_gamma: float = 0.75  # llrd: block b of N at lr·γ^(N−b)
    probe_epochs: int = 5  # lp-ft: epochs of the head alone
    ft_lr_mult: float = 0.1  # lp-ft: the rate after the probe, × lr
    lora_rank: int = 4  # lora: the adapters' rank


# The paper's PCam protocol (§4.1).
PCAM = Protocol()


@dataclass(frozen=True)
class BreakHisProtocol(Protocol):
    """BreakHis runs (paper §4.3): the PCam protocol with patience 50 and an 80/10/10 split.

    ``image_size`` is the side BreakHis' 700×460 images are resized to, which the paper
    does not state: 224, the input size of the ImageNet models, is our choice. The paper
    split images at random (``split="image"``); ``split="patient"`` keeps each patient
    on one side (leakage-free). All magnifications are used together by default.
    """

    splits: ClassVar[tuple[str, ...]] = ("image", "patient")
    resizes: ClassVar[bool] = True
    wsi_map_split: ClassVar[str | None] = None

    patience: int = 50
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    image_size: int = 224
    magnification: str = "all"


BREAKHIS = BreakHisProtocol()


@dataclass(frozen=True)
class OwnDataProtocol(Protocol):
    """Runs on a user's own data (``--dataset folder`` or ``csv``): the PCam protocol
    (§4.1: Adam, batch 64, Dropout(0.5), patience 10, the same augmentation) with a
    labelled 80/10/10 train/validation/test split, as BreakHis (§4.3), so that every cell
    gets a test AUC.

    ``image_size`` 224 (the ImageNet models' input size; the backbone's minimum is
    enforced). ``split="auto"``: the data's own split (a ``split`` column, or pre-split
    ``train/val/test`` folders) when they have one, else by group when they name groups
    (patients, slides: no group on two sides), else stratified by label at random.
    ``loss="auto"``: binary cross-entropy behind one sigmoid unit for two classes (the
    paper's head), sparse categorical cross-entropy behind a softmax of k units for k ≥ 3.
    The reader options (``path_column``… ``window``) say how to read the layout.
    """

    splits: ClassVar[tuple[str, ...]] = ("auto", "given", "image", "group")
    resizes: ClassVar[bool] = True
    wsi_map_split: ClassVar[str | None] = None

    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    image_size: int = 224
    split: str = "auto"
    loss: str = "auto"
    path_column: str = None  # csv: the column of image paths (default "path")
    label_column: str = None  # csv: the column of labels (default "label")
    group_column: str = None  # csv: the column of groups (default "group" if present)
    window: tuple = None  # images of over 8 bits, DICOM: a fixed (center, width); see images.py
    positive_class: str = None  # two classes: the class of label 1 (None: the second)
    skip_unreadable: bool = False  # leave out (and count) images that cannot be decoded


OWN = OwnDataProtocol()
PROTOCOLS = {"pcam": PCAM, "breakhis": BREAKHIS, "own": OWN}

# The judge's real/fake check of a pretrain run (`kandel-repro judge`,
# kandel_repro.pretraining.judge): our defaults, as no paper sets them.
JUDGE_SAMPLES = 500  # real held-out images, and as many generated ones
JUDGE_EPOCHS = 10  # the classifier's most epochs (the best on validation AUC is kept)
JUDGE_MIN_IMAGES = 8  # per kind: enough for every part of the 50/25/25 split to hold both
FID_NET = "inception_v3"  # the network of the FID's features

# Table 5 marks a from-scratch run "did not converge" by this rule rather than print a
# misleading AUC (paper §4.2: "the model did not converge at all").
NOT_CONVERGED_BELOW_AUC = 0.55

SOURCES = {
    "batch_size": "paper §4.1: batch size 64",
    "optimizer": "paper §4.1: Adam for all experiments",
    "loss": "binary classification with one sigmoid unit; the paper names no loss, "
    "binary cross-entropy is the standard one for it",
    "learning_rates": "paper §4.1: 1e-3, 1e-4, 1e-5 for every depth",
    "image_size": "paper §4.1: images kept at their original 96×96, not resized",
    "dropout": "paper §4.1: original top removed, Dropout(0.5), new fully connected classifier",
    "patience": "paper §4.1: early stopping of 10 epochs (50 on BreakHis, §4.3)",
    "validation_fraction": "paper §4.1: 80 % training / 20 % validation",
    "augmentation": "paper §4.1: flips, rotation 180°, width/height shift, shear, zoom; "
    "training split only. Magnitudes of shift/shear/zoom are our choice (Augmentation)",
    "max_epochs": "our choice: the paper gives no maximum; 50 epochs, with patience 10 "
    "a run normally stops earlier",
    "monitor": "our choice: exact validation ROC AUC (scikit-learn) each epoch, the "
    "paper's metric; the paper says only that the best model was kept every epoch",
    "preprocessing": "our choice: each backbone's own keras preprocess_input, the "
    "preprocessing its ImageNet weights were trained with",
    "head_pooling": "our choice: Flatten of the last feature map (3×3×512 for VGG at "
    "96×96) before Dropout; --head-pooling avg uses global average pooling",
    "stratified_split": "our choice: the 80/20 split is stratified by label",
    "seed": "our choice: seed 0 for the head's initialisation, the shuffling and the "
    "augmentation stream; a grid's --seeds trains each cell once per seed",
    "split_seed": "our choice: seed 0 for the train/validation(/test) split, the same for "
    "every seed of a table so that its runs are scored on the same images",
    "weights": "paper §4.1: ImageNet weights from keras.applications",
    "momentum": "beyond the paper: Tajbakhsh et al. 2016 train with SGD, momentum 0.9",
    "lr_decay": "beyond the paper: Tajbakhsh et al. 2016 multiply the learning rate by 0.95 "
    "every epoch",
    "head_lr_mult": "beyond the paper: Tajbakhsh et al. 2016 train the new last layer 10× "
    "faster than the tuned ones",
    "bias_lr_mult": "beyond the paper: in Tajbakhsh et al. 2016 biases learn at twice their "
    "weights' rate",
    "first_trainable_layer": "beyond the paper: Tajbakhsh et al. 2016 tune the last layer, "
    "the last two, … all (layer-wise depth)",
    "init": "beyond the paper: Tajbakhsh et al. 2016 compare Glorot, He and Gaussian "
    "initialisation from scratch",
    "train_fraction": "beyond the paper: Tajbakhsh et al. 2016 fine-tune and train from "
    "scratch on reduced training sets (the fractions are our choice)",
    "balance": "beyond the paper: Tajbakhsh et al. 2016 downsample the negatives",
    "weights_from": "beyond the paper: the pretrained weights whose per-tensor mean and "
    "variance Mean-Var initialisation draws from (Raghu et al. 2019); default ImageNet",
    "transfer_blocks": "beyond the paper: partial transfer (Raghu et al. 2019), pretrained "
    "weights for blocks 1..k only",
    "strategy": "beyond the paper: how the trainable blocks adapt — the paper's block-wise "
    "freezing (blocks), layer-wise rate decay (llrd), Auto-RGN (Lee et al. 2023), LP-FT "
    "(Kumar et al. 2022), gradual unfreezing (Howard & Ruder 2018), LoRA (Hu et al. 2022)",
    "llrd_gamma": "beyond the paper: our choice for CNNs, 0.75 per block (BEiT and MAE use "
    "0.65–0.75 per transformer layer)",
    "probe_epochs": "beyond the paper: our choice, 5 epochs of linear probe before LP-FT's "
    "fine-tuning",
    "ft_lr_mult": "beyond the paper: our choice, LP-FT fine-tunes at a tenth of the rate",
    "lora_rank": "beyond the paper: our choice, rank-4 adapters (Hu et al. 2022 use 1–64)",
    "brightness": "beyond the paper: the doctoral plan among the sources augments colour "
    "too; brightness shift (tf.image.adjust_brightness's rule, on the 0–255 range)",
    "contrast": "beyond the paper: contrast (the doctoral plan's augmentation; "
    "tf.image.adjust_contrast's rule)",
    "saturation": "beyond the paper: saturation (the doctoral plan's augmentation; "
    "tf.image.adjust_saturation's rule)",
    "hue": "beyond the paper: hue rotation (tf.image.adjust_hue's rule)",
    "crop": "beyond the paper: random cropping (the doctoral plan's augmentation), resized "
    "back to the image's side",
    "stain_jitter": "beyond the paper: HED stain jitter (Tellez et al. 2019: haematoxylin, "
    "eosin and DAB each scaled by U(1−σ, 1+σ) and shifted by U(−σ, σ))",
    "test_fraction": "paper §4.3: BreakHis split 80 % / 10 % / 10 %",
    "split": "paper §4.1/§4.3: images split at random (our 'image' split, stratified by "
    "label); 'slide' (PCam) and 'patient' (BreakHis) keep each slide or patient on one side",
    "wsi_map": "our option: the patch → slide map (id,wsi) for PCam's slide-level split; "
    "default DATA/patch_id_wsi.csv",
    "magnification": "our choice: the paper does not say; all four magnifications together",
}

# Where the own-data protocol's values come from, where they differ from PCam's.
OWN_SOURCES = {
    "validation_fraction": "our choice: 80 % train / 10 % validation / 10 % test, as the "
    "paper's BreakHis split (§4.3), so every cell has a test AUC",
    "test_fraction": "our choice: 10 % test, as the paper's BreakHis split (§4.3)",
    "image_size": "our choice: 224×224, the ImageNet models' input size",
    "split": "our choice: the data's own split when given, else no group (patient, slide) "
    "on two sides when groups are named, else stratified at random",
    "loss": "our choice: binary cross-entropy (one sigmoid unit) for two classes, sparse "
    "categorical cross-entropy (softmax of k units) for k ≥ 3",
    "path_column": "our option: the CSV manifest's column of image paths (default path)",
    "label_column": "our option: the CSV manifest's column of labels (default label)",
    "group_column": "our option: the CSV manifest's column of groups (default group)",
    "window": "our option: a fixed (center, width) window for images of more than 8 bits, "
    "gray or colour, and DICOM; default: the DICOM file's own window, else per-image "
    "min–max",
    "positive_class": "our option: with two classes, the class of label 1; default the "
    "second in the readers' order (as numbers where all are numbers, else as text)",
    "skip_unreadable": "our option: leave out images that cannot be decoded, counted and "
    "listed in the cache's manifest; default: refuse them, all named",
}

# Where the BreakHis protocol's values come from, where they differ from PCam's.
BREAKHIS_SOURCES = {
    "patience": "paper §4.3: early stopping increased to 50 epochs for BreakHis",
    "validation_fraction": "paper §4.3: 80 % train / 10 % validation / 10 % test",
    "image_size": "our choice: the paper does not say how the 700×460 images were sized; "
    "224×224, the ImageNet models' input size",
}


def source_of(name: str, protocol: str = "pcam") -> str:
    """Where a setting's value comes from: a paper section or 'our choice: ...'."""
    if protocol == "breakhis" and name in BREAKHIS_SOURCES:
        return BREAKHIS_SOURCES[name]
    if protocol == "own" and name in OWN_SOURCES:
        return OWN_SOURCES[name]
    return SOURCES.get(name, "")


@dataclass(frozen=True)
class Finding:
    """A finding of the paper's text and, where a grid can check it, the claim it makes.

    Claims name cells by their row and column labels (``("3–5", "1e-4")``):
    ``("best", cell)`` the best cell of the table; ``("best_in_column", column, row)``
    and ``("best_in_row", row, column)`` the best of a column or a row; ``("worse",
    a, b)`` cell a below cell b; ``("similar_row", row)`` the cells of a row alike;
    ``("not_converged", [cells])``; ``("all", [claims])``. Two are questions rather than
    claims, for studies with no paper to check (the depth study on a user's data):
    ``("tied_with_best",)`` which cells are tied with the best, ``("rows_apart", a, b)``
    whether rows a and b can be told apart in each column. ``claim=None``: the grid
    alone cannot check it (it speaks of time, or of other tables).
    :mod:`kandel_repro.report.compare` gives each claim a verdict from the runs.
    """

    text: str
    claim: tuple = None


# The kinds of claim a Finding can make (its claim's first item, see Finding); the study
# registry refuses others at import, and kandel_repro.report.compare.verdict answers each
# (a test asks it one claim of every kind).
CLAIM_KINDS = ("all", "best", "best_in_column", "best_in_row", "worse", "similar_row",
               "not_converged", "tied_with_best", "rows_apart", "columns_apart",
               "best_row_by_column")


# The paper's text findings, quoted beside our tables. The paper's tables give numbers
# we do not repeat here: only what its text states is quoted. Where the text names no
# learning rate for a comparison of depths, the claim takes the paper's best, 1e-4.
FINDINGS = {
    "table2": [
        Finding("Best AUC ≈ 0.96 when blocks 3–5 are fine-tuned at 1e-4 (§4.2).",
                ("best", ("3–5", "1e-4"))),
        Finding("Fine-tuning the whole network (1–5) is worse than blocks 3–5.",
                ("worse", ("1–5", "1e-4"), ("3–5", "1e-4"))),
        Finding("Blocks 2–5 are worse than blocks 3–5.",
                ("worse", ("2–5", "1e-4"), ("3–5", "1e-4"))),
        Finding("Top block only: the three learning rates are nearly equal, 1e-3 slightly best.",
                ("similar_row", "5")),
        Finding("1e-4 is the best trade-off between time and performance (§5)."),
    ],
    "table3": [
        Finding("Best AUC when blocks 3–5 are fine-tuned at 1e-4; 1e-5 performs comparably "
                "(§4.2).", ("best", ("3–5", "1e-4"))),
        Finding("At 1e-3 the best result comes from fine-tuning only the top two blocks (4–5).",
                ("best_in_column", "1e-3", "4–5")),
    ],
    "table4": [
        Finding("Top block only (13): the three learning rates are nearly equal, 1e-3 highest, "
                "1e-4 lowest (§4.2).", ("similar_row", "13")),
        Finding("At 1e-4 and 1e-5 fine-tuning the whole network (1–13) is best.",
                ("all", [("best_in_column", "1e-4", "1–13"), ("best_in_column", "1e-5", "1–13")])),
        Finding("At 1e-3 the best is blocks 6–13 (the first five blocks frozen).",
                ("best_in_column", "1e-3", "6–13")),
    ],
    "table5": [
        Finding("VGG16 and VGG19 do not converge at 1e-3 (§4.2).",
                ("not_converged", [("VGG16", "1e-3"), ("VGG19", "1e-3")])),
        Finding("VGG16 is best at 1e-4; VGG19 is worse at 1e-4 than at 1e-5.",
                ("all", [("best_in_row", "VGG16", "1e-4"),
                         ("worse", ("VGG19", "1e-4"), ("VGG19", "1e-5"))])),
        Finding("InceptionV3 converges better with smaller learning rates and is best at 1e-4.",
                ("best_in_row", "InceptionV3", "1e-4")),
        Finding("No network trained from scratch beats fine-tuning."),
    ],
    "table6": [
        Finding("Agrees with PCam (§4.3): at 1e-3 the top block only (5) is best.",
                ("best_in_column", "1e-3", "5")),
        Finding("At 1e-4 blocks 3–5 are best; overall best is blocks 3–5 at 1e-5.",
                ("all", [("best_in_column", "1e-4", "3–5"), ("best", ("3–5", "1e-5"))])),
    ],
    "table7": [
        Finding("Like PCam (§4.3): at 1e-3 the top block only (5) is best.",
                ("best_in_column", "1e-3", "5")),
        Finding("At 1e-4 and 1e-5 blocks 3–5 are best.",
                ("all", [("best_in_column", "1e-4", "3–5"), ("best_in_column", "1e-5", "3–5")])),
    ],
    "table8": [
        Finding("The paper's text gives no finding specific to InceptionV3 on BreakHis beyond "
                "its Table 8; its conclusion (§5) is that InceptionV3 gains from fine-tuning "
                "the whole network."),
    ],
}


def paper_settings(dataset: str = "pcam") -> dict:
    """The protocol of a data set as a flat dict (nested augmentation included)."""
    return dataclasses.asdict(PROTOCOLS[dataset])


def deviations(config: dict, keys: Iterable[str] | None = None) -> list[str]:
    """List ``"name: ours (paper: value)"`` for every setting that differs from the paper.

    ``config`` is a run's resolved config dict (see :mod:`kandel_repro.runs.train`); its
    ``protocol`` key ("pcam" or "breakhis") picks the protocol to compare with.
    """
    paper = paper_settings(config.get("protocol", "pcam"))
    out = []
    for name in keys or paper:
        if name not in config:
            continue
        ours, theirs = config[name], paper[name]
        if name == "augmentation":
            if ours is None:
                out.append("augmentation: off (paper: on, training split only)")
                continue
            for sub, value in theirs.items():
                if ours.get(sub) != value:
                    out.append(f"augmentation.{sub}: {ours.get(sub)} (our default: {value})")
            continue
        if ours != theirs:
            origin = ("paper" if source_of(name, config.get("protocol", "pcam")).startswith("paper")
                      else "our default")
            out.append(f"{name}: {ours} ({origin}: {theirs})")
    return out

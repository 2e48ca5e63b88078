"""The keys of a run's ``config.json`` across versions: which define the experiment
(:data:`EXPERIMENT_KEYS`), which were added or renamed since runs were first written, and
:func:`upgrade`, which reads a ``config.json`` of any version in today's names. Run
folders (:mod:`kandel_repro.runs.rundir`), typed settings (:mod:`kandel_repro.runs.settings`)
and their resolution (:mod:`kandel_repro.runs.config`) stand on it."""
from __future__ import annotations


# Config keys that define the experiment: a finished run is reused only if these match.
EXPERIMENT_KEYS = (
    "backbone", "first_trainable_block", "learning_rate", "batch_size", "max_epochs",
    "patience", "weights", "head_pooling", "dropout", "augmentation",
    "validation_fraction", "stratified_split", "seed", "split_seed", "monitor", "preprocessing",
    "optimizer", "loss", "data_fingerprint", "protocol", "test_fraction", "split",
    "magnification", "wsi_map_sha1", "momentum", "lr_decay", "head_lr_mult", "bias_lr_mult",
    "first_trainable_layer", "init", "train_fraction", "balance", "weights_from",
    "transfer_blocks", "brightness", "contrast", "saturation", "hue", "crop", "stain_jitter",
    "strategy", "llrd_gamma", "probe_epochs", "ft_lr_mult", "lora_rank",
    # own data: the classes in label order (a fact of the data; --positive-class acts
    # through it, so a run that named the positive class the rule gives anyway is the same
    # experiment as one that named none), and the images left out as unreadable
    "classes", "unreadable_skipped",
)


# Settings added after runs were first written, with the value those runs had: a
# config.json without them is read as made with these (upgrade).
ADDED = {"momentum": 0.0, "lr_decay": 1.0, "head_lr_mult": 1.0, "bias_lr_mult": 1.0,
         "first_trainable_layer": None, "init": None, "train_fraction": 1.0,
         "balance": "none", "wsi_map": None, "weights_from": None, "transfer_blocks": None,
         "brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "crop": 1.0,
         "stain_jitter": 0.0, "positive_class": None, "skip_unreadable": False,
         "strategy": "blocks", "llrd_gamma": 0.75, "probe_epochs": 5, "ft_lr_mult": 0.1,
         "lora_rank": 4}


# Keys of config.json renamed since runs were first written: old name → current name.
RENAMED = {"augment": "augmenter"}


# What config.json's ``dataset`` held before it named the data set: the data's origin.
LEGACY_ORIGINS = {"synthetic": ("pcam", True), "pcam": ("pcam", False),
                   "synthetic-breakhis": ("breakhis", True), "breakhis": ("breakhis", False)}


def upgrade(config: dict | None) -> dict | None:
    """A ``config.json`` of any version in today's names (a new dict; None stays None).

    Runs written before the renames spelled the augmentation implementation ``augment``
    and recorded the data's origin in ``dataset`` (``synthetic``, ``synthetic-breakhis``,
    ``pcam``, ``breakhis``); today ``dataset`` names the data set and ``synthetic`` says
    whether it was generated. Runs made before ``augment`` existed used
    ``ImageDataGenerator``; runs made before ``split_seed`` drew their split from
    ``seed``.
    """
    if config is None:
        return None
    out = {RENAMED.get(k, k): v for k, v in config.items()}
    if "synthetic" not in out and out.get("dataset") in LEGACY_ORIGINS:
        out["dataset"], out["synthetic"] = LEGACY_ORIGINS[out["dataset"]]
    out.setdefault("augmenter", "imagedatagenerator")
    if "seed" in out:  # one seed used to draw the split too
        out.setdefault("split_seed", out["seed"])
    if out.get("protocol") == "pcam":
        out.setdefault("split", "image")  # PCam's split had no name: it was by image
    if "protocol" in out:
        for key, value in ADDED.items():
            out.setdefault(key, value)
    return out

"""A run's settings, resolved and validated in one place.

:func:`resolve_config` starts from a protocol (:mod:`kandel_repro.protocol`), applies the
user's settings, gives every value one spelling and checks it; the command line's
``choices=`` come from :data:`CHOICES` here, and nothing downstream normalises again.

A run's ``config.json`` holds three kinds of keys:

- **experiment settings** (:data:`EXPERIMENT_KEYS`): what the run computes. A finished
  run is reused by a grid only when they all match (:mod:`kandel_repro.rundir`).
- **runtime settings** (:data:`RUNTIME_DEFAULTS`): how it computes — which
  implementation applies the augmentation (``augmenter``), precision, XLA, distribution,
  the prediction batch. They change speed, not results, and may differ between the runs
  of one table.
- **facts** the run records: the data (:func:`with_data`: ``dataset``, ``synthetic``,
  ``data_dir``, ``data_fingerprint``; then ``image_size``, ``n_train``…) and the machine
  (``device``, ``replicas``).

Words kept apart: ``augmentation`` is the experiment's setting (the paper's transform
parameters, or None for none), ``augmenter`` the implementation that applies it;
``dataset`` is the data set a run reads (a reader of :mod:`kandel_repro.data.readers`:
``pcam``, ``breakhis``), ``protocol`` the paper's settings for it, and ``synthetic``
whether the data were made by this package's generators. Run folders written before
these names keep being read: :func:`upgrade` translates their ``config.json``.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from .augment import AUGMENTERS, check_fast
from .backbones import depth_label, get_backbone, layer_label
from .errors import ConfigError, WeightsUnavailable
from .protocol import PROTOCOLS
from .runtime import default_eval_batch_size, device_description, resolve_precision

# Config keys that define the experiment: a finished run is reused only if these match.
EXPERIMENT_KEYS = (
    "backbone", "first_trainable_block", "learning_rate", "batch_size", "max_epochs",
    "patience", "weights", "head_pooling", "dropout", "augmentation",
    "validation_fraction", "stratified_split", "seed", "split_seed", "monitor", "preprocessing",
    "optimizer", "loss", "data_fingerprint", "protocol", "test_fraction", "split",
    "magnification", "wsi_map_sha1", "momentum", "lr_decay", "head_lr_mult", "bias_lr_mult",
    "first_trainable_layer", "init", "train_fraction", "balance", "weights_from",
    "transfer_blocks",
)

# Settings added after runs were first written, with the value those runs had: a
# config.json without them is read as made with these (kandel_repro.config.upgrade).
ADDED = {"momentum": 0.0, "lr_decay": 1.0, "head_lr_mult": 1.0, "bias_lr_mult": 1.0,
         "first_trainable_layer": None, "init": None, "train_fraction": 1.0,
         "balance": "none", "wsi_map": None, "weights_from": None, "transfer_blocks": None}

# How a run is computed, not what it computes: recorded in config.json, free to differ
# between the runs of one table (see the README's performance section).
RUNTIME_DEFAULTS = {
    "augmenter": "fast",  # or "imagedatagenerator", the paper's own pipeline
    "precision": "auto",  # mixed_float16 on a GPU, float32 on a CPU
    "jit": "auto",  # XLA for the whole step: Keras' rule (on with one GPU, off on a CPU)
    "distribute": "none",  # or "mirrored": every GPU of this machine
    "eval_batch_size": None,  # validation/test batches: 1024 on a GPU, 64 on a CPU
}

# The values a setting may take; the command line offers exactly these.
CHOICES = {
    "augmenter": AUGMENTERS,
    "precision": ("auto", "float32", "mixed_float16"),
    "jit": ("auto", "on", "off"),
    "distribute": ("none", "mirrored"),
    "head_pooling": ("flatten", "avg"),
    "split": ("image", "patient", "slide"),
    "magnification": ("all", "40", "100", "200", "400"),
    "optimizer": ("adam", "sgd"),
    "init": (None, "glorot", "he", "gaussian"),
    "balance": ("none", "downsample"),
}

# --weights: these spellings mean random initialisation; "imagenet" the paper's weights;
# "meanvar" random weights with the statistics of pretrained ones (--weights-from).
RANDOM_WEIGHTS = ("none", "random", "scratch")
MEANVAR = "meanvar"

# Keys of config.json renamed since runs were first written: old name → current name.
RENAMED = {"augment": "augmenter"}

# The command-line option that sets a config key, where it is not ``--`` + the key with
# dashes: messages name what the user typed.
OPTIONS = {"max_epochs": "--epochs", "first_trainable_block": "--first-block",
           "first_trainable_layer": "--first-layer", "learning_rate": "--lr",
           "augmentation": "--no-augmentation"}


def option(key):
    """The command-line option of config key ``key`` (``max_epochs`` → ``--epochs``)."""
    return OPTIONS.get(key, "--" + key.replace("_", "-"))


def normalise_weights(weights):
    """One spelling of ``--weights``: ``"imagenet"``, ``"none"``, ``"meanvar"`` or a path.

    ``None``, ``"none"``, ``"random"`` and ``"scratch"`` (any case) are random weights;
    ``"imagenet"`` (any case) the ImageNet weights; ``"meanvar"`` Mean-Var
    initialisation; anything else must be an existing file (a ``keras.applications``
    notop ``.h5``, or a ``.weights.h5`` of ``kandel-repro export-weights``) or a folder
    of ``<backbone>.weights.h5`` files, named in the error if it is not. A path is
    spelled absolute (as ``--data`` and ``--wsi-map`` are), so that the same file given
    from another working folder is the same experiment. What the file holds is checked
    where it is loaded (:func:`kandel_repro.model.build_base`).
    """
    text = "none" if weights is None else str(weights)
    if text.lower() in RANDOM_WEIGHTS:
        return "none"
    if text.lower() in ("imagenet", MEANVAR):
        return text.lower()
    path = Path(text).expanduser()
    if not path.exists():
        raise WeightsUnavailable(
            f"weights file {str(path)!r} does not exist; give 'imagenet', 'none', 'meanvar', "
            "the path of a keras.applications notop .h5 file, or a folder of "
            "<backbone>.weights.h5 files (kandel-repro export-weights)")
    return str(path.resolve())


def normalise(key, value):
    """``value`` of setting ``key`` in its one spelling (None stays None)."""
    if value is None and key != "weights":
        return None
    if key == "weights":
        return normalise_weights(value)
    if key == "magnification":
        return str(value).lower().rstrip("x")  # "100X" → "100"
    if key == "wsi_map":
        return str(Path(value).expanduser().resolve())
    if key == "weights_from":
        return normalise_weights(value)
    return value


def resolve_config(backbone, first_trainable_block, learning_rate, protocol="pcam", **settings):
    """The protocol's settings with the user's ``settings`` applied, each checked once.

    ``protocol`` is "pcam" (paper §4.1) or "breakhis" (§4.3); a setting given as None
    keeps the protocol's value (``augmentation=None`` turns augmentation off). Raises
    :class:`~kandel_repro.errors.ConfigError` naming the setting and the value at fault.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    config = dict(dataclasses.asdict(PROTOCOLS[protocol]), protocol=protocol, **RUNTIME_DEFAULTS)
    settings = {RENAMED.get(k, k): v for k, v in settings.items()}
    given = {k: normalise(k, v) for k, v in settings.items()
             if v is not None or k == "augmentation"}
    if protocol == "pcam" and "image_size" in given:
        raise ConfigError("--image-size applies to BreakHis only: PCam patches are used at "
                          "their own size, not resized (paper §4.1)")
    unknown = set(given) - set(config)
    if unknown:
        raise ConfigError(f"unknown setting(s) for the {protocol} protocol: "
                          f"{', '.join(sorted(unknown))}")
    config.update(given)
    bb = get_backbone(backbone)
    try:
        first = int(first_trainable_block)
        rate = float(learning_rate)
    except (TypeError, ValueError):
        raise ConfigError(f"--first-block must be an integer and --lr a number, got "
                          f"{first_trainable_block!r} and {learning_rate!r}") from None
    if not 1 <= first <= bb.num_blocks:
        raise ConfigError(f"--first-block must be from 1 to {bb.num_blocks} for "
                          f"{bb.name}, got {first_trainable_block!r}")
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"--lr must be positive, got {learning_rate!r}")
    config.update(backbone=bb.name, first_trainable_block=first, learning_rate=rate,
                  blocks=depth_label(first, bb.num_blocks), num_blocks=bb.num_blocks,
                  weights=normalise_weights(config["weights"]))
    if config["first_trainable_layer"] is not None:
        config["layers"] = layer_label(config["first_trainable_layer"], bb.num_layers)
    for key, choices in CHOICES.items():
        if key in config and config[key] not in choices:
            raise ConfigError(f"{option(key)} must be one of "
                              f"{', '.join(str(c) for c in choices)}, got {config[key]!r}")
    _check_optimiser(config)
    _check_transfer(config, bb)
    if config["first_trainable_layer"] is not None:
        layers = bb.num_layers
        if not isinstance(config["first_trainable_layer"], int) or \
                not 1 <= config["first_trainable_layer"] <= layers + 1:
            raise ConfigError(f"--first-layer must be from 1 to {layers + 1} for "
                              f"{bb.name} ({layers + 1}: the head only), got "
                              f"{config['first_trainable_layer']!r}")
    if not (isinstance(config["train_fraction"], (int, float)) and 0 < config["train_fraction"] <= 1):
        raise ConfigError(f"--train-fraction must be in (0, 1], got {config['train_fraction']!r}")
    splits = {"pcam": ("image", "slide"), "breakhis": ("image", "patient")}[protocol]
    if config["split"] not in splits:
        raise ConfigError(f"--split {config['split']} does not apply to {protocol}: one of "
                          f"{', '.join(splits)}")
    if config["wsi_map"] is not None and (protocol != "pcam" or config["split"] != "slide"):
        raise ConfigError("--wsi-map applies to PCam's --split slide only")
    if config["augmenter"] == "fast" and config["augmentation"] is not None:
        check_fast(config["augmentation"])
    for key in ("batch_size", "max_epochs", "patience", "image_size") + (
            ("eval_batch_size",) if config["eval_batch_size"] is not None else ()):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"{option(key)} must be a positive integer, got {config[key]!r}")
    for key in ("seed", "split_seed"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 0:
            raise ConfigError(f"{option(key)} must be an integer ≥ 0, got {config[key]!r}")
    if protocol != "pcam" and config["image_size"] < bb.min_input_size:
        # NOTE: PCam patches keep their own size (checked against the data); images that
        # are resized are checked here, before anything is packed at that size.
        raise ConfigError(f"--image-size {config['image_size']}: {bb.name} needs images of at "
                          f"least {bb.min_input_size}×{bb.min_input_size}")
    return config


def _check_optimiser(config):
    for key in ("head_lr_mult", "bias_lr_mult"):
        value = config[key]
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{option(key)} must be a number above 0, got {value!r}")
    if not (isinstance(config["lr_decay"], (int, float)) and 0 < config["lr_decay"] <= 1):
        raise ConfigError(f"--lr-decay must be in (0, 1] (1: no decay), got {config['lr_decay']!r}")
    if not (isinstance(config["momentum"], (int, float)) and 0 <= config["momentum"] < 1):
        raise ConfigError(f"--momentum must be in [0, 1), got {config['momentum']!r}")
    if config["precision"] == "mixed_float16" and (config["head_lr_mult"] != 1
                                                   or config["bias_lr_mult"] != 1):
        # NOTE: also checked where the optimisers are built: "auto" becomes mixed_float16
        # on a GPU only when the run starts.
        raise ConfigError("--head-lr-mult and --bias-lr-mult are implemented in float32: give "
                          "--precision float32 (mixed precision's loss scaling is per optimiser)")
    if config["momentum"] and config["optimizer"] != "sgd":
        raise ConfigError(f"--momentum applies to --optimizer sgd; {config['optimizer']} has "
                          "its own moments")


def _check_transfer(config, bb):
    """Mean-Var and partial transfer need pretrained weights to start from."""
    if config["weights"] == MEANVAR:
        config["weights_from"] = config["weights_from"] or "imagenet"
        if config["weights_from"] in ("none", MEANVAR):
            raise ConfigError("--weights meanvar draws from pretrained weights: --weights-from "
                              "imagenet (default) or the path of weights a run made")
    elif config["weights_from"] is not None:
        raise ConfigError("--weights-from applies to --weights meanvar")
    k = config["transfer_blocks"]
    if k is not None:
        if not isinstance(k, int) or not 0 <= k <= bb.num_blocks:
            raise ConfigError(f"--transfer-blocks must be from 0 to {bb.num_blocks} for "
                              f"{bb.name}, got {k!r}")
        if config["weights"] in ("none", MEANVAR):
            raise ConfigError("--transfer-blocks takes blocks from pretrained weights: "
                              "--weights imagenet or a path, not none or meanvar")


def check_time_budget(seconds):
    """A time budget in seconds: a finite number above 0 (None: no budget)."""
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ConfigError(f"--time-budget must be a number of seconds, got {seconds!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--time-budget must be a number of seconds above 0, got {seconds!r}")
    return value


def with_data(config, data, data_dir=None):
    """``config`` with the facts of the data it trains on: which data set, whether
    synthetic, where it was read from (an absolute path; default: the data's root), its
    identity (``data_fingerprint``) and the reader's own facts (PCam: the fingerprint of
    the sample submission's ids)."""
    folder = Path(data_dir if data_dir is not None else data.root).expanduser().resolve()
    return dict(config, dataset=data.dataset, synthetic=bool(data.synthetic),
                data_dir=str(folder), data_fingerprint=data.fingerprint, **data.facts(),
                **data.split_facts(config))


def resolve_runtime(config):
    """The config with ``precision``/``eval_batch_size`` resolved and the device named."""
    config = dict(RUNTIME_DEFAULTS, **config)
    return dict(config, precision=resolve_precision(config["precision"]),
                eval_batch_size=config["eval_batch_size"] or default_eval_batch_size(),
                device=device_description())


# What config.json's ``dataset`` held before it named the data set: the data's origin.
_LEGACY_ORIGINS = {"synthetic": ("pcam", True), "pcam": ("pcam", False),
                   "synthetic-breakhis": ("breakhis", True), "breakhis": ("breakhis", False)}


def upgrade(config):
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
    if "synthetic" not in out and out.get("dataset") in _LEGACY_ORIGINS:
        out["dataset"], out["synthetic"] = _LEGACY_ORIGINS[out["dataset"]]
    out.setdefault("augmenter", "imagedatagenerator")
    if "seed" in out:  # one seed used to draw the split too
        out.setdefault("split_seed", out["seed"])
    if out.get("protocol") == "pcam":
        out.setdefault("split", "image")  # PCam's split had no name: it was by image
    if "protocol" in out:
        for key, value in ADDED.items():
            out.setdefault(key, value)
    return out

"""A run's settings, resolved and validated in one place.

:func:`resolve_config` starts from a protocol (:mod:`kandel_repro.core.protocol`), applies the
user's settings, gives every value one spelling and checks it, and returns them as a
:class:`~kandel_repro.runs.settings.RunSettings`; the command line's ``choices=`` come from
:data:`CHOICES` here, and nothing downstream normalises again. What a protocol's data sets
offer (their splits, whether images are resized) is read from the protocol, not named here.

A run's ``config.json`` holds three kinds of keys:

- **experiment settings** (:data:`EXPERIMENT_KEYS`): what the run computes. A finished
  run is reused by a grid only when they all match (:mod:`kandel_repro.runs.rundir`).
- **runtime settings** (:data:`~kandel_repro.runs.settings.RUNTIME_DEFAULTS`): how it
  computes — which implementation applies the augmentation (``augmenter``), precision,
  XLA, distribution, the prediction batch. They change speed, not results, and may differ
  between the runs of one table.
- **evaluation settings** (:data:`~kandel_repro.runs.settings.EVALUATION_DEFAULTS`): how
  the finished model is scored beyond its plain predictions (test-time augmentation); not
  part of the experiment.
- **facts** the run records: the data (:func:`with_data`: ``dataset``, ``synthetic``,
  ``data_dir``, ``data_fingerprint``, the side of its images ``image_size``; then
  ``n_train``…) and the machine (``device``, ``replicas``).

Words kept apart: ``augmentation`` is the experiment's setting (the paper's transform
parameters, or None for none), ``augmenter`` the implementation that applies it;
``dataset`` is the data set a run reads (a reader of :mod:`kandel_repro.readers.registry`:
``pcam``, ``breakhis``), ``protocol`` the paper's settings for it, and ``synthetic``
whether the data were made by this package's generators. Run folders written before
these names keep being read: :func:`upgrade` translates their ``config.json``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.protocol import PROTOCOLS
from ..models.backbones import check_input_size, depth_label, get_backbone, layer_label
from ..models.weights import MEANVAR, normalise_weights
from ..training.augment import AUGMENTERS, check_fast
from ..training.colour import COLOUR_OFF, STAIN_JITTER
from ..training.runtime import default_eval_batch_size, device_description, resolve_precision
from ..training.strategies import check_strategy
from .keys import RENAMED
from .settings import EVALUATION_DEFAULTS, RUNTIME_DEFAULTS, RunSettings

if TYPE_CHECKING:
    from ..data.packed import PackedData

# The values a setting may take; the command line offers exactly these.
CHOICES = {
    "augmenter": AUGMENTERS,
    "precision": ("auto", "float32", "mixed_float16"),
    "jit": ("auto", "on", "off"),
    "distribute": ("none", "mirrored"),
    "head_pooling": ("flatten", "avg"),
    "split": ("auto", "given", "image", "group", "patient", "slide"),
    "magnification": ("all", "40", "100", "200", "400"),
    "optimizer": ("adam", "sgd"),
    "init": (None, "glorot", "he", "gaussian"),
    "balance": ("none", "downsample"),
    "tta": (1, 4, 8),
}


# The command-line option that sets a config key, where it is not ``--`` + the key with
# dashes: messages name what the user typed.
OPTIONS = {"max_epochs": "--epochs", "first_trainable_block": "--first-block",
           "first_trainable_layer": "--first-layer", "learning_rate": "--lr",
           "augmentation": "--no-augmentation"}


def _not_here(key: str, protocol: str) -> str:
    """Why setting ``key`` is refused under ``protocol``: the data sets it applies to,
    where it is another protocol's setting."""
    from ..readers.registry import READERS

    takers = [name for name, reader in READERS.items() if key in reader.options] or [
        name for name, reader in READERS.items() if reader.protocol != protocol
        and key in {f.name for f in dataclasses.fields(PROTOCOLS[reader.protocol])}]
    if not takers:
        return f"unknown setting for the {protocol} protocol: {key}"
    return (f"{option(key)} does not apply to the {protocol} protocol's data (it applies to "
            f"--dataset {', '.join(takers)})")


def option(key: str) -> str:
    """The command-line option of config key ``key`` (``max_epochs`` → ``--epochs``)."""
    return OPTIONS.get(key, "--" + key.replace("_", "-"))


def normalise(key: str, value: Any) -> Any:
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
    if key == "window":
        return _window(value)
    if key == "positive_class":
        return str(value)  # a class's name (a CSV's labels and folders' names are text)
    if key == "skip_unreadable" and not isinstance(value, bool):
        raise ConfigError(f"--skip-unreadable is on or off (True or False), got {value!r}")
    if key == "stain_jitter":
        return _stain_jitter(value)
    if key == "augmentation" and isinstance(value, dict):
        return dict(value)  # each run's own: a study's cells share their column's
    return value


def colour_of(config: Mapping[str, Any]) -> dict | None:
    """The colour and stain settings a run's fused transform applies (``{key: value}`` of
    :data:`COLOUR_KEYS`), or None when all are off (configs written before they existed
    have none)."""
    settings = {key: float(config.get(key, off)) for key, off in COLOUR_OFF.items()}
    return None if settings == COLOUR_OFF else settings


def _stain_jitter(value):
    """``--stain-jitter light|strong|SIGMA`` as σ (a float ≥ 0)."""
    if isinstance(value, str) and value.strip().lower() in STAIN_JITTER:
        return STAIN_JITTER[value.strip().lower()]
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        sigma = float("nan")
    if isinstance(value, bool) or not (math.isfinite(sigma) and 0 <= sigma <= 1):
        raise ConfigError(f"--stain-jitter takes light ({STAIN_JITTER['light']}), strong "
                          f"({STAIN_JITTER['strong']}) or a σ from 0 to 1, got {value!r}")
    return sigma


def _window(value):
    """``--window CENTER,WIDTH`` as ``[center, width]`` (floats, width above 0)."""
    try:
        parts = ([float(v) for v in str(value).split(",")] if isinstance(value, str)
                 else [float(v) for v in value])
    except (TypeError, ValueError):
        parts = []
    if len(parts) != 2 or not all(math.isfinite(v) for v in parts) or parts[1] <= 0:
        raise ConfigError(f"--window takes CENTER,WIDTH (numbers, width above 0; e.g. "
                          f"40,400), got {value!r}")
    return parts


def resolve_config(backbone: str, first_trainable_block: int, learning_rate: float,
                   protocol: str = "pcam", **settings: Any) -> RunSettings:
    """The protocol's settings with the user's ``settings`` applied, each checked once.

    ``protocol`` is "pcam" (paper §4.1), "breakhis" (§4.3) or "own"; a setting given as
    None keeps the protocol's value (``augmentation=None`` turns augmentation off); the
    settings of a :class:`~kandel_repro.runs.settings.UserSettings` pass as
    ``**settings``. Raises :class:`~kandel_repro.core.errors.ConfigError` naming the
    setting and the value at fault.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    paper = PROTOCOLS[protocol]
    config = dict(dataclasses.asdict(paper), protocol=protocol, **RUNTIME_DEFAULTS,
                  **EVALUATION_DEFAULTS)
    settings = {RENAMED.get(k, k): v for k, v in settings.items()}
    given = {k: normalise(k, v) for k, v in settings.items()
             if v is not None or k == "augmentation"}
    if not paper.resizes and "image_size" in given:
        raise ConfigError(paper.kept_size)
    _from_pretrain_run(given, backbone)
    unknown = set(given) - set(config)
    if unknown:
        raise ConfigError("; ".join(_not_here(key, protocol) for key in sorted(unknown)))
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
    check_strategy(config)
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
    if config["split"] not in paper.splits:
        raise ConfigError(f"--split {config['split']} does not apply to {protocol}: one of "
                          f"{', '.join(paper.splits)}")
    if config["wsi_map"] is not None and config["split"] != paper.wsi_map_split:
        raise ConfigError("--wsi-map applies to PCam's --split slide only")
    if config["augmenter"] == "fast" and config["augmentation"] is not None:
        check_fast(config["augmentation"])
    _check_colour(config)
    for key in ("batch_size", "max_epochs", "patience", "image_size") + tuple(
            key for key in ("eval_batch_size", "bootstrap") if config[key] is not None):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"{option(key)} must be a positive integer, got {config[key]!r}")
    for key in ("seed", "split_seed"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 0:
            raise ConfigError(f"{option(key)} must be an integer ≥ 0, got {config[key]!r}")
    if paper.resizes:
        # NOTE: PCam patches keep their own size (checked against the data); images that
        # are resized are checked here, before anything is packed at that size.
        size = config["image_size"]
        check_input_size(bb, size, size, f"--image-size {size}")
    return RunSettings.of(config)


def _check_colour(config):
    """The colour and stain settings: numbers in their ranges, not given with
    ``--no-augmentation``, and the fused transform to apply them."""
    ranges = {"brightness": (0, 1), "contrast": (0, 1), "saturation": (0, 1), "hue": (0, 0.5),
              "stain_jitter": (0, 1)}
    for key, (low, high) in ranges.items():
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not low <= value <= high or (key in ("contrast", "saturation") and value == 1):
            upper = "below 1" if key in ("contrast", "saturation") else f"at most {high}"
            raise ConfigError(f"{option(key)} must be a number from {low}, {upper}, got {value!r}")
        config[key] = float(value)
    crop = config["crop"]
    if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1:
        raise ConfigError(f"--crop must be the crop's share of the side, in (0, 1] (1: no "
                          f"crop), got {crop!r}")
    config["crop"] = float(crop)
    used = [option(key) for key, off in COLOUR_OFF.items() if config[key] != off]
    # NOTE: --no-augmentation turns every training-time augmentation off; a colour, crop or
    # stain option beside it would still augment, so the two contradict each other and
    # neither silently wins.
    if used and config["augmentation"] is None:
        raise ConfigError(f"--no-augmentation turns every training-time augmentation off, and "
                          f"{', '.join(used)} would still augment: give one or the other")
    if used and config["augmenter"] != "fast":
        raise ConfigError(f"{', '.join(used)}: colour, crop and stain augmentation are "
                          "implemented in the fused transform only; use --augmenter fast")


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


def _from_pretrain_run(given, backbone):
    """``--weights-from RUN`` naming a VAE or DCGAN pretrain run (``kandel-repro
    pretrain``): the run's trunk becomes the backbone's weights (``weights`` = the run's
    folder, which holds ``dcgan_small.weights.h5``); with ``--weights meanvar`` Mean-Var
    draws from its statistics instead. Either way the backbone must be the trunk's."""
    from ..models.generative import TRUNK
    from .rundir import is_pretrain_run

    source = given.get("weights_from")
    if source in (None, "none", "imagenet", MEANVAR) or not is_pretrain_run(source):
        return
    name = get_backbone(backbone).name
    if name != TRUNK:
        raise ConfigError(f"--weights-from {source}: a pretrain run initialises --backbone "
                          f"{TRUNK} (its trunk), not {name}: give --backbone {TRUNK}, or "
                          f"start {name} from other weights (--weights imagenet, none, or a "
                          "folder of `kandel-repro export-weights`)")
    weights = given.get("weights")
    if weights is None:
        given["weights"] = given.pop("weights_from")
    elif weights != MEANVAR:
        raise ConfigError(f"--weights-from {source} (a pretrain run) gives the backbone its "
                          f"weights: leave out --weights {weights} (or give --weights meanvar "
                          "to draw random weights with its statistics)")


def _check_transfer(config, bb):
    """Mean-Var and partial transfer need pretrained weights to start from."""
    if config["weights"] == MEANVAR:
        config["weights_from"] = config["weights_from"] or "imagenet"
        if config["weights_from"] in ("none", MEANVAR):
            raise ConfigError("--weights meanvar draws from pretrained weights: --weights-from "
                              "imagenet (default) or the path of weights a run made")
    elif config["weights_from"] is not None:
        raise ConfigError("--weights-from applies to --weights meanvar, or names a pretrain "
                          "run (kandel-repro pretrain vae|dcgan)")
    k = config["transfer_blocks"]
    if k is not None:
        if not isinstance(k, int) or not 0 <= k <= bb.num_blocks:
            raise ConfigError(f"--transfer-blocks must be from 0 to {bb.num_blocks} for "
                              f"{bb.name}, got {k!r}")
        if config["weights"] in ("none", MEANVAR):
            raise ConfigError("--transfer-blocks takes blocks from pretrained weights: "
                              "--weights imagenet or a path, not none or meanvar")


def check_time_budget(seconds: float | str | None) -> float | None:
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


def with_data(config: Mapping[str, Any], data: PackedData,
              data_dir: str | Path | None = None) -> RunSettings:
    """``config`` with the facts of the data it trains on: which data set, whether
    synthetic, where it was read from (an absolute path; default: the data's root), its
    identity (``data_fingerprint``), the side of its images (``image_size``: the side
    resized images were packed at, the one the settings resolved; PCam's patches' own)
    and the reader's own facts (PCam: the fingerprint of the sample submission's ids)."""
    folder = Path(data_dir if data_dir is not None else data.root).expanduser().resolve()
    config = RunSettings.of(config)
    return config.updated(dataset=data.dataset, synthetic=bool(data.synthetic),
                          data_dir=str(folder), data_fingerprint=data.fingerprint,
                          image_size=int(data.image_shape[0]), **data.facts(),
                          **data.split_facts(config))


def resolve_runtime(config: Mapping[str, Any]) -> RunSettings:
    """The config with ``precision``/``eval_batch_size`` resolved and the device named."""
    config = RunSettings.of({**RUNTIME_DEFAULTS, **EVALUATION_DEFAULTS, **config})
    return config.updated(precision=resolve_precision(config.precision),
                          eval_batch_size=config.eval_batch_size or default_eval_batch_size(),
                          device=device_description())

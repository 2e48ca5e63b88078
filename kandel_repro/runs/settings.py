"""A run's settings as typed objects: :class:`UserSettings`, what a user gives (each None
"the protocol's"), and :class:`RunSettings`, a run's settings resolved
(:func:`kandel_repro.runs.config.resolve_config`) with the facts of its data and machine,
read from and written to the run folder's ``config.json``.

Both are read-only mappings as well as dataclasses: code that reads a setting may write
``settings.weights`` or ``settings["weights"]`` alike, so the many readers of a config
(readers' splits, optimisers, tables) take either a :class:`RunSettings` or a plain dict;
code that builds or changes settings makes a new object (:meth:`RunSettings.updated`)
and nothing changes one in place. :data:`RUNTIME_DEFAULTS` and :data:`EVALUATION_DEFAULTS`
are here, the settings a user may give beside the protocol's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError
from ..core.protocol import PROTOCOLS
from .keys import RENAMED, upgrade

# How a run is computed, not what it computes: recorded in config.json, free to differ
# between the runs of one table (docs: how-to/performance).
RUNTIME_DEFAULTS = {
    "augmenter": "fast",  # or "imagedatagenerator", the paper's own pipeline
    "precision": "auto",  # mixed_float16 on a GPU, float32 on a CPU
    "jit": "auto",  # XLA for the whole step: Keras' rule (on with one GPU, off on a CPU)
    "distribute": "none",  # or "mirrored": every GPU of this machine
    "eval_batch_size": None,  # validation/test batches: 1024 on a GPU, 64 on a CPU
    "bootstrap": None,  # k ≥ 3 classes: resamples of the runs' AUC intervals (None: 2,000)
}

# How a finished model is scored beyond the plain prediction: test-time augmentation
# (``tta``: 1 = none, 4 or 8 dihedral views averaged). The trained model does not
# depend on it, so it is not an experiment setting: a finished run is reused by a grid
# whatever its ``tta``, and one that lacks the views asked for is scored with them then.
EVALUATION_DEFAULTS = {"tta": 1}


@dataclass(frozen=True, eq=False, repr=False)
class RunSettings(Mapping):
    """A run's resolved settings and the facts it records, as its ``config.json`` holds them.

    Typed fields hold the protocol's settings (:mod:`kandel_repro.core.protocol`, all
    three protocols' together), the runtime and evaluation settings, the model's depth,
    and the facts of the data and the machine; :attr:`facts` holds what varies by data
    set (the classes and their count, the split used, the sample file's and slide map's
    identities, each part's class shares) and any key of another version. A key a config
    does not hold (one of another protocol, a fact not recorded yet) is absent from the
    mapping and reads None as an attribute.

    :attr:`key_order` keeps the keys in the order the config was built in, so that
    :meth:`to_config` gives back exactly the dict read or resolved. :attr:`set_by_study`
    is not part of the config: the keys the run's study set for it (its cell's
    settings), which a table's header does not call deviations from the paper. As a
    mapping, settings equal any mapping of the same keys and values (``set_by_study``
    aside), a dict of the same config included.
    """

    # --- the protocol's settings (core.protocol.Protocol and its subclasses) ---------
    batch_size: int | None = None
    optimizer: str | None = None
    loss: str | None = None
    image_size: int | None = None  # the side images are resized to; after the data: theirs
    dropout: float | None = None
    patience: int | None = None
    validation_fraction: float | None = None
    augmentation: dict | None = None  # Augmentation's fields; None: no augmentation
    max_epochs: int | None = None
    monitor: str | None = None
    preprocessing: str | None = None
    head_pooling: str | None = None
    stratified_split: bool | None = None
    seed: int | None = None
    split_seed: int | None = None
    split: str | None = None
    wsi_map: str | None = None
    weights: str | None = None
    momentum: float | None = None
    lr_decay: float | None = None
    head_lr_mult: float | None = None
    bias_lr_mult: float | None = None
    first_trainable_layer: int | None = None
    init: str | None = None
    train_fraction: float | None = None
    balance: str | None = None
    weights_from: str | None = None
    transfer_blocks: int | None = None
    strategy: str | None = None
    llrd_gamma: float | None = None
    probe_epochs: int | None = None
    ft_lr_mult: float | None = None
    lora_rank: int | None = None
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    crop: float | None = None
    stain_jitter: float | None = None
    test_fraction: float | None = None  # BreakHis and own data
    magnification: str | None = None  # BreakHis
    path_column: str | None = None  # own data: how to read the layout
    label_column: str | None = None
    group_column: str | None = None
    window: list | None = None  # [center, width]
    positive_class: str | None = None
    skip_unreadable: bool | None = None
    protocol: str | None = None  # a key of core.protocol.PROTOCOLS
    # --- how the run computes (RUNTIME_DEFAULTS) and is scored (EVALUATION_DEFAULTS) --
    augmenter: str | None = None
    precision: str | None = None
    jit: str | None = None
    distribute: str | None = None
    eval_batch_size: int | None = None
    bootstrap: int | None = None
    tta: int | None = None
    # --- the model: the backbone and how deeply it is fine-tuned ----------------------
    backbone: str | None = None
    first_trainable_block: int | None = None
    learning_rate: float | None = None
    blocks: str | None = None  # "3–5": the trainable blocks, as tables label them
    num_blocks: int | None = None
    layers: str | None = None  # a layer-wise run's trainable layers
    # --- the data (kandel_repro.runs.config.with_data) and the machine ---------------
    dataset: str | None = None  # a reader's name (kandel_repro.readers.registry)
    synthetic: bool | None = None
    data_dir: str | None = None
    data_fingerprint: str | None = None
    device: str | None = None
    replicas: int | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    # --- what is not a typed field: the data set's own facts, other versions' keys ---
    # NOTE: a plain dict, read only through the mapping: a MappingProxyType cannot be
    # pickled, and a grid on Ray sends each run's settings to its worker.
    facts: Mapping[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = ()
    set_by_study: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    set_by_study: frozenset[str] = frozenset()) -> RunSettings:
        """The settings of a ``config.json`` of any version, read in today's names
        (:func:`kandel_repro.runs.keys.upgrade`: renamed keys, keys added since)."""
        return cls.of(upgrade(dict(config)), set_by_study)

    @classmethod
    def of(cls, values: Mapping[str, Any],
           set_by_study: frozenset[str] | None = None) -> RunSettings:
        """``values`` (already in today's names) as settings; ``values`` itself when it
        is :class:`RunSettings` and no ``set_by_study`` is given."""
        if isinstance(values, RunSettings):
            if set_by_study is None:
                return values
            values, set_by_study = values.to_config(), frozenset(set_by_study)
        typed = {key: value for key, value in values.items() if key in TYPED_KEYS}
        facts = {key: value for key, value in values.items() if key not in TYPED_KEYS}
        return cls(**typed, facts=facts, key_order=tuple(values),
                   set_by_study=frozenset(set_by_study or ()))

    def updated(self, **values: Any) -> RunSettings:
        """New settings with ``values`` set, as ``dict.update`` would set them: a key
        held keeps its place, a new one comes last."""
        # NOTE: not dataclasses.replace, which would neither add a key the config does not
        # hold yet (its place in key_order) nor set one of the facts.
        return RunSettings.of({**self.to_config(), **values}, self.set_by_study)

    def to_config(self) -> dict[str, Any]:
        """The settings as ``config.json`` holds them: the same keys, order and values as
        the dict they were read or resolved from."""
        return {key: self[key] for key in self.key_order}

    @property
    def num_classes(self) -> int:
        """The classes the run tells apart: the data's count where recorded (own data),
        else 2 (the paper's data sets, and every run made before classes were counted)."""
        return int(self.facts.get("num_classes") or 2)

    def __getitem__(self, key: str) -> Any:
        if key not in self.key_order:
            raise KeyError(key)
        return getattr(self, key) if key in TYPED_KEYS else self.facts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.key_order)

    def __len__(self) -> int:
        return len(self.key_order)

    def __repr__(self) -> str:
        return f"RunSettings({self.to_config()!r})"


# The keys RunSettings holds as typed fields (the others are its `facts`).
TYPED_KEYS = frozenset(f.name for f in dataclasses.fields(RunSettings)) - {
    "facts", "key_order", "set_by_study"}

# Every setting a user may give: each protocol's, the runtime and evaluation settings.
USER_KEYS = frozenset(f.name for protocol in PROTOCOLS.values()
                      for f in dataclasses.fields(protocol)) | set(RUNTIME_DEFAULTS) | set(
    EVALUATION_DEFAULTS)


@dataclass(frozen=True, init=False, eq=False, repr=False)
class UserSettings(Mapping):
    """The run settings a user gave (the command line's training options, a notebook's
    keywords) for every run of a grid or for one run: each None means "the protocol's"
    (:mod:`kandel_repro.core.protocol`), except ``augmentation`` given as None, which
    turns augmentation off (``--no-augmentation``). Values are checked when they are
    resolved (:func:`kandel_repro.runs.config.resolve_config`), under the protocol of
    the study or data set.

    ``UserSettings(weights="none", max_epochs=3)``: a key that is no run setting fails at
    once, with a one-line :class:`~kandel_repro.core.errors.ConfigError` naming it;
    earlier names of a setting (``augment``) are read in today's. As a mapping it holds
    the keys given, in the order given (None included): ``**settings`` passes on exactly
    what the user gave, and a grid records it so in ``grid.json``.
    """

    weights: str | None = None  # imagenet, none (random, scratch), meanvar, a path
    max_epochs: int | None = None
    patience: int | None = None
    batch_size: int | None = None
    head_pooling: str | None = None
    seed: int | None = None
    split_seed: int | None = None
    image_size: int | None = None
    split: str | None = None
    wsi_map: str | None = None
    magnification: str | None = None  # "100", "100X"
    optimizer: str | None = None
    momentum: float | None = None
    lr_decay: float | None = None
    head_lr_mult: float | None = None
    bias_lr_mult: float | None = None
    init: str | None = None
    train_fraction: float | None = None
    balance: str | None = None
    weights_from: str | None = None
    transfer_blocks: int | None = None
    strategy: str | None = None
    llrd_gamma: float | None = None
    probe_epochs: int | None = None
    ft_lr_mult: float | None = None
    lora_rank: int | None = None
    first_trainable_layer: int | None = None
    path_column: str | None = None
    label_column: str | None = None
    group_column: str | None = None
    window: str | list | None = None  # "CENTER,WIDTH" or two numbers
    positive_class: str | None = None
    skip_unreadable: bool | None = None
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    crop: float | None = None
    stain_jitter: float | str | None = None  # a σ, or light, strong
    augmentation: dict | None = None  # Augmentation's fields; given as None: no augmentation
    loss: str | None = None
    dropout: float | None = None
    validation_fraction: float | None = None
    test_fraction: float | None = None
    stratified_split: bool | None = None
    monitor: str | None = None
    preprocessing: str | None = None
    augmenter: str | None = None
    precision: str | None = None
    jit: str | None = None
    distribute: str | None = None
    eval_batch_size: int | None = None
    bootstrap: int | None = None
    tta: int | None = None
    given: tuple[str, ...] = ()  # the keys given, in order

    def __init__(self, **settings: Any) -> None:
        settings = {RENAMED.get(key, key): value for key, value in settings.items()}
        unknown = sorted(set(settings) - USER_KEYS)
        if unknown:
            raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''}: "
                              f"{', '.join(unknown)} (no protocol of kandel_repro/core/"
                              "protocol.py has it, nor is it a runtime setting; `kandel-repro "
                              "grid --help` lists them)")
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, settings.get(f.name))
        object.__setattr__(self, "given", tuple(settings))

    def without(self, *keys: str) -> UserSettings:
        """These settings less ``keys`` (as if never given)."""
        return UserSettings(**{key: self[key] for key in self.given if key not in keys})

    def __getitem__(self, key: str) -> Any:
        if key not in self.given:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.given)

    def __len__(self) -> int:
        return len(self.given)

    def __repr__(self) -> str:
        return f"UserSettings({', '.join(f'{k}={v!r}' for k, v in self.items())})"

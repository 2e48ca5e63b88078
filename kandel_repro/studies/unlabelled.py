"""What the studies of pretraining on unlabelled images stand on (the doctoral plan among
the sources: VAEs and DCGANs trained on a data set's own images, without their labels):
their initialisations (:func:`init_levels`), findings and settings, and how their
pretrained rows find their pretrain runs. The studies themselves are entries of
:mod:`kandel_repro.studies.registry`.

``unlabelled``: rows = how the backbone starts (from scratch, from a VAE's encoder, from
a DCGAN's discriminator trunk — the same small network, ``dcgan_small``, for all three so
that only the initialisation differs — and ImageNet's VGG16, the paper's backbone, as the
usual alternative: another architecture, so its row is a reference rather than a like
comparison), columns = the labelled training fraction (nested, stratified, as in the
datasize study); every run fine-tunes the whole network at the study's learning rate.
``unlabelled-depth``: the depth grid of ``dcgan_small`` × initialisation at the smallest
fraction (ImageNet's VGG16 has another block map, so it has no column there).

The pretrained rows name their weights ``pretrain:vae`` and ``pretrain:dcgan``: the
pretrain runs (``kandel-repro pretrain vae|dcgan``) in the folder ``pretrain-vae`` /
``pretrain-dcgan`` inside the grid's ``--runs`` folder or beside it; :func:`bind_pretrained`
turns them into those folders' paths (what ``--weights RUN`` loads) when a grid starts.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..core.errors import ConfigError
from ..core.protocol import Finding
from ..runs.rundir import PRETRAIN_KINDS as KINDS
from .types import Level, Study

TRUNK = "dcgan_small"
PREFIX = "pretrain:"  # a level's weights "pretrain:vae": the grid's VAE pretrain run
LEARNING_RATE = 1e-4  # the study's (our choice: the other beyond-the-paper studies' rate)
# The labelled fractions (our choice; the 1 %, 5 %, 20 %, 100 %); --fractions
# changes them, the smallest is the depth table's.
FRACTIONS = (0.01, 0.05, 0.2, 1.0)
IMAGENET_BACKBONE = "vgg16"
IMAGENET_LABEL = "ImageNet (VGG16)"


def init_levels(imagenet: bool = True) -> tuple[Level, ...]:
    """The initialisations: scratch, VAE, DCGAN (``dcgan_small``) and ImageNet's VGG16."""
    levels = [Level("scratch", f"{TRUNK}_scratch", {"backbone": TRUNK, "weights": "none"},
                    phrase="from scratch"),
              Level("VAE", f"{TRUNK}_vae", {"backbone": TRUNK, "weights": PREFIX + "vae"},
                    phrase="from the VAE's encoder"),
              Level("DCGAN", f"{TRUNK}_dcgan", {"backbone": TRUNK, "weights": PREFIX + "dcgan"},
                    phrase="from the DCGAN's discriminator")]
    if imagenet:
        levels.append(Level(IMAGENET_LABEL, f"{IMAGENET_BACKBONE}_imagenet",
                            {"backbone": IMAGENET_BACKBONE, "weights": "imagenet"},
                            phrase="VGG16 from ImageNet"))
    return tuple(levels)


def findings_at(smallest: str) -> tuple[Finding, ...]:
    return (Finding(f"Pretraining a VAE on the unlabelled images beats scratch at the smallest "
                    f"fraction ({smallest}).", ("worse", ("scratch", smallest), ("VAE", smallest))),
            Finding(f"Pretraining a DCGAN on the unlabelled images beats scratch at the smallest "
                    f"fraction ({smallest}).",
                    ("worse", ("scratch", smallest), ("DCGAN", smallest))),
            Finding("Which initialisations and fractions are tied with the best cell?",
                    ("tied_with_best",)))


def pretrained_kinds(study: Study) -> tuple[str, ...]:
    """The pretrain runs (``"vae"``, ``"dcgan"``) a study's levels need."""
    return tuple(dict.fromkeys(
        str(level.settings["weights"])[len(PREFIX):] for level in study.rows + study.columns
        if str(level.settings.get("weights", "")).startswith(PREFIX)))


def find_pretrain_run(runs_dir: str | Path, kind: str) -> Path:
    """The finished ``kind`` pretrain run of a grid over ``runs_dir``: ``pretrain-<kind>``
    inside it, or beside it; a :class:`ConfigError` saying how to make it if neither is."""
    from ..runs.rundir import CONFIG, METRICS, read_config

    runs_dir = Path(runs_dir)
    places = (runs_dir / f"pretrain-{kind}", runs_dir.parent / f"pretrain-{kind}")
    for place in places:
        if (place / CONFIG).is_file():
            config = read_config(place)
            if config.get("kind") != kind:
                raise ConfigError(f"{place} is not a {kind} pretrain run (its config.json "
                                  f"says kind {config.get('kind')!r})")
            if not (place / METRICS).is_file() or not (place / f"{TRUNK}.weights.h5").is_file():
                raise ConfigError(f"{place}: the {kind} pretraining has not finished; run "
                                  f"`kandel-repro pretrain {kind} --out {place} …` again to "
                                  "resume it")
            return place.resolve()
    raise ConfigError(f"this study starts runs from a {kind.upper()} pretrained on the data's "
                      f"unlabelled images: none at {places[0]} or {places[1]}; make it with "
                      f"`kandel-repro pretrain {kind} --data DIR --out {places[0]}`")


def bind_pretrained(study: Study, runs_dir: str | Path,
                    imagenet_available: Callable[[str], bool] | None = None,
                    log: Callable[[str], None] = print) -> Study:
    """``study`` with its ``pretrain:<kind>`` weights turned into the pretrain runs'
    folders (:func:`find_pretrain_run`), and its ImageNet row left out (said in ``log``)
    when the ImageNet weights are not on this machine. Other studies pass unchanged."""
    kinds = pretrained_kinds(study)
    if not kinds:
        return study
    runs = {PREFIX + kind: str(find_pretrain_run(runs_dir, kind)) for kind in kinds}

    def bound(level):
        weights = level.settings.get("weights")
        return replace(level, settings={**level.settings, "weights": runs[weights]}) \
            if weights in runs else level

    available = imagenet_available or _imagenet_available
    rows = []
    for level in study.rows:
        if level.settings.get("weights") == "imagenet" and \
                not available(level.settings["backbone"]):
            log(f"{study.name}: the {level.label} row is left out: its ImageNet weights are "
                "not on this machine (put the keras.applications notop file into "
                "~/.keras/models/ to add it); its cells stay `—` in the table")
            continue
        rows.append(bound(level))
    return replace(study, rows=tuple(rows), columns=tuple(bound(c) for c in study.columns))


def check_pretrain_data(study: Study, config: dict,
                        log: Callable[[str], None] = print) -> None:
    """The pretrain runs a bound ``study`` starts from were made on the grid's data
    (``config``: a run's config with the data's facts, :func:`~kandel_repro.runs.config.
    with_data`), else a :class:`ConfigError`; said in ``log``: a run pretrained on images
    the study scores on (``--images all``), and a run a non-finite loss stopped."""
    from ..runs.rundir import read_config, read_metrics

    folders = dict.fromkeys(
        str(level.settings["weights"]) for level in study.rows + study.columns
        if level.settings.get("backbone", TRUNK) == TRUNK
        and str(level.settings.get("weights", "none")) not in ("none", "imagenet"))
    for folder in folders:
        made = read_config(Path(folder)) or {}
        if made.get("kind") not in KINDS:
            continue
        if made.get("data_fingerprint") != config.get("data_fingerprint"):
            raise ConfigError(f"{folder} was pretrained on {made.get('data_dir')}, not on the "
                              f"grid's data ({config.get('data_dir')}): pretrain on these data, "
                              "or give the grid the pretrain run's data")
        if made.get("images") == "all":
            log(f"{study.name}: {folder} was pretrained on --images all, which holds the "
                "validation images this study scores on: its rows are not a fair comparison "
                "(pretrain with --images train or test)")
        if (read_metrics(Path(folder)) or {}).get("status") != "ok":
            log(f"{study.name}: {folder} stopped before its last epoch (a non-finite loss): "
                "its rows start from its last good epoch")


def _imagenet_available(backbone: str) -> bool:
    from ..models.backbones import get_backbone

    path = get_backbone(backbone).imagenet_weights_file()
    return path is not None and path.is_file()

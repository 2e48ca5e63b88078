"""What a table's header says of its runs: the data (:func:`describe_data`), the
settings that differ from the protocol (:func:`deviations_of`), the caveat of synthetic
data or other weights (:func:`caveat_of`) and how the runs were computed
(:func:`computed_with`) — from the runs' settings alone
(:class:`~kandel_repro.runs.settings.RunSettings`, as :func:`kandel_repro.report.collect.
collect` reads them)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.protocol import deviations

if TYPE_CHECKING:
    from ..runs.settings import RunSettings
    from ..studies.types import Study


def describe_data(configs: Sequence[RunSettings]) -> str:
    if not configs:
        return "no finished run yet"
    c = configs[0]
    synthetic = c.get("synthetic", False)
    split = c.get("split", "image")
    size = f"{c['image_size']}×{c['image_size']} pixels"
    if c.get("protocol") == "breakhis":
        kind = ("synthetic BreakHis-like set made by `kandel-repro data synthetic-breakhis` — "
                "not BreakHis" if synthetic else "BreakHis")
        parts = [f"resized to {size}", f"magnification {c.get('magnification')}",
                 f"{split}-level split"]
    elif c.get("dataset") == "pcam-h5":
        kind = ("synthetic PCam-like set in the HDF5 release's layout, made by `kandel-repro "
                "data synthetic-h5` — not PCam" if synthetic
                else "PatchCamelyon, the original HDF5 release")
        parts = [size, "the release's own train / valid / test splits (slide-disjoint)"]
    elif c.get("protocol") == "own":
        kind = ((f"synthetic {c.num_classes}-class set made by `kandel-repro data "
                 "synthetic-folder` — not real data") if synthetic
                else "real images (not made by the package): "
                     f"{'images in folders' if c.get('dataset') == 'folder' else 'a CSV manifest'}"
                     f" at {_shown(c.get('data_dir'))}")
        classes = c.get("classes") or []
        parts = [f"resized to {size}",
                 f"{len(classes) or c.num_classes} classes"
                 + (f" ({', '.join(map(str, classes))})" if classes else ""),
                 {"given": "the data's own train / val / test split" + (
                     f"; {c['groups_across_split']} group"
                     f"{'s' if c['groups_across_split'] > 1 else ''} "
                     f"({c.get('group_column') or 'group'}) on two sides"
                     if c.get("groups_across_split") else ""),
                  "group": f"80/10/10 split by group (no {c.get('group_column') or 'group'} on "
                           "two sides)",
                  "image": "stratified random 80/10/10 split"}.get(
                      c.get("split_used"), f"{split} split")]
    else:
        kind = ("synthetic PCam-like set made by `kandel-repro data synthetic` — not the "
                "Kaggle data" if synthetic else "Kaggle Histopathologic Cancer Detection (PCam)")
        parts = [size, "80/20 split by slide (no slide on both sides; "
                 f"{Path(c.get('wsi_map') or 'patch_id_wsi.csv').name})" if split == "slide"
                 else "random 80/20 split"]
    shares = [f"{c[f'{part}_positive_fraction']:.1%} {part}" for part in ("train", "val", "test")
              if c.get(f"{part}_positive_fraction") is not None]
    if shares:
        parts.append(f"positives: {', '.join(shares)}")
    if c.get("train_class_fractions"):
        parts.append("class shares (train): " + ", ".join(
            f"{share:.0%}" for share in c["train_class_fractions"]))
    train = f"{c['n_train']:,} training"
    if float(c.get("train_fraction") or 1) < 1:  # (runs on fractions: say how many each)
        counts = sorted({config["n_train"] for config in configs})
        train = (f"{counts[0]:,}–{counts[-1]:,} training (the fractions of the training "
                 "split)" if len(counts) > 1 else f"{counts[0]:,} training (a fraction of the "
                 "training split)")
    return (f"{kind}; {train} / {c['n_val']:,} validation / "
            f"{c['n_test']:,} test images; " + "; ".join(parts))


def _shown(path: str | None) -> str | None:
    """A data path as a table shows it: relative to the working folder where it lies
    inside it (so that a committed table names no machine's folders), else as recorded."""
    if not path:
        return path
    try:
        return Path(path).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path


def describe_weights(configs: Sequence[RunSettings]) -> str:
    """The weights the runs started from, as the header says them: ``imagenet``, ``none``,
    a file; ImageNet weights of a backbone of ours say which checkpoint they came from."""
    from ..models.backbones import get_backbone

    words = []
    for weights in sorted({c.get("weights") for c in configs}):
        converted = sorted({get_backbone(c["backbone"]).converted_from for c in configs
                            if c.get("weights") == weights and weights == "imagenet"
                            and get_backbone(c["backbone"]).build is not None} - {None})
        words.append(f"{weights} (converted from {'; '.join(converted)})" if converted
                     else str(weights))
    return ", ".join(words) or "—"


def deviations_of(configs: Iterable[RunSettings], study: Study | None = None) -> list[str]:
    """Differences from the paper's protocol; a study's own fixed settings (Table 5's
    random weights) and what it sets for each run (:attr:`~kandel_repro.runs.settings.
    RunSettings.set_by_study`) are the experiment, not a deviation, and the seeds of the
    runs are listed on their own line."""
    skip = set(study.fixed if study is not None else ()) | {"seed"}
    seen = []
    for config in configs:
        mine = skip | config.set_by_study
        lines = deviations(config)
        seen += [line for line in lines if line.split(":")[0] not in mine and line not in seen]
    return seen


def column_legend(study: Study) -> list[str]:
    """``["paper + colour: --brightness 0.1 --contrast 0.2 …"]``: what each column of
    ``study`` sets where it differs from the paper's protocol, as the options that set it
    (``as the paper`` for nothing)."""
    from ..core.protocol import paper_settings
    from ..runs.config import option

    paper = paper_settings(study.protocol)
    out = []
    for level in study.columns:
        words = [("--no-augmentation" if key == "augmentation" and value is None
                  else f"{option(key)} {value:g}" if isinstance(value, float) else
                  f"{option(key)} {value}")
                 for key, value in level.settings.items()
                 if key != "learning_rate" and value != paper.get(key)]
        out.append(f"{level.label}: {' '.join(words) or 'as the paper'}")
    return out


def caveat_of(configs: Sequence[RunSettings], study: Study | None = None) -> str:
    """``"synthetic data and random weights (no ImageNet)"`` or ``""`` for the paper's setup."""
    def chosen(c):  # the weights the user chose (not those a study's row sets)
        return None if "weights" in c.set_by_study else c.get("weights")

    sources = sorted({source for c in configs
                      for source in (chosen(c), c.get("weights_from") if chosen(c) == "meanvar"
                                     else None)
                      if source not in (None, "none", "imagenet", "meanvar")})
    flags = (("synthetic data", any(c.get("synthetic", False) for c in configs)),
             ("random weights (no ImageNet)", any(chosen(c) == "none" for c in configs)),
             (f"pretrained weights trained here, not ImageNet's ({', '.join(sources)})",
              bool(sources)))
    return " and ".join(text for text, flag in flags if flag)


AUGMENTER_NAMES = {
    "fast": "fused in-graph transform (ImageDataGenerator's distributions, parity-tested)",
    "imagedatagenerator": "Keras ImageDataGenerator (the paper's pipeline)",
}


def computed_with(configs: Sequence[RunSettings]) -> str:
    """How the runs were computed: augmentation implementation, precision, device."""
    def values(key, default):
        return sorted({str(c.get(key, default)) for c in configs})

    # NOTE: runs made before the augmenter was recorded used ImageDataGenerator.
    augment = [AUGMENTER_NAMES.get(v, v) for v in values("augmenter", "imagedatagenerator")]
    return (f"augmentation by {' and '.join(augment)}; precision "
            f"{', '.join(values('precision', 'float32'))}; device: "
            f"{'; '.join(values('device', 'not recorded'))}")

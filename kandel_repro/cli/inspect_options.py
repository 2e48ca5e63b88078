"""The inspecting verbs' options: ``explain`` (Grad-CAM of a run's most confident right
and wrong answers) and ``filters`` (its first convolution before and after training)."""
from __future__ import annotations

import argparse

from ..explain.gradcam import DEFAULT_COUNT, DEFAULT_THRESHOLD, SPLITS


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_inspection_parsers(sub: argparse._SubParsersAction) -> None:
    """``explain`` and ``filters``."""
    ex = sub.add_parser(
        "explain", help="where a run's network looks: Grad-CAM of its most confident true and "
        "false positives and negatives (writes gradcam.png and gradcam.json)",
        description="Reads the run's prediction file of the split (val_predictions.csv or "
        "test_predictions.csv), picks the most confident true positives, false positives, "
        "false negatives and true negatives (k ≥ 3 classes: the most confident correct and "
        "wrong predictions) and draws each image beside its Grad-CAM map (Selvaraju et al. "
        "2017) from best_model.keras: the gradient of the classifier's logit (−logit for "
        "the negative groups: what made it say 'negative'; for k ≥ 3 the predicted class's) "
        "at the end of the last block of the backbone unless --layer. Writes "
        "gradcam[_LAYER][_test].png and .json (what was drawn) into the run folder.")
    ex.add_argument("run", metavar="RUN", help="a finished run folder")
    ex.add_argument("--split", choices=list(SPLITS), default="val",
                    help="val (default) or test: the labelled test split, where the data set "
                    "has one (test_predictions.csv; a synthetic PCam's: submission.csv with "
                    "the synthetic set's hidden test labels)")
    ex.add_argument("--layer", default=None, metavar="LAYER",
                    help="a block number (the end of its last convolution) or a layer name "
                    "with a spatial output (default: the last block)")
    ex.add_argument("--count", type=_count, default=DEFAULT_COUNT, metavar="N",
                    help=f"images per group (default {DEFAULT_COUNT})")
    ex.add_argument("--threshold", default=None, metavar="T",
                    help="binary runs: predicted positive at a score ≥ T, from 0 to 1 "
                    f"(default {DEFAULT_THRESHOLD:g}), or youden (the run's threshold of "
                    "Youden's J on the validation split); a run of k ≥ 3 classes predicts "
                    "its most probable class and takes none")
    ex.add_argument("--data", default=None, metavar="DIR",
                    help="the run's data folder, where it is now (default: the one the run "
                    "recorded)")
    ex.add_argument("--out", default=None, metavar="DIR",
                    help="folder for the figure and its JSON (default: the run folder)")
    ex.set_defaults(verb="explain")

    fi = sub.add_parser(
        "filters", help="the first convolution's filters before and after training, and how "
        "far each moved (writes filters.png and filters.json)",
        description="For each run, the filters of the first Conv2D of the backbone at the "
        "run's initial weights (rebuilt from its config and seed: ImageNet runs need the "
        "weights file) and at its final ones (best_model.keras), drawn as colour patches on "
        "one scale per run, with the relative L2 movement ||W_final - W_init|| / ||W_init|| "
        "of each filter and of the layer (Transfusion's comparison of initialisations). "
        "Writes filters.png and filters.json into --out (default: the first run's folder).")
    fi.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders")
    fi.add_argument("--out", default=None, metavar="DIR",
                    help="folder for filters.png and filters.json (default: the first RUN)")
    fi.set_defaults(verb="filters")

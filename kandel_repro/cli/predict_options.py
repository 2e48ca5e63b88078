"""The ``predict`` and ``export`` verbs' options: a finished run applied to new images
(:mod:`kandel_repro.runs.predict`; :func:`kandel_repro.cli.main.cmd_predict`) and its model
written for serving (:func:`kandel_repro.runs.export.export_model`;
:func:`kandel_repro.cli.main.cmd_export`)."""
from __future__ import annotations

import argparse

from ..runs.export import FORMATS
from ..runs.predict import LAYOUTS


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_predict_parsers(sub: argparse._SubParsersAction) -> None:
    """``predict RUN`` and ``export RUN``."""
    pr = sub.add_parser(
        "predict", help="apply a finished run's best model to new images (writes a CSV of "
        "scores and predicted classes)",
        description="Reads --data — a folder of images (class folders optional), a CSV "
        "manifest (a path column, a label column optional), one image or one DICOM file — "
        "through the run's own decoding (its image size, window, 16-bit rule, grayscale to "
        "RGB; PCam runs read their patches unresized) and scores every image with the run's "
        "best model, a batch at a time. Writes one row per image: path, label (where the "
        "images carry one), score (two classes) or score_<class> (more), and predicted: "
        "the class at the run's threshold (the Youden point it chose on its validation "
        "split, unless --threshold) or the most probable one. Where every image carries a "
        "label it prints the AUC with its 95 % interval. An image that cannot be decoded "
        "is named with every other one, and nothing is written.")
    pr.add_argument("run", metavar="RUN", help="a finished run folder (with best_model.keras)")
    pr.add_argument("--data", required=True,
                    help="a folder of images, a CSV manifest, or one image or DICOM file")
    pr.add_argument("--dataset", choices=LAYOUTS, default=None,
                    help="how --data is read (default: by what it is: a folder, a .csv file, "
                    "an image)")
    pr.add_argument("--out", required=True, help="the CSV to write (atomically)")
    pr.add_argument("--tta", type=int, choices=(1, 4, 8), default=1,
                    help="test-time augmentation: dihedral views averaged, as the run scores "
                    "them (default 1: the run's plain scores)")
    pr.add_argument("--threshold", default=None, metavar="youden|0.5|X",
                    help="two classes: the score from which an image is predicted positive "
                    "(default youden: the run's Youden point on its validation split)")
    pr.add_argument("--batch-size", type=_positive, default=None,
                    help="images per forward batch (default: the run's eval_batch_size)")
    pr.add_argument("--path-column", default=None,
                    help="a CSV's column of image paths (default path)")
    pr.add_argument("--label-column", default=None,
                    help="a CSV's column of classes (default label, where it has one)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(verb="predict")
    ex = sub.add_parser(
        "export", help="write a finished run's model on uint8 images, its preprocessing "
        "inside, for serving (a .keras file or a SavedModel)",
        description="Builds the run's model on uint8 images of its size from its "
        "best_model.keras, with its backbone's preprocessing inside the graph as Keras' own "
        "layers: keras.models.load_model(OUT).predict(images) then gives the run's scores "
        "with nothing of kandel_repro imported. --format savedmodel writes a TensorFlow "
        "SavedModel folder (Keras' Model.export) for TF Serving.")
    ex.add_argument("run", metavar="RUN", help="a finished run folder (with best_model.keras)")
    ex.add_argument("--format", choices=FORMATS, default="keras",
                    help="keras (a .keras file, the default) or savedmodel (a folder)")
    ex.add_argument("--out", required=True,
                    help="the file (ending in .keras) or the SavedModel folder to write")
    ex.set_defaults(verb="export")

"""A finished run's best model applied to new images (``kandel-repro predict``).

:func:`predict` reads images the run never saw — a folder (with or without class
folders), a CSV manifest, one image file, one DICOM file — through exactly the run's own
decoding (:func:`decoder_of`: its reader's, at its image size, with its ``window`` and the
16-bit rule of :mod:`kandel_repro.data.images`; a data set whose images keep their size,
PCam's, refuses an image of another size) and scores them with the run's predictor: its
``best_model.keras`` behind the uint8 input stage (:func:`kandel_repro.runs.train.predictor_of`),
with test-time augmentation as the run scores it (:mod:`kandel_repro.training.tta`). It
decodes a batch, predicts it and keeps its scores: the images held at any time are one
batch's, whatever their number. Every image that cannot be decoded is found in the same
pass and all are refused together, in one line, before anything is written.

The result has one row per image: ``path`` (relative to the folder or the CSV's folder;
as given for one file), ``label`` (the class its folder or the CSV names, where the images
carry one), ``score`` (two classes: the positive class's probability) or
``score_<class>`` (k ≥ 3 classes, in the run's class order), and ``predicted``: the class
at the run's threshold (two classes: the Youden point it chose on its validation split,
:func:`threshold_of`) or the most probable one (k ≥ 3). Where every image carries a
label, the AUC and its 95 % interval are computed too (:func:`labelled_auc`: DeLong's for
two classes, the stratified bootstrap's macro AUC for more; "not assessable" under
:mod:`kandel_repro.core.assessable`'s rule) and kept in the frame's ``attrs["auc"]``.
:func:`predict_images` scores images already decoded.
"""
from __future__ import annotations

import functools
import io
import math
import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.assessable import NOT_ASSESSABLE, too_small
from ..core.bootstrap import BOOTSTRAP, bootstrap_ci
from ..core.errors import ConfigError, DataError
from ..core.files import write_csv, write_text
from ..core.stats import auc_ci, youden_threshold
from ..data.dicom import read_dicom
from ..data.images import DICOM_EXTENSIONS, EXTENSIONS, decode_image, is_image
from ..data.pack_notes import NAMED
from ..readers.registry import get_reader
from ..training.pipeline import predict_uint8
from ..training.tta import images_per_batch, tta_predictor
from . import rundir
from .settings import RunSettings
from .train import predictor_of

if TYPE_CHECKING:
    import keras
    import pandas as pd

# How --data is read (--dataset): a folder (class folders optional), a CSV manifest, one
# image file; by default, by what --data is.
LAYOUTS = ("folder", "csv", "image")
READER_OPTIONS = ("path_column", "label_column")  # a CSV's column names
DEFAULT_BATCH = 64  # images per batch where the run recorded no eval_batch_size
# A CSV's separator where its header holds no comma: the manifest reader's rule
# (kandel_repro.readers.manifest), so that a run's own manifest is read as it was.
SEPARATORS = (";", "\t", "|")
# The names of a given split's parts (kandel_repro.readers.own.SPLIT_VALUES), lower-cased.
# NOTE: named here, not imported: the readers of own data stand on the packing cache,
# which prediction does not use, and importing them would lengthen every import chain
# through the command line past the package's limit.
PART_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")


@dataclass(frozen=True)
class Images:
    """The images :func:`predict` reads: ``paths`` to open, ``ids`` as the output names
    them, ``labels`` the class name of each (None where the images carry none)."""

    paths: list[Path]
    ids: list[str]
    labels: list[str] | None = None


def find_images(data: str | Path, classes: Sequence[str], dataset: str | None = None,
                path_column: str | None = None, label_column: str | None = None) -> Images:
    """The images of ``data`` (:data:`LAYOUTS`; ``dataset`` None: a ``.csv`` file is a
    manifest, another file one image, a folder a folder). Labels are kept where every
    image has one of the run's ``classes``: a folder's images all inside class folders
    named as the run's classes (under ``train/``, ``val/``, ``test/`` folders or not), a
    CSV's label column (``label_column``, default ``label``) where it has one."""
    data = Path(data)
    if dataset is not None and dataset not in LAYOUTS:
        raise ConfigError(f"--dataset {dataset!r} does not apply to predict: one of "
                          f"{', '.join(LAYOUTS)} (how --data is read)")
    if not data.exists():
        raise DataError(f"{data} does not exist: give an image, a folder of images or a CSV "
                        "manifest")
    kind = dataset or ("folder" if data.is_dir() else
                       "csv" if data.suffix.lower() == ".csv" else "image")
    if kind == "folder":
        return _folder_images(data, [str(name) for name in classes])
    if data.is_dir():
        raise DataError(f"{data} is a folder; --dataset {kind} reads a file")
    if kind == "csv":
        return _csv_images(data, [str(name) for name in classes], path_column, label_column)
    if not is_image(data):
        raise DataError(f"{data} is not an image of a kind read here ({' '.join(EXTENSIONS)})")
    return Images([data], [str(data)])


def _folder_images(root, classes):
    """Every image under ``root`` (links followed, each folder once; hidden entries
    skipped), sorted."""
    found, seen = [], {os.path.realpath(root)}
    for top, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [name for name in sorted(dirs) if not name.startswith(".")
                   and os.path.realpath(os.path.join(top, name)) not in seen]
        seen.update(os.path.realpath(os.path.join(top, name)) for name in dirs)
        found += [Path(top) / name for name in sorted(files)
                  if not name.startswith(".") and is_image(name)]
    if not found:
        raise DataError(f"{root} holds no image ({' '.join(EXTENSIONS)})")
    ids = [path.relative_to(root).as_posix() for path in found]
    labels = [_folder_class(name, classes) for name in ids]
    return Images(found, ids, None if None in labels else labels)


def _folder_class(relative, classes):
    """The run's class an image's folder names (``<class>/…`` or ``<part>/<class>/…``)."""
    parts = relative.split("/")[:-1]
    if parts and parts[0].lower() in PART_NAMES and parts[0] not in classes:
        parts = parts[1:]
    return parts[0] if parts and parts[0] in classes else None


def _csv_images(csv, classes, path_column, label_column):
    import pandas as pd

    try:
        text = csv.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {csv}: {exc}") from None
    header = text.lstrip().splitlines()[0] if text.strip() else ""
    sep = "," if "," in header else next((s for s in SEPARATORS if s in header), ",")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=sep)
    except Exception as exc:  # noqa: BLE001 - any parse error is the file's
        raise DataError(f"cannot read {csv} as a CSV: {' '.join(str(exc).split())}") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    path_column = path_column or "path"
    if path_column not in frame.columns or not len(frame):
        raise DataError(f"{csv} has no column {path_column!r} or no row (its columns: "
                        f"{', '.join(map(repr, frame.columns))}); name the images' column "
                        "with --path-column")
    ids, paths = [], []
    for row, value in enumerate(frame[path_column].str.strip(), start=1):
        relative = value if (csv.parent / value).is_file() else value.replace("\\", "/")
        path = Path(relative) if os.path.isabs(relative) else csv.parent / relative
        if not value or not path.is_file():
            raise DataError(f"{csv}, row {row}: {value!r} is no image file (paths are "
                            f"relative to the CSV's folder {csv.parent})")
        ids.append(relative if os.path.isabs(relative) else posixpath.normpath(relative))
        paths.append(path)
    column = label_column or "label"
    if column not in frame.columns:
        if label_column:
            raise DataError(f"{csv} has no column {label_column!r} (--label-column)")
        return Images(paths, ids)
    labels = frame[column].str.strip().tolist()
    unknown = sorted({label for label in labels if label not in classes})
    if unknown:
        raise DataError(f"{csv}'s {column!r} column names classes the run does not know "
                        f"({', '.join(map(repr, unknown[:5]))}); its classes are "
                        f"{', '.join(classes)}")
    return Images(paths, ids, labels)


def decoder_of(config: RunSettings) -> Callable[[str | Path], np.ndarray]:
    """What decodes one image as the run's reader did: an (s, s, 3) uint8 array at the
    run's ``image_size`` s, by :func:`~kandel_repro.data.images.decode_image` with the
    run's ``window``; for a data set whose images keep their own size (PCam's patches),
    :func:`unresized`."""
    size = int(config.image_size)
    if not get_reader(config.dataset or "pcam").resizes:
        return functools.partial(unresized, side=size, dataset=config.dataset or "pcam")
    # NOTE: BreakHis' reader decodes its PNGs by Pillow's RGB conversion and a bilinear
    # resize, which is what decode_image does with an 8-bit RGB PNG (BreakHis' kind).
    return functools.partial(decode_image, size=size, window=config.window)


def unresized(path: str | Path, side: int, dataset: str = "pcam") -> np.ndarray:
    """An image of a data set read at its own size (PCam's patches), decoded by
    :mod:`kandel_repro.data.images`' rules (an RGB TIFF as the PCam reader reads it); a
    :class:`DataError` naming it when it is not ``side``×``side``."""
    from PIL import Image

    if Path(path).suffix.lower() in DICOM_EXTENSIONS:
        shape = read_dicom(path, None).shape
    else:
        try:
            with Image.open(path) as img:
                shape = img.size[::-1]
        except Exception as exc:  # noqa: BLE001 - any failure is the file's
            raise DataError(f"cannot decode {path}: {' '.join(str(exc).split())}") from None
    if tuple(shape[:2]) != (side, side):
        raise DataError(f"{path} is {shape[1]}×{shape[0]}: runs of {dataset} read {side}×{side} "
                        f"images as they are; crop it to {side}×{side}")
    return decode_image(path, side)


def load_predictor(run_dir: str | Path, config: RunSettings | None = None,
                   tta: int = 1) -> keras.Model:
    """The run's predictor: ``best_model.keras`` behind its uint8 input stage, with
    ``tta`` > 1 its dihedral views averaged."""
    import keras

    run_dir = Path(run_dir)
    config = config or rundir.finished_config(run_dir, use="predict with")
    try:
        model = keras.saving.load_model(run_dir / rundir.BEST_MODEL)
    except Exception as exc:  # noqa: BLE001 - keras raises many kinds for a damaged file
        raise ConfigError(f"cannot read {run_dir / rundir.BEST_MODEL} ({exc})") from None
    size = int(config.image_size)
    predictor = predictor_of(model, config, (size, size, 3))
    return tta_predictor(predictor, tta) if tta > 1 else predictor


def predict_images(run_dir: str | Path, images_uint8: np.ndarray, *, tta: int | None = None,
                   batch_size: int | None = None) -> np.ndarray:
    """The run's scores of images already decoded (``(n, s, s, 3)`` uint8 at its image
    size s): one per image for two classes, ``(n, k)`` for k ≥ 3."""
    run_dir = Path(run_dir)
    config = rundir.finished_config(run_dir, use="predict with")
    images = np.asarray(images_uint8)
    size = int(config.image_size)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise DataError(f"images must be a uint8 array of shape (n, {size}, {size}, 3), the "
                        f"run's image size; got {images.dtype} {images.shape}")
    views = _views(tta)
    model = load_predictor(run_dir, config, views)
    return predict_uint8(model, images, _batch(config, batch_size, views))


def _views(tta):
    views = int(tta or 1)
    if views not in (1, 4, 8):
        raise ConfigError(f"--tta must be 1, 4 or 8 (dihedral views averaged), got {tta}")
    return views


def _batch(config, batch_size, views):
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    per_forward = int(batch_size or config.eval_batch_size or DEFAULT_BATCH)
    return per_forward if views == 1 else images_per_batch(per_forward, views)


def threshold_of(run_dir: str | Path, rule: str | float | None = None,
                 views: int = 1) -> tuple[float, str]:
    """``(threshold, where it comes from)`` of a two-class run: ``rule`` None or
    ``"youden"``, the Youden point the run chose on its validation split (``metrics.json``'s
    ``youden_threshold``; with ``views`` > 1 that of its TTA validation scores of as many
    views where it has them); ``"0.5"`` or a number in [0, 1], that number."""
    if rule is not None and str(rule) != "youden":
        try:
            value = float(rule)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"--threshold must be youden, 0.5 or a number between 0 and 1, "
                              f"got {rule!r}")
        return value, "given"
    run_dir = Path(run_dir)
    if views > 1 and rundir.tta_views(run_dir) == views:
        found = rundir.read_tta_predictions(run_dir, "val")
        if found is not None and np.isfinite(found[2]).all():
            return youden_threshold(found[1], found[2]), f"Youden point of {views} views"
    value = (rundir.read_metrics(run_dir) or {}).get("youden_threshold")
    if value is None or not math.isfinite(value):
        raise ConfigError(f"{run_dir / rundir.METRICS} records no Youden threshold (a run "
                          "whose validation scores were not finite): pass --threshold 0.5 "
                          "or a number")
    return float(value), "Youden point of the validation split"


def labelled_auc(labels: np.ndarray, scores: np.ndarray, classes: Sequence[str],
                 bootstrap: int | None = None) -> dict:
    """The AUC of labelled images (``labels``: class indices) and its 95 % interval:
    ``{"auc", "ci" ([low, high], NaN where not assessable), "method", "note"}``;
    ``auc`` None with a ``note`` when the images hold one class only (k ≥ 3: fewer
    than all)."""
    present = len(np.unique(labels))
    if present < (2 if scores.ndim == 1 else len(classes)):
        return {"auc": None, "ci": [math.nan, math.nan], "method": None,
                "note": f"the images hold {present} of the run's {len(classes)} classes: an "
                        "AUC needs images of every class"}
    if scores.ndim == 1:
        auc, low, high = auc_ci(labels, scores)
        method = "DeLong"
    else:
        n = bootstrap or BOOTSTRAP
        auc, low, high = bootstrap_ci(labels, scores, n=n)
        method = f"stratified bootstrap, {n} resamples"
    note = None
    if not (math.isfinite(low) and math.isfinite(high)):
        note = too_small(labels, "the images", classes) or "the interval has zero width"
    return {"auc": float(auc), "ci": [low, high], "method": method, "note": note}


def auc_line(found: dict) -> str:
    """What ``kandel-repro predict`` prints of :func:`labelled_auc`'s result."""
    if found["auc"] is None:
        return f"AUC: none ({found['note']})"
    low, high = found["ci"]
    if found["note"]:
        return f"AUC {found['auc']:.4f} (95 % interval {NOT_ASSESSABLE}: {found['note']})"
    return f"AUC {found['auc']:.4f} (95 % interval {low:.4f}–{high:.4f}, {found['method']})"


def predict(run_dir: str | Path, data: str | Path, out: str | Path | None = None, *,
            dataset: str | None = None, tta: int | None = None,
            threshold: str | float | None = None, batch_size: int | None = None,
            progress: bool = True, **reader_options: Any) -> pd.DataFrame:
    """``kandel-repro predict``: the finished run ``run_dir``'s scores of the images of
    ``data`` (see the module's docstring), one row per image, written to ``out`` (a CSV,
    atomically) when given. ``dataset``: how ``data`` is read (:data:`LAYOUTS`; None: by
    what it is); ``tta``: dihedral views averaged (1, 4, 8; default 1, the run's plain
    scores); ``threshold``: :func:`threshold_of`'s rule; ``batch_size``: images per
    forward batch (default the run's ``eval_batch_size``); ``reader_options``:
    ``path_column`` and ``label_column`` of a CSV. The AUC of labelled images is in the
    frame's ``attrs["auc"]``, the threshold in ``attrs["threshold"]``."""
    from tqdm.auto import tqdm

    unknown = sorted(set(reader_options) - set(READER_OPTIONS))
    if unknown:
        raise ConfigError(f"predict takes no option {unknown[0]!r}: the run's own decoding "
                          f"applies (its reader options: {', '.join(READER_OPTIONS)})")
    run_dir = Path(run_dir)
    config = rundir.finished_config(run_dir, use="predict with")
    classes = [str(name) for name in (config.get("classes") or ["0", "1"])]
    views = _views(tta)
    if len(classes) > 2 and threshold is not None:
        raise ConfigError(f"--threshold applies to two classes; {run_dir} has {len(classes)}, "
                          "and an image's predicted class is its most probable one")
    cut = None if len(classes) > 2 else threshold_of(run_dir, threshold, views)
    images = find_images(data, classes, dataset, **reader_options)
    decode, batch = decoder_of(config), _batch(config, batch_size, views)
    model = load_predictor(run_dir, config, views)
    scores, failures = [], []
    with tqdm(total=len(images.paths), desc=f"predicting {data}", unit="img",
              disable=not progress) as bar:
        for start in range(0, len(images.paths), batch):
            decoded, rows = [], []
            for row in range(start, min(start + batch, len(images.paths))):
                try:
                    decoded.append(decode(images.paths[row]))
                    rows.append(row)
                except DataError as exc:
                    failures.append((images.ids[row], str(exc)))
            if decoded:
                scores.append((rows, predict_uint8(model, np.stack(decoded), batch)))
            bar.update(min(batch, len(images.paths) - start))
    if failures:
        _refuse(failures, len(images.paths), data, out)
    order = np.concatenate([np.asarray(rows) for rows, _ in scores])
    values = np.concatenate([part for _, part in scores])[np.argsort(order)]
    frame = _frame(images, classes, values, cut)
    if images.labels is not None:
        labels = np.array([classes.index(label) for label in images.labels])
        frame.attrs["auc"] = labelled_auc(labels, values, classes, config.bootstrap)
    if out is not None:
        write_csv(out, frame)
    return frame


def _frame(images, classes, values, cut):
    import pandas as pd

    frame = pd.DataFrame({"path": images.ids})
    if images.labels is not None:
        frame["label"] = images.labels
    if values.ndim == 1:
        frame["score"] = values
        predicted = np.where(values >= cut[0], classes[1], classes[0])
        frame.attrs["threshold"] = {"value": cut[0], "rule": cut[1]}
    else:
        for k, name in enumerate(classes):
            frame[f"score_{name}"] = values[:, k]
        predicted = np.asarray(classes)[values.argmax(axis=1)]
    frame["predicted"] = predicted
    return frame


def _refuse(failures, total, data, out):
    """The one :class:`DataError` naming every image of ``data`` that cannot be decoded
    (beyond :data:`~kandel_repro.data.pack_notes.NAMED`, listed in a file beside
    ``out``)."""
    named = "; ".join(why for _, why in failures[:NAMED])
    more = ""
    if len(failures) > NAMED:
        more = f"; and {len(failures) - NAMED} more"
        if out is not None:
            listing = Path(out).with_name(f"{Path(out).name}.unreadable.txt")
            write_text(listing, "".join(f"{path}\t{why}\n" for path, why in failures))
            more += f" (all {len(failures)} listed in {listing})"
    raise DataError(f"cannot decode {len(failures):,} of {total:,} images of {data}: {named}"
                    f"{more}; fix or remove them (nothing was written)")

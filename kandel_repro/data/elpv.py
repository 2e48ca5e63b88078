"""The ELPV data set (Buerhop-Lutz et al. 2018; Deitsch et al. 2019, 2021) as a CSV manifest
for ``--dataset csv`` (``kandel-repro data elpv``): no reader of its own, a data helper.

ELPV holds 2,624 electroluminescence images of solar cells, 300×300 8-bit gray, cut from
44 modules (mono- and polycrystalline), each with the experts' probability that the cell
is defective: 0, 1/3, 2/3 or 1. Its PyPI package (``pip install elpv-dataset``) keeps them
in ``elpv_dataset/data``: ``images/cellNNNN.png`` and ``labels.csv``, whose lines hold,
separated by white space and under no header, the image's path (relative to that
folder), its probability and its cell type (``mono``, ``poly``).

:func:`write_elpv` writes ``OUT/images/…`` (hard links to the package's files where the
file system allows, else copies) and ``OUT/manifest.csv``, atomically, with the columns
``path,label,cell_type,probability,split``:

- ``label``: for the task ``defective`` (default) ``defective`` where the probability is
  at least 0.5, else ``defect-free`` (Deitsch et al.'s "functional"; named so that it
  sorts first and ``defective`` is the positive class, label 1, under the own-data
  readers' rule: names sorted as text); for the task ``levels`` one class per
  probability, ``p000``, ``p033``, ``p067``, ``p100`` (in probability order as text).
- ``split``: ``train``, ``val`` or ``test`` for every row (the csv reader uses a split
  column only where every row names its part; a partial one would be ignored): test a
  stratified ``test_fraction`` (Deitsch et al.: 25 %), validation a stratified
  ``val_fraction`` of all the images taken from the rest, stratified by probability ×
  cell type (8 strata) and seeded, so both tasks share one split. ELPV records no module,
  so the cells of one module may lie on both sides (:data:`CAVEAT`).

The manifest is a function of the source's ``labels.csv`` and the options: written again
with the same ones it is the same, and nothing is written (an image missing from
``OUT/images`` is placed again); a manifest of other options, or a non-empty ``OUT``
holding anything but ``images/``, is refused, never overwritten.
"""
from __future__ import annotations

import contextlib
import csv
import filecmp
import importlib.util
import io
import os
import posixpath
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataError
from ..core.files import atomic_path, check_writable, staging_path
from .images import is_image
from .split import check_splittable, three_way

TASKS = ("defective", "levels")
BINARY = ("defect-free", "defective")  # label 0, label 1 (as text: "defect-" < "defecti")
LEVELS = ("p000", "p033", "p067", "p100")  # the probabilities 0, 1/3, 2/3, 1
PARTS = ("train", "val", "test")
COLUMNS = ("path", "label", "cell_type", "probability", "split")
MANIFEST = "manifest.csv"
IMAGES = "images"
LABELS = "labels.csv"
INSTALL = ("pip install elpv-dataset, or pass --source FOLDER (elpv_dataset/data: labels.csv, "
           "images/)")
CAVEAT = ("ELPV records no module id: cells of one of its 44 modules can lie in train and test, "
          "so test scores may be optimistic")


@dataclass(frozen=True)
class Cell:
    """A line of ``labels.csv``: the image (relative, posix), the probability as written,
    its level (0–3: thirds) and the cell type."""

    path: str
    probability: str
    level: int
    cell_type: str


@dataclass(frozen=True)
class Written:
    """What :func:`write_elpv` did: ``rows`` the manifest's rows (dicts of
    :data:`COLUMNS`), ``images`` how many images were "hard-linked", "copied" or "kept"
    (there already), ``wrote`` whether the manifest was written (False: it was there,
    the same)."""

    out: Path
    manifest: Path
    task: str
    rows: tuple
    images: dict
    wrote: bool


def default_source() -> Path:
    """The installed package's ``elpv_dataset/data`` (found without importing it), or a
    :class:`DataError` saying how to get it."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the ELPV data set is not installed: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _labels_file(source: Path) -> Path:
    """``labels.csv`` of ``source``: the file itself, a folder holding it, or the package's
    folder holding ``data/labels.csv``."""
    if source.is_file():
        return source
    for candidate in (source / LABELS, source / "data" / LABELS):
        if candidate.is_file():
            return candidate
    what = "does not exist" if not source.exists() else f"holds no {LABELS}"
    raise DataError(f"ELPV source {source} {what}: give --source the folder holding {LABELS} "
                    "and images/ (elpv_dataset/data of the installed package)")


def _level(text: str, where: str) -> int:
    """The level (0–3) of a probability written as ``text``: a multiple of 1/3."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: probability {text!r} is not a number") from None
    level = round(value * 3)
    if not 0 <= level <= 3 or abs(value * 3 - level) > 1e-6:
        raise DataError(f"{where}: probability {text!r} is not 0, 1/3, 2/3 or 1")
    return level


def read_labels(source: str | Path | None = None) -> tuple[Path, list[Cell]]:
    """``(the data folder, its cells)`` of ``labels.csv`` (``source``: the data folder,
    the file, or the package's folder; default :func:`default_source`), every line and
    image checked: a :class:`DataError` names the line, or the missing images."""
    labels = _labels_file(Path(source) if source is not None else default_source())
    folder = labels.parent
    try:
        text = labels.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {labels}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    cells, seen = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{labels}, line {number}"
        if len(fields) != 3:
            raise DataError(f"{where}: {line.strip()!r} is not 'PATH PROBABILITY TYPE' "
                            f"(three fields separated by spaces; found {len(fields)})")
        path, probability, cell_type = fields
        normal = posixpath.normpath(path.replace("\\", "/"))
        if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
            raise DataError(f"{where}: path {path!r} leaves {folder}")
        if not is_image(normal):
            raise DataError(f"{where}: {path!r} is not an image file")
        if normal in seen:
            raise DataError(f"{where}: {path!r} is listed twice (also line {seen[normal]})")
        seen[normal] = number
        cells.append(Cell(normal, probability, _level(probability, where), cell_type))
    if not cells:
        raise DataError(f"{labels} lists no image")
    missing = [cell.path for cell in cells if not (folder / cell.path).is_file()]
    if missing:
        more = f", nor do {len(missing) - 1:,} more it lists" if len(missing) > 1 else ""
        raise DataError(f"{folder / missing[0]} ({LABELS}, line {seen[missing[0]]}) does not "
                        f"exist{more}: a damaged copy? reinstall elpv-dataset or fix --source")
    return folder, cells


def label_of(cell: Cell, task: str) -> str:
    """The class of ``cell`` in ``task`` (:data:`TASKS`)."""
    if task == "defective":
        return BINARY[cell.level >= 2]  # probability ≥ 0.5: 2/3 and 1
    return LEVELS[cell.level]


def split_cells(cells: list[Cell], test_fraction: float = 0.25, val_fraction: float = 0.15,
                seed: int = 0) -> list[str]:
    """Each cell's part (:data:`PARTS`): test a stratified ``test_fraction``, validation a
    stratified ``val_fraction`` (of all) of the rest, stratified by level × cell type,
    seeded; a :class:`ConfigError` for fractions that leave nothing to train on, a
    :class:`DataError` for strata too small to reach every part."""
    for name, value in (("--test-fraction", test_fraction), ("--val-fraction", val_fraction)):
        if not 0 < value < 1:
            raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {value}")
    if test_fraction + val_fraction >= 1:
        raise ConfigError(f"--test-fraction {test_fraction} and --val-fraction {val_fraction} "
                          "leave no image to train on")
    keys = [f"{LEVELS[cell.level]} {cell.cell_type}" for cell in cells]
    names = sorted(set(keys))
    strata = np.array([names.index(key) for key in keys], np.int64)
    check_splittable(strata, (val_fraction, test_fraction), "ELPV (strata: probability × "
                     "cell type)", names=names, seed=seed)
    parts = np.empty(len(cells), object)
    for name, rows in zip(PARTS, three_way(strata, None, val_fraction, test_fraction, seed)):
        parts[rows] = name
    return parts.tolist()


def manifest_text(rows: list[dict]) -> str:
    """The manifest's CSV text (header :data:`COLUMNS`, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _check_out(out: Path, text: str) -> bool:
    """Whether ``out`` already holds this very manifest; a :class:`DataError` where it
    is a file, holds another manifest, or holds anything but ``images/``."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; --out must be a folder (new, or one this command made)")
    manifest = out / MANIFEST
    if manifest.is_file():
        if manifest.read_bytes() == text.encode("utf-8"):
            return True
        raise DataError(f"{manifest} exists and differs from the one these options make "
                        "(another --task, --test-fraction, --val-fraction, --seed or source, "
                        "or edited): choose another --out, or delete that manifest to "
                        "replace it")
    # NOTE: images/ alone is what an interrupted run leaves (the manifest comes last)
    others = sorted(entry.name for entry in out.iterdir() if entry.name != IMAGES) \
        if out.is_dir() else []
    if others:
        raise DataError(f"{out} is not empty and holds no {MANIFEST} of this command "
                        f"({', '.join(others[:3])}{', …' if len(others) > 3 else ''}): "
                        "choose a new or empty --out")
    return False


def _place(source: Path, target: Path, link: bool) -> str:
    """Put ``source`` at ``target``, atomically: a hard link if ``link`` and the file
    system allows, else a copy; what was done ("hard-linked", "copied", or "kept" where
    the same file is there already)."""
    if target.is_file() and (target.samefile(source)
                             or filecmp.cmp(source, target, shallow=True)):
        return "kept"
    tmp = staging_path(target)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        if link:
            try:
                os.link(source, tmp)
            except OSError:  # another file system, or one that does not link: copy
                link = False
        if not link:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return "hard-linked" if link else "copied"


def write_elpv(out: str | Path, task: str = "defective", test_fraction: float = 0.25,
               val_fraction: float = 0.15, seed: int = 0,
               source: str | Path | None = None) -> Written:
    """Write (or find written) ``out/images/…`` and ``out/manifest.csv`` of ELPV for
    ``task`` (see the module's docstring); what was done."""
    if task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    folder, cells = read_labels(source)
    parts = split_cells(cells, test_fraction, val_fraction, seed)
    rows = tuple({"path": cell.path, "label": label_of(cell, task), "cell_type": cell.cell_type,
                  "probability": cell.probability, "split": part}
                 for cell, part in zip(cells, parts))
    text = manifest_text(list(rows))
    out = Path(out)
    same = _check_out(out, text)
    check_writable(out, "--out")
    done: Counter = Counter()
    for cell in cells:
        target = out / cell.path
        target.parent.mkdir(parents=True, exist_ok=True)
        # NOTE: once a link fails (another file system), the rest are copied
        done[_place(folder / cell.path, target, link=not done["copied"])] += 1
    if not same:
        with atomic_path(out / MANIFEST, suffix=".csv") as tmp:
            tmp.write_text(text, encoding="utf-8")
    return Written(out, out / MANIFEST, task, rows, dict(done), not same)


def summary(written: Written) -> str:
    """A few lines: what was written, the images per label and part, the caveat."""
    counts = Counter((row["label"], row["split"]) for row in written.rows)
    labels = BINARY if written.task == "defective" else LEVELS
    width = max(len(label) for label in labels) + 2
    lines = [f"{'wrote' if written.wrote else 'kept (same options)'} {written.manifest}: "
             f"{len(written.rows):,} ELPV cells, task {written.task}; images "
             + ", ".join(f"{n:,} {how}" for how, n in sorted(written.images.items())),
             f"{'label':<{width}}" + "".join(f"{part:>7}" for part in (*PARTS, "all"))]
    for label in labels:
        n = [counts[(label, part)] for part in PARTS]
        lines.append(f"{label:<{width}}" + "".join(f"{v:>7,}" for v in (*n, sum(n))))
    n = [sum(counts[(label, part)] for label in labels) for part in PARTS]
    lines.append(f"{'all':<{width}}" + "".join(f"{v:>7,}" for v in (*n, sum(n))))
    lines.append(f"caveat: {CAVEAT}")
    lines.append(f"train on it with --dataset csv --data {written.manifest}")
    return "\n".join(lines)

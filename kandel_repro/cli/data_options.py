"""The ``data`` verbs' options (make, check and pack data sets) and the reader options
that say how to read a user's own data (``--dataset folder|csv``)."""
from __future__ import annotations

import argparse

from ..data.layouts import COMPETITION
from ..data.pixels import DEFAULT_PIXEL_LIMIT, LIMIT_VARIABLE, check_pixel_limit
from ..readers.registry import READERS
from .arguments import checked


def image_side(text: str) -> int:
    """``--image-size`` as an argparse ``type``: a positive integer (pixels), or argparse's
    one-line error (a side of 0 is not a request for the default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer (pixels), got {text!r}") \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (pixels), got {value}")
    return value


def add_reader_options(p: argparse.ArgumentParser) -> None:
    """How the ``folder`` and ``csv`` readers read the data (config keys of the own-data
    protocol; each recorded in the run's config)."""
    r = p.add_argument_group("your own data (--dataset folder or csv)")
    r.add_argument("--path-column", default=None, metavar="NAME",
                   help="csv: the column of image paths, relative to the CSV (default path)")
    r.add_argument("--label-column", default=None, metavar="NAME",
                   help="csv: the column of labels (default label)")
    r.add_argument("--group-column", default=None, metavar="NAME",
                   help="csv: the column of groups — patient, slide — kept on one side of the "
                   "split (default group, when the CSV has one)")
    r.add_argument("--positive-class", default=None, metavar="NAME",
                   help="two classes: the class of label 1, whose probability the network "
                   "gives (default the second class in order: as numbers where all names are "
                   "numbers, else as text)")
    r.add_argument("--skip-unreadable", action="store_true", default=None,
                   help="leave out images that cannot be decoded, counted and listed in the "
                   "packed cache's manifest (default: refuse them, every one named)")
    r.add_argument("--window", default=None, metavar="CENTER,WIDTH",
                   help="images of more than 8 bits (16-bit gray or colour, float, DICOM): a "
                   "fixed intensity window, e.g. 40,400, the same for every channel (default: "
                   "the DICOM file's own window, else each image's min–max over its channels)")
    r.add_argument("--max-image-pixels", type=checked(check_pixel_limit), default=None,
                   metavar="N", help="refuse images of more than N pixels, a guard against "
                   f"decompression bombs (default {DEFAULT_PIXEL_LIMIT:,}, Pillow's; or the "
                   f"environment variable {LIMIT_VARIABLE}); it reaches the decoding processes "
                   "and is not recorded with the run (it changes no pixel)")


def add_data_parsers(sub: argparse._SubParsersAction) -> None:
    """``data synthetic…``, ``data elpv``, ``data pack``, ``data download``, ``data verify``."""
    data = sub.add_parser("data", help="make, check and pack data sets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synthetic", help="write a synthetic PCam in the Kaggle layout")
    s.add_argument("--out", required=True, help="folder to write (reused if same parameters)")
    s.add_argument("--train", type=int, default=2000, help="labelled images (default 2000)")
    s.add_argument("--test", type=int, default=500, help="unlabelled test images (default 500)")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument("--size", type=int, default=96, help="image side in pixels (default 96, as PCam)")
    s.add_argument("--slides", type=int, default=0,
                   help="draw the patches from this many synthetic slides, each with its own "
                   "stain and tumour prevalence, and write patch_id_wsi.csv (default 0: none)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(verb="data synthetic")
    h5 = dsub.add_parser("synthetic-h5", help="write a synthetic PCam in the layout of the "
                         "original HDF5 release (six .h5.gz files)")
    h5.add_argument("--out", required=True, help="folder to write (reused if same parameters)")
    h5.add_argument("--train", type=int, default=1000, help="training patches (default 1000)")
    h5.add_argument("--valid", type=int, default=200, help="validation patches (default 200)")
    h5.add_argument("--test", type=int, default=200, help="labelled test patches (default 200)")
    h5.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    h5.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    h5.add_argument("--quiet", action="store_true", help="no progress bar")
    h5.set_defaults(verb="data synthetic-h5")
    sb = dsub.add_parser("synthetic-breakhis",
                         help="write a synthetic BreakHis in the BreaKHis_v1 folder layout")
    sb.add_argument("--out", required=True, help="folder to write (reused if same parameters)")
    sb.add_argument("--patients", type=int, default=3, help="patients per subtype (default 3)")
    sb.add_argument("--images", type=int, default=4,
                    help="images per patient and magnification (default 4)")
    sb.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sb.add_argument("--quiet", action="store_true", help="no progress bar")
    sb.set_defaults(verb="data synthetic-breakhis")
    sf = dsub.add_parser("synthetic-folder",
                         help="write a small synthetic multi-class set in the folder layout "
                         "(DATA/<class>/<images>) and its CSV manifest (path,label,group)")
    sf.add_argument("--out", required=True, help="folder to write (reused if same parameters)")
    sf.add_argument("--classes", type=int, default=3, help="classes, 2 to 9 (default 3)")
    sf.add_argument("--images", type=int, default=48, help="images per class (default 48)")
    sf.add_argument("--patients", type=int, default=12,
                    help="patients, the manifest's groups (default 12: enough for a 10 %% split by group)")
    sf.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    sf.add_argument("--format", choices=("png", "jpeg"), default="png", dest="image_format",
                    help="image files (default png)")
    sf.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sf.add_argument("--quiet", action="store_true", help="no progress bar")
    sf.set_defaults(verb="data synthetic-folder")
    el = dsub.add_parser("elpv", help="write the ELPV solar-cell set (pip install "
                         "elpv-dataset) as images and a CSV manifest for --dataset csv",
                         description="Links (or copies) ELPV's 2,624 electroluminescence "
                         "images of solar cells into OUT/images and writes OUT/manifest.csv "
                         "(path,label,cell_type,probability,split), every row in train, val "
                         "or test, stratified by probability and cell type. ELPV records no "
                         "module, so one module's cells may lie on both sides of the split.")
    el.add_argument("--out", required=True, help="folder to write (new or empty; one written "
                    "with the same options is kept as it is)")
    el.add_argument("--task", choices=("defective", "levels"), default="defective",
                    help="'defective' (default): defective (probability >= 0.5) against "
                    "defect-free, defective the positive class; 'levels': the four "
                    "probabilities as classes p000, p033, p067, p100")
    el.add_argument("--test-fraction", type=float, default=0.25, metavar="F",
                    help="the test part, stratified (default 0.25, as Deitsch et al. 2019)")
    el.add_argument("--val-fraction", type=float, default=0.15, metavar="F",
                    help="the validation part, a fraction of all images taken from the rest, "
                    "stratified (default 0.15: 60/15/25)")
    el.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    el.add_argument("--source", default=None, metavar="FOLDER",
                    help="ELPV's data folder, holding labels.csv and images/ (default: the "
                    "installed elpv_dataset package's)")
    el.set_defaults(verb="data elpv")
    p = dsub.add_parser("pack", help="decode the images once into a uint8 cache (or check "
                        "the cache's checksums and repack a damaged one)")
    p.add_argument("--data", required=True, help="data folder")
    p.add_argument("--dataset", choices=sorted(READERS), default="pcam",
                   help="which data set --data holds (default pcam: the Kaggle layout)")
    p.add_argument("--image-size", type=image_side, default=None,
                   help="BreakHis and your own data: side to resize to (default 224)")
    p.add_argument("--cache", default=None, help="cache folder (default DATA/.kandel_cache)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes")
    p.add_argument("--force", action="store_true", help="repack even if the cache is current")
    add_reader_options(p)
    p.set_defaults(verb="data pack")
    dl = dsub.add_parser("download", help="download, unzip and verify the Kaggle competition files",
                         description="Downloads the competition files with the kaggle client "
                         "(credentials: ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY; the "
                         "competition's rules must be accepted on kaggle.com), unzips and "
                         "verifies them, and only then moves them to --out.")
    dl.add_argument("--out", default="data/pcam", help="folder to create (default data/pcam)")
    dl.add_argument("--competition", default=COMPETITION, help=f"default {COMPETITION}")
    dl.add_argument("--any-size", action="store_true",
                    help="do not require the competition's file counts")
    dl.add_argument("--quiet", action="store_true", help="no progress bars")
    dl.set_defaults(verb="data download")
    v = dsub.add_parser("verify", help="check an unpacked Kaggle folder completely (counts, "
                        "every id has its tif, no unlisted tif) and its packed cache",
                        description="Checks the CSVs, that every listed id has its tif and no "
                        "tif is unlisted, the competition's file counts, and the packed cache's "
                        "checksums when there is one. It does not decode the images: "
                        "`data pack` decodes every one and names any it cannot read.")
    v.add_argument("--data", required=True, help="folder in the Kaggle layout")
    v.add_argument("--cache", default=None, help="packed cache to check (default DATA/.kandel_cache)")
    v.add_argument("--any-size", action="store_true",
                   help="do not require the competition's 220,025 + 57,458 files "
                   "(synthetic sets are never held to them)")
    v.set_defaults(verb="data verify")

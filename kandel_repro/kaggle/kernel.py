"""Kaggle kernels that run (a shard of) a study on Kaggle's GPU.

A kernel runs a PCam table on the competition's data, or the depth study (the paper's
depth × learning-rate grid, any backbone) on the competition's data or on a user's own
images uploaded as a Kaggle data set (``dataset`` ``folder`` or ``csv``, the data set
``data_source``). :func:`make_kernel` writes three folders::

    OUT/kernel/   kernel-metadata.json + driver.py  (kaggle kernels push -p OUT/kernel)
    OUT/wheel/    the package wheel + dataset-metadata.json    (a private data set)
    OUT/weights/  the ImageNet notop .h5 files + dataset-metadata.json  (imagenet runs)

The kernel has no internet: it installs the package from the wheel data set, finds the
weights in the weights data set, reads the competition data (or the user's data set),
and resumes from the outputs of earlier kernels given with ``resume_from`` (see
:mod:`kandel_repro.kaggle.driver`, the script it runs). :func:`push` uploads the two
data sets (a new version when they exist) and pushes the kernel, with the official
client.
"""
from __future__ import annotations

import json
import pprint
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..models.backbones import get_backbone
from ..models.weights import keras_models_dir
from ..runs.settings import RunSettings, UserSettings
from ..studies.cells import parse_shard, study_configs
from ..studies.registry import get_study
from ..studies.types import Study
from ..studies.unlabelled import pretrained_kinds
from .api import (COMPETITION, DEFAULT_BUDGET_HOURS, SESSION_LIMIT_HOURS, KaggleError, api, call,
                  explain)

if TYPE_CHECKING:  # NOTE: annotations only; the client loads when Kaggle is called
    from kaggle.api.kaggle_api_extended import KaggleApi

REQUIRES = ["tensorflow", "keras", "sklearn", "pandas", "matplotlib", "h5py", "PIL", "tqdm",
            "scipy", "tensorboard"]
WHEEL_DATASET = "kandel-repro-wheel"
WEIGHTS_DATASET = "kandel-repro-imagenet-weights"
# The data a kernel reads: the competition's, or a user's own data set attached to it.
OWN_DATASETS = ("folder", "csv")
SOURCE = r"[A-Za-z0-9_-]+/[A-Za-z0-9_-]+"  # OWNER/SLUG of a kernel or a data set


def kernel_slug(table: str, shard: tuple[int, int] | None = None,
                backbone: str | None = None) -> str:
    """``kandel-repro-<table>[-<backbone>][-shard-i-of-n]``: the backbone names the
    depth study's kernels (each backbone its own)."""
    return (f"kandel-repro-{table}" + (f"-{backbone.replace('_', '-')}" if backbone else "")
            + (f"-shard-{shard[0]}-of-{shard[1]}" if shard else ""))


def kernel_study(table: str, backbone: str | None = None, dataset: str | None = None) -> Study:
    """The study a kernel runs, checked: a PCam table as it is, or the depth study for
    ``backbone`` on ``dataset`` (``pcam``, the default: the competition's data;
    ``folder``/``csv``: a user's data set)."""
    study = get_study(table)
    if pretrained_kinds(study):
        raise ConfigError(f"{table} starts runs from pretrain runs on this machine "
                          "(kandel-repro pretrain), which a kernel does not have; kernels run "
                          "the PCam tables (table2 … table5) and the depth study")
    if not study.parametric:
        if study.dataset != "pcam":
            raise ConfigError(f"{table} trains on BreakHis, which is not this Kaggle "
                              "competition's data; kernels run the PCam tables (table2 … "
                              "table5) and the depth study")
        if backbone is not None:
            raise ConfigError(f"{table} trains {', '.join(study.backbones)} itself; --backbone "
                              "applies to the depth study (kaggle-kernel depth --backbone …)")
        if dataset not in (None, "pcam"):
            raise ConfigError(f"{table} trains on the competition's data; --dataset {dataset} "
                              "applies to the depth study (kaggle-kernel depth --dataset …)")
        return study
    dataset = dataset or "pcam"
    if dataset != "pcam" and dataset not in OWN_DATASETS:
        raise ConfigError(f"--dataset {dataset}: a kernel reads the competition's data (pcam) "
                          f"or your own data set ({', '.join(OWN_DATASETS)}, with --data-source)")
    return get_study(study, backbone=backbone, dataset=dataset)


def _check_data_source(study, data_source, data_path):
    """Refuse a data source the study's data set does not take (one line each)."""
    if study.dataset == "pcam":
        if data_source:
            raise ConfigError(f"--data-source {data_source}: {study.name} on pcam reads the "
                              "competition's data; give --dataset folder or csv to read a "
                              "data set of yours")
        if data_path:
            raise ConfigError(f"--data-path {data_path}: the kernel finds the competition's "
                              "data itself; --data-path applies to --dataset folder or csv")
        return
    if not data_source:
        raise ConfigError(f"--dataset {study.dataset}: give --data-source OWNER/DATASET, the "
                          "Kaggle data set holding your images (the kernel has no internet)")
    if not re.fullmatch(SOURCE, data_source):
        raise ConfigError(f"--data-source takes a data set as OWNER/SLUG, got {data_source!r}")
    parts = Path(data_path).parts
    if data_path.startswith(("/", "\\")) or ".." in parts:
        raise ConfigError(f"--data-path {data_path!r}: a path inside the data set "
                          f"{data_source} (e.g. tiles or labels.csv), not above or outside it")


def _resolved(study: Study, settings: Mapping[str, Any] | None) -> RunSettings:
    """Resolve the kernel's grid settings here, so a bad value fails now rather than on
    Kaggle; the settings of the study's first run (the weights and image size they ask
    for are those of every run)."""
    # NOTE: the grid's seeds are checked when the kernel's grid starts
    settings = UserSettings(**(settings or {})).without("seed")
    return next(iter(study_configs(study, **settings).values()))


def _write_metadata(folder, metadata, name):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")


def build_wheel(dest: Path) -> Path:
    """Build the package's wheel into ``dest`` (from this source checkout); return it."""
    source = Path(__file__).resolve().parents[2]
    if not (source / "setup.cfg").is_file():
        raise ConfigError(f"the wheel is built from a source checkout; {source} has no setup.cfg")
    for old in dest.glob("kandel_repro-*.whl"):
        old.unlink()
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "--quiet", "--disable-pip-version-check", "-w", str(dest), str(source)],
                         capture_output=True, text=True)
    wheels = sorted(dest.glob("kandel_repro-*.whl"))
    if run.returncode or not wheels:
        raise ConfigError(f"building the wheel failed:\n{run.stdout}{run.stderr}")
    return wheels[-1]


def _check_weights(files):
    """Raise, saying how to get them, if weight files are missing from Keras' cache."""
    folder = keras_models_dir()
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"the kernel has no internet, so it needs the ImageNet weight files {', '.join(missing)} "
            f"as a data set, and they are not in {folder}/. On a machine with internet, "
            "`python -c \"import keras; keras.applications.VGG16(include_top=False)\"` (VGG19, "
            "InceptionV3 alike) downloads them there; copy them into that folder here "
            "(or set KERAS_HOME), then run this again")
    return folder


def collect_weights(dest: Path, files: Sequence[str]) -> list[Path]:
    """Copy the notop weight files from Keras' cache into ``dest``."""
    folder = _check_weights(files)
    for name in files:
        if not (dest / name).is_file():
            shutil.copyfile(folder / name, dest / name)
    return [dest / name for name in files]


def make_kernel(table: str, out: str | Path, user: str,
                shard: str | tuple[int, int] | None = None,
                budget_hours: float = DEFAULT_BUDGET_HOURS, resume_from: Sequence[str] = (),
                grid_args: Sequence[str] = (),
                grid_settings: Mapping[str, Any] | None = None,
                wheel: bool = True, name: str | None = None,
                backbone: str | None = None, dataset: str | None = None,
                data_source: str | None = None, data_path: str = "",
                log: Callable[[str], None] = print) -> dict[str, Path]:
    """Write the kernel, wheel and weights folders for study ``table`` under ``out``.

    ``grid_args``: the options the kernel passes to its grid, as typed; ``grid_settings``
    the run settings they give (a :class:`~kandel_repro.runs.settings.UserSettings`, or a
    plain mapping: ``kandel_repro.cli.options.parse_grid_args`` checks and parses them),
    resolved here before anything is written. The depth study takes
    ``backbone`` (default vgg16) and ``dataset``: ``pcam`` (default, the competition's
    data) or ``folder``/``csv``, the user's Kaggle data set ``data_source``
    (``OWNER/SLUG``, attached to the kernel) with its data at ``data_path`` inside it
    (default its top folder; csv: its only .csv file)."""
    study = kernel_study(table, backbone, dataset)
    data_source, data_path = data_source or "", (data_path or "").strip()
    _check_data_source(study, data_source, data_path)
    if not 0 < budget_hours < SESSION_LIMIT_HOURS:
        raise ConfigError(f"--budget-hours must be above 0 and below Kaggle's "
                          f"{SESSION_LIMIT_HOURS}-hour session limit, got {budget_hours:g}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", user or ""):
        raise ConfigError(f"Kaggle user name {user!r} is not valid")
    shard = parse_shard(shard)
    grid_args = list(grid_args)
    if grid_args and grid_settings is None:
        raise TypeError("make_kernel: grid_args need their grid_settings (parse_grid_args)")
    first = _resolved(study, grid_settings)
    weights = first.weights
    for source in resume_from:
        if not re.fullmatch(SOURCE, source):
            raise ConfigError(f"--resume-from takes a kernel as OWNER/SLUG, got {source!r}")
    out = Path(out)
    # NOTE: the file of the runs' input size: MobileNet's and MobileNetV2's depend on it
    size = first.image_size
    weight_files = ([file for file in (get_backbone(b).notop_file(size) for b in study.backbones)
                     if file] if weights == "imagenet" else [])
    _check_weights(weight_files)  # before anything is written
    study_backbone = study.backbones[0] if study.parametric else None
    slug = name or kernel_slug(table, shard, study_backbone)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{3,48}[a-z0-9]", slug):
        raise ConfigError(f"kernel name {slug!r}: 5 to 50 lower-case letters, digits and dashes")
    datasets = [f"{user}/{WHEEL_DATASET}"] + ([f"{user}/{WEIGHTS_DATASET}"] if weight_files else [])
    competition = study.dataset == "pcam"
    budget = int(budget_hours * 3600)
    settings = {"table": table, "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
                "competition": COMPETITION, "budget_seconds": budget, "margin_seconds": 900,
                "weight_files": weight_files, "wheel_dataset": datasets[0],
                "weights_dataset": datasets[1] if weight_files else "",
                "grid_args": grid_args, "requires": REQUIRES,
                "dataset": study.dataset, "backbone": study_backbone,
                "data_source": data_source, "data_path": data_path}
    template = (Path(__file__).parent / "driver.py").read_text(encoding="utf-8")
    filled = re.sub(r"^SETTINGS = \{.*?^\}\n", lambda _: "SETTINGS = "
                    + pprint.pformat(settings, sort_dicts=False) + "\n", template,
                    count=1, flags=re.S | re.M)
    kernel = out / "kernel"
    kernel.mkdir(parents=True, exist_ok=True)
    (kernel / "driver.py").write_text(filled, encoding="utf-8")
    _write_metadata(kernel, {
        "id": f"{user}/{slug}", "title": slug, "code_file": "driver.py", "language": "python",
        "kernel_type": "script", "is_private": True, "enable_gpu": True, "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": datasets + ([] if competition else [data_source]),
        "competition_sources": [COMPETITION] if competition else [],
        "kernel_sources": list(resume_from),
        "model_sources": [],
    }, "kernel-metadata.json")
    folders = {"kernel": kernel}
    if wheel:
        folders["wheel"] = out / "wheel"
        folders["wheel"].mkdir(parents=True, exist_ok=True)
        log(f"built {build_wheel(folders['wheel']).name}")
        _write_metadata(folders["wheel"], {"title": WHEEL_DATASET, "id": datasets[0],
                                           "licenses": [{"name": "other"}]},
                        "dataset-metadata.json")
    if weight_files:
        folders["weights"] = out / "weights"
        folders["weights"].mkdir(parents=True, exist_ok=True)
        collect_weights(folders["weights"], weight_files)
        _write_metadata(folders["weights"], {"title": WEIGHTS_DATASET, "id": datasets[1],
                                             "licenses": [{"name": "other"}]},
                        "dataset-metadata.json")
    log(f"kernel {user}/{slug} in {kernel}: {table}"
        + (f" ({study_backbone} on {study.dataset})" if study.parametric else "")
        + (f" shard {shard[0]}/{shard[1]}" if shard else "")
        + f", budget {budget_hours:g} h of Kaggle's {SESSION_LIMIT_HOURS} h, GPU, no internet; "
        f"data sets {', '.join(datasets + ([] if competition else [data_source]))}"
        + (f"; resumes from {', '.join(resume_from)}" if resume_from else ""))
    return folders


def _dataset_exists(client, ref):
    try:
        client.dataset_status(ref)
    except Exception as exc:  # noqa: BLE001 - a 404 answers the question; others explained
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            return False
        error = explain(exc, None, f"looking up the data set {ref}")
        if error is None:
            raise
        raise error from None
    return True


def push(folders: dict[str, Path], message: str = "kandel_repro",
         client: KaggleApi | None = None, log: Callable[[str], None] = print) -> Any:
    """Upload the data sets (new version if they exist), then push the kernel."""
    client = client or api()
    for name in ("wheel", "weights"):
        folder = folders.get(name)
        if folder is None:
            continue
        ref = json.loads((folder / "dataset-metadata.json").read_text())["id"]
        if _dataset_exists(client, ref):
            response = call(None, f"uploading a new version of {ref}",
                            client.dataset_create_version, str(folder), message, quiet=True,
                            dir_mode="skip")
        else:
            response = call(None, f"creating the data set {ref}",
                            client.dataset_create_new, str(folder), public=False, quiet=True,
                            dir_mode="skip")
        if getattr(response, "error", None):
            raise KaggleError(f"Kaggle refused the data set {ref}: {response.error}")
        log(f"data set {ref}: uploaded")
    response = call(None, "pushing the kernel", client.kernels_push, str(folders["kernel"]))
    if getattr(response, "error", None):
        raise KaggleError(f"Kaggle refused the kernel: {response.error}")
    invalid = [*(response.invalid_dataset_sources or []),
               *(response.invalid_competition_sources or []),
               *(response.invalid_kernel_sources or [])]
    if invalid:
        raise KaggleError(f"the kernel was pushed, but Kaggle does not know its sources "
                          f"{', '.join(invalid)}: check the names (and accept the "
                          "competition's rules), then push again")
    log(f"kernel pushed: {response.url} (version {response.version_number}); its output "
        "holds runs/ and tables/ when it finishes")
    return response


def kernel_command(study: str, user: str | None = None, out: str | Path | None = None,
                   name: str | None = None, shard: str | tuple[int, int] | None = None,
                   push_now: bool = False, log: Callable[[str], None] = print,
                   backbone: str | None = None, dataset: str | None = None,
                   **options: Any) -> dict[str, Path]:
    """What ``kandel-repro kaggle-kernel`` does: write the kernel's folders (the user
    from the credentials unless given; ``out`` default ``kaggle/<kernel name>``), then
    push them (``push_now``) or say how. ``backbone``, ``dataset`` and ``options``: as
    :func:`make_kernel` takes them."""
    study_of = kernel_study(study, backbone, dataset)  # refused before the credentials
    client = None
    if user is None:
        client = api()
        user = client.get_config_value("username")
        if not user:
            raise ConfigError("cannot tell the Kaggle user name from the credentials; give --user")
    slug = kernel_slug(study, parse_shard(shard),
                       study_of.backbones[0] if study_of.parametric else None)
    out = out or f"kaggle/{name or slug}"
    folders = make_kernel(study, out, user, shard=shard, name=name, log=log, backbone=backbone,
                          dataset=dataset, **options)
    if push_now:
        push(folders, client=client, log=log)
    else:
        by_hand = [f"kaggle datasets create -p {folders[part]}" for part in ("wheel", "weights")
                   if part in folders] + [f"kaggle kernels push -p {folders['kernel']}"]
        log(f"not pushed; `kandel-repro kaggle-kernel {study} ... --push`, or by hand: "
            + "; ".join(by_hand))
    return folders

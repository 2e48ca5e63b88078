"""The script of a kandel_repro Kaggle kernel (``driver.py``), standard library only.

``kandel-repro kaggle-kernel`` copies this file into the kernel folder with its
settings filled in (``SETTINGS`` below). On Kaggle it runs as the kernel's script,
without internet:

1. installs the package from the attached wheel data set (``pip --no-index``, into a
   temporary folder: the image's own TensorFlow/Keras stay as they are);
2. puts the attached ImageNet weight files where Keras looks for them;
3. copies the finished run folders of earlier kernels attached as inputs into
   ``/kaggle/working/runs/<table>/``, so their runs are not trained again;
4. runs ``kandel-repro grid <table> [--shard i/n]`` on the competition data (the depth
   study: ``--backbone``, and ``--dataset folder|csv`` on the user's data set attached
   as ``data_source``, found under ``/kaggle/input/<its slug>/<data_path>``) with a time
   budget safely under Kaggle's session limit (runs that do not fit are left for the
   next kernel), then renders the table into ``/kaggle/working/tables/``;
5. writes ``/kaggle/working/kandel-kernel.json``: what was done, what is left.

Locally (and in the tests) ``--root`` replaces ``/kaggle``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {  # filled in by `kandel-repro kaggle-kernel`
    "table": "table2",
    "shard": None,
    "competition": "histopathologic-cancer-detection",
    "budget_seconds": 11 * 3600,
    "margin_seconds": 900,
    "weight_files": [],
    "wheel_dataset": "",
    "weights_dataset": "",
    "grid_args": [],
    "requires": [],
    "dataset": "pcam",  # pcam: the competition's data; folder or csv: data_source's
    "backbone": None,  # the depth study's backbone (None: a table's own)
    "data_source": "",  # OWNER/SLUG of the user's data set (folder, csv)
    "data_path": "",  # where in it the data are ("": its top; csv: its only .csv file)
}


class KernelError(Exception):
    pass


def _log(started, message):
    print(f"[kandel-repro kernel {time.time() - started:7.0f} s] {message}", flush=True)


def _find(inputs, pattern):
    """Files matching ``pattern`` one to three folders below ``inputs``: Kaggle mounts a
    source at ``/kaggle/input/<slug>/``, and has nested them deeper in some layouts."""
    return [path for depth in ("*", "*/*", "*/*/*") for path in sorted(inputs.glob(f"{depth}/{pattern}"))]


def find_competition(inputs: Path, competition: str) -> Path:
    """The folder of the competition's files under ``inputs`` (the one named after it
    when several hold a ``train_labels.csv``)."""
    found = [p.parent for p in _find(inputs, "train_labels.csv")
             if (p.parent / "sample_submission.csv").is_file()]
    named = [folder for folder in found if folder.name == competition]
    if not (named or found):
        raise KernelError(f"no train_labels.csv with a sample_submission.csv under {inputs}: "
                          f"add the competition {competition!r} as a data source of this kernel")
    return (named or found)[0]


def _mounts(inputs, slug):
    """The folders where Kaggle mounted the data set ``slug``: ``inputs/<slug>``, or
    one to three folders deeper."""
    direct = [inputs / slug] if (inputs / slug).is_dir() else []
    return direct + [path for path in _find(inputs, slug) if path.is_dir() and path not in direct]


def find_data(inputs: Path, settings: dict) -> Path:
    """The user's data (``dataset`` folder or csv) in the attached data set
    ``data_source``: the folder, or the CSV manifest, at ``data_path`` in it (for csv, a
    folder there, by default its top, stands for its only ``.csv`` file)."""
    source, dataset = settings["data_source"], settings["dataset"]
    mounts = _mounts(inputs, source.split("/")[-1])
    if not mounts:
        raise KernelError(f"the data set {source!r} is not under {inputs}: attach it to this "
                          "kernel as a data source (kaggle-kernel --data-source)")
    path = settings["data_path"].strip("/")
    found = [mount / path for mount in mounts if (mount / path).exists()] if path else mounts
    if not found:
        raise KernelError(f"{path!r} is not in the data set {source!r} (mounted at {mounts[0]}): "
                          "give --data-path the folder or CSV file's path inside it")
    data = found[0]
    if dataset == "csv" and data.is_dir():
        csvs = sorted(data.glob("*.csv"))
        if len(csvs) != 1:
            named = f" ({', '.join(c.name for c in csvs)})" if csvs else ""
            raise KernelError(f"{len(csvs) or 'no'} .csv files in {data}{named}: give --data-path "
                              f"the CSV manifest's path inside the data set {source!r}")
        data = csvs[0]
    elif dataset == "folder" and not data.is_dir():
        raise KernelError(f"{data} is a file; --dataset folder reads a folder of class "
                          "folders: give --data-path that folder, or --dataset csv")
    return data


def study_options(settings: dict) -> list[str]:
    """What the grid and table commands need to know the study: the depth study's
    ``--backbone`` and ``--dataset`` (nothing for a PCam table)."""
    dataset, backbone = settings.get("dataset", "pcam"), settings.get("backbone")
    return ((["--backbone", backbone] if backbone else [])
            + (["--dataset", dataset] if backbone or dataset != "pcam" else []))


def install(inputs: Path, settings: dict) -> tuple[Path, Path]:
    """Install the attached wheel into a temporary folder; return the PYTHONPATH entry."""
    wheels = _find(inputs, "kandel_repro-*.whl")
    if not wheels:
        raise KernelError(f"no kandel_repro wheel under {inputs}: attach the data set "
                          f"{settings['wheel_dataset']!r} (made by `kandel-repro kaggle-kernel "
                          "--push`) to this kernel")
    missing = [name for name in settings["requires"] if importlib.util.find_spec(name) is None]
    if missing:
        raise KernelError(f"this image lacks {', '.join(missing)}, which kandel_repro needs; "
                          "choose a newer Kaggle Python image, or add them to the wheel data set")
    target = Path(tempfile.mkdtemp(prefix="kandel_pkg_"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "--target", str(target), str(wheels[-1])],
                   check=True)
    return target, wheels[-1]


def place_weights(inputs: Path, settings: dict) -> list[Path]:
    """Copy the attached notop weight files into Keras' cache folder; return their paths."""
    models = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"
    models.mkdir(parents=True, exist_ok=True)
    placed = []
    for name in settings["weight_files"]:
        found = _find(inputs, name)
        if not found:
            raise KernelError(f"{name} is not under {inputs}: attach the data set "
                              f"{settings['weights_dataset']!r} to this kernel")
        if not (models / name).exists():
            shutil.copyfile(found[0], models / name)
        placed.append(models / name)
    return placed


def resume(inputs: Path, runs: Path, marker: str = "metrics.json") -> int:
    """Copy finished runs of earlier kernels (attached as inputs) into ``runs``; with
    ``marker="resume.npz"``, the unfinished runs whose state was saved there (stopped by
    the time budget, or paused by a search), where this kernel has neither a finished nor a
    saved copy: they resume from that epoch, not from their start. Of several earlier
    copies of one run, the one that trained the most epochs is taken."""
    copied = 0
    found = sorted(_find(inputs, f"runs/{runs.name}/*/{marker}"),
                   key=lambda path: -_epochs_recorded(path.parent))
    for path in found:
        source = path.parent
        if (runs / source.name / "metrics.json").exists() or \
                (runs / source.name / marker).exists():
            continue
        destination = runs / source.name
        if destination.exists():
            shutil.rmtree(destination)  # an unfinished attempt
        shutil.copytree(source, destination)
        copied += 1
    return copied


def _epochs_recorded(run: Path) -> int:
    """The epochs a run folder's history.csv records (its lines less the header)."""
    try:
        with open(run / "history.csv", encoding="utf-8") as history:
            return max(sum(1 for _ in history) - 1, 0)
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(description="kandel_repro Kaggle kernel driver")
    parser.add_argument("--root", default="/kaggle", help="Kaggle's root folder (default /kaggle)")
    parser.add_argument("--budget-seconds", type=float, default=None,
                        help="override the time budget of the settings")
    parser.add_argument("--cache", default=None,
                        help="packed-data cache folder (default: in the temporary folder)")
    args, _ = parser.parse_known_args(argv)  # Kaggle may add its own arguments
    settings = SETTINGS
    root = Path(args.root)
    inputs, working = root / "input", root / "working"
    table = settings["table"]
    runs = working / "runs" / table
    runs.mkdir(parents=True, exist_ok=True)
    budget = args.budget_seconds if args.budget_seconds is not None else settings["budget_seconds"]
    report = {"table": table, "shard": settings["shard"], "budget_seconds": budget,
              "dataset": settings.get("dataset", "pcam"), "backbone": settings.get("backbone")}
    try:
        target, wheel = install(inputs, settings)
        _log(started, f"installed {wheel.name}")
        for path in place_weights(inputs, settings):
            _log(started, f"weights: {path}")
        copied = resume(inputs, runs)
        _log(started, f"resumed {copied} finished run(s) from earlier kernels")
        paused = resume(inputs, runs, "resume.npz")
        if paused:
            _log(started, f"resumed {paused} unfinished run(s) of earlier kernels from the "
                          "epoch they stopped at")
        if settings.get("dataset", "pcam") == "pcam":
            data = find_competition(inputs, settings["competition"])
            _log(started, f"competition data: {data}")
        else:
            data = find_data(inputs, settings)
            _log(started, f"{settings['dataset']} data: {data}")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(target)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        cache = Path(args.cache) if args.cache else Path(tempfile.gettempdir()) / "kandel_cache"
        left = budget - (time.time() - started) - settings["margin_seconds"]
        command = [sys.executable, "-m", "kandel_repro", "grid", table, *study_options(settings),
                   "--data", str(data),
                   "--runs", str(runs), "--cache", str(cache), "--time-budget", f"{max(left, 0):.0f}"]
        command += ["--shard", settings["shard"]] if settings["shard"] else []
        command += settings["grid_args"]
        _log(started, "running " + " ".join(command[2:]))
        report["grid_exit_code"] = subprocess.run(command, env=env).returncode
        subprocess.run([sys.executable, "-m", "kandel_repro", "table", table,
                        *study_options(settings), "--runs", str(runs),
                        "--out", str(working / "tables")], env=env, check=True)
    except (KernelError, subprocess.CalledProcessError) as exc:
        report["error"] = str(exc)
        print(f"kandel-repro kernel: error: {exc}", file=sys.stderr, flush=True)
    report["finished_runs"] = sorted(p.parent.name for p in runs.glob("*/metrics.json"))
    report["seconds"] = round(time.time() - started, 1)
    tmp = working / ".kandel-kernel.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, working / "kandel-kernel.json")
    _log(started, f"{len(report['finished_runs'])} finished run(s) in {runs}")
    return 1 if "error" in report or report.get("grid_exit_code") else 0


if __name__ == "__main__":
    sys.exit(main())

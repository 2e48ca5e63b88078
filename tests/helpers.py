"""What several test folders share: the golden files, a cut-down Table 2, a finished
PCam run folder, a user's own images and DICOM files written by hand. (Fixtures are in
conftest.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from kandel_repro.studies.levels import depth_rows, lr_columns
from kandel_repro.studies.registry import STUDIES
from kandel_repro.studies.types import Study

GOLDEN = Path(__file__).parent / "golden"  # golden files (tests/golden/README: what each is)
LEGACY = GOLDEN / "legacy_runs"  # run folders written by earlier versions of the package


def cut_table2(monkeypatch, learning_rates=(1e-4,), rows=slice(0, 1)):
    """Register a Table 2 cut to the top block (by default) and the given rates."""
    study = Study("table2", "Table 2 — VGG16 fine-tuned on PCam", "pcam",
                  depth_rows("vgg16")[rows], lr_columns(learning_rates), "Fine-tuned blocks")
    monkeypatch.setitem(STUDIES, "table2", study)
    return study


def make_run(root, name, data_dir, hidden, noise=0.3, seed=0):
    """A finished PCam run folder as train_run leaves it (predictions: noisy labels)."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"protocol": "pcam", "data_dir": str(data_dir)}))
    (run / "metrics.json").write_text(json.dumps({"status": "ok", "val_auc": 0.9}))
    ids = pd.read_csv(data_dir / "sample_submission.csv", dtype={"id": str})["id"]
    rng = np.random.default_rng(seed)
    labels = np.clip(np.array([hidden[i] for i in ids]) * 0.5 + rng.uniform(0, noise, len(ids)), 0, 1)
    pd.DataFrame({"id": ids, "label": labels}).to_csv(run / "submission.csv", index=False)
    return run


def finished_grid(study_name, data_dir, runs_dir, skip=(), **settings):
    """The run folders a grid of ``study_name`` over ``data_dir`` with ``settings`` would
    leave, written without training: each config as the grid resolves it (so the grid
    accepts the runs as its own), validation predictions of a run-specific quality,
    a three-epoch history and metrics with the threshold measures. ``skip``: run names
    left out (still to be trained). Returns the names written."""
    from sklearn.metrics import roc_auc_score

    from kandel_repro.core.files import write_csv, write_json
    from kandel_repro.core.stats import run_summary
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.runs.config import with_data
    from kandel_repro.studies.cells import study_configs
    from kandel_repro.studies.registry import get_study

    study = get_study(study_name)
    data = get_reader(study.dataset).load(data_dir, progress=False, workers=1)
    configs = study_configs(study, **settings)
    train_idx, val_idx, test = data.split(next(iter(configs.values())))
    labels, written = data.y[val_idx], []
    facts = dict(image_size=int(data.image_shape[0]), n_train=len(train_idx), n_val=len(val_idx),
                 n_test=test.size, train_positive_fraction=float(np.mean(data.y[train_idx])),
                 val_positive_fraction=float(np.mean(labels)),
                 test_positive_fraction=None if test.labels is None else float(
                     np.mean(test.labels)), replicas=1, precision="float32", jit="off",
                 eval_batch_size=64, device="CPU (no run trained: written by tests/helpers.py)")
    for i, (name, config) in enumerate(configs.items()):
        if name in skip:
            continue
        run = Path(runs_dir) / name
        run.mkdir(parents=True)
        write_json(run / "config.json", dict(with_data(config, data, data_dir), **facts))
        noise = np.random.default_rng(i).normal(size=len(labels))
        scores = 1 / (1 + np.exp(-(labels * (0.5 + (i % 5) / 4) + noise - 0.5)))
        write_csv(run / "val_predictions.csv",
                  pd.DataFrame({"id": data.ids[val_idx], "label": labels, "prediction": scores}))
        summary = run_summary(labels, scores)
        auc = float(roc_auc_score(labels, scores))
        write_csv(run / "history.csv", pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.7, 0.6, 0.5],
                                                     "val_auc": [auc - 0.1, auc - 0.02, auc]}))
        write_json(run / "metrics.json", {"status": "ok", "val_auc": auc, "best_epoch": 3,
                                          "epochs_run": 3, "wall_seconds": 1.0 + i,
                                          "train_images_per_second": 100.0, **summary})
        written.append(name)
    return written


def same_weights_files(a, b) -> bool:
    """The two Keras weights files hold the same arrays, exactly (the same names too)."""
    import h5py

    def arrays(path):
        out = {}
        with h5py.File(path) as f:
            f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
        return out

    a, b = arrays(a), arrays(b)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# --- a user's own data, written by hand --------------------------------------------------

# The own-data split of a run config (80/10/10 by the data's split, groups or images) and
# the reader arguments that pack tiny images quickly, in this process.
OWN_SPLIT = {"split": "auto", "validation_fraction": 0.1, "test_fraction": 0.1, "split_seed": 0}
TINY_LOAD = dict(workers=1, progress=False, image_size=8)


def png(path, value=0, size=6):
    """A ``size``×``size`` RGB PNG of one gray ``value`` at ``path`` (folders made)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def class_folders(root, layout):
    """Write ``{class: number of images}`` under ``root`` (image i of gray 10·i); return
    ``root``."""
    for name, count in layout.items():
        for i in range(count):
            png(root / name / f"{i:02d}.png", (10 * i) % 256)
    return root


def minmax(values):
    """``values`` brought to 8 bits by their own min–max, as the readers' rule does."""
    values = values.astype(float)
    return np.rint((values - values.min()) / (values.max() - values.min()) * 255).astype(np.uint8)


def dicom_dataset(pixels, photometric="MONOCHROME2", bits=13, syntax=None):
    """A one-image DICOM data set of ``pixels`` (a secondary capture; ``syntax``: its
    transfer syntax, explicit VR little endian by default); the test is skipped without
    pydicom (the optional extra kandel_repro[dicom])."""
    import pytest

    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.set_pixel_data(pixels, photometric, bits)
    return ds


def three_class_set(root):
    """``(data_dir, data)``: a synthetic 3-class folder of 200 images, loaded at 32×32."""
    from kandel_repro.readers.registry import get_reader
    from kandel_repro.readers.synthetic.folder import write_synthetic_folder

    data_dir = write_synthetic_folder(root / "tiles", classes=3, images=200, patients=12,
                                      size=8, seed=0, progress=False)
    return data_dir, get_reader("folder").load(data_dir, progress=False, workers=1,
                                               image_size=32)


def write_study_runs(runs, study, configs, data, data_dir, strength, history=None,
                     metrics=None):
    """The finished runs of ``study`` (``configs``: its cells' settings) as a grid leaves
    them, without training, seed 0: each cell's test and validation predictions of the
    3-class ``data`` separate the classes by ``strength(cell)`` (0: none), its history two
    epochs (more columns: ``history(cell, auc)``), its metrics the macro AUC and summary
    (more, or other, values: ``metrics(cell)``)."""
    from kandel_repro.core.bootstrap import macro_auc, multiclass_summary
    from kandel_repro.core.files import write_csv, write_json
    from kandel_repro.runs import rundir
    from kandel_repro.runs.config import with_data

    train, val, test = data.split(next(iter(configs.values())))
    rng = np.random.default_rng(0)
    base = rng.normal(size=(test.size, 3))
    labels = test.labels
    for name, config in configs.items():
        cell = next(c for c in study.cells() if c.folder == name)
        scores = np.exp(np.eye(3)[labels] * strength(cell) + base
                        + rng.normal(0, 0.05, base.shape))
        scores /= scores.sum(axis=1, keepdims=True)
        run = runs / name
        run.mkdir(parents=True)
        write_json(run / rundir.CONFIG, dict(with_data(config, data, data_dir), n_train=len(train),
                                              n_val=len(val), n_test=test.size,
                                              precision="float32", device="CPU (written by a test)"))
        for file in (rundir.TEST_PREDICTIONS, rundir.VAL_PREDICTIONS):
            write_csv(run / file, rundir.prediction_frame(test.selected_ids(), labels, scores))
        auc = macro_auc(labels, scores)
        write_csv(run / rundir.HISTORY, pd.DataFrame({
            "epoch": [1, 2], "loss": [1.0, 0.9], "val_auc": [auc - 0.05, auc],
            **(history(cell, auc) if history else {})}))
        write_json(run / rundir.METRICS, {
            "status": "ok", "val_auc": auc, "test_auc": auc, "best_epoch": 2, "epochs_run": 2,
            "wall_seconds": 1.0, "train_images_per_second": 10.0,
            **multiclass_summary(labels, scores, labels, scores, n=200),
            **(metrics(cell) if metrics else {})})
    return runs

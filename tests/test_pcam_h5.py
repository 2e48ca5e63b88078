"""The original PCam release (HDF5) and its synthetic twin (kandel_repro.data.pcam_h5)."""
import gzip
import shutil

import h5py
import numpy as np
import pytest

from kandel_repro.cli import main
from kandel_repro.data import pcam_h5
from kandel_repro.data.readers import get_reader
from kandel_repro.data.synthetic_h5 import write_synthetic_pcam_h5
from kandel_repro.errors import DataError

FILE = pcam_h5.PREFIX + "{}_{}.h5.gz"


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    return write_synthetic_pcam_h5(tmp_path_factory.mktemp("h5") / "h5", 40, 12, 12, seed=1,
                                   size=32, progress=False)


@pytest.fixture
def h5_copy(tiny_h5, tmp_path):
    dst = tmp_path / "h5"
    shutil.copytree(tiny_h5, dst, ignore=shutil.ignore_patterns(".kandel_cache"))
    return dst


def test_the_synthetic_set_has_the_release_layout(tiny_h5):
    for split, n in (("train", 40), ("valid", 12), ("test", 12)):
        with gzip.open(tiny_h5 / FILE.format(split, "x")) as raw, h5py.File(raw) as f:
            assert f["x"].shape == (n, 32, 32, 3) and f["x"].dtype == np.uint8
        with gzip.open(tiny_h5 / FILE.format(split, "y")) as raw, h5py.File(raw) as f:
            assert f["y"].shape == (n, 1, 1, 1) and f["y"][:].mean() == 0.5


def test_packing_keeps_the_release_splits_and_maps_the_images(h5_copy, tmp_path):
    data = pcam_h5.load(h5_copy, tmp_path / "cache", progress=False)
    assert isinstance(data.x, np.memmap)  # bounded memory: the images stay on disk
    assert data.x.shape == (64, 32, 32, 3) and data.dataset == "pcam-h5" and data.synthetic
    with gzip.open(h5_copy / FILE.format("valid", "x")) as raw, h5py.File(raw) as f:
        np.testing.assert_array_equal(data.x[40:52], f["x"][:])
    split = data.split({})
    assert (len(split.train), len(split.val), split.test.size) == (40, 12, 12)
    assert list(split.test.selected_ids()[:2]) == ["test-000000", "test-000001"]
    assert not list((tmp_path / "cache").rglob("*.h5"))  # decompressed copies removed
    assert pcam_h5.pack(h5_copy, tmp_path / "cache", progress=False) == tmp_path / "cache" / "pcam-h5"


def _rewrite(path, key, value):
    raw = path.with_suffix("")  # .h5
    with h5py.File(raw, "w") as f:
        f.create_dataset(key, data=value)
    with open(raw, "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()


@pytest.mark.parametrize("damage, message", [
    ("missing", r"lacks camelyonpatch_level_2_split_valid_y\.h5\.gz"),
    ("key", r"valid_y\.h5\.gz has no dataset 'y' \(found: labels\)"),
    ("shape", r"valid_x\.h5\.gz: dataset 'x' has shape \(12, 32, 32\), expected N×32×32×3"),
    ("dtype", r"valid_x\.h5\.gz: dataset 'x' holds float32, expected uint8"),
    ("length", r"valid_x\.h5\.gz holds 12 images but .*valid_y\.h5\.gz 11 labels"),
    ("truncated", r"valid_x\.h5\.gz is not a complete gzip file"),
])
def test_each_malformed_file_is_named(h5_copy, tmp_path, damage, message):
    x, y = h5_copy / FILE.format("valid", "x"), h5_copy / FILE.format("valid", "y")
    if damage == "missing":
        y.unlink()
    elif damage == "key":
        _rewrite(y, "labels", np.zeros((12, 1, 1, 1), np.uint8))
    elif damage == "shape":
        _rewrite(x, "x", np.zeros((12, 32, 32), np.uint8))
    elif damage == "dtype":
        _rewrite(x, "x", np.zeros((12, 32, 32, 3), np.float32))
    elif damage == "length":
        _rewrite(y, "y", np.zeros((11, 1, 1, 1), np.uint8))
    elif damage == "truncated":
        x.write_bytes(x.read_bytes()[: x.stat().st_size // 2])
    with pytest.raises(DataError, match=message):
        pcam_h5.pack(h5_copy, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "pcam-h5").exists()  # nothing half-written
    assert not list((tmp_path / "cache").glob(".pcam-h5.tmp-*"))  # no temporary folder left


def test_the_reader_is_a_pcam_one_with_a_labelled_test_split():
    reader = get_reader("pcam-h5")
    assert reader.protocol == "pcam" and reader.labelled_test and not reader.resizes


@pytest.mark.slow
def test_a_table_on_the_hdf5_release_reports_test_aucs(tiny_h5, tmp_path, monkeypatch, capsys):
    from kandel_repro import studies
    from kandel_repro.studies import Study, depth_rows, lr_columns

    monkeypatch.setitem(studies.STUDIES, "table2", Study(
        "table2", "Table 2 — VGG16 fine-tuned on PCam", "pcam", depth_rows("vgg16")[:2],
        lr_columns((1e-4,)), "Fine-tuned blocks"))
    runs = tmp_path / "runs"
    assert main(["grid", "table2", "--dataset", "pcam-h5", "--data", str(tiny_h5), "--runs",
                 str(runs), "--weights", "none", "--epochs", "1", "--batch-size", "16",
                 "--cache", str(tmp_path / "cache")]) == 0
    assert main(["table", "table2", "--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "table2.md").read_text()
    assert "ROC AUC on the held-out" in text and "release's own train / valid / test" in text
    assert "Model selection:" in text and "the test split is not used to choose" in text
    import json
    config = json.loads((runs / "vgg16_blocks5-5_lr1e-04" / "config.json").read_text())
    metrics = json.loads((runs / "vgg16_blocks5-5_lr1e-04" / "metrics.json").read_text())
    assert config["dataset"] == "pcam-h5" and config["split"] == "release"
    assert config["n_train"] == 40 and config["n_val"] == 12 and config["n_test"] == 12
    assert 0 <= metrics["test_auc"] <= 1 and len(metrics["test_auc_ci"]) == 2
    assert main(["grid", "table2", "--dataset", "pcam-h5", "--data", str(tiny_h5), "--runs",
                 str(tmp_path / "r2"), "--submit"]) == 2
    assert "only PCam runs are scored by Kaggle" in capsys.readouterr().err


def test_a_breakhis_study_does_not_read_pcam_data(tiny_h5, tmp_path, capsys):
    assert main(["grid", "table6", "--dataset", "pcam-h5", "--data", str(tiny_h5), "--runs",
                 str(tmp_path / "r")]) == 2
    assert "table6 follows the breakhis protocol; --dataset pcam-h5 is pcam data" in \
        capsys.readouterr().err

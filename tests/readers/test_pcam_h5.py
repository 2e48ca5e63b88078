"""The original PCam release (HDF5) and its synthetic twin (kandel_repro.readers.pcam_h5)."""
import gzip
import os
import shutil

import h5py
import numpy as np
import pytest

from kandel_repro.cli.main import main
from kandel_repro.core.errors import DataError
from kandel_repro.readers import pcam_h5
from kandel_repro.readers.registry import get_reader
from kandel_repro.readers.synthetic.pcam_h5 import write_synthetic_pcam_h5
from kandel_repro.studies.registry import STUDIES

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
    data = get_reader("pcam-h5").load(h5_copy, tmp_path / "cache", progress=False)
    assert isinstance(data.x, np.memmap)  # bounded memory: the images stay on disk
    assert data.x.shape == (64, 32, 32, 3) and data.dataset == "pcam-h5" and data.synthetic
    with gzip.open(h5_copy / FILE.format("valid", "x")) as raw, h5py.File(raw) as f:
        np.testing.assert_array_equal(data.x[40:52], f["x"][:])
    split = data.split({})
    assert (len(split.train), len(split.val), split.test.size) == (40, 12, 12)
    assert list(split.test.selected_ids()[:2]) == ["test-000000", "test-000001"]
    assert not list((tmp_path / "cache").rglob("*.h5"))  # decompressed copies removed
    assert get_reader("pcam-h5").pack(h5_copy, tmp_path / "cache",
                                      progress=False) == tmp_path / "cache" / "pcam-h5"


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
        get_reader("pcam-h5").pack(h5_copy, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "pcam-h5").exists()  # nothing half-written
    assert not list((tmp_path / "cache").glob(".pcam-h5.tmp-*"))  # no temporary folder left


def test_the_reader_is_a_pcam_one_with_a_labelled_test_split():
    reader = get_reader("pcam-h5")
    assert reader.protocol == "pcam" and reader.labelled_test and not reader.resizes


@pytest.mark.slow
def test_a_table_on_the_hdf5_release_reports_test_aucs(tiny_h5, tmp_path, monkeypatch, capsys):
    
    from kandel_repro.studies.levels import depth_rows, lr_columns
    from kandel_repro.studies.types import Study

    monkeypatch.setitem(STUDIES, "table2", Study(
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


@pytest.mark.parametrize("verb", ["grid", "train"])
@pytest.mark.parametrize("options, named", [
    (["--split", "slide"], "--split slide does"),
    (["--split", "slide", "--wsi-map", "no-such-map.csv"], "--split slide and --wsi-map do"),
])
def test_the_kaggle_split_options_are_refused_on_the_release(tiny_h5, tmp_path, capsys, verb,
                                                              options, named):
    where = (["grid", "table2", "--runs", str(tmp_path / "runs")] if verb == "grid" else
             ["train", "--first-block", "5", "--lr", "1e-4", "--run-dir", str(tmp_path / "run")])
    code = main(where + ["--dataset", "pcam-h5", "--data", str(tiny_h5), "--weights", "none",
                         "--epochs", "1", "--cache", str(tmp_path / "cache"), *options])
    lines = [line for line in capsys.readouterr().err.splitlines() if "kandel-repro" in line]
    err = lines[-1]  # (after the packing's progress bars)
    assert code == 2 and len(lines) == 1 and err.startswith("kandel-repro: error: ")
    assert f"{named} not apply to --dataset pcam-h5" in err and "own train / valid / test" in err
    assert not list(tmp_path.glob("run*/**/config.json"))  # no run folder written
    assert not list(tmp_path.glob("runs/*"))  # nor the grid's record
    assert not (tmp_path / "cache").exists()  # refused before the release is packed


def _empty(path, key):
    _rewrite(path, key, np.zeros((0, 32, 32, 3) if key == "x" else (0, 1, 1, 1), np.uint8))


def test_an_empty_split_is_named(h5_copy, tmp_path):
    for key in "xy":
        _empty(h5_copy / FILE.format("valid", key), key)
    with pytest.raises(DataError, match=r"valid_x\.h5\.gz holds no image: the valid split is "
                                        r"empty"):
        get_reader("pcam-h5").pack(h5_copy, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "pcam-h5").exists()


def test_an_h5_beside_its_h5_gz_is_the_one_read_and_said(h5_copy, tmp_path, capsys):
    gz = h5_copy / FILE.format("test", "y")
    with gzip.open(gz) as src, open(gz.with_suffix(""), "wb") as dst:
        shutil.copyfileobj(src, dst)
    data = get_reader("pcam-h5").load(h5_copy, tmp_path / "cache", progress=False)
    assert data.split({}).test.size == 12
    err = capsys.readouterr().err
    assert f"holds both {gz.with_suffix('').name} and {gz.name}; reading " \
           f"{gz.with_suffix('').name}" in err
    assert err.count("holds both") == 1  # one file doubled, one line


def test_a_release_folder_read_as_the_kaggle_layout_suggests_pcam_h5(tiny_h5, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_h5), "--run-dir", str(tmp_path / "run"),
                 "--first-block", "5", "--lr", "1e-4", "--weights", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "HDF5 release" in err and "--dataset pcam-h5" in err


@pytest.mark.parametrize("verb", ["synthetic", "synthetic-h5", "synthetic-breakhis"])
def test_an_unwritable_out_is_one_line_naming_it(tmp_path, capsys, verb):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "set"
    assert main(["data", verb, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kandel-repro: error: ") and err.count("\n") == 1
    assert str(blocker) in err and "give --out a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_an_interrupted_writer_leaves_no_temporary_folder(tmp_path, monkeypatch):
    from kandel_repro.readers.synthetic import pcam_h5 as synthetic_h5

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_h5, "synthetic_patch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_pcam_h5(tmp_path / "h5", 4, 2, 2, size=16, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_folder_is_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    from kandel_repro.core.files import HOST

    for stale in (f".h5.tmp-{HOST}-{dead}", f".h5.tmp-{dead}"):  # (the latter: older names)
        (tmp_path / stale / "half").mkdir(parents=True)
    alive = tmp_path / f".h5.tmp-{os.getppid()}"  # a live process's: left alone
    alive.mkdir()
    out = write_synthetic_pcam_h5(tmp_path / "h5", 4, 2, 2, size=16, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, alive.name])


def test_the_table_header_states_the_test_share_the_release_has(tmp_path):
    from kandel_repro.core.files import write_json
    from kandel_repro.report import tables
    from kandel_repro.runs.config import resolve_config
    from kandel_repro.studies.registry import get_study

    for cell in get_study("table2").cells():
        run = tmp_path / cell.folder
        run.mkdir()
        config = resolve_config("vgg16", cell.first_trainable_block, cell.learning_rate)
        config = config.updated(dataset="pcam-h5", synthetic=True, split="release",
                                image_size=32, n_train=160, n_val=40, n_test=40)
        write_json(run / "config.json", config.to_config())
        write_json(run / "metrics.json", {"status": "ok", "val_auc": 0.9, "best_epoch": 1,
                                          "test_auc": 0.5 + cell.first_trainable_block / 10})
    md, *_ = tables.write_table("table2", tmp_path, tmp_path / "out")
    text = md.read_text()
    assert "- Metric: ROC AUC on the held-out 17 % test split" in text and "10 %" not in text

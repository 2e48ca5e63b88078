import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.readers import breakhis
from kandel_repro.readers.breakhis import MAGNIFICATIONS, SUBTYPES, parse_name, split_three
from kandel_repro.readers.registry import get_reader
from kandel_repro.readers.synthetic.breakhis import write_synthetic_breakhis


@pytest.fixture
def breakhis_copy(tiny_breakhis, tmp_path):
    dst = tmp_path / "bh"
    shutil.copytree(tiny_breakhis, dst, ignore=shutil.ignore_patterns(".kandel_cache"))
    return dst


def test_synthetic_breakhis_writes_the_real_layout(tiny_breakhis):
    breast = tiny_breakhis / "BreaKHis_v1" / "histology_slides" / "breast"
    files = sorted(breast.rglob("*.png"))
    assert len(files) == 8 * 2 * 4 * 2
    one = files[0].relative_to(breast)
    assert one.parts[0] in ("benign", "malignant") and one.parts[1] == "SOB"
    assert one.parts[2] in {s for _, s in SUBTYPES.values()}
    assert one.parts[4] in {f"{m}X" for m in MAGNIFICATIONS}
    with Image.open(files[0]) as img:
        assert img.size == (700, 460) and img.mode == "RGB"
    index = breakhis.read_index(tiny_breakhis)
    assert index["patient"].nunique() == 16 and set(index["subtype"]) == {s for _, s in SUBTYPES.values()}
    assert set(index["magnification"]) == set(MAGNIFICATIONS)


def test_parse_real_file_names():
    p = "breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/SOB_B_A-14-22549AB-40-001.png"
    assert parse_name(p) == {"class": "benign", "subtype": "adenosis", "patient": "14-22549AB",
                             "magnification": 40, "label": 0}
    p = ("breast/malignant/SOB/ductal_carcinoma/SOB_M_DC_14-11031/400X/"
         "SOB_M_DC-14-11031-400-012.png")
    assert parse_name(p)["label"] == 1 and parse_name(p)["magnification"] == 400


@pytest.mark.parametrize("path, message", [
    ("breast/benign/SOB/adenosis/SOB_B_A_14-1/40X/holiday.png", "does not parse"),
    ("breast/benign/SOB/adenosis/SOB_B_A_14-1/40X/SOB_B_XX-14-1-40-001.png", "unknown tumour type 'XX'"),
    ("breast/benign/SOB/adenosis/SOB_B_A_14-1/40X/SOB_M_A-14-1-40-001.png", "class letter 'M'"),
    ("breast/benign/SOB/adenosis/SOB_B_A_14-1/100X/SOB_B_A-14-1-40-001.png", "magnification '40X'"),
    ("breast/benign/SOB/fibroadenoma/SOB_B_A_14-1/40X/SOB_B_A-14-1-40-001.png", "subtype 'adenosis'"),
    ("breast/benign/SOB/adenosis/SOB_B_A_14-2/40X/SOB_B_A-14-1-40-001.png", "patient '14-1'"),
])
def test_bad_names_are_refused_with_the_file(path, message):
    with pytest.raises(DataError, match=message) as err:
        parse_name(path)
    assert path.split("/")[-1] in str(err.value)


def test_reader_refuses_a_stray_png(breakhis_copy):
    folder = next((breakhis_copy / "BreaKHis_v1").rglob("40X"))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "scan copy.png")
    with pytest.raises(DataError, match="scan copy.png"):
        breakhis.read_index(breakhis_copy)


def test_missing_breakhis_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="BreaKHis_v1/histology_slides/breast.*synthetic-breakhis"):
        breakhis.read_index(tmp_path)


def test_pack_resizes_and_reuses_cache(breakhis_copy):
    data = get_reader("breakhis").load(breakhis_copy, image_size=40, workers=1, progress=False)
    assert data.x.shape == (128, 40, 40, 3) and data.synthetic and data.dataset == "breakhis"
    manifest = breakhis.default_cache_dir(breakhis_copy, 40) / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    get_reader("breakhis").load(breakhis_copy, image_size=40, workers=1, progress=False)
    assert manifest.stat().st_mtime_ns == stamp
    assert get_reader("breakhis").load(breakhis_copy, image_size=48, workers=1,
                                       progress=False).x.shape[1] == 48


def test_image_split_is_80_10_10_and_stratified():
    labels = np.array([0] * 300 + [1] * 700)
    patients = np.repeat(np.arange(50), 20)
    train, val, test = split_three(labels, patients, 0.1, 0.1, seed=0, kind="image")
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert labels[test].sum() == 70 and labels[val].sum() == 70
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)


def test_patient_split_keeps_patients_on_one_side():
    labels = np.repeat([0] * 15 + [1] * 35, 20)
    patients = np.repeat(np.arange(50), 20)
    train, val, test = split_three(labels, patients, 0.1, 0.1, seed=0, kind="patient")
    sides = [set(patients[s]) for s in (train, val, test)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    assert len(train) + len(val) + len(test) == 1000
    assert 0 < labels[test].mean() < 1 and 60 <= len(test) <= 160
    with pytest.raises(ConfigError, match="at least 10 patients"):
        split_three(labels[:100], patients[:100], 0.1, 0.1, seed=0, kind="patient")


def test_magnification_filter(tiny_breakhis):
    data = get_reader("breakhis").load(tiny_breakhis, image_size=32, workers=1, progress=False)
    config = {"validation_fraction": 0.1, "test_fraction": 0.1, "seed": 0, "split_seed": 0, "split": "image"}
    train, val, test = data.split(dict(config, magnification="200"))
    rows = np.concatenate([train, val, test.indices])
    assert len(rows) == 32 and set(data.magnifications[rows]) == {200}
    with pytest.raises(ConfigError, match="'300'"):
        data.split(dict(config, magnification="300"))


@pytest.mark.slow
def test_synthetic_breakhis_is_learnable(tmp_path):
    import keras
    from sklearn.metrics import roc_auc_score

    root = write_synthetic_breakhis(tmp_path / "bh", 3, 3, seed=0, progress=False)
    data = get_reader("breakhis").load(root, image_size=64, workers=2, progress=False)
    config = {"validation_fraction": 0.1, "test_fraction": 0.1, "seed": 0, "split_seed": 0, "split": "image"}
    train, val, test = data.split(config)
    held_out = np.concatenate([val, test.indices])
    x = data.x.astype("float32") / 255.0
    y = data.y.astype("float32")
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential([
        keras.Input((64, 64, 3)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    cnn.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    cnn.fit(x[train], y[train], batch_size=16, epochs=15, verbose=0)
    auc = roc_auc_score(y[held_out], cnn.predict(x[held_out], verbose=0).ravel())
    assert auc >= 0.9


def test_png_in_capitals_is_read_not_skipped(breakhis_copy):
    before = breakhis.read_index(breakhis_copy)
    path = Path(before["path"].iloc[0])
    path.rename(path.with_suffix(".PNG"))
    after = breakhis.read_index(breakhis_copy)
    assert len(after) == len(before) and after["path"].str.endswith(".PNG").sum() == 1


def test_a_magnification_without_images_is_refused_before_training(breakhis_copy, tmp_path,
                                                                   capsys):
    from kandel_repro.cli.main import main

    for folder in list((breakhis_copy / "BreaKHis_v1").rglob("100X")):
        shutil.rmtree(folder)
    code = main(["grid", "table6", "--data", str(breakhis_copy), "--runs", str(tmp_path / "r"),
                 "--magnification", "100", "--image-size", "32", "--weights", "none",
                 "--workers", "1"])
    assert code == 2 and "holds no 100X image" in capsys.readouterr().err
    assert not any((tmp_path / "r").glob("vgg16_*"))

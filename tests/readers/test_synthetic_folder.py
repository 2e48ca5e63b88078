import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kandel_repro.core.errors import DataError
from kandel_repro.data.layouts import MARKER
from kandel_repro.readers.registry import get_reader
from kandel_repro.readers.synthetic.folder import CLASSES, write_synthetic_folder

SMALL = dict(classes=3, images=6, patients=2, size=16, progress=False)


def test_writes_the_folder_layout_and_its_manifest(tmp_path):
    out = write_synthetic_folder(tmp_path / "s", **SMALL)
    names = list(CLASSES)[:3]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["manifest.csv", MARKER])
    for name in names:
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == [f"P{p:02d}-{n:03d}.png" for p in (1, 2) for n in (1, 2, 3)]
    with Image.open(out / names[0] / "P01-001.png") as img:
        assert img.size == (16, 16) and img.mode == "RGB"
    rows = pd.read_csv(out / "manifest.csv", dtype=str)
    assert list(rows.columns) == ["path", "label", "group"] and len(rows) == 18
    assert (rows["path"].str.split("/").str[0] == rows["label"]).all()
    assert (rows["path"].str.split("/").str[1].str[:3] == rows["group"]).all()
    assert json.loads((out / MARKER).read_text())["params"]["classes"] == 3


def test_is_deterministic_and_reused_but_never_overwritten(tmp_path):
    a = write_synthetic_folder(tmp_path / "a", **SMALL)
    b = write_synthetic_folder(tmp_path / "b", **SMALL)
    for path in sorted(a.rglob("*.png")):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()
    stamp = (a / MARKER).stat().st_mtime_ns
    assert write_synthetic_folder(tmp_path / "a", **SMALL) == a
    assert (a / MARKER).stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="already holds a synthetic set made with"):
        write_synthetic_folder(tmp_path / "a", **dict(SMALL, seed=1))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(DataError, match="exists and is not a synthetic set"):
        write_synthetic_folder(tmp_path / "busy", **SMALL)
    other = write_synthetic_folder(tmp_path / "c", **dict(SMALL, seed=1))
    assert (other / "tumour" / "P01-001.png").read_bytes() != (a / "tumour" / "P01-001.png").read_bytes()


@pytest.mark.parametrize("image_format, ext", [("jpg", "jpg"), ("TIFF", "tif"), ("bmp", "bmp")])
def test_other_formats_are_read_by_both_readers(tmp_path, image_format, ext):
    out = write_synthetic_folder(tmp_path / "s", **dict(SMALL, classes=2, image_format=image_format))
    assert len(list(out.rglob(f"*.{ext}"))) == 12
    data = get_reader("folder").load(out, tmp_path / "c", workers=1, progress=False, image_size=8)
    listed = get_reader("csv").load(out / "manifest.csv", tmp_path / "c", workers=1,
                                    progress=False, image_size=8)
    assert list(data.class_names) == ["stroma", "tumour"] and (data.x == listed.x).all()


@pytest.mark.parametrize("settings, message", [
    (dict(classes=1), "--classes must be from 2 to 9"),
    (dict(classes=10), "--classes must be from 2 to 9"),
    (dict(patients=7), r"--patients must be from 1 to --images \(6\)"),
    (dict(image_format="gif"), "--format must be one of"),
    (dict(size=4), "--size must be at least 8"),
])
def test_bad_parameters_are_refused(tmp_path, settings, message):
    with pytest.raises(DataError, match=message):
        write_synthetic_folder(tmp_path / "s", **dict(SMALL, **settings))
    assert not (tmp_path / "s").exists()


def test_classes_differ_in_colour_but_overlap(tmp_path):
    """Colour alone separates the classes well above chance, not perfectly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    out = write_synthetic_folder(tmp_path / "s", classes=3, images=30, patients=4, size=16,
                                 progress=False)
    data = get_reader("folder").load(out, tmp_path / "c", workers=1, progress=False, image_size=16)
    x = data.x.astype(float) / 255
    features = np.concatenate([x.mean((1, 2)), x.std((1, 2))], axis=1)
    scores = cross_val_predict(LogisticRegression(max_iter=2000), features, data.y, cv=4,
                               method="predict_proba")
    auc = roc_auc_score(data.y, scores, multi_class="ovr")
    assert 0.6 < auc < 0.99


@pytest.mark.slow
def test_a_small_cnn_learns_it_well_above_chance_but_not_perfectly(tmp_path):
    import keras
    from sklearn.metrics import roc_auc_score

    out = write_synthetic_folder(tmp_path / "s", progress=False)  # 3 classes × 40, 64 px
    data = get_reader("folder").load(out, workers=1, progress=False, image_size=64)
    train, val, test = data.split({"split": "image", "validation_fraction": 0.1,
                                   "test_fraction": 0.3, "split_seed": 0})
    held_out = np.concatenate([val, test.indices])
    x = data.x.astype("float32") / 255.0
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential([
        keras.Input((64, 64, 3)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    cnn.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    cnn.fit(x[train], data.y[train], batch_size=16, epochs=10, verbose=0)
    auc = roc_auc_score(data.y[held_out], cnn.predict(x[held_out], verbose=0),
                        multi_class="ovr", average="macro")
    assert 0.65 < auc < 0.99

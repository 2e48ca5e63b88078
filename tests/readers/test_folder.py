import numpy as np
import pytest
from helpers import OWN_SPLIT, TINY_LOAD, class_folders, png
from PIL import Image

from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.readers import folder
from kandel_repro.readers.registry import get_reader
from kandel_repro.readers.synthetic.folder import write_synthetic_folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """3 classes × 10 images, 16 px (read-only: load it with a cache folder of your own)."""
    return write_synthetic_folder(tmp_path_factory.mktemp("own") / "set", classes=3, images=10,
                                  patients=2, size=16, progress=False)


def test_round_trip_of_the_synthetic_set(tiny, tmp_path):
    data = get_reader("folder").load(tiny, tmp_path / "cache", **TINY_LOAD)
    assert data.x.shape == (30, 8, 8, 3) and data.x.dtype == np.uint8
    assert list(data.class_names) == ["lymphocytes", "stroma", "tumour"]  # sorted
    assert data.y.dtype == np.int16 and np.bincount(data.y).tolist() == [10, 10, 10]
    assert data.ids[0] == "lymphocytes/P01-001.png" and all(i.count("/") == 1 for i in data.ids)
    assert (data.groups == "").all() and (data.splits == "").all()
    assert data.synthetic and data.dataset == "folder" and data.root == tiny
    assert data.facts() == {"classes": ["lymphocytes", "stroma", "tumour"], "num_classes": 3}
    assert (tmp_path / "cache" / "folder-8" / "manifest.json").is_file()
    first = np.asarray(Image.open(tiny / data.ids[17]).convert("RGB").resize((8, 8),
                                                                            Image.BILINEAR))
    assert (data.x[17] == first).all() and data.class_names[data.y[17]] == data.ids[17].split("/")[0]


def test_cache_beside_the_data_reused_and_apart_per_size_and_window(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    get_reader("folder").load(root, **TINY_LOAD)
    manifest = root / ".kandel_cache" / "folder-8" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    again = get_reader("folder").load(root, **TINY_LOAD)  # the cache is not read as a class
    assert manifest.stat().st_mtime_ns == stamp and list(again.class_names) == ["a", "b"]
    # the default size
    assert get_reader("folder").load(root, workers=1, progress=False).x.shape[1] == 224
    windowed = get_reader("folder").pack(root, workers=1, progress=False, image_size=8,
                                         window=[100, 50])
    assert windowed.parent == root / ".kandel_cache"
    assert windowed.name.startswith("folder-8-") and len(windowed.name) == len("folder-8-") + 8
    other = get_reader("folder").pack(root, workers=1, progress=False, image_size=8,
                                      window=[100, 60])
    assert other != windowed


def test_images_in_subfolders_count_and_hidden_and_other_files_do_not(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 2, "b": 2})
    png(root / "a" / "scan 2" / "deep.PNG")
    png(root / "a" / ".hidden.png")
    png(root / ".trash" / "x.png")
    (root / "b" / "notes.txt").write_text("about b")
    (root / "README.md").write_text("my data")
    index = folder.read_index(root)
    assert sorted(index["id"]) == ["a/00.png", "a/01.png", "a/scan 2/deep.PNG", "b/00.png",
                                   "b/01.png"]
    assert index.loc[index["id"] == "a/scan 2/deep.PNG", "y"].item() == 0
    assert list(index["label"].cat.categories) == ["a", "b"]


def test_image_split_is_stratified_and_seeded(tiny, tmp_path):
    data = get_reader("folder").load(tiny, tmp_path, **TINY_LOAD)
    train, val, test = data.split(OWN_SPLIT)
    assert data.split_facts(OWN_SPLIT) == {"split_used": "image"}
    assert (len(train), len(val), test.size) == (24, 3, 3)
    assert sorted(data.y[val]) == [0, 1, 2] and sorted(test.labels) == [0, 1, 2]
    assert not set(train) & set(val) and not set(train) & set(test.indices)
    assert test.auc_key == "test_auc" and (test.labels == data.y[test.indices]).all()
    same = data.split(dict(OWN_SPLIT, split="image"))
    assert (same.train == train).all() and (same.test.indices == test.indices).all()
    other = data.split(dict(OWN_SPLIT, split_seed=1))
    assert not (other.test.indices == test.indices).all()


def test_pre_split_layout_is_used_as_it_is(tmp_path):
    root = tmp_path / "d"
    for part, n in (("train", 4), ("val", 2), ("test", 3)):
        class_folders(root / part, {"cat": n, "dog": n})
    data = get_reader("folder").load(root, tmp_path / "c", **TINY_LOAD)
    assert list(data.class_names) == ["cat", "dog"] and len(data.y) == 18
    assert sorted(set(data.splits)) == ["test", "train", "val"]
    train, val, test = data.split(OWN_SPLIT)
    assert data.split_facts(OWN_SPLIT) == {"split_used": "given"}
    assert all(i.startswith("train/") for i in data.ids[train]) and len(train) == 8
    assert all(i.startswith("val/") for i in data.ids[val]) and len(val) == 4
    assert all(i.startswith("test/") for i in test.selected_ids()) and test.size == 6
    assert data.split(dict(OWN_SPLIT, split="given")).train.tolist() == train.tolist()
    with pytest.raises(ConfigError, match="brings its own split.*drop --split image"):
        data.split(dict(OWN_SPLIT, split="image"))


@pytest.mark.parametrize("make, message", [
    (lambda r: r.mkdir(), r"no class folders in .*d: expected DATA/<class>"),
    (lambda r: class_folders(r, {"a": 2, "b": 0}) and (r / "b").mkdir(),
     r"class folder .*b holds no image"),
    (lambda r: class_folders(r, {"a": 2}) and (r / "b").mkdir() and (r / "b" / "x.txt").write_text(""),
     r"class folder .*b holds no image"),
    (lambda r: class_folders(r, {"a": 3}), r"one class only \('a'\)"),
    (lambda r: [class_folders(r / p, {"a": 1, "b": 1}) for p in ("train", "val")],
     r"split into train, val but has no test folder"),
    (lambda r: [class_folders(r / p, {"a": 1, "b": 1, "c": int(p != "val")})
                for p in ("train", "val", "test")],
     r"do not hold the same classes: .*val has no class folder c"),
    (lambda r: [class_folders(r / p, {"a": 1, "b": 1}) for p in ("train", "val", "test")]
     and class_folders(r, {"a": 1}), r"mixes split folders \(test, train, val\) with class folders \(a\)"),
    (lambda r: r.mkdir() and (r / "train").mkdir() and (r / "val").mkdir()
     and (r / "test").mkdir(), r"no class folders in .*train"),
    (lambda r: None, r"data folder .*d does not exist"),
    (lambda r: r.write_text("x"), r"d is a file; --dataset folder reads a folder"),
])
def test_bad_layouts_are_refused_in_one_line(tmp_path, make, message):
    root = tmp_path / "d"
    make(root)
    with pytest.raises(DataError, match=message) as err:
        folder.read_index(root)
    assert "\n" not in str(err.value)


def test_check_config_refuses_what_folders_cannot_serve():
    get_reader("folder").check_config(dict(OWN_SPLIT, window=[40, 400]))
    with pytest.raises(ConfigError, match="--group-column applies to a CSV manifest"):
        get_reader("folder").check_config(dict(OWN_SPLIT, group_column="patient"))
    with pytest.raises(ConfigError, match="--path-column, --label-column apply"):
        get_reader("folder").check_config(dict(OWN_SPLIT, path_column="p", label_column="l"))
    with pytest.raises(ConfigError, match="--split group needs a group.*CSV manifest"):
        get_reader("folder").check_config(dict(OWN_SPLIT, split="group"))
    with pytest.raises(ConfigError, match="--split must be one of auto, given, image, group"):
        get_reader("folder").check_config(dict(OWN_SPLIT, split="patient"))


def test_split_on_folders_refuses_group_and_given(tiny, tmp_path):
    data = get_reader("folder").load(tiny, tmp_path, **TINY_LOAD)
    with pytest.raises(ConfigError, match="--split group needs a group"):
        data.split(dict(OWN_SPLIT, split="group"))
    with pytest.raises(ConfigError, match="--split given needs the data's own split"):
        data.split_facts(dict(OWN_SPLIT, split="given"))


def test_too_few_images_of_a_class_for_the_split(tmp_path):
    data = get_reader("folder").load(class_folders(tmp_path / "d", {"a": 20, "b": 2}),
                                     tmp_path / "c", **TINY_LOAD)
    with pytest.raises(DataError, match=r"too few images for its 3-way split "
                                        r"\(20 of class 'a', 2 of class 'b'\)"):
        data.split(OWN_SPLIT)


def test_a_truncated_image_leaves_nothing_half_written(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    data = (root / "b" / "01.png").read_bytes()
    (root / "b" / "01.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=r"cannot decode .*b/01\.png"):
        get_reader("folder").pack(root, **TINY_LOAD)
    cache = root / ".kandel_cache"
    assert not (cache / "folder-8").exists()
    assert [p.name for p in cache.iterdir()] == [".folder-8.lock"]  # no temporary folder


def test_the_registry_passes_its_options_on(tmp_path):
    root = tmp_path / "d"
    for name, values in (("low", (100, 200)), ("high", (900, 1000))):
        for i, value in enumerate(values):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((4, 4), value, np.uint16)).save(root / name / f"{i}.tif")
    reader = get_reader("folder")
    config = dict(OWN_SPLIT, window=[500, 1000], path_column=None)
    assert reader.options_of(config) == {"window": [500, 1000]}
    data = reader.load(root, tmp_path / "c", workers=1, progress=False, image_size=4,
                       **reader.options_of(config))
    means = {data.ids[i]: int(data.x[i].mean()) for i in range(len(data.ids))}
    assert means == {"high/0.tif": 230, "high/1.tif": 255, "low/0.tif": 26, "low/1.tif": 51}
    assert len(reader.read_index(root, window=[500, 1000])) == 4
    plain = reader.load(root, tmp_path / "c", workers=1, progress=False, image_size=4)
    assert (plain.x == 0).all()  # each image constant: min–max gives 0

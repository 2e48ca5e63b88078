import pytest
from helpers import OWN_SPLIT, TINY_LOAD, png

from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.readers import manifest
from kandel_repro.readers.registry import get_reader
from kandel_repro.readers.synthetic.folder import write_synthetic_folder


def csv(root, text, name="list.csv"):
    """``root/name`` holding ``text``; every path of its first column made a PNG."""
    root.mkdir(parents=True, exist_ok=True)
    for line in text.strip().splitlines()[1:]:
        cell = line.split(",")[0].strip()
        if cell.lower().endswith(".png") and not cell.startswith(("/", "..", "missing")):
            png(root / cell, len(cell))
    (root / name).write_text(text)
    return root / name


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """3 classes × 10 images over 10 patients, 16 px (read-only; own cache folders)."""
    return write_synthetic_folder(tmp_path_factory.mktemp("own") / "set", classes=3, images=10,
                                  patients=10, size=16, progress=False)


def test_the_manifest_reads_what_the_folder_reader_reads(tiny, tmp_path):
    data = get_reader("csv").load(tiny / "manifest.csv", tmp_path, **TINY_LOAD)
    same = get_reader("folder").load(tiny, tmp_path, **TINY_LOAD)
    assert (data.ids == same.ids).all() and (data.x == same.x).all() and (data.y == same.y).all()
    assert list(data.class_names) == list(same.class_names)
    assert data.root == tiny / "manifest.csv" and data.dataset == "csv" and data.synthetic
    assert sorted(set(data.groups)) == [f"P{p:02d}" for p in range(1, 11)]
    assert (tmp_path / "csv-manifest-8" / "manifest.json").is_file()


def test_groups_are_kept_on_one_side(tiny, tmp_path):
    data = get_reader("csv").load(tiny / "manifest.csv", tmp_path, **TINY_LOAD)
    for config in (OWN_SPLIT, dict(OWN_SPLIT, split="group")):
        train, val, test = data.split(config)
        assert data.split_facts(config) == {"split_used": "group"}
        sides = [set(data.groups[rows]) for rows in (train, val, test.indices)]
        assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
        assert len(train) + len(val) + test.size == 30
        assert sorted(set(data.y[val])) == [0, 1, 2] and sorted(set(test.labels)) == [0, 1, 2]
    image = data.split(dict(OWN_SPLIT, split="image"))
    assert data.split_facts(dict(OWN_SPLIT, split="image")) == {"split_used": "image"}
    assert set(data.groups[image.train]) & set(data.groups[image.test.indices])


def test_too_few_groups_say_so(tmp_path):
    root = tmp_path / "d"
    rows = "".join(f"{c}{i}.png,{c},g{i % 3}\n" for c in "ab" for i in range(10))
    data = get_reader("csv").load(csv(root, "path,label,group\n" + rows), tmp_path / "c",
                                  **TINY_LOAD)
    with pytest.raises(ConfigError, match=r"--split auto \(by group.*needs at least 10 groups "
                                          r"for a 10% split, found 3"):
        data.split(OWN_SPLIT)
    assert len(data.split(dict(OWN_SPLIT, split="image")).train) == 16


def test_given_split_is_used_as_it_is(tmp_path):
    root = tmp_path / "d"
    rows = ("a0.png,x,train\na1.png,y,Train\na2.png,x,valid\na3.png,y,VAL\n"
            "a4.png,x,validation\na5.png,x,test\na6.png,y, test\n")
    data = get_reader("csv").load(csv(root, "path,label,split\n" + rows), tmp_path / "c",
                                  **TINY_LOAD)
    train, val, test = data.split(OWN_SPLIT)
    assert data.split_facts(OWN_SPLIT) == {"split_used": "given"}
    assert train.tolist() == [0, 1] and val.tolist() == [2, 3, 4]
    assert test.indices.tolist() == [5, 6]
    for kind in ("image", "group"):
        with pytest.raises(ConfigError, match=f"brings its own split.*drop --split {kind}"):
            data.split(dict(OWN_SPLIT, split=kind))


@pytest.mark.parametrize("splits, message", [
    (("train", "train", "val", "val", "train", "train"), "the test part of .* holds no image"),
    (("train", "train", "val", "val", "test", "val"), "the test part .* no image of class 'y'"),
    (("train", "train", "val", "test", "test", "test"), "the val part .* no image of class 'y'"),
])
def test_given_split_missing_a_part_or_a_class_is_refused(tmp_path, splits, message):
    rows = "".join(f"a{i}.png,{'xy'[i % 2]},{part}\n" for i, part in enumerate(splits))
    data = get_reader("csv").load(csv(tmp_path / "d", "path,label,split\n" + rows),
                                  tmp_path / "c", **TINY_LOAD)
    with pytest.raises(DataError, match=message):
        data.split(OWN_SPLIT)


def test_integer_labels_sort_as_numbers_text_labels_as_text(tmp_path):
    numbers = manifest.read_index(csv(tmp_path / "n", "path,label\na.png,10\nb.png,2\nc.png,1\n"))
    assert list(numbers["label"].cat.categories) == ["1", "2", "10"]
    assert numbers["y"].tolist() == [2, 1, 0]
    text = manifest.read_index(csv(tmp_path / "t", "path,label\na.png,b10\nb.png,b2\nc.png, A\n"))
    assert list(text["label"].cat.categories) == ["A", "b10", "b2"]


def test_column_options_name_the_columns_and_the_cache(tmp_path):
    root = tmp_path / "d"
    rows = "".join(f"img/{i}.png,{'ab'[i % 2]},p{i},extra\n" for i in range(6))
    path = csv(root, "file,kind,patient,note\n" + rows, name="scans.csv")
    options = dict(path_column="file", label_column="kind", group_column="patient")
    data = get_reader("csv").load(path, **TINY_LOAD, **options)
    assert data.ids[0] == "img/0.png" and list(data.groups) == [f"p{i}" for i in range(6)]
    caches = sorted(p.name for p in (root / ".kandel_cache").iterdir() if not p.name.startswith("."))
    assert len(caches) == 1 and caches[0].startswith("csv-scans-8-") and len(caches[0]) == 20
    reader = get_reader("csv")
    assert reader.options_of(dict(OWN_SPLIT, window=None, **options)) == options
    assert len(reader.read_index(path, **options)) == 6


def test_an_edited_manifest_is_packed_again(tmp_path):
    path = csv(tmp_path / "d", "path,label\na.png,x\nb.png,y\nc.png,x\n")
    assert get_reader("csv").load(path, **TINY_LOAD).y.tolist() == [0, 1, 0]
    path.write_text("path,label\na.png,y\nb.png,x\nc.png,y\n")  # relabelled, same images
    assert get_reader("csv").load(path, **TINY_LOAD).y.tolist() == [1, 0, 1]


def test_paths_are_relative_to_the_csv_folder(tmp_path):
    png(tmp_path / "d" / "images" / "a.png")
    png(tmp_path / "d" / "images" / "b.png")
    (tmp_path / "d" / "lists").mkdir()
    path = tmp_path / "d" / "images" / "m.csv"
    path.write_text("path,label\n./a.png,x\nsub/../b.png,y\n")
    index = manifest.read_index(path)
    assert index["id"].tolist() == ["a.png", "b.png"]
    assert index["path"].tolist() == [str(tmp_path / "d" / "images" / n) for n in ("a.png", "b.png")]


@pytest.mark.parametrize("text, message", [
    ("", r"list\.csv is empty"),
    ("path,label\n", r"list\.csv lists no image \(a header only\)"),
    ("file,label\na.png,x\n", r"has no column 'path' \(its columns: 'file', 'label'\); name it "
                              r"with --path-column"),
    ("path,kind\na.png,x\n", r"has no column 'label' .*--label-column"),
    ("path,label\na.png,x\nb.png,y\nmissing.png,x\n", r"row 3: 'missing.png' does not exist"),
    ("path,label\na.png,x\nb.png,y\n./a.png,y\n", r"row 3: './a.png' is listed twice \(also row 1\)"),
    ("path,label\na.png,x\nb.png,\n", r"row 2: empty label"),
    ("path,label\na.png,x\nb.png,NaN\n", r"row 2: empty label"),
    ("path,label,split\na.png,x,train\nb.png,y,holdout\n", r"row 2: split 'holdout' is not train, "
                                                            r"val or test"),
    ("path,label,group\na.png,x,p1\nb.png,y,\n", r"row 2: empty 'group'"),
    ("path,label\n/etc/a.png,x\n", r"row 1: path '/etc/a.png' is absolute"),
    ("path,label\n../a.png,x\n", r"row 1: path '../a.png' leaves the CSV's folder"),
    ("path,label\nscan.txt,x\n", r"row 1: 'scan.txt' is not an image of a kind read here"),
    ("path,label\na.png,x\n,y\n", r"row 2: empty path"),
    ("path,label\na.png,x\nb.png,x\n", r"one class only \('x'\)"),
    ('path,label\na.png,x\n"b.png,y\n', r"cannot read .*list\.csv as a CSV"),
])
def test_bad_manifests_are_refused_naming_the_csv(tmp_path, text, message):
    path = csv(tmp_path / "d", text)
    with pytest.raises(DataError, match=message) as err:
        manifest.read_index(path)
    assert "list.csv" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_group_column_named_and_a_missing_or_folder_csv(tmp_path):
    path = csv(tmp_path / "d", "path,label\na.png,x\nb.png,y\n")
    with pytest.raises(DataError, match=r"has no column 'patient' .*--group-column"):
        manifest.read_index(path, group_column="patient")
    with pytest.raises(DataError, match=r"CSV manifest .*nothere\.csv does not exist"):
        manifest.read_index(tmp_path / "nothere.csv")
    with pytest.raises(DataError, match=r"d is a folder; --dataset csv reads a CSV manifest"):
        manifest.read_index(tmp_path / "d")


def test_check_config_refuses_unknown_splits():
    get_reader("csv").check_config(dict(OWN_SPLIT, split="group", group_column="patient"))
    with pytest.raises(ConfigError, match="--split must be one of"):
        get_reader("csv").check_config(dict(OWN_SPLIT, split="slide"))


def test_a_truncated_listed_image_leaves_nothing_half_written(tmp_path):
    path = csv(tmp_path / "d", "path,label\na.png,x\nb.png,y\n")
    data = (tmp_path / "d" / "b.png").read_bytes()
    (tmp_path / "d" / "b.png").write_bytes(data[:20])
    with pytest.raises(DataError, match=r"cannot decode .*b\.png"):
        get_reader("csv").pack(path, **TINY_LOAD)
    assert [p.name for p in (tmp_path / "d" / ".kandel_cache").iterdir()] == [".csv-list-8.lock"]

"""The own-data readers (``--dataset folder|csv``) on layouts and manifests as people make
them: split folders of any case, links, numeric labels, the positive class, a given split
that puts a group on two sides, Windows paths and other separators."""
import os

import pytest
from helpers import OWN_SPLIT, TINY_LOAD, class_folders, png

from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.readers import folder, manifest
from kandel_repro.readers.registry import get_reader


def csv(root, text, name="list.csv", images=()):
    """``root/name`` holding ``text`` (bytes as they are) and a PNG at each of ``images``."""
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        png(root / image, i)
    (root / name).write_bytes(text.encode())
    return root / name


# --- split folders ---------------------------------------------------------------------

@pytest.mark.parametrize("names", [("Train", "Val", "Test"), ("TRAIN", "validation", "test"),
                                   ("training", "Valid", "Testing")])
def test_split_folders_of_any_case_and_synonym_are_the_split(tmp_path, names):
    root = tmp_path / "d"
    for name, n in zip(names, (4, 2, 2)):
        class_folders(root / name, {"cat": n, "dog": n})
    index = folder.read_index(root)
    assert list(index["label"].cat.categories) == ["cat", "dog"]
    assert sorted(set(index["split"])) == ["test", "train", "val"]
    assert (index["split"] == "train").sum() == 8
    assert index["id"].iloc[0].startswith(f"{names[0]}/cat/")


def test_a_class_folder_named_like_a_split_is_refused(tmp_path):
    root = tmp_path / "d"
    for part in ("train", "val", "test"):
        class_folders(root / part, {"cat": 1, "Valid": 1})
    with pytest.raises(DataError, match=r"class folder .*Valid is named like a split part") as err:
        folder.read_index(root)
    assert "\n" not in str(err.value)


def test_two_folders_for_one_part_and_a_missing_part_are_refused(tmp_path):
    root = tmp_path / "d"
    for part in ("train", "val", "Validation", "test"):
        class_folders(root / part, {"a": 1, "b": 1})
    with pytest.raises(DataError, match=r"two folders for the val part \(Validation, val\)"):
        folder.read_index(root)
    other = tmp_path / "e"
    for part in ("Training", "Testing"):
        class_folders(other / part, {"a": 1, "b": 1})
    with pytest.raises(DataError, match=r"split into Testing, Training but has no val folder"):
        folder.read_index(other)


# --- links -----------------------------------------------------------------------------

def test_a_linked_folder_inside_a_class_folder_is_followed(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 4, "b": 4})
    elsewhere = class_folders(tmp_path / "elsewhere", {"scans": 8})
    os.symlink(elsewhere / "scans", root / "a" / "more")
    index = folder.read_index(root)
    assert (index["label"] == "a").sum() == 12
    assert "a/more/07.png" in set(index["id"])


def test_a_link_loop_is_read_once_and_said(tmp_path, capsys):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    os.symlink(root / "a", root / "a" / "again")  # a loop
    os.symlink(root / "a", root / "a" / "again-too")  # the same folder twice
    os.symlink(root / "b", root / "b" / "self")
    index = folder.read_index(root)
    assert sorted(index.loc[index["label"] == "b", "id"]) == ["b/00.png", "b/01.png", "b/02.png"]
    assert (index["label"] == "a").sum() == 3
    err = capsys.readouterr().err
    assert "a/again" in err and "a/again-too" in err and "b/self" in err
    assert "read already" in err


@pytest.mark.parametrize("link, target, named", [
    ("a/sibling", "b", "a/sibling (class 'a') and b (class 'b') are the same folder"),
    ("a/up", ".", "(the data folder itself) and a/up (class 'a') are the same folder"),
])
def test_a_link_from_one_class_into_another_is_refused(tmp_path, link, target, named):
    """A folder reached from two classes would give its images two labels: refused in one
    line naming both places and the link, not read twice."""
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    os.symlink(root / target, root / link)
    with pytest.raises(DataError, match="an image has one class and one part") as err:
        folder.read_index(root)
    assert named in str(err.value) and "\n" not in str(err.value)
    assert f"through the link {link}:" in str(err.value)


def test_a_link_from_train_into_test_is_refused(tmp_path):
    """Test images read into the training part as well would leak: refused."""
    root = tmp_path / "d"
    for part in ("train", "val", "test"):
        class_folders(root / part, {"a": 2, "b": 2})
    os.symlink(root / "test" / "a", root / "train" / "a" / "more")
    with pytest.raises(DataError, match=r"train/a/more \(class 'a' of train\) and test/a "
                                        r"\(class 'a' of test\) are the same folder .* through "
                                        r"the link train/a/more"):
        folder.read_index(root)


def test_one_image_linked_into_two_classes_is_refused(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    os.symlink(root / "b" / "00.png", root / "a" / "borrowed.png")
    with pytest.raises(DataError, match=r"a/borrowed\.png \(class 'a'\) and b/00\.png "
                                        r"\(class 'b'\) are the same image .* through the link "
                                        r"a/borrowed\.png"):
        folder.read_index(root)


def test_a_broken_link_among_the_images_is_named_in_one_line(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    os.symlink(tmp_path / "gone.png", root / "a" / "lost.png")
    with pytest.raises(DataError, match=r"a/lost\.png is a broken link") as err:
        folder.read_index(root)
    assert "\n" not in str(err.value)
    path = csv(tmp_path / "m", "path,label\nx.png,a\nlost.png,b\n", images=["x.png"])
    os.symlink(tmp_path / "gone.png", tmp_path / "m" / "lost.png")
    with pytest.raises(DataError, match=r"row 2: 'lost\.png' is a broken link"):
        manifest.read_index(path)


def test_a_file_gone_before_hashing_is_named_in_one_line(tmp_path):
    from kandel_repro.data.cache import hash_sources

    png(tmp_path / "a.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "b.png")
    with pytest.raises(DataError, match=r"b\.png is a broken link") as err:
        hash_sources([tmp_path / "a.png", tmp_path / "b.png"], tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"c\.png does not exist"):
        hash_sources([tmp_path / "c.png"], tmp_path)


# --- files that are not images ---------------------------------------------------------

def test_files_that_are_not_images_are_counted_by_extension(tmp_path, capsys):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    (root / "a" / "notes.txt").write_text("x")
    (root / "b" / "more.txt").write_text("x")
    (root / "b" / "scan.json").write_text("{}")
    (root / "b" / ".DS_Store").write_text("x")  # hidden: not counted
    (root / "README.md").write_text("beside the classes: not counted")
    data = get_reader("folder").load(root, tmp_path / "c", **TINY_LOAD)
    assert len(data.y) == 6
    assert "skipped 3 files that are not images (.txt ×2, .json ×1)" in capsys.readouterr().err


# --- labels: one rule for both readers -------------------------------------------------

def test_one_number_written_several_ways_is_refused_naming_the_rows(tmp_path):
    images = [f"{i}.png" for i in range(5)]
    path = csv(tmp_path / "d", "path,label\n0.png,0\n1.png,1\n2.png,01\n3.png,1.0\n4.png,1\n",
               images=images)
    with pytest.raises(DataError, match=r"'1' \(rows 2, 5\), '01' \(row 3\) and '1\.0' \(row 4\) "
                                        r"are one number") as err:
        manifest.read_index(path)
    assert "\n" not in str(err.value)
    root = class_folders(tmp_path / "f", {"1": 1, "01": 1, "2": 1})
    with pytest.raises(DataError, match=r"class folders '01' and '1' are one number"):
        folder.read_index(root)


def test_numeric_class_names_sort_as_numbers_in_both_readers(tmp_path):
    root = class_folders(tmp_path / "d", {"0": 1, "1": 1, "2": 1, "10": 1})
    assert list(folder.read_index(root)["label"].cat.categories) == ["0", "1", "2", "10"]
    rows = "".join(f"{name}/00.png,{name}\n" for name in ("10", "2", "1", "0"))
    (root / "m.csv").write_text("path,label\n" + rows)
    assert list(manifest.read_index(root / "m.csv")["label"].cat.categories) == ["0", "1", "2",
                                                                                "10"]
    decimals = csv(tmp_path / "e", "path,label\na.png,10\nb.png,2.5\nc.png,0.5\n",
                   images=["a.png", "b.png", "c.png"])
    assert list(manifest.read_index(decimals)["label"].cat.categories) == ["0.5", "2.5", "10"]


def test_the_positive_class_is_chosen_and_the_split_stays(tmp_path):
    root = class_folders(tmp_path / "d", {"abnormal": 20, "normal": 20})
    plain = get_reader("folder").load(root, **TINY_LOAD)
    assert list(plain.class_names) == ["abnormal", "normal"]  # the second is the positive
    chosen = get_reader("folder").load(root, positive_class="abnormal", **TINY_LOAD)
    assert list(chosen.class_names) == ["normal", "abnormal"]
    assert (chosen.y == 1 - plain.y).all() and (chosen.x == plain.x).all()
    assert chosen.fingerprint == plain.fingerprint  # the same images
    caches = sorted(p.name for p in (root / ".kandel_cache").iterdir() if p.name[0] != ".")
    assert len(caches) == 2  # apart: their labels differ
    a, b = plain.split(OWN_SPLIT), chosen.split(OWN_SPLIT)
    assert (a.val == b.val).all() and (a.test.indices == b.test.indices).all()
    # (the positive already)
    again = get_reader("folder").load(root, positive_class="normal", **TINY_LOAD)
    assert list(again.class_names) == ["abnormal", "normal"]
    path = csv(tmp_path / "m", "path,label\na.png,0\nb.png,1.0\n", images=["a.png", "b.png"])
    assert manifest.read_index(path, positive_class="0")["y"].tolist() == [1, 0]


@pytest.mark.parametrize("layout, name, message", [
    ({"a": 1, "b": 1, "c": 1}, "a", r"--positive-class applies to two classes; .* has 3 "
                                    r"\(a, b, c\)"),
    ({"a": 1, "b": 1}, "c", r"--positive-class 'c' is not a class of .*: its classes are a, b"),
])
def test_a_positive_class_that_cannot_be_is_refused_in_one_line(tmp_path, layout, name, message):
    root = class_folders(tmp_path / "d", layout)
    with pytest.raises(ConfigError, match=message) as err:
        folder.read_index(root, positive_class=name)
    assert "\n" not in str(err.value)


def test_the_positive_class_is_a_run_setting_of_own_data():
    from kandel_repro.runs.config import resolve_config
    from kandel_repro.runs.keys import ADDED, EXPERIMENT_KEYS, upgrade

    config = resolve_config("vgg16", 5, 1e-3, protocol="own", positive_class="tumour")
    assert config["positive_class"] == "tumour"
    assert resolve_config("vgg16", 5, 1e-3, protocol="own")["positive_class"] is None
    with pytest.raises(ConfigError, match=r"--positive-class does not apply to the pcam"):
        resolve_config("vgg16", 5, 1e-3, protocol="pcam", positive_class="tumour")
    # the classes in label order decide the experiment, which the positive class acts on
    assert "classes" in EXPERIMENT_KEYS and "positive_class" not in EXPERIMENT_KEYS
    assert ADDED["positive_class"] is None
    assert upgrade({"protocol": "own"})["positive_class"] is None  # runs made before it
    assert get_reader("folder").options_of({"positive_class": "a"}) == {"positive_class": "a"}


def test_naming_the_positive_class_the_rule_gives_anyway_is_the_same_experiment(tmp_path):
    """A run made with --positive-class normal, normal being the positive anyway, resumes
    and joins a grid without the option; one whose labels it swapped does not."""
    from kandel_repro.runs import rundir
    from kandel_repro.runs.config import resolve_config

    config = dict(resolve_config("vgg16", 5, 1e-3, protocol="own"),
                  classes=["abnormal", "normal"])
    run = tmp_path / "run"
    run.mkdir()
    rundir.write_config(run, dict(config, positive_class="normal"))
    (run / "metrics.json").write_text('{"status": "ok", "val_auc": 0.5}')
    rundir.check_same_experiment(run, config)  # no error: the same labels
    with pytest.raises(ConfigError, match="classes"):
        rundir.check_same_experiment(run, dict(config, positive_class="abnormal",
                                               classes=["normal", "abnormal"]))


# --- a given split that puts a group on two sides --------------------------------------

def test_groups_on_two_sides_of_a_given_split_are_counted_and_said(tmp_path, capsys):
    from kandel_repro.report.header import describe_data
    from kandel_repro.runs.settings import RunSettings

    rows = ["path,label,patient,split"]
    for i, (part, patient) in enumerate([("train", "P1"), ("train", "P2"), ("train", "P3"),
                                         ("train", "P4"), ("val", "P1"), ("val", "P5"),
                                         ("test", "P2"), ("test", "P6")]):
        rows.append(f"{i}.png,{'xy'[i % 2]},{patient},{part}")
    path = csv(tmp_path / "d", "\n".join(rows) + "\n", images=[f"{i}.png" for i in range(8)])
    data = get_reader("csv").load(path, tmp_path / "c", group_column="patient", **TINY_LOAD)
    data.split_facts(OWN_SPLIT)  # (a run's config is made first)
    data.split(OWN_SPLIT)
    data.split(OWN_SPLIT)  # said once
    err = capsys.readouterr().err
    assert err.count("2 groups (P1, P2) are on two sides of the data's own split") == 1
    facts = data.split_facts(dict(OWN_SPLIT, group_column="patient"))
    assert facts == {"split_used": "given", "groups_across_split": 2}
    config = dict(OWN_SPLIT, protocol="own", dataset="csv", data_dir="/d", image_size=8,
                  classes=["x", "y"], num_classes=2, n_train=4, n_val=2, n_test=2,
                  group_column="patient", **facts)
    assert "the data's own train / val / test split; 2 groups (patient) on two sides" in \
        describe_data([RunSettings.of(config)])
    alone = get_reader("csv").load(csv(tmp_path / "e",
                                       "path,label,split\n0.png,x,train\n1.png,y,test\n",
                                       images=["0.png", "1.png"]), tmp_path / "c", **TINY_LOAD)
    assert "groups_across_split" not in alone.split_facts(OWN_SPLIT)


# --- CSV as written elsewhere ----------------------------------------------------------

def test_windows_paths_are_read(tmp_path):
    path = csv(tmp_path / "d", "path,label\ntiles\\000.png,a\ntiles\\001.png,b\n",
               images=["tiles/000.png", "tiles/001.png"])
    index = manifest.read_index(path)
    assert index["id"].tolist() == ["tiles/000.png", "tiles/001.png"]
    with pytest.raises(DataError, match=r"path '..\\\\a.png' leaves the CSV's folder"):
        manifest.read_index(csv(tmp_path / "e", "path,label\n..\\a.png,x\n"))


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_semicolon_tab_or_bar_separated_manifest_is_read(tmp_path, sep):
    text = f"path{sep}label\na.png{sep}x\nb.png{sep}y\n"
    index = manifest.read_index(csv(tmp_path / "d", text, images=["a.png", "b.png"]))
    assert index["id"].tolist() == ["a.png", "b.png"]
    assert list(index["label"].cat.categories) == ["x", "y"]


def test_a_missing_column_of_a_file_of_other_separators_says_so(tmp_path):
    path = csv(tmp_path / "d", "file;kind\na.png;x\n", images=["a.png"])
    with pytest.raises(DataError, match=r"has no column 'path' \(its columns: 'file', 'kind'; "
                                        r"separated by ';'\)"):
        manifest.read_index(path)


@pytest.mark.slow
def test_a_run_records_its_positive_class_and_scores_it(tmp_path):
    """``train --positive-class``: the run's config records it, its classes in label
    order put it last, and its predictions give that class label 1."""
    import pandas as pd

    from kandel_repro.runs import rundir
    from kandel_repro.runs.single import train_single

    root = class_folders(tmp_path / "d", {"abnormal": 10, "normal": 10})
    run = tmp_path / "run"
    train_single(run, root, "cbr_small", 1, 1e-3, dataset="folder", weights="none",
                 image_size=32, max_epochs=1, batch_size=8, workers=1, verbose=0,
                 positive_class="abnormal")
    config = rundir.read_config(run)
    assert config["positive_class"] == "abnormal"
    assert config["classes"] == ["normal", "abnormal"]
    frame = pd.read_csv(run / rundir.TEST_PREDICTIONS)
    assert (frame["label"] == frame["id"].str.startswith("abnormal/")).all()


@pytest.mark.parametrize("size", [0, -3])
def test_an_image_side_that_is_no_size_is_refused_by_the_readers(tmp_path, size):
    """From Python too: 0 is not "the default side", −3 no side; nothing is packed."""
    from kandel_repro.core.errors import ConfigError
    from kandel_repro.readers import registry as readers
    from kandel_repro.readers.synthetic.folder import write_synthetic_folder

    data = write_synthetic_folder(tmp_path / "d", classes=2, images=12, size=16, seed=0,
                                  progress=False)
    for name in ("folder", "csv"):
        root = data / "manifest.csv" if name == "csv" else data
        with pytest.raises(ConfigError, match="--image-size must be a positive integer"):
            readers.get_reader(name).pack(root, tmp_path / "cache", workers=1,
                                          progress=False, image_size=size)
    assert not any((tmp_path / "cache").glob("*/manifest.json"))

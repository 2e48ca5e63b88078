"""``kandel-repro data elpv`` (kandel_repro.data.elpv): ELPV's labels.csv and images as a
CSV manifest the csv reader reads, on a small fake source in ELPV's own format (and, where
the elpv-dataset package is installed, on the real one)."""
import csv
import importlib.util
from collections import Counter

import numpy as np
import pytest
from helpers import OWN_SPLIT

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.data import elpv
from kandel_repro.readers import manifest
from kandel_repro.readers.registry import get_reader

PROBABILITIES = ("0.0", "0.3333333333333333", "0.6666666666666666", "1.0")
PER_STRATUM = 6  # 4 probabilities × 2 cell types × 6 = 48 cells


def fake_source(root, per_stratum=PER_STRATUM):
    """``root`` in the layout of ``elpv_dataset/data``: labels.csv (ELPV's format: path,
    probability, type, padded with spaces, no header) and a 12×12 gray PNG per line."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    lines, n = [], 0
    for i in range(per_stratum):
        for cell_type in ("mono", "poly"):
            for level, probability in enumerate(PROBABILITIES):
                n += 1
                path = f"images/cell{n:04d}.png"
                Image.fromarray(np.full((12, 12), 40 * level + i, np.uint8)).save(root / path)
                lines.append(f"{path}  {probability:<20}{cell_type}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def source(tmp_path):
    return fake_source(tmp_path / "elpv_dataset" / "data")


def rows(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def level(row):
    return PROBABILITIES.index(row["probability"])


def test_the_binary_task_makes_defective_the_positive_class(source, tmp_path):
    written = elpv.write_elpv(tmp_path / "out", source=source)
    table = rows(tmp_path / "out")
    assert list(table[0]) == ["path", "label", "cell_type", "probability", "split"]
    assert all(row["label"] == ("defective" if level(row) >= 2 else "defect-free")
               for row in table)
    assert Counter(row["label"] for row in table) == {"defect-free": 24, "defective": 24}
    index = manifest.read_index(tmp_path / "out" / "manifest.csv")
    assert list(index["label"].cat.categories) == ["defect-free", "defective"]
    assert (index["y"] == (index["label"] == "defective")).all()  # defective: label 1
    assert written.wrote and written.images == {"hard-linked": 48}
    assert (tmp_path / "out" / "images" / "cell0001.png").samefile(source / "images/cell0001.png")


def test_the_levels_task_has_four_classes_in_probability_order(source, tmp_path):
    elpv.write_elpv(tmp_path / "out", task="levels", source=source)
    table = rows(tmp_path / "out")
    assert all(row["label"] == elpv.LEVELS[level(row)] for row in table)
    index = manifest.read_index(tmp_path / "out" / "manifest.csv")
    assert list(index["label"].cat.categories) == ["p000", "p033", "p067", "p100"]
    assert [index["y"][index["label"] == name].iloc[0] for name in elpv.LEVELS] == [0, 1, 2, 3]


def test_the_split_is_stratified_by_probability_and_cell_type(source, tmp_path):
    elpv.write_elpv(tmp_path / "out", source=source)
    table = rows(tmp_path / "out")
    parts = Counter(row["split"] for row in table)
    assert parts == {"test": 12, "val": 8, "train": 28}  # 25 %, 15 % of all (rounded up)
    strata = Counter((level(row), row["cell_type"], row["split"]) for row in table)
    for stratum in {(level(row), row["cell_type"]) for row in table}:  # 6 cells each
        assert strata[(*stratum, "test")] in (1, 2)  # 6 × 0.25 = 1.5
        assert strata[(*stratum, "val")] >= 1 and strata[(*stratum, "train")] >= 3
    other = elpv.write_elpv(tmp_path / "out2", test_fraction=0.5, val_fraction=0.25,
                            source=source)
    assert Counter(row["split"] for row in other.rows) == {"test": 24, "val": 12, "train": 12}
    halves = Counter((level(r), r["cell_type"]) for r in other.rows if r["split"] == "test")
    assert set(halves.values()) == {3}  # half of every stratum of 6


def test_the_split_is_seeded_and_shared_by_both_tasks(source, tmp_path):
    elpv.write_elpv(tmp_path / "a", source=source)
    elpv.write_elpv(tmp_path / "b", source=source)
    elpv.write_elpv(tmp_path / "levels", task="levels", source=source)
    elpv.write_elpv(tmp_path / "seed1", seed=1, source=source)
    first = (tmp_path / "a" / "manifest.csv").read_bytes()
    assert (tmp_path / "b" / "manifest.csv").read_bytes() == first
    assert [r["split"] for r in rows(tmp_path / "levels")] == [r["split"] for r in
                                                                rows(tmp_path / "a")]
    assert [r["split"] for r in rows(tmp_path / "seed1")] != [r["split"] for r in
                                                               rows(tmp_path / "a")]


def test_a_rerun_keeps_the_same_manifest_and_refuses_another(source, tmp_path):
    out = tmp_path / "out"
    elpv.write_elpv(out, source=source)
    before = (out / "manifest.csv").stat()
    (out / "images" / "cell0003.png").unlink()
    again = elpv.write_elpv(out, source=source)
    assert not again.wrote and again.images == {"kept": 47, "hard-linked": 1}
    assert (out / "manifest.csv").stat().st_mtime_ns == before.st_mtime_ns
    assert "kept (same options)" in elpv.summary(again)
    for options in ({"task": "levels"}, {"seed": 3}, {"test_fraction": 0.2}):
        with pytest.raises(DataError, match="differs from the one these options make.*"
                                            "delete that manifest"):
            elpv.write_elpv(out, source=source, **options)
    assert (out / "manifest.csv").stat().st_mtime_ns == before.st_mtime_ns
    assert not [p for p in out.rglob(".*") if p.name != ".kandel_cache"]  # no staging left


def test_a_folder_of_other_files_is_refused_and_an_interrupted_one_finished(source, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"busy is not empty and holds no manifest.csv.*"
                                        r"notes\.txt"):
        elpv.write_elpv(busy, source=source)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    with pytest.raises(DataError, match="is a file"):
        elpv.write_elpv(busy / "notes.txt", source=source)
    half = tmp_path / "half"  # images/ only: a run stopped before its manifest
    (half / "images").mkdir(parents=True)
    (half / "images" / "cell0001.png").write_bytes(b"truncated")
    written = elpv.write_elpv(half, source=source)
    assert written.wrote and written.images == {"hard-linked": 48}
    assert (half / "images" / "cell0001.png").samefile(source / "images" / "cell0001.png")


def test_images_are_copied_where_links_fail(source, tmp_path, monkeypatch):
    def no_link(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(elpv.os, "link", no_link)
    written = elpv.write_elpv(tmp_path / "out", source=source)
    assert written.images == {"copied": 48}
    copy = tmp_path / "out" / "images" / "cell0005.png"
    assert not copy.samefile(source / "images" / "cell0005.png")
    assert copy.read_bytes() == (source / "images" / "cell0005.png").read_bytes()


def test_a_missing_source_says_how_to_get_it(source, tmp_path, monkeypatch):
    monkeypatch.setattr(elpv.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"not installed: pip install elpv-dataset, or pass "
                                        r"--source"):
        elpv.write_elpv(tmp_path / "out", source=None)
    with pytest.raises(DataError, match="nowhere does not exist: give --source the folder "
                                        "holding labels.csv and images/"):
        elpv.write_elpv(tmp_path / "out", source=tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds no labels.csv"):
        elpv.write_elpv(tmp_path / "out", source=source / "images")
    assert not (tmp_path / "out").exists()
    # the package's folder and labels.csv itself are taken too
    assert len(elpv.read_labels(source.parent)[1]) == len(elpv.read_labels(
        source / "labels.csv")[1]) == 48


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("images/cell0007.png", "images/cell0099.png"),
     r"images/cell0099.png \(labels.csv, line 7\) does not exist: a damaged copy"),
    (lambda s: s.replace("images/cell00", "images/x00"),
     r"images/x0001.png \(labels.csv, line 1\) does not exist, nor do 47 more it lists"),
    (lambda s: s.replace("0.6666666666666666", "0.5", 1), r"line 3: probability '0.5' is not "
                                                           r"0, 1/3, 2/3 or 1"),
    (lambda s: s.replace("1.0                 mono", "1.0", 1), r"line 4: .* is not "
                                                                r"'PATH PROBABILITY TYPE'"),
    (lambda s: s.replace("images/cell0002.png", "../cell0002.png"), "line 2: path .* leaves"),
    (lambda s: s.replace("images/cell0002.png", "images/cell0001.png"),
     "line 2: 'images/cell0001.png' is listed twice"),
    (lambda s: "", "lists no image"),
])
def test_a_bad_labels_file_is_named_with_its_line(source, tmp_path, edit, message):
    labels = source / "labels.csv"
    labels.write_text(edit(labels.read_text()))
    with pytest.raises(DataError, match=message):
        elpv.write_elpv(tmp_path / "out", source=source)


def test_bad_fractions_and_tasks_are_refused(source, tmp_path):
    for options, message in (({"test_fraction": 0}, "--test-fraction must be between"),
                             ({"val_fraction": 1.5}, "--val-fraction must be between"),
                             ({"test_fraction": 0.6, "val_fraction": 0.4}, "leave no image"),
                             ({"task": "cracks"}, "--task must be one of")):
        with pytest.raises(ConfigError, match=message):
            elpv.write_elpv(tmp_path / "out", source=source, **options)
    tiny = fake_source(tmp_path / "tiny", per_stratum=1)
    with pytest.raises(DataError, match="too few images"):
        elpv.write_elpv(tmp_path / "out", source=tiny)


def test_the_csv_reader_loads_the_manifest_with_its_split(source, tmp_path):
    elpv.write_elpv(tmp_path / "out", source=source)
    data = get_reader("csv").load(tmp_path / "out" / "manifest.csv", tmp_path / "cache",
                                  workers=1, progress=False, image_size=32)
    assert data.x.shape == (48, 32, 32, 3) and list(data.class_names) == ["defect-free",
                                                                           "defective"]
    train, val, test = data.split(OWN_SPLIT)
    assert data.split_facts(OWN_SPLIT) == {"split_used": "given"}
    assert (len(train), len(val), test.size) == (28, 8, 12)
    by_id = {row["path"]: row["split"] for row in rows(tmp_path / "out")}
    assert {by_id[i] for i in data.ids[test.indices]} == {"test"}


def test_the_command_prints_counts_and_the_caveat(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "elpv", "--out", str(out), "--source", str(source),
                 "--task", "levels", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "48 ELPV cells, task levels; images 48 hard-linked" in printed
    assert "p067" in printed and "no module id" in printed
    assert "--dataset csv --data" in printed
    assert main(["data", "elpv", "--out", str(out), "--source", str(source)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kandel-repro: error: ") and "differs" in err[0]


@pytest.mark.skipif(importlib.util.find_spec("elpv_dataset") is None,
                    reason="the real ELPV set needs `pip install elpv-dataset` (91 MB)")
def test_the_real_elpv_set(tmp_path):
    from PIL import Image

    written = elpv.write_elpv(tmp_path / "defective")
    assert len(written.rows) == 2624
    assert Counter(r["label"] for r in written.rows) == {"defect-free": 1803, "defective": 821}
    assert Counter(r["split"] for r in written.rows) == {"train": 1574, "val": 394, "test": 656}
    levels = elpv.write_elpv(tmp_path / "levels", task="levels")
    assert Counter(r["label"] for r in levels.rows) == {"p000": 1508, "p033": 295, "p067": 106,
                                                        "p100": 715}
    assert Counter(r["cell_type"] for r in levels.rows) == {"mono": 1074, "poly": 1550}
    strata = Counter((r["label"], r["cell_type"]) for r in levels.rows)
    test = Counter((r["label"], r["cell_type"]) for r in levels.rows if r["split"] == "test")
    assert all(abs(test[s] - 0.25 * n) <= 1 for s, n in strata.items()), (test, strata)
    with Image.open(tmp_path / "levels" / levels.rows[0]["path"]) as image:
        assert image.size == (300, 300) and image.mode == "L"
    index = manifest.read_index(tmp_path / "defective" / "manifest.csv")
    assert index["y"].sum() == 821  # defective is the positive class

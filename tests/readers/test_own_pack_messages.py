"""Packing a user's own data: every unreadable file named in one pass (or skipped and
counted), what ``data pack`` says, and the images per class a split needs, checked before
anything is decoded."""
import json
import re

import numpy as np
import pytest
from helpers import OWN_SPLIT, TINY_LOAD, class_folders, png

from kandel_repro.cli.main import main
from kandel_repro.core.errors import DataError
from kandel_repro.data.split import three_way
from kandel_repro.readers.registry import get_reader


def spoil(root, names):
    """Make the images ``names`` under ``root`` unreadable: the first empty, the others
    garbage."""
    for i, name in enumerate(names):
        (root / name).write_bytes(b"" if i == 0 else b"not an image at all")


# --- unreadable files ------------------------------------------------------------------

def test_every_unreadable_image_is_named_in_one_pass(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 4, "b": 4})
    spoil(root, ["a/01.png", "b/00.png", "b/03.png"])
    with pytest.raises(DataError) as err:
        get_reader("folder").pack(root, **TINY_LOAD)
    message = str(err.value)
    assert "\n" not in message and "3 of 8 images" in message
    assert re.search(r"a/01\.png is empty \(0 bytes\)", message)
    assert "b/00.png" in message and "b/03.png" in message and "--skip-unreadable" in message
    cache = root / ".kandel_cache"
    assert not (cache / "folder-8").exists()
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]


def test_many_unreadable_images_are_listed_in_a_file(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 12, "b": 3})
    spoil(root, [f"a/{i:02d}.png" for i in range(9)])
    with pytest.raises(DataError, match=r"9 of 15 images") as err:
        get_reader("folder").pack(root, **TINY_LOAD)
    listed = re.search(r"all \d+ listed in (\S+?\.txt)", str(err.value))
    assert listed, str(err.value)
    lines = open(listed.group(1)).read().splitlines()
    assert len(lines) == 9 and all(f"a/{i:02d}.png" in "\n".join(lines) for i in range(9))
    assert "\n" not in str(err.value) and str(err.value).count(".png") < 9 + 2


def test_unreadable_images_can_be_skipped_and_are_counted(tmp_path, capsys):
    root = class_folders(tmp_path / "d", {"a": 5, "b": 5})
    spoil(root, ["a/01.png", "b/03.png"])
    data = get_reader("folder").load(root, skip_unreadable=True, **TINY_LOAD)
    assert len(data.y) == len(data.x) == len(data.ids) == 8
    assert "a/01.png" not in set(data.ids) and "b/03.png" not in set(data.ids)
    assert np.bincount(data.y).tolist() == [4, 4]
    assert data.facts()["unreadable_skipped"] == 2
    err = capsys.readouterr().err
    assert "left out 2 unreadable images of 10" in err and "a/01.png" in err
    cache = root / ".kandel_cache" / "folder-8"
    recorded = json.loads((cache / "manifest.json").read_text())
    assert recorded["unreadable_skipped"] == 2
    assert [entry["path"] for entry in recorded["unreadable"]] == ["a/01.png", "b/03.png"]
    get_reader("folder").load(root, skip_unreadable=True, **TINY_LOAD)  # reused: said again
    assert "left out 2 unreadable images" in capsys.readouterr().err
    # without the option the same cache does not serve: refused at once from its manifest
    # (the files are those it was packed from), naming them, nothing decoded again
    stamp = (cache / "manifest.json").stat().st_mtime_ns
    with pytest.raises(DataError, match=r"2 images of .* cannot be decoded \(a/01\.png: .*"
                                        r"b/03\.png: .*--skip-unreadable"):
        get_reader("folder").load(root, **TINY_LOAD)
    assert (cache / "manifest.json").stat().st_mtime_ns == stamp
    assert not list(cache.parent.glob("*.unreadable.txt"))


def test_a_manifest_skips_unreadable_images_too(tmp_path):
    root = tmp_path / "d"
    for i in range(6):
        png(root / f"{i}.png", i)
    (root / "list.csv").write_text("path,label\n" + "".join(
        f"{i}.png,{'xy'[i % 2]}\n" for i in range(6)))
    spoil(root, ["2.png"])
    data = get_reader("csv").load(root / "list.csv", skip_unreadable=True, **TINY_LOAD)
    assert data.ids.tolist() == ["0.png", "1.png", "3.png", "4.png", "5.png"]
    assert data.y.tolist() == [0, 1, 1, 0, 1]


# --- what data pack says ---------------------------------------------------------------

def test_data_pack_says_packed_or_reused_and_the_images_per_class(tmp_path, capsys):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 5})
    argv = ["data", "pack", "--data", str(root), "--dataset", "folder", "--image-size", "8",
            "--workers", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"packed 8 images of .*d into .*folder-8", out)
    assert "a: 3" in out and "b: 5" in out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reused the packed cache in" in out and "packed 8" not in out and "b: 5" in out
    assert "the positive class (label 1, whose probability a run gives): b" in out
    assert main(argv + ["--positive-class", "a"]) == 0
    assert "the positive class (label 1, whose probability a run gives): a" in \
        capsys.readouterr().out


def test_data_pack_shows_each_part_of_a_given_split(tmp_path, capsys):
    root = tmp_path / "d"
    for part, n in (("train", 4), ("val", 2), ("test", 3)):
        class_folders(root / part, {"cat": n, "dog": n + 1})
    assert main(["data", "pack", "--data", str(root), "--dataset", "folder", "--image-size",
                 "8", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "train: cat 4, dog 5" in out and "val: cat 2, dog 3" in out
    assert "test: cat 3, dog 4" in out


def test_data_pack_takes_the_new_reader_options(tmp_path, capsys):
    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    spoil(root, ["a/00.png"])
    assert main(["data", "pack", "--data", str(root), "--dataset", "folder", "--image-size",
                 "8", "--workers", "1", "--skip-unreadable", "--positive-class", "a"]) == 0
    out = capsys.readouterr().out
    assert "b: 3" in out and "a: 2" in out
    assert main(["data", "pack", "--data", str(root), "--positive-class", "a"]) == 2
    assert "--positive-class does not apply to --dataset pcam" in capsys.readouterr().err


# --- the images per class a split needs ------------------------------------------------

def _minimum(message, name):
    found = re.search(rf"class '{name}' has (\d+) images?; it needs (\d+)", message)
    assert found, message
    return int(found.group(1)), int(found.group(2))


def _reaches_every_part(counts):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    try:
        parts = three_way(y, None, 0.1, 0.1, 0)
    except ValueError:
        return False
    return all(set(y[p]) == set(range(len(counts))) for p in parts)


@pytest.mark.parametrize("counts", [(20, 3), (95, 5), (10, 10, 2)])
def test_the_minimum_per_class_is_the_real_one(tmp_path, counts):
    names = "abc"[:len(counts)]
    data = get_reader("folder").load(class_folders(tmp_path / "d", dict(zip(names, counts))),
                                     **TINY_LOAD)
    with pytest.raises(DataError, match="too few images for its 3-way split") as err:
        data.split(OWN_SPLIT)
    has, needs = _minimum(str(err.value), names[-1])
    assert has == counts[-1] and needs > has
    assert _reaches_every_part(counts[:-1] + (needs,))
    assert not _reaches_every_part(counts[:-1] + (needs - 1,))
    assert "\n" not in str(err.value)


def test_too_few_images_are_refused_before_anything_is_packed(tmp_path):
    from kandel_repro.runs.single import train_single

    root = class_folders(tmp_path / "d", {"a": 20, "b": 3})
    with pytest.raises(DataError, match=r"class 'b' has 3 images; it needs \d+"):
        train_single(tmp_path / "run", root, "cbr_small", 1, 1e-3, dataset="folder",
                     weights="none", image_size=32, workers=1)
    assert not (root / ".kandel_cache").exists() and not (tmp_path / "run").exists()


def test_a_cache_that_cannot_fit_is_refused_before_decoding(tmp_path, monkeypatch, capsys):
    """An --image-size far too large: one line saying what it needs and what there is
    (disk, then memory), nothing staged or decoded; no MemoryError traceback."""
    import shutil
    from collections import namedtuple

    from kandel_repro.data import pack_notes

    root = class_folders(tmp_path / "d", {"a": 3, "b": 3})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    argv = ["data", "pack", "--data", str(root), "--dataset", "folder", "--workers", "1"]
    assert main(argv + ["--image-size", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"kandel-repro: error: packing 6 images at 100000×100000 needs 180.0 GB in "
                   f"{root / '.kandel_cache'}, where 1.0 GB are free: choose a smaller "
                   "--image-size (or --cache DIR on a larger disk)")
    assert not [p for p in (root / ".kandel_cache").iterdir() if "tmp" in p.name
                or p.is_dir()]  # nothing staged (the lock file only)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**15, 0, 10**15))
    monkeypatch.setattr(pack_notes.os, "sysconf", lambda name: {
        "SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**18}[name])  # 1 GiB of memory
    assert main(argv + ["--image-size", "10000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds 3.6 GB in memory at once (1 worker(s) decoding 6 images each)" in err
    assert "choose a smaller --image-size (or fewer --workers)" in err
    assert main(argv + ["--image-size", "8"]) == 0  # a sensible size fits


def test_advice_several_files_share_is_said_once(tmp_path):
    from kandel_repro.data import pack_notes

    failures = [("a.dcm", "a.dcm is truncated: it ends inside its pixel data; copy it again"),
                ("b.dcm", "b.dcm is truncated: it ends inside its pixel data; copy it again"),
                ("c.png", "cannot decode c.png: not an image")]
    with pytest.raises(DataError) as err:
        pack_notes.refuse(failures, 10, {"source": "DATA"}, tmp_path / "cache", can_skip=True)
    assert str(err.value) == (
        "cannot pack 3 of 10 images of DATA: a.dcm is truncated; b.dcm is truncated (both: "
        "it ends inside its pixel data; copy it again); cannot decode c.png: not an image; fix "
        "or remove them, or pass --skip-unreadable to pack the others")


def test_skipping_every_image_of_a_class_is_refused_naming_it(tmp_path):
    root = class_folders(tmp_path / "d", {"a": 4, "b": 2})
    spoil(root, ["b/00.png", "b/01.png"])
    with pytest.raises(DataError, match="--skip-unreadable left class 'b' of .* without an "
                                        "image: every image of it is among the 2 unreadable"):
        get_reader("folder").load(root, skip_unreadable=True, **TINY_LOAD)

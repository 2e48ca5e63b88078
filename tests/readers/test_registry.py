"""The registry and the reader base: what the package knows of a data set without
reading it, the reader class each entry names, and what every reader inherits (index,
checks, pack, load) from :class:`kandel_repro.readers.base.Reader`."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import OWN_SPLIT, png

from kandel_repro.core.errors import ConfigError
from kandel_repro.core.protocol import BREAKHIS, OWN
from kandel_repro.readers import own
from kandel_repro.readers.base import Reader
from kandel_repro.readers.own import Listed, OwnData, OwnReader, index_frame
from kandel_repro.readers.pcam_h5 import PCamH5Data
from kandel_repro.readers.registry import OWN_SPLITS, READERS, ReaderEntry, get_reader

LOADED = """
import sys
from kandel_repro.readers.registry import READERS, get_reader
facts = [(e.protocol, e.resizes, e.labelled_test, e.splits, e.options_of({{"window": [1, 2]}}))
         for e in READERS.values()]
before = sorted(m for m in sys.modules if m.startswith("kandel_repro.readers."))
get_reader({name!r}).reader
after = sorted(m for m in sys.modules if m.startswith("kandel_repro.readers."))
print(" ".join(before))
print(" ".join(after))
"""


def test_the_registry_imports_a_reader_only_when_its_data_set_is_read():
    run = subprocess.run([sys.executable, "-c", LOADED.format(name="csv")], capture_output=True,
                         text=True, check=True)
    before, after = (line.split() for line in run.stdout.splitlines())
    assert before == ["kandel_repro.readers.registry"]
    assert {"kandel_repro.readers.manifest", "kandel_repro.readers.base"} <= set(after)
    assert "kandel_repro.readers.pcam" not in after  # (only the reader asked for)


def test_every_entry_names_a_reader_bound_to_it():
    for name, entry in READERS.items():
        reader = entry.reader
        assert isinstance(reader, Reader) and reader.entry is entry and entry.name == name
        assert type(reader).__name__ == entry.reader_class.partition(":")[2]
        assert entry.reader is reader  # loaded once
        assert reader.layout  # the files it reads, as its messages name them
        assert entry.splits and get_reader(name).check_config({}) is None  # its default split


@pytest.mark.parametrize("name, split, message", [
    ("pcam", "patient", "--split patient does not apply to --dataset pcam: one of image, slide"),
    ("breakhis", "slide", "--split slide does not apply to --dataset breakhis: one of image, "
                          "patient"),
    ("folder", "slide", "--split must be one of auto, given, image, group for your own data, "
                        "got 'slide'"),
    ("csv", "patient", "--split must be one of auto, given, image, group for your own data, "
                       "got 'patient'"),
    ("images", "group", "--split group: --dataset images is split by image"),
    ("pcam-h5", "slide", "--split slide does not apply to --dataset pcam-h5: the release has "
                         "its own train / valid / test splits"),
])
def test_a_split_its_entry_does_not_serve_is_refused(name, split, message):
    reader = get_reader(name)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        reader.check_config({"split": split})
    # (folders serve own data's splits but for group: they name no groups)
    for served in set(reader.splits) - ({"group"} if name == "folder" else set()):
        reader.check_config({"split": served})


def test_a_readers_checks_run_in_the_order_it_declares():
    with pytest.raises(ConfigError, match="holds no labels"):  # labels before the split
        get_reader("images").check_config({"backbone": "vgg16", "split": "group"})
    with pytest.raises(ConfigError, match="--split must be one of"):  # the split first
        get_reader("folder").check_config(dict(OWN_SPLIT, split="patient", path_column="p"))
    with pytest.raises(ConfigError, match="--path-column applies to a CSV manifest"):
        get_reader("folder").check_config(dict(OWN_SPLIT, split="group", path_column="p"))


def test_own_data_refuse_a_split_as_their_readers_do():
    assert READERS["folder"].splits == READERS["csv"].splits == OWN_SPLITS
    with pytest.raises(ConfigError) as by_reader:
        get_reader("csv").check_config({"split": "slide"})
    with pytest.raises(ConfigError) as by_data:
        own.split_kind(False, False, "data", {"split": "slide"})
    assert str(by_data.value) == str(by_reader.value)


def test_the_release_refuses_the_kaggle_split_on_its_packed_data_too():
    data = PCamH5Data(np.zeros((6, 2, 2, 3), np.uint8), np.array([0, 1] * 3), np.arange(6),
                      "pcam-h5", True, Path("release"), part=np.repeat([0, 1, 2], 2))
    assert data.split_facts({"split": "image"}) == {"split": "release"}
    assert list(data.split({"split": "release"}).test.indices) == [4, 5]
    for config in ({"split": "slide"}, {"wsi_map": "map.csv"}):
        with pytest.raises(ConfigError, match="not apply to --dataset pcam-h5"):
            data.split(config)


class FirstLetter(OwnReader):
    """A data set of this test: every PNG under a folder, its class the file name's first
    letter. What a new reader of own data writes: its files, its index, what it lists."""

    layout = "DATA/<class letter><anything>.png"

    def index(self, root, split_settings=None, **options):
        paths = sorted(Path(root).glob("*.png"))
        rows = [{"path": str(p), "id": p.name, "label": p.name[0], "group": "", "split": ""}
                for p in paths]
        index = index_frame(rows, sorted({row["label"] for row in rows}))
        if split_settings:
            own.check_index_split(index, root, split_settings)
        return index

    def listed(self, root, window=None, **options):
        return Listed(self.index(root), root, "letters")


def _letters(tmp_path, resizes=True):
    for name in ("a1", "a2", "a3", "b1", "b2", "b3"):
        png(tmp_path / "d" / f"{name}.png", value=200 if name[0] == "a" else 20, size=4)
    entry = ReaderEntry("letters", "own", "a test's", "unused:FirstLetter", resizes=resizes,
                        labelled_test=True, options=("window", "skip_unreadable"),
                        splits=OWN_SPLITS, checks_split=True)
    return FirstLetter(entry), tmp_path / "d"


def test_a_reader_inherits_pack_load_and_its_checks(tmp_path):
    reader, root = _letters(tmp_path)
    folder = reader.pack(root, tmp_path / "cache", workers=1, progress=False, image_size=8)
    assert folder == tmp_path / "cache" / "letters-8"
    assert reader.pack(root, tmp_path / "cache", workers=1, progress=False, image_size=8) \
        == folder  # reused
    data = reader.load(root, tmp_path / "cache", workers=1, progress=False, image_size=8)
    assert isinstance(data, OwnData) and data.dataset == "letters" and data.root == root
    assert data.x.shape == (6, 8, 8, 3) and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.x[0].min() == 200 and data.x[5].max() == 20
    with pytest.raises(ConfigError, match="--split must be one of .* got 'slide'"):
        reader.check_config({"split": "slide"})


def test_a_reader_draws_the_runs_split_on_its_index_where_its_entry_says(tmp_path):
    reader, root = _letters(tmp_path)
    given = dict(OWN_SPLIT, protocol="own", split="given")
    assert len(reader.read_index(root)) == 6  # no run: the layout alone
    with pytest.raises(ConfigError, match="--split given needs the data's own split"):
        reader.read_index(root, given)


def test_a_reader_that_does_not_resize_never_sees_an_image_size(tmp_path, monkeypatch):
    seen = []

    def spy(self, root, cache_dir, workers, progress, image_size, **options):
        seen.append(image_size)
        raise StopIteration  # (what it would pack is not this test's)

    monkeypatch.setattr(FirstLetter, "source", spy)
    reader, root = _letters(tmp_path, resizes=False)
    for size in (8, None):
        with pytest.raises(StopIteration):
            reader.load(root, tmp_path / "cache", workers=1, progress=False, image_size=size)
        with pytest.raises(StopIteration):
            reader.pack(root, tmp_path / "cache", workers=1, progress=False, image_size=size)
    assert seen == [None] * 4


def test_the_default_side_of_a_reader_that_resizes_is_its_protocols(tmp_path):
    """The one place a data set's default image size is resolved for data read without a
    run's settings (``data pack``): the protocol's (224 for own data), checked."""
    reader, root = _letters(tmp_path)
    assert reader.image_side(None) == OWN.image_size == 224
    assert reader.image_side(8) == 8
    assert _letters(tmp_path, resizes=False)[0].image_side(8) is None
    with pytest.raises(ConfigError, match="image"):
        reader.image_side(0)
    assert get_reader("breakhis").reader.image_side(None) == BREAKHIS.image_size


def test_an_unknown_data_set_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match="unknown data set 'mnist'; one of pcam, pcam-h5, "
                                          "breakhis, folder, csv, images"):
        get_reader("mnist")

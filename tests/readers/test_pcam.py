"""The Kaggle PCam layout: synthetic generator, reader, packer, split, verify (kandel_repro.readers.pcam)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kandel_repro.cli.main import main
from kandel_repro.core.errors import DataError
from kandel_repro.data.layouts import HIDDEN_LABELS, MARKER
from kandel_repro.data.split import train_val_split
from kandel_repro.readers import pcam, pcam_layout
from kandel_repro.readers.registry import get_reader
from kandel_repro.readers.synthetic.pcam import centre_slice, synthetic_patch, write_synthetic_pcam


def test_synthetic_writes_the_kaggle_layout(tiny_pcam):
    labels = pd.read_csv(tiny_pcam / "train_labels.csv", dtype={"id": str})
    sample = pd.read_csv(tiny_pcam / "sample_submission.csv", dtype={"id": str})
    assert list(labels.columns) == ["id", "label"] and len(labels) == 60
    assert list(sample.columns) == ["id", "label"] and len(sample) == 20
    assert set(labels["label"]) == {0, 1}
    assert all(len(i) == 40 for i in labels["id"])
    assert sorted(p.stem for p in (tiny_pcam / "train").glob("*.tif")) == sorted(labels["id"])
    assert sorted(p.stem for p in (tiny_pcam / "test").glob("*.tif")) == sorted(sample["id"])
    with Image.open(tiny_pcam / "train" / f"{labels['id'][0]}.tif") as img:
        assert img.format == "TIFF" and img.mode == "RGB" and img.size == (32, 32)
    assert (tiny_pcam / HIDDEN_LABELS).exists() and (tiny_pcam / MARKER).exists()


def test_synthetic_is_deterministic_by_seed(tmp_path, tiny_pcam):
    again = write_synthetic_pcam(tmp_path / "again", 60, 20, seed=3, size=32, progress=False)
    other = write_synthetic_pcam(tmp_path / "other", 60, 20, seed=4, size=32, progress=False)
    for name in ("train_labels.csv", "sample_submission.csv"):
        assert (again / name).read_bytes() == (tiny_pcam / name).read_bytes()
    first = pd.read_csv(again / "train_labels.csv")["id"][0]
    assert (again / "train" / f"{first}.tif").read_bytes() == \
        (tiny_pcam / "train" / f"{first}.tif").read_bytes()
    assert (other / "train_labels.csv").read_bytes() != (again / "train_labels.csv").read_bytes()


def test_synthetic_folder_is_reused_or_refused(tmp_path):
    out = write_synthetic_pcam(tmp_path / "s", 10, 5, seed=0, size=32, progress=False)
    stamp = (out / MARKER).stat().st_mtime_ns
    write_synthetic_pcam(out, 10, 5, seed=0, size=32, progress=False)
    assert (out / MARKER).stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="other|not"):
        write_synthetic_pcam(out, 11, 5, seed=0, size=32, progress=False)


def test_synthetic_label_follows_the_centre_rule():
    """A positive has tumour-dark pixels in the centre region more often than a negative."""
    size = 96
    centre = centre_slice(size)

    def dark_fraction(label, i):
        patch = synthetic_patch(np.random.default_rng([9, label, i]), size, label)
        return (patch[centre, centre].mean(axis=2) < 80).mean()

    pos = np.mean([dark_fraction(1, i) > 0 for i in range(30)])
    neg = np.mean([dark_fraction(0, i) > 0 for i in range(30)])
    assert pos > 0.9 and neg < 0.2


def test_pack_and_load(pcam_copy):
    data = get_reader("pcam").load(pcam_copy, progress=False, workers=2)
    labels = pd.read_csv(pcam_copy / "train_labels.csv", dtype={"id": str})
    assert data.x.shape == (60, 32, 32, 3) and data.x.dtype == np.uint8
    assert list(data.ids) == list(labels["id"])
    np.testing.assert_array_equal(data.y, labels["label"].to_numpy())
    with Image.open(pcam_copy / "train" / f"{labels['id'][7]}.tif") as img:
        np.testing.assert_array_equal(data.x[7], np.asarray(img))
    sample = pd.read_csv(pcam_copy / "sample_submission.csv", dtype={"id": str})
    assert list(data.test_ids) == list(sample["id"])
    assert data.synthetic and data.dataset == "pcam"


def test_cache_is_reused_then_invalidated(pcam_copy):
    cache = get_reader("pcam").pack(pcam_copy, progress=False, workers=1)
    manifest = cache / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert get_reader("pcam").pack(pcam_copy, progress=False, workers=1) == cache
    assert manifest.stat().st_mtime_ns == stamp  # reused, not rewritten

    first = pd.read_csv(pcam_copy / "train_labels.csv", dtype={"id": str})["id"][0]
    path = pcam_copy / "train" / f"{first}.tif"
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(path, format="TIFF")
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    get_reader("pcam").pack(pcam_copy, progress=False, workers=1)
    assert manifest.stat().st_mtime_ns != stamp
    assert np.load(cache / "train_x.npy")[0].max() == 7


def _ids(folder):
    return pd.read_csv(folder / "train_labels.csv", dtype={"id": str})["id"].tolist()


def test_corrupt_tif_is_named(pcam_copy):
    bad = pcam_copy / "train" / f"{_ids(pcam_copy)[5]}.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match=str(bad.name)):
        get_reader("pcam").pack(pcam_copy, progress=False, workers=2)
    assert not (pcam_copy / ".kandel_cache").exists()  # nothing half-written


def test_wrong_size_tif_is_named(pcam_copy):
    bad = pcam_copy / "train" / f"{_ids(pcam_copy)[9]}.tif"
    Image.fromarray(np.zeros((31, 32, 3), np.uint8)).save(bad, format="TIFF")
    with pytest.raises(DataError, match=rf"{bad.name}.*31×32×3.*expected 32×32×3"):
        get_reader("pcam").pack(pcam_copy, progress=False, workers=1)


def test_id_without_file_is_named(pcam_copy):
    missing = _ids(pcam_copy)[3]
    (pcam_copy / "train" / f"{missing}.tif").unlink()
    with pytest.raises(DataError, match=f"id '{missing}' of train_labels.csv has no file"):
        pcam_layout.read_index(pcam_copy)


def test_duplicate_id_is_named(pcam_copy):
    csv = pcam_copy / "train_labels.csv"
    frame = pd.read_csv(csv, dtype={"id": str})
    pd.concat([frame, frame.iloc[[4]]]).to_csv(csv, index=False)
    with pytest.raises(DataError, match=f"duplicate id '{frame['id'][4]}'"):
        pcam_layout.read_index(pcam_copy)


def test_bad_label_and_header_are_named(pcam_copy):
    csv = pcam_copy / "train_labels.csv"
    frame = pd.read_csv(csv, dtype={"id": str})
    frame.loc[2, "label"] = 3
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"line 4: label of id .* must be 0 or 1, got .3."):
        pcam_layout.read_index(pcam_copy)
    frame.rename(columns={"label": "y"}).to_csv(csv, index=False)
    with pytest.raises(DataError, match="header 'id,label'"):
        pcam_layout.read_index(pcam_copy)


def test_missing_data_folder_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="histopathologic-cancer-detection.*data synthetic"):
        pcam_layout.read_index(tmp_path / "nowhere")


def test_split_is_stratified_and_seeded():
    labels = np.array([0] * 595 + [1] * 405)
    train, val = train_val_split(labels, 0.2, seed=0)
    assert len(val) == 200 and len(train) == 800
    assert not set(train) & set(val)
    assert labels[val].sum() == 81  # 40.5 % of 200, rounded as stratification does
    again, val2 = train_val_split(labels, 0.2, seed=0)
    np.testing.assert_array_equal(val, val2)
    _, val3 = train_val_split(labels, 0.2, seed=1)
    assert set(val3) != set(val)


@pytest.mark.slow
def test_synthetic_is_learnable_but_not_by_mean_colour(tmp_path):
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    root = write_synthetic_pcam(tmp_path / "learn", 1000, 1, seed=11, size=32, progress=False)
    data = get_reader("pcam").load(root, progress=False, workers=1)
    train, val = train_val_split(data.y, 0.2, seed=0)
    x = data.x.astype("float32") / 255.0
    y = data.y.astype("float32")

    colour = x.reshape(len(x), -1, 3).mean(axis=1)
    logistic = LogisticRegression(max_iter=1000).fit(colour[train], y[train])
    colour_auc = roc_auc_score(y[val], logistic.predict_proba(colour[val])[:, 1])
    assert colour_auc <= 0.70

    keras.utils.set_random_seed(0)
    cnn = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    cnn.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    cnn.fit(x[train], y[train], batch_size=32, epochs=12, verbose=0)
    cnn_auc = roc_auc_score(y[val], cnn.predict(x[val], verbose=0).ravel())
    print(f"mean-colour AUC {colour_auc:.3f}, small CNN AUC {cnn_auc:.3f}")
    assert cnn_auc >= 0.90


def test_verify_names_unlisted_files_and_wrong_counts(pcam_copy):
    index = pcam_layout.verify(pcam_copy, counts={"train": 60, "test": 20})
    assert len(index.train_ids) == 60
    with pytest.raises(DataError, match="holds 60 tifs; the competition has 220,025"):
        pcam_layout.verify(pcam_copy, counts=pcam_layout.KAGGLE_COUNTS)
    first = next((pcam_copy / "test").iterdir())
    shutil.copyfile(first, pcam_copy / "test" / "unlisted.tif")
    with pytest.raises(DataError, match="1 tif.* not listed in sample_submission.csv, e.g. unlisted.tif"):
        pcam_layout.verify(pcam_copy)


def test_cli_verify_does_not_hold_synthetic_sets_to_kaggle_counts(tiny_pcam, capsys):
    assert main(["data", "verify", "--data", str(tiny_pcam)]) == 0
    assert "60 labelled and 20 test images, complete and consistent (synthetic set)" in \
        capsys.readouterr().out


# --- a damaged cache, degenerate data, sizes (reliability) -----------------------------

def test_the_first_image_of_the_wrong_size_is_the_one_named(pcam_copy):
    """Images are held to the set's size (PCam 96×96; here the synthetic set's 32×32),
    not to the first image, so a wrong first image does not blame an innocent second."""
    first, second = _ids(pcam_copy)[:2]
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(
        pcam_copy / "train" / f"{first}.tif", format="TIFF")
    with pytest.raises(DataError, match=rf"{first}\.tif is 40×40×3, expected 32×32×3") as caught:
        get_reader("pcam").pack(pcam_copy, progress=False, workers=1)
    assert second not in str(caught.value)
    assert pcam.patch_shape(pcam_copy) == (32, 32, 3)
    (pcam_copy / MARKER).unlink()  # not synthetic: the Kaggle patch size applies
    assert pcam.patch_shape(pcam_copy) == (96, 96, 3)


def _damage(cache, how):
    if how == "truncated":
        path = cache / "train_x.npy"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "missing":
        (cache / "train_y.npy").unlink()
    elif how == "manifest":
        (cache / "manifest.json").write_text("{not json")


@pytest.mark.parametrize("how", ["truncated", "missing", "manifest"])
def test_a_damaged_cache_is_found_and_packed_again(pcam_copy, capsys, how):
    cache = get_reader("pcam").pack(pcam_copy, progress=False, workers=1)
    expected = np.load(cache / "train_x.npy")
    _damage(cache, how)
    data = get_reader("pcam").load(pcam_copy, progress=False, workers=1)
    np.testing.assert_array_equal(data.x, expected)
    err = capsys.readouterr().err
    assert f"the packed cache in {cache} is damaged" in err and "packing it again" in err


@pytest.mark.parametrize("how", ["truncated", "missing", "manifest"])
def test_loading_a_damaged_cache_says_to_repack(pcam_copy, how):
    from kandel_repro.data import cache as cache_mod

    cache = get_reader("pcam").pack(pcam_copy, progress=False, workers=1)
    _damage(cache, how)
    with pytest.raises(DataError, match="kandel-repro data pack --force"):
        cache_mod.load(cache, pcam.ARRAYS)


def test_same_size_garbage_is_found_by_its_checksum(pcam_copy, capsys):
    cache = get_reader("pcam").pack(pcam_copy, progress=False, workers=1)
    path = cache / "train_x.npy"
    good = path.read_bytes()
    header = len(good) - 60 * 32 * 32 * 3
    path.write_bytes(good[:header] + bytes(len(good) - header))  # zeros, same size
    assert main(["data", "verify", "--data", str(pcam_copy)]) == 2
    assert "does not match the checksum recorded when it was packed" in capsys.readouterr().err
    assert main(["data", "pack", "--data", str(pcam_copy), "--workers", "1"]) == 0
    assert "packing it again" in capsys.readouterr().err
    assert path.read_bytes() == good
    assert main(["data", "verify", "--data", str(pcam_copy)]) == 0
    assert "packed cache intact" in capsys.readouterr().out


def test_a_killed_packers_folders_are_removed_by_the_next(pcam_copy):
    from kandel_repro.core.files import HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = [pcam_copy / f"..kandel_cache.{kind}-{HOST}-{dead}" for kind in ("tmp", "old")]
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    alive = pcam_copy / f"..kandel_cache.tmp-{HOST}-{busy.pid}"  # a packer still at work
    try:
        for folder in stale + [alive]:
            (folder / "x").mkdir(parents=True)
        get_reader("pcam").pack(pcam_copy, progress=False, workers=1)
        assert not any(folder.exists() for folder in stale) and alive.exists()
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.slow
def test_decoding_workers_exit_when_the_packer_is_killed(tmp_path):
    root = write_synthetic_pcam(tmp_path / "big", n_train=4000, n_test=10, seed=0, size=32,
                                progress=False)
    packer = subprocess.Popen([sys.executable, "-c", PACK_SCRIPT, str(root)])

    def children():
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == packer.pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
        return found

    deadline = time.time() + 60
    while len(children()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    workers = children()
    assert len(workers) >= 2, "the packer did not start its decoding workers"
    packer.kill()
    packer.wait()

    def running(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 10
    while any(running(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(running(pid) for pid in workers)


PACK_SCRIPT = """
import sys
from kandel_repro.readers.registry import get_reader
if __name__ == "__main__":
    get_reader("pcam").pack(sys.argv[1], workers=2, progress=False)
"""


@pytest.mark.parametrize("csv", ["train_labels.csv", "sample_submission.csv"])
def test_a_csv_with_a_header_only_is_refused_before_training(pcam_copy, tmp_path, csv, capsys):
    (pcam_copy / csv).write_text("id,label\n")
    code = main(["grid", "table2", "--data", str(pcam_copy), "--runs", str(tmp_path / "runs"),
                 "--weights", "none"])
    assert code == 2 and f"{pcam_copy / csv} lists no image" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_data_too_small_or_of_one_class_is_refused_before_any_run(tmp_path, capsys):
    few = write_synthetic_pcam(tmp_path / "few", n_train=3, n_test=2, seed=0, size=32,
                               progress=False)
    code = main(["grid", "table2", "--data", str(few), "--runs", str(tmp_path / "r"),
                 "--weights", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "too few images for its 2-way split" in err and "train_labels.csv" in err
    assert not any((tmp_path / "r").glob("vgg16_*"))  # no run folder started
    one = tmp_path / "one"
    shutil.copytree(few, one)
    frame = pd.read_csv(one / "train_labels.csv").assign(label=0)
    frame.to_csv(one / "train_labels.csv", index=False)
    code = main(["train", "--data", str(one), "--run-dir", str(tmp_path / "run"),
                 "--first-block", "5", "--lr", "1e-4", "--weights", "none"])
    assert code == 2 and "need images of both classes" in capsys.readouterr().err
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_file_where_a_folder_belongs_is_named(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["data", "synthetic", "--out", str(target), "--quiet"]) == 2
    assert f"{target} is a file; --out must be a folder" in capsys.readouterr().err
    assert main(["data", "verify", "--data", str(target)]) == 2
    assert f"{target} is a file; give the folder in the Kaggle layout" in capsys.readouterr().err


# --- the slide-level split ----------------------------------------------------------------

@pytest.fixture(scope="module")
def slides_pcam(tmp_path_factory):
    return write_synthetic_pcam(tmp_path_factory.mktemp("slides") / "s", n_train=200, n_test=40,
                                seed=0, size=32, progress=False, slides=20)


def test_synthetic_slides_come_with_their_map_and_their_own_stains(slides_pcam, tiny_pcam):
    slides = pd.read_csv(slides_pcam / "patch_id_wsi.csv", dtype=str)
    assert list(slides.columns) == ["id", "wsi"] and slides["wsi"].nunique() == 20
    assert set(slides["id"]) == set(_ids(slides_pcam))
    assert not (tiny_pcam / "patch_id_wsi.csv").exists()  # sets without slides unchanged
    data = get_reader("pcam").load(slides_pcam, progress=False, workers=1)
    by_slide = pd.Series(list(data.x.reshape(len(data.x), -1, 3).mean(axis=1)),
                         index=slides.set_index("id").loc[data.ids, "wsi"].to_numpy())
    means = np.stack(by_slide.groupby(level=0).apply(lambda s: np.mean(np.stack(s.to_numpy()), 0)))
    assert means.std(axis=0).min() > 3  # grey levels: the slides differ in stain


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_the_slide_split_never_puts_a_slide_on_both_sides(slides_pcam, split_seed):
    from kandel_repro.runs.config import resolve_config

    data = get_reader("pcam").load(slides_pcam, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4, split="slide", split_seed=split_seed)
    train, val, _ = data.split(config)
    slides = data.slides(config)
    assert not set(slides[train]) & set(slides[val])
    assert len(train) + len(val) == 200 and 0.1 < len(val) / 200 < 0.35
    assert 0 < data.y[val].mean() < 1  # both classes on each side
    facts = data.split_facts(config)
    assert facts["wsi_map"].endswith("patch_id_wsi.csv") and len(facts["wsi_map_sha1"]) == 40


def test_ids_missing_from_the_slide_map_are_listed(slides_pcam, tmp_path):
    from kandel_repro.runs.config import resolve_config

    copy = tmp_path / "s"
    shutil.copytree(slides_pcam, copy, ignore=shutil.ignore_patterns(".kandel_cache"))
    frame = pd.read_csv(copy / "patch_id_wsi.csv", dtype=str)
    frame.iloc[3:].to_csv(copy / "patch_id_wsi.csv", index=False)
    data = get_reader("pcam").load(copy, progress=False, workers=1)
    config = resolve_config("vgg16", 5, 1e-4, split="slide")
    with pytest.raises(DataError, match=rf"has no slide for 3 id\(s\) .* e\.g\. {frame['id'][0]}"):
        data.split(config)
    (copy / "patch_id_wsi.csv").unlink()
    with pytest.raises(DataError, match="needs the patch → slide map .*patch_id_wsi.csv"):
        data.split(config)
    with pytest.raises(Exception, match="--split slide does not apply to breakhis"):
        resolve_config("vgg16", 5, 1e-4, protocol="breakhis", split="slide")


def test_a_patch_mapped_to_two_slides_is_named(slides_pcam, tmp_path):
    from kandel_repro.runs.config import resolve_config

    copy = tmp_path / "s"
    shutil.copytree(slides_pcam, copy, ignore=shutil.ignore_patterns(".kandel_cache"))
    frame = pd.read_csv(copy / "patch_id_wsi.csv", dtype=str)
    patch = frame["id"][5]
    extra = pd.DataFrame({"id": [patch, frame["id"][0]], "wsi": ["another_slide", frame["wsi"][0]]})
    pd.concat([frame, extra]).to_csv(copy / "patch_id_wsi.csv", index=False)
    data = get_reader("pcam").load(copy, progress=False, workers=1)
    with pytest.raises(DataError, match=rf"gives patch {patch} more than one slide "
                       rf"\({frame['wsi'][5]}, another_slide\); a patch comes from one slide"):
        data.split(resolve_config("vgg16", 5, 1e-4, split="slide"))


def test_nested_subsets_keep_the_class_balance_and_nest():
    from kandel_repro.data.split import downsample, nested_subset

    labels = np.array([0] * 600 + [1] * 400)
    indices = np.arange(1000)[::2]  # a training split
    half = nested_subset(indices, labels, 0.5, seed=3)
    quarter = nested_subset(indices, labels, 0.25, seed=3)
    assert set(quarter) <= set(half) <= set(indices)
    assert len(half) == 250 and labels[half].mean() == pytest.approx(labels[indices].mean())
    assert len(nested_subset(indices, labels, 1.0, seed=3)) == len(indices)
    balanced = downsample(indices, labels, seed=3)
    assert (labels[balanced] == 0).sum() == (labels[balanced] == 1).sum() == (labels[indices] == 1).sum()


LOAD_SCRIPT = """
import sys
from kandel_repro.readers.registry import get_reader
if __name__ == "__main__":
    data = get_reader("pcam").load(sys.argv[1], sys.argv[2], workers=1, progress=True)
    print("loaded", len(data.y))
"""


def test_two_processes_that_find_no_cache_pack_it_once(pcam_copy, tmp_path):
    """Grid tasks starting together on one node: one packs, the other waits and reuses."""
    from kandel_repro.data import cache

    target = tmp_path / "shared-cache"
    logs = [tmp_path / f"packer{i}.err" for i in range(2)]
    with cache.packing(target):  # held here until both packers are waiting for it
        packers = [subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, str(pcam_copy), str(target)],
                                    stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
                   for log in logs]
        deadline = time.time() + 60
        while (not all("waiting for another process" in log.read_text() for log in logs)
               and time.time() < deadline):
            time.sleep(0.1)
        assert all("waiting for another process" in log.read_text() for log in logs)
    outputs = [packer.communicate(timeout=120)[0] for packer in packers]
    assert [packer.returncode for packer in packers] == [0, 0]
    assert outputs == ["loaded 60\n"] * 2
    packed = [log for log in logs if "packing " in log.read_text().replace("finish packing", "")]
    assert len(packed) == 1, [log.read_text() for log in logs]
    assert cache.current(target, cache._manifest(target)["fingerprint"], pcam.CACHE_FORMAT,
                         pcam.ARRAYS)


def test_a_cache_is_current_however_the_folder_is_spelled(pcam_copy, monkeypatch, capsys):
    """A grid's driver (``--data data/pcam``) and its Ray workers (the absolute path)
    must not repack each other's cache."""
    monkeypatch.chdir(pcam_copy.parent)
    get_reader("pcam").pack(pcam_copy.name, workers=1, progress=True)
    assert "packing" in capsys.readouterr().err
    stamp = (pcam_copy / ".kandel_cache" / "manifest.json").stat().st_mtime_ns
    for spelling in (str(pcam_copy), f"./{pcam_copy.name}", f"../{pcam_copy.parent.name}/{pcam_copy.name}"):
        data = get_reader("pcam").load(spelling, workers=1, progress=True)
        assert "packing" not in capsys.readouterr().err, spelling
    assert (pcam_copy / ".kandel_cache" / "manifest.json").stat().st_mtime_ns == stamp
    assert data.legacy_fingerprint == cache_fingerprint_as_spelled(data)


def cache_fingerprint_as_spelled(data):
    from kandel_repro.data import cache

    index = pcam_layout.read_index(data.root)
    paths = [index.train_path(i) for i in index.train_ids] + [index.test_path(i) for i in index.test_ids]
    csv_bytes = b"".join((data.root / n).read_bytes() for n in ("train_labels.csv", "sample_submission.csv"))
    return cache.hash_sources(paths, data.root, extra=csv_bytes).legacy_fingerprint

"""``kandel-repro predict``: a finished run applied to new images through its own decoding
reproduces the run's own test predictions (two classes from class folders, three from a CSV
manifest, 16-bit gray images), reads one image or one DICOM file, names every image it
cannot decode and writes nothing then, prints the AUC of labelled images, and predicts at
the run's threshold or the one given. Tiny runs: cbr_tiny, 32×32, one epoch, random
weights, each trained once for the module."""
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.core.stats import youden_threshold
from kandel_repro.data.images import decode_image
from kandel_repro.readers.synthetic.folder import write_synthetic_folder
from kandel_repro.runs import rundir, single
from kandel_repro.runs.predict import find_images, predict, predict_images, unresized

QUICK = dict(weights="none", max_epochs=1, image_size=32, batch_size=16, verbose=0, workers=1)
CLASSES = ("benign", "malignant")


def _train(folder, data, dataset, **settings):
    run = folder / "run"
    single.train_single(run, data, "cbr_tiny", 1, 1e-3, dataset=dataset, **QUICK, **settings)
    return run


def _test_rows(run, frame, name=rundir.TEST_PREDICTIONS):
    """The run's test predictions (file ``name``) and ``frame``'s rows of the same images,
    in its order."""
    ids, labels, scores = rundir.read_predictions(run / name)
    rows = frame.set_index("path").loc[[str(i) for i in ids]]
    return labels, scores, rows


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    data = write_synthetic_folder(root / "tiles", classes=2, images=20, patients=10, size=40,
                                  seed=0, progress=False)
    return _train(root, data, "folder", tta=4), data


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    data = write_synthetic_folder(root / "tiles", classes=3, images=24, patients=12, size=40,
                                  seed=1, progress=False)
    return _train(root, data / "manifest.csv", "csv"), data / "manifest.csv"


def _gray16(value_range, seed):
    """A 40×40 16-bit gray image: a blob on noise, its values in ``value_range``."""
    rng = np.random.default_rng(seed)
    low, high = value_range
    image = rng.uniform(low, low + (high - low) / 3, (40, 40))
    image[10:30, 10:30] += (high - low) * 2 / 3 * rng.uniform(0.5, 1.0)
    return np.clip(image, low, high).astype(np.uint16)


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("gray")
    for k, name in enumerate(CLASSES):
        for i in range(12):
            path = root / "scans" / name / f"{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            # values of 13 bits at most, so that a DICOM file can hold the same pixels
            Image.fromarray(_gray16((300 * k + 10 * i, 4000 + 300 * k), 10 * k + i)).save(path)
    return _train(root, root / "scans", "folder"), root / "scans"


def test_predicting_a_folder_runs_test_images_reproduces_its_test_predictions(binary_run,
                                                                             tmp_path):
    run, data = binary_run
    frame = predict(run, data, tmp_path / "predictions.csv", progress=False)
    labels, scores, rows = _test_rows(run, frame)
    np.testing.assert_allclose(rows["score"].to_numpy(), scores, atol=1e-6)
    classes = rundir.read_config(run)["classes"]
    assert rows["label"].tolist() == [classes[y] for y in labels]
    assert len(frame) == 40 and list(frame.columns) == ["path", "label", "score", "predicted"]
    threshold = rundir.read_metrics(run)["youden_threshold"]
    assert frame.attrs["threshold"]["value"] == threshold
    assert (frame["predicted"] == np.where(frame["score"] >= threshold, classes[1],
                                           classes[0])).all()
    written = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_allclose(written["score"], frame["score"], rtol=1e-12)


def test_a_three_class_csv_run_is_reproduced_with_a_column_per_class(csv_run, tmp_path):
    run, manifest = csv_run
    frame = predict(run, manifest, progress=False)
    classes = rundir.read_config(run)["classes"]
    assert [c for c in frame.columns if c.startswith("score_")] == [f"score_{c}"
                                                                    for c in classes]
    labels, scores, rows = _test_rows(run, frame)
    np.testing.assert_allclose(rows[[f"score_{c}" for c in classes]].to_numpy(), scores,
                               atol=1e-6)
    assert (frame["predicted"] == np.asarray(classes)[
        frame[[f"score_{c}" for c in classes]].to_numpy().argmax(axis=1)]).all()
    found = frame.attrs["auc"]
    y = [classes.index(label) for label in frame["label"]]
    assert found["auc"] == pytest.approx(roc_auc_score(
        y, frame[[f"score_{c}" for c in classes]].to_numpy(), multi_class="ovr"))
    assert found["method"].startswith("stratified bootstrap")
    assert "threshold" not in frame.attrs
    with pytest.raises(ConfigError, match="--threshold applies to two classes; .* has 3"):
        predict(run, manifest, threshold="0.5", progress=False)


def test_test_time_augmentation_reproduces_the_runs_tta_predictions(binary_run):
    run, data = binary_run
    frame = predict(run, data, tta=4, progress=False)
    _, scores, rows = _test_rows(run, frame, rundir.TEST_PREDICTIONS_TTA)
    np.testing.assert_allclose(rows["score"].to_numpy(), scores, atol=1e-6)
    # the threshold: the Youden point of the run's validation scores of as many views
    _, val_labels, val_scores = rundir.read_tta_predictions(run, "val")
    assert frame.attrs["threshold"] == {"value": youden_threshold(val_labels, val_scores),
                                        "rule": "Youden point of 4 views"}
    with pytest.raises(ConfigError, match="--tta must be 1, 4 or 8"):
        predict(run, data, tta=3, progress=False)


def test_a_16_bit_gray_run_is_reproduced_through_the_16_bit_rule(gray_run):
    run, data = gray_run
    frame = predict(run, data, progress=False)
    _, scores, rows = _test_rows(run, frame)
    np.testing.assert_allclose(rows["score"].to_numpy(), scores, atol=1e-6)


def test_one_image_and_one_dicom_file_are_read_as_the_run_reads_them(gray_run, tmp_path):
    from helpers import dicom_dataset
    from PIL import Image

    run, data = gray_run
    ids, _, scores = rundir.read_predictions(run / rundir.TEST_PREDICTIONS)
    image = data / str(ids[0])
    one = predict(run, image, progress=False)
    assert one["path"].tolist() == [str(image)] and "label" not in one.columns
    assert one["score"].iloc[0] == pytest.approx(scores[0], abs=1e-6)
    pixels = np.asarray(Image.open(image))
    dicom_dataset(pixels).save_as(tmp_path / "scan.dcm", enforce_file_format=True)
    # the file's own pixels, by min–max as the PNG's: the same 8-bit image, the same score
    np.testing.assert_array_equal(decode_image(tmp_path / "scan.dcm", 32),
                                  decode_image(image, 32))
    scan = predict(run, tmp_path / "scan.dcm", progress=False)
    assert scan["score"].iloc[0] == pytest.approx(scores[0], abs=1e-6)


def test_predict_images_scores_decoded_images_and_refuses_another_size(binary_run):
    run, data = binary_run
    ids, _, scores = rundir.read_predictions(run / rundir.TEST_PREDICTIONS)
    images = np.stack([decode_image(data / str(i), 32) for i in ids])
    np.testing.assert_allclose(predict_images(run, images), scores, atol=1e-6)
    with pytest.raises(DataError, match=r"shape \(n, 32, 32, 3\)"):
        predict_images(run, images[:, :16, :16])


def test_every_undecodable_image_is_named_and_nothing_is_written(binary_run, tmp_path):
    run, data = binary_run
    copy = tmp_path / "tiles"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns(".kandel_cache"))
    broken = sorted(copy.glob("*/*.png"))[:5]
    for path in broken:
        path.write_bytes(b"not an image")
    out = tmp_path / "predictions.csv"
    with pytest.raises(DataError) as caught:
        predict(run, copy, out, progress=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot decode 5 of 40 images")
    assert all(str(path) in message for path in broken[:3]) and "and 2 more" in message
    listing = out.with_name("predictions.csv.unreadable.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listing) == sorted(
        path.relative_to(copy).as_posix() for path in broken)
    assert not out.exists()


def test_labelled_images_get_their_auc_printed(binary_run, tmp_path, capsys):
    run, data = binary_run
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    frame = pd.read_csv(out)
    classes = rundir.read_config(run)["classes"]
    auc = roc_auc_score([classes.index(label) for label in frame["label"]], frame["score"])
    assert f"wrote {out}: 40 images" in printed
    assert f"AUC {auc:.4f} (95 % interval" in printed
    # bad input: one line, no traceback, status 2, nothing written
    missing = tmp_path / "nowhere"
    assert main(["predict", str(run), "--data", str(missing), "--out", str(tmp_path / "q.csv"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"kandel-repro: error: {missing} does not exist: give an image, a folder of " \
                  "images or a CSV manifest\n"
    assert not (tmp_path / "q.csv").exists()


def test_images_without_class_folders_get_no_label_and_no_auc(binary_run, tmp_path):
    run, data = binary_run
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted(data.glob("*/*.png"))[:6]:
        shutil.copy(path, flat / f"{path.parent.name}-{path.name}")
    frame = predict(run, flat, progress=False)
    assert list(frame.columns) == ["path", "score", "predicted"] and len(frame) == 6
    assert "auc" not in frame.attrs


def test_the_threshold_given_overrides_the_runs(binary_run):
    run, data = binary_run
    classes = rundir.read_config(run)["classes"]
    for given, cut in (("0.5", 0.5), (0.2, 0.2), ("youden",
                                                 rundir.read_metrics(run)["youden_threshold"])):
        frame = predict(run, data, threshold=given, progress=False)
        assert frame.attrs["threshold"]["value"] == cut
        assert (frame["predicted"] == np.where(frame["score"] >= cut, classes[1],
                                               classes[0])).all()
    with pytest.raises(ConfigError, match="--threshold must be youden, 0.5 or a number"):
        predict(run, data, threshold="high", progress=False)


def test_a_csv_without_its_label_column_is_read_unlabelled(tmp_path):
    from helpers import png

    for name in ("a.png", "b.png"):
        png(tmp_path / "imgs" / name)
    (tmp_path / "list.csv").write_text("file;note\nimgs/a.png;x\nimgs\\b.png;y\n")
    found = find_images(tmp_path / "list.csv", CLASSES, path_column="file")
    assert found.ids == ["imgs/a.png", "imgs/b.png"] and found.labels is None
    (tmp_path / "bad.csv").write_text("path,label\nimgs/a.png,cyst\n")
    with pytest.raises(DataError, match="classes the run does not know \\('cyst'\\)"):
        find_images(tmp_path / "bad.csv", CLASSES)


def test_an_image_of_another_size_is_refused_where_the_run_reads_images_unresized(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.tif")
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(tmp_path / "ok.tif")
    with pytest.raises(DataError, match=r"big.tif is 40×40: runs of pcam read 32×32 images"):
        unresized(tmp_path / "big.tif", 32)
    assert (unresized(tmp_path / "ok.tif", 32) == 7).all()


def test_a_pcam_run_scores_its_kaggle_test_patches_as_its_submission(tiny_pcam, tmp_path):
    run = tmp_path / "run"
    quick = {key: value for key, value in QUICK.items() if key != "image_size"}  # (its own)
    single.train_single(run, tiny_pcam, "cbr_tiny", 1, 1e-3, dataset="pcam",
                        cache_dir=tmp_path / "cache", **quick)
    frame = predict(run, tiny_pcam / "test", progress=False)
    submission = pd.read_csv(run / rundir.SUBMISSION, dtype={"id": str})
    scores = frame.set_index(frame["path"].str.removesuffix(".tif"))["score"]
    np.testing.assert_allclose(scores.loc[submission["id"]], submission["label"], atol=1e-6)


def test_a_pre_split_folder_gives_its_class_folders_labels(tmp_path):
    from helpers import png

    from kandel_repro.readers.own import SPLIT_VALUES
    from kandel_repro.runs.predict import PART_NAMES

    assert sorted(PART_NAMES) == sorted(SPLIT_VALUES)  # the own-data readers' names
    for path in ("Train/benign/a.png", "test/malignant/b.png", "valid/benign/c.png"):
        png(tmp_path / "data" / path)
    assert find_images(tmp_path / "data", CLASSES).labels == ["benign", "malignant", "benign"]
    png(tmp_path / "data" / "loose.png")
    assert find_images(tmp_path / "data", CLASSES).labels is None  # not every image has one

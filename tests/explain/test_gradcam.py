"""Grad-CAM (kandel_repro.explain.gradcam): maps that peak where a hand-built network's
evidence is, the groups ``kandel-repro explain`` picks, and the command on a finished run."""
import json
import shutil

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.explain.gradcam import explanation_groups, grad_cam

SIZE = 16
QUADRANTS = {"top left": (slice(0, 8), slice(0, 8)), "top right": (slice(0, 8), slice(8, 16)),
             "bottom left": (slice(8, 16), slice(0, 8)),
             "bottom right": (slice(8, 16), slice(8, 16))}


def _patch(image, quadrant, channel, value=1.0):
    """A 4×4 square of ``channel`` inside ``quadrant``, away from its edges."""
    rows, cols = QUADRANTS[quadrant]
    image[rows.start + 2:rows.start + 6, cols.start + 2:cols.start + 6, channel] = value
    return image


def _colour_model(dense_kernel, mask=None):
    """Channel k of the CAM layer ``cam`` is the image's colour k (a fixed 1×1
    convolution), pooled 2×2 (an 8×8 map, upsampled by Grad-CAM), optionally multiplied by
    a fixed mask (only what it lets through reaches the output); then global average
    pooling and a Dense of fixed ``dense_kernel`` (sigmoid for one unit, else softmax)."""
    import keras

    units = dense_kernel.shape[1]
    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(3, 1, use_bias=False, activation="relu", name="colours")
    x = keras.layers.AveragePooling2D(2, name="cam")(conv(inputs))
    if mask is not None:
        x = keras.layers.Lambda(lambda t: t * mask, name="masked")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.layers.Dense(units, activation="sigmoid" if units == 1 else "softmax")
    model = keras.Model(inputs, head(x))
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3)])
    head.set_weights([dense_kernel.astype(np.float32), np.zeros(units, np.float32)])
    return model


def _share_in(cam, quadrant):
    rows, cols = QUADRANTS[quadrant]
    return cam[rows, cols].sum() / cam.sum()


def _peak_quadrant(cam):
    r, c = np.unravel_index(np.argmax(cam), cam.shape)
    return ("top" if r < 8 else "bottom") + " " + ("left" if c < 8 else "right")


@pytest.mark.parametrize("red, green", [("top left", "bottom right"), ("bottom left", "top right")])
def test_the_map_peaks_where_the_explained_class_has_its_evidence(red, green):
    # red counts for the positive class, green for the negative one: the logit's map shows
    # the red square, the −logit's (negative=True) the green one
    model = _colour_model(np.array([[1.0], [-1.0], [0.0]]))
    image = _patch(_patch(np.zeros((SIZE, SIZE, 3), np.float32), red, 0), green, 1)
    positive = grad_cam(model, image[None], "cam")[0]
    negative = grad_cam(model, image[None], "cam", negative=True)[0]
    assert positive.shape == (SIZE, SIZE) and positive.max() == pytest.approx(1.0)
    assert _peak_quadrant(positive) == red and _share_in(positive, red) > 0.9
    assert _peak_quadrant(negative) == green and _share_in(negative, green) > 0.9


@pytest.mark.parametrize("quadrant", ["top right", "bottom left"])
def test_the_map_peaks_in_the_one_region_that_reaches_the_output(quadrant):
    mask = np.zeros((1, 8, 8, 1), np.float32)
    rows, cols = QUADRANTS[quadrant]
    mask[:, rows.start // 2:rows.stop // 2, cols.start // 2:cols.stop // 2] = 1.0
    model = _colour_model(np.array([[1.0], [0.0], [0.0]]), mask=mask)
    image = np.zeros((SIZE, SIZE, 3), np.float32)
    for q in QUADRANTS:  # the same red square in every quadrant: only one counts
        _patch(image, q, 0)
    cam = grad_cam(model, image[None], "masked")[0]
    assert _peak_quadrant(cam) == quadrant and _share_in(cam, quadrant) > 0.9


def test_a_softmax_map_explains_the_chosen_class_or_each_images_prediction():
    model = _colour_model(np.eye(3))
    image = np.zeros((SIZE, SIZE, 3), np.float32)
    for channel, quadrant in enumerate(["top left", "top right", "bottom left"]):
        _patch(image, quadrant, channel)
    image[2:6, 2:6, 0] = 3.0  # red strongest: the predicted class
    cams = grad_cam(model, np.stack([image] * 3), "cam", class_index=[0, 1, 2])
    assert [_peak_quadrant(c) for c in cams] == ["top left", "top right", "bottom left"]
    assert _peak_quadrant(grad_cam(model, image[None], "cam")[0]) == "top left"
    assert _peak_quadrant(grad_cam(model, image[None], "cam", class_index=2)[0]) == "bottom left"


def test_a_map_without_positive_evidence_stays_zero_and_a_flat_layer_is_refused():
    model = _colour_model(np.array([[1.0], [-1.0], [0.0]]))
    image = _patch(np.zeros((SIZE, SIZE, 3), np.float32), "top left", 0)  # red only
    cam = grad_cam(model, np.stack([image, np.zeros_like(image)]), "cam", negative=True)
    assert np.isfinite(cam).all() and not cam.any()
    with pytest.raises(ConfigError, match="spatial"):
        grad_cam(model, image[None], model.layers[-2].name)


def test_groups_are_the_most_confident_of_each_kind():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.8, 0.1, 0.3, 0.95, 0.55])
    groups = {g["name"]: g for g in explanation_groups(labels, scores, count=2)}
    assert list(groups["true positives"]["rows"]) == [6, 0]
    assert list(groups["false positives"]["rows"]) == [3, 7]
    assert list(groups["false negatives"]["rows"]) == [2]
    assert list(groups["true negatives"]["rows"]) == [4, 5]
    assert [g["negative"] for g in groups.values()] == [False, False, True, True]
    moved = {g["name"]: list(g["rows"]) for g in explanation_groups(labels, scores, 2, 0.7)}
    assert moved["false negatives"] == [2, 1] and moved["false positives"] == [3]
    three = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    correct, wrong = explanation_groups(np.array([0, 0, 0, 2]), three, count=4)
    assert list(correct["rows"]) == [0, 3, 2] and list(correct["classes"]) == [0, 2, 0]
    assert list(wrong["rows"]) == [1] and list(wrong["classes"]) == [1]
    with pytest.raises(ConfigError, match="--count"):
        explanation_groups(labels, scores, count=0)


# --- the command on a finished run ---------------------------------------------------------

def cli(argv):
    """``kandel-repro ARGV``: its exit status."""
    from kandel_repro.cli.main import main

    return main(argv)


@pytest.fixture(scope="module")
def finished(tiny_pcam, tmp_path_factory):
    """A cbr_small run on the tiny set, every block trained, 1 epoch (read-only)."""
    from kandel_repro.runs.single import train_single

    run = tmp_path_factory.mktemp("explain") / "cbr_small_blocks1-4_lr1e-03"
    train_single(run, tiny_pcam, "cbr_small", 1, 1e-3, workers=1, verbose=0, weights="none",
                 max_epochs=1, batch_size=16)
    return run


@pytest.mark.slow
def test_explain_draws_the_most_confident_of_each_group(finished, tmp_path, capsys):
    import pandas as pd

    frame = pd.read_csv(finished / "val_predictions.csv", dtype={"id": str})
    cut = float(frame["prediction"].median())  # both sides of the threshold hold images
    assert cli(["explain", str(finished), "--count", "2", "--threshold", str(cut),
                "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "gradcam.png").stat().st_size > 0
    record = json.loads((tmp_path / "gradcam.json").read_text())
    assert record["layer"] == "block4_relu" and record["block"] == 4
    assert record["threshold"] == pytest.approx(cut)
    groups = {g["name"]: g for g in record["groups"]}
    assert list(groups) == ["true positives", "false positives", "false negatives",
                            "true negatives"]
    for name, label, positive in (("true positives", 1, True), ("false positives", 0, True),
                                  ("false negatives", 1, False), ("true negatives", 0, False)):
        rows = frame[(frame["label"] == label) & ((frame["prediction"] >= cut) == positive)]
        rows = rows.sort_values("prediction", ascending=not positive, kind="stable")
        assert [e["id"] for e in groups[name]["images"]] == list(rows["id"][:2]), name
        assert all(e["label"] == label for e in groups[name]["images"])
        assert groups[name]["explains"] == ("positive" if positive else "negative")
    shown = sum(len(g["images"]) for g in record["groups"])
    assert shown >= 4  # a threshold at the median leaves images on both sides
    best = groups["true positives"]["images"]
    if best:
        positives = frame[(frame["label"] == 1) & (frame["prediction"] >= cut)]
        assert best[0]["score"] == pytest.approx(positives["prediction"].max())


@pytest.mark.slow
def test_explain_at_another_block_and_its_refusals(finished, tmp_path, capsys):
    assert cli(["explain", str(finished), "--layer", "2", "--count", "1", "--threshold",
                "youden", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "gradcam_block2_relu.json").read_text())
    assert record["layer"] == "block2_relu" and record["block"] == 2
    assert (tmp_path / "gradcam_block2_relu.png").is_file()
    capsys.readouterr()

    def one_line_error(argv, *words):
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("kandel-repro: error: "), err
        for word in words:
            assert word in err, (word, err)

    one_line_error(["explain", str(finished), "--layer", "nope", "--out", str(tmp_path)],
                   "--layer 'nope'", "1: block1_relu", "4: block4_relu", "blocks cbr_small")
    one_line_error(["explain", str(finished), "--layer", "block4_gap", "--out", str(tmp_path)],
                   "--layer 'block4_gap'")
    real = tmp_path / "kaggle_run"  # a run of the real Kaggle set: its test labels are hidden
    shutil.copytree(finished, real)
    config = json.loads((real / "config.json").read_text())
    (real / "config.json").write_text(json.dumps({**config, "synthetic": False}))
    one_line_error(["explain", str(real), "--split", "test", "--out", str(tmp_path)],
                   "test_predictions.csv", "no labelled test split", "--split val")
    one_line_error(["explain", str(finished), "--data", str(tmp_path / "moved"),
                    "--out", str(tmp_path)], str(tmp_path / "moved"), "--data")
    one_line_error(["explain", str(tmp_path / "nowhere")], "no such run folder")


@pytest.mark.slow
def test_explain_on_the_synthetic_test_split_uses_its_hidden_labels(finished, tiny_pcam,
                                                                     tmp_path, capsys):
    """A synthetic PCam's test split is labelled (the labels synthetic_test_auc uses):
    explain draws from the run's submission.csv with those labels, and says whose they are."""
    import pandas as pd

    assert cli(["explain", str(finished), "--split", "test", "--count", "2",
                "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "synthetic_test_labels.csv" in out, out
    record = json.loads((tmp_path / "gradcam_test.json").read_text())
    assert record["split"] == "test" and record["predictions"] == "submission.csv"
    assert "synthetic" in record["labels"] and "synthetic_test_labels.csv" in record["labels"]
    assert (tmp_path / "gradcam_test.png").stat().st_size > 0
    hidden = pd.read_csv(tiny_pcam / "synthetic_test_labels.csv",
                         dtype={"id": str}).set_index("id")["label"]
    scores = pd.read_csv(finished / "submission.csv", dtype={"id": str}).set_index("id")["label"]
    entries = [e for g in record["groups"] for e in g["images"]]
    assert len(entries) >= 2
    for entry in entries:
        assert entry["label"] == hidden[entry["id"]]
        assert entry["score"] == pytest.approx(scores[entry["id"]])
    positives = [e for g in record["groups"] if g["name"] == "true positives"
                 for e in g["images"]]
    if positives:
        best = scores[[i for i in scores.index if hidden[i] == 1 and scores[i] >= 0.5]].max()
        assert positives[0]["score"] == pytest.approx(best)


# --- refusals before any network is loaded, and the figure's labels ------------------------

def _fake_run(tmp_path, scores, labels=None, **config):
    """A finished run's folder with the files explain reads before it loads a network:
    config.json (``config``), metrics.json, an empty best_model.keras and
    val_predictions.csv of ``scores`` (one column: binary; k columns: k classes)."""
    from kandel_repro.core.files import write_csv, write_json
    from kandel_repro.runs.rundir import prediction_frame

    run = tmp_path / "fake_run"
    run.mkdir()
    scores = np.asarray(scores, dtype=float)
    labels = np.zeros(len(scores), int) if labels is None else labels
    write_json(run / "config.json", {"backbone": "cbr_small", "protocol": "pcam",
                                     "blocks": "1-4", **config})
    youden = {"youden_threshold": 0.4} if scores.ndim == 1 else {}  # (binary runs only)
    write_json(run / "metrics.json", {"status": "ok", "val_auc": 0.5, **youden})
    (run / "best_model.keras").write_bytes(b"")
    write_csv(run / "val_predictions.csv",
              prediction_frame([f"i{k}" for k in range(len(scores))], labels, scores))
    return run


def _one_line_error(argv, capsys, *words):
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kandel-repro: error: "), err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("threshold", ["1.5", "-0.1", "nan", "inf"])
def test_a_threshold_outside_0_1_is_refused(tmp_path, capsys, threshold):
    run = _fake_run(tmp_path, [0.2, 0.7, 0.9], labels=[0, 1, 1])
    _one_line_error(["explain", str(run), "--threshold", threshold, "--out", str(tmp_path / "o")],
                    capsys, f"--threshold {threshold}", "from 0 to 1")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("threshold", ["0.3", "youden"])
def test_a_threshold_is_refused_on_a_run_of_three_classes(tmp_path, capsys, threshold):
    three = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]
    run = _fake_run(tmp_path, three, labels=[0, 1, 2], num_classes=3)
    _one_line_error(["explain", str(run), "--threshold", threshold, "--out", str(tmp_path / "o")],
                    capsys, "--threshold", "3 classes", "most probable class")
    assert not (tmp_path / "o").exists()


def test_image_labels_keep_the_class_folder_and_shorten_from_the_left():
    from kandel_repro.explain.gradcam import image_label

    assert image_label("tumour/P06-002.png") == "tumour/P06-002.png"
    assert image_label("P06-002") == "P06-002"
    long = "exports/2024-03-11/cohort-B/slides/stroma/P06-002.png"
    shown = image_label(long)
    assert shown.startswith("…") and shown.replace("\n", "").endswith("stroma/P06-002.png")
    assert all(len(line) <= 24 for line in shown.splitlines())
    hashed = "f38a6374c348f90b587e046aac6079959adf3835"  # a Kaggle PCam id: kept whole
    assert image_label(hashed).replace("\n", "") == hashed
    deep = "a/" * 10 + "very-long-class-folder-name/" + "a-long-file-name-of-an-image.png"
    shown = image_label(deep)
    assert shown.replace("\n", "").endswith("very-long-class-folder-name/"
                                            "a-long-file-name-of-an-image.png")
    assert shown.startswith("…") and all(len(line) <= 24 for line in shown.splitlines())


IDS = np.array(["tumour/P06-002.png", "stroma/P06-002.png",
                "exports/2024-03-11/cohort-B/slides/stroma/P07-013.png", "tumour/P01-001.png",
                "f38a6374c348f90b587e046aac6079959adf3835"])


@pytest.mark.parametrize("binary", [True, False])
def test_the_figure_names_each_image_by_its_id_and_fits_its_text(binary):
    """Two images of one file name in two class folders are told apart, and every title —
    the figure's and each panel's — lies inside the figure, apart from the others and
    from every image (long ids and class names included)."""
    from kandel_repro.explain import gradcam as explain

    if binary:
        labels, scores = np.array([1, 0, 0, 1, 1]), np.array([0.9, 0.8, 0.1, 0.3, 0.95])
        classes, count = ["normal", "tumour"], 2
    else:
        labels = np.array([0, 0, 2, 1, 0])
        scores = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1],
                           [0.05, 0.05, 0.9]])
        classes, count = ["adenocarcinoma-moderately-differentiated", "stroma", "tumour"], 1
    groups = explanation_groups(labels, scores, count=count)
    images = np.zeros((count, 32, 32, 3), np.uint8)
    drawn = [(g, images[:len(g["rows"])], np.zeros((len(g["rows"]), 32, 32))) for g in groups]
    config = {"backbone": "cbr_small", "blocks": "1-4", "synthetic": True}
    title = explain._title(tmp_run := type("R", (), {"name": "cbr_small_blocks1-4_lr1e-03"}),
                           config, "val", "block4_relu", 4, binary, 0.5)
    fig = explain._figure(drawn, IDS, labels, scores, classes, binary, 0.5, title, None)
    assert tmp_run.name in title
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox.padded(1)
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    shown = [t.get_text().replace("\n", "") for t in titles]
    drawn_ids = [IDS[row] for g in groups for row in g["rows"]]
    for image_id in drawn_ids:  # each whole, or its class folder and file name after "…/"
        tail = "/".join(image_id.split("/")[-2:])
        assert any(s.startswith(image_id) or (s.startswith("…/") and tail in s)
                   for s in shown), (image_id, shown)
    if binary:
        assert {"tumour/P06-002.png", "stroma/P06-002.png"} <= set(drawn_ids)
    boxes = [t.get_window_extent(renderer) for t in titles]
    for text, box in zip([fig._suptitle, *titles], [fig._suptitle.get_window_extent(renderer),
                                                    *boxes]):
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), \
            text.get_text()
    panels = [ax.get_window_extent(renderer) for ax in fig.axes if ax.images]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
        for panel in panels:  # no title runs into an image, its own or another row's
            assert not a.shrunk(0.98, 0.9).overlaps(panel), (titles[i].get_text(), a, panel)
    import matplotlib.pyplot as plt

    plt.close(fig)

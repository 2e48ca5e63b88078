"""Grad-CAM (kandel_repro.report.explain): maps that peak where a hand-built network's
evidence is, the groups ``kandel-repro explain`` picks, and the command on a finished run."""
import json

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.report.explain import explanation_groups, grad_cam

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
    from kandel_repro.runs.grid import train_single

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
    one_line_error(["explain", str(finished), "--split", "test", "--out", str(tmp_path)],
                   "test_predictions.csv", "--split val")
    one_line_error(["explain", str(finished), "--data", str(tmp_path / "moved"),
                    "--out", str(tmp_path)], str(tmp_path / "moved"), "--data")
    one_line_error(["explain", str(tmp_path / "nowhere")], "no such run folder")

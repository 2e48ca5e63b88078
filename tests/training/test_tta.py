"""Test-time augmentation (kandel_repro.training.tta): the dihedral views, their average,
and its known answers."""
import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.training.pipeline import predict_uint8
from kandel_repro.training.tta import (VIEW_SETS, VIEWS, apply_view, images_per_batch, predict_tta,
                                       tta_cost, tta_predictor, view_names)

SIDE = 6


def corner_model(side=SIDE, height=None):
    """A "predictor" whose probability is channel 0 of the top-left pixel / 255."""
    import keras

    images = keras.Input((height or side, side, 3), dtype="uint8")
    score = keras.layers.Lambda(
        lambda x: keras.ops.cast(x[:, 0, 0, 0:1], "float32") / 255.0)(images)
    return keras.Model(images, score)


def softmax_model(side=SIDE, classes=3):
    """A seeded Dense softmax head on the raw pixels: every view gives other scores."""
    import keras

    keras.utils.set_random_seed(0)
    images = keras.Input((side, side, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(images))
    return keras.Model(images, keras.layers.Dense(classes, activation="softmax")(x))


def images(n=7, side=SIDE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_the_views_are_the_eight_symmetries_of_the_square_as_numpy_has_them():
    x = images(3)
    expected = {"identity": x, "flip_lr": x[:, :, ::-1], "flip_ud": x[:, ::-1],
                "transpose": x.transpose(0, 2, 1, 3), "rot90": np.rot90(x, 1, axes=(1, 2)),
                "rot180": np.rot90(x, 2, axes=(1, 2)), "rot270": np.rot90(x, 3, axes=(1, 2)),
                "antitranspose": np.rot90(x, 2, axes=(1, 2)).transpose(0, 2, 1, 3)}
    assert set(VIEWS) == set(expected) == set(VIEW_SETS[8])
    for name, want in expected.items():
        np.testing.assert_array_equal(np.asarray(apply_view(x, name)), want, err_msg=name)
    distinct = {np.asarray(apply_view(x, name)).tobytes() for name in VIEWS}
    assert len(distinct) == 8
    assert VIEW_SETS[4] == ("identity", "flip_lr", "flip_ud", "transpose")


def test_eight_views_average_the_four_corners_and_four_views_weigh_the_top_left_twice():
    # Each corner reaches (0, 0) in two of the eight views (the top-left under identity
    # and transpose, top-right under flip_lr and rot90, bottom-left under flip_ud and
    # rot270, bottom-right under rot180 and antitranspose); of the four views, identity
    # and transpose give the top-left, flip_lr the top-right, flip_ud the bottom-left.
    x = images(9)
    red = x[..., 0].astype(float) / 255
    tl, tr, bl, br = red[:, 0, 0], red[:, 0, -1], red[:, -1, 0], red[:, -1, -1]
    model = corner_model()
    np.testing.assert_allclose(predict_tta(model, x, 8, batch_size=4),
                               (tl + tr + bl + br) / 4, atol=1e-6)
    np.testing.assert_allclose(predict_tta(model, x, 4, batch_size=4),
                               (2 * tl + tr + bl) / 4, atol=1e-6)
    np.testing.assert_allclose(predict_tta(model, x, ["rot180"], batch_size=4), br, atol=1e-6)


def test_one_view_is_the_plain_prediction_and_indices_pick_rows():
    x, model = images(10), softmax_model()
    plain = predict_uint8(model, x, 4)
    np.testing.assert_array_equal(predict_tta(model, x, 1, batch_size=4), plain)
    rows = np.array([7, 2, 5])
    np.testing.assert_allclose(predict_tta(model, x, 8, batch_size=2, indices=rows),
                               predict_tta(model, x[rows], 8, batch_size=2), atol=1e-6)


def test_softmax_views_average_per_class_rows_sum_to_one_and_scores_are_deterministic():
    x, model = images(11), softmax_model()
    scores = predict_tta(model, x, 8, batch_size=4)
    assert scores.shape == (11, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    by_hand = np.mean([predict_uint8(model, np.ascontiguousarray(apply_view(x, name)), 4)
                       for name in VIEW_SETS[8]], axis=0)
    np.testing.assert_allclose(scores, by_hand, atol=1e-5)
    assert not np.allclose(scores, predict_uint8(model, x, 4), atol=1e-3)  # the views matter
    np.testing.assert_array_equal(predict_tta(model, x, 8, batch_size=4), scores)


def test_non_square_images_and_unknown_views_are_refused():
    with pytest.raises(ConfigError, match=r"square images.*4×6 images: use --tta 1"):
        tta_predictor(corner_model(height=4), 8)
    with pytest.raises(ConfigError, match="--tta must be one of 1, 4, 8, got 3"):
        view_names(3)
    with pytest.raises(ConfigError, match="unknown test-time view"):
        view_names(["mirror"])


def test_a_tta_batch_keeps_the_forward_batch_and_the_cost_is_measured():
    assert images_per_batch(1024, 8) == 128 and images_per_batch(64, 4) == 16
    assert images_per_batch(4, 8) == 1
    cost = tta_cost(corner_model(), images(16), batch_size=8, views=(4, 8), rounds=1)
    assert set(cost) == {"plain_images_per_second", "tta4_images_per_second",
                         "tta4_cost_ratio", "tta8_images_per_second", "tta8_cost_ratio"}
    assert all(value > 0 for value in cost.values())
    assert cost["tta8_cost_ratio"] == pytest.approx(
        cost["plain_images_per_second"] / cost["tta8_images_per_second"], rel=1e-2)


def test_tta_metrics_name_the_aucs_and_intervals_of_binary_and_multiclass_scores():
    from kandel_repro.core.stats import auc_ci, auc_of
    from kandel_repro.training.tta import tta_metrics

    rng = np.random.default_rng(2)
    labels = np.tile([0, 1], 20)
    scores = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 40), 0, 1)
    out = tta_metrics(8, labels, scores, labels[::-1], scores, "synthetic_test_auc")
    assert set(out) == {"tta_views", "val_auc_tta", "val_auc_tta_ci", "synthetic_test_auc_tta",
                        "synthetic_test_auc_tta_ci"}
    assert out["tta_views"] == 8 and out["val_auc_tta"] == pytest.approx(auc_of(labels, scores))
    assert out["val_auc_tta_ci"] == pytest.approx(list(auc_ci(labels, scores)[1:]))
    assert set(tta_metrics(4, labels, scores)) == {"tta_views", "val_auc_tta", "val_auc_tta_ci"}
    nan = scores.copy()
    nan[3] = np.nan
    assert tta_metrics(4, labels, nan) == {"tta_views": 4, "val_auc_tta": None}
    classes = np.repeat([0, 1, 2], 10)
    probs = rng.dirichlet(np.ones(3), 30) + 0.3 * np.eye(3)[classes]  # (not separated)
    probs /= probs.sum(axis=1, keepdims=True)
    out = tta_metrics(8, classes, probs, bootstrap=50)
    assert out["val_auc_tta"] == pytest.approx(auc_of(classes, probs))
    low, high = out["val_auc_tta_ci"]
    assert low <= out["val_auc_tta"] <= high

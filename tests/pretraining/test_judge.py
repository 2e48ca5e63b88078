"""The real/fake check (kandel_repro.pretraining.judge): a classifier told to separate real from
generated images, its DeLong interval and verdict, the Fréchet distance, judge.json, and
the refusals (a missing ImageNet file of the feature net, unusable images)."""
import json

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError, DataError, WeightsUnavailable
from kandel_repro.pretraining import judge as judging

N, SIDE = 40, 32
TINY = dict(backbone="cbr_small", weights="none", learning_rate=1e-3, feature_net="cbr_small",
            feature_weights="none", batch_size=8, workers=1, verbose=0)


def _noise(seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(N, SIDE, SIDE, 3), dtype=np.uint8)


def _grey():
    return np.full((N, SIDE, SIDE, 3), 128, np.uint8)


def _stand_in_pretrain(monkeypatch):
    """kandel_repro.pretraining.pretrain's three functions the judge calls, standing in for a
    finished run: its held-out images are noise, its generator draws flat grey. Returns
    the list of calls made."""
    from kandel_repro.pretraining import pretrain

    calls = []

    def held_out_images(run_dir, n, seed=0):
        calls.append(("held_out", n, seed))
        return _noise(seed)[:n]

    def sample_images(run_dir, n, seed=0):
        calls.append(("sample", n, seed))
        return _grey()[:n]

    monkeypatch.setattr(pretrain, "pretrain_config",
                        lambda run_dir: {"kind": "dcgan", "dataset": "folder", "synthetic": True})
    monkeypatch.setattr(pretrain, "held_out_images", held_out_images)
    monkeypatch.setattr(pretrain, "sample_images", sample_images)
    return calls


@pytest.fixture
def fake_pretrain(monkeypatch):
    return _stand_in_pretrain(monkeypatch)


@pytest.fixture(scope="module")
def told_apart(tmp_path_factory):
    """judge(RUN) on a stand-in pretrain run (noise against flat grey), trained once."""
    run = tmp_path_factory.mktemp("pretrain_run")
    with pytest.MonkeyPatch.context() as mp:
        calls = _stand_in_pretrain(mp)
        lines = []
        result = judging.judge(run, samples=N, epochs=1, log=lines.append,
                               **{k: v for k, v in TINY.items()})
    return run, result, calls, lines


def test_very_different_images_are_told_apart(told_apart):
    run, result, calls, lines = told_apart
    assert calls == [("held_out", N, 0), ("sample", N, 0)]
    val = result["test"]  # the verdict's: the part never used to choose the epoch
    assert val["auc"] > 0.9
    if val["auc"] < 1:
        assert val["auc_ci"][0] > 0.5
    else:  # every real image above every generated one: no interval of zero width, the
        # exact rank test instead (C(20, 10) orderings, one of them this one)
        assert val["auc_ci"] == [None, None] and "perfectly separated" in \
            val["auc_ci_not_assessable"]
        assert val["rank_test_p"] == pytest.approx(1 / 184756, rel=1e-6)
        assert "Mann–Whitney" in result["summary"]
    assert result["verdict"] == "told apart"
    assert val["n_real"] + val["n_generated"] == 2 * N // 4  # the 25 % test part
    assert result["validation"]["n_real"] + result["validation"]["n_generated"] == 2 * N // 4
    assert 0 <= val["generated_taken_for_real"] <= 1
    assert result["frechet_distance"] > 0
    text = "\n".join(lines)
    assert "told apart" in text and "NOT an FID" in text and "judge.json" in text


def test_judge_json_is_complete_and_says_what_the_numbers_are(told_apart):
    run, result, _, _ = told_apart
    out = run / "judge"
    written = json.loads((out / judging.JUDGE_FILE).read_text())
    assert written == json.loads(json.dumps(result))
    for key in ("n_real", "n_generated", "backbone", "weights", "transfer_learning",
                "feature_net", "feature_weights", "frechet_distance", "is_fid", "verdict",
                "summary", "validation", "test", "source_run", "kind", "epochs_run"):
        assert written[key] is not None, key
    assert (written["n_real"], written["n_generated"]) == (N, N)
    assert (written["backbone"], written["weights"], written["feature_net"]) == \
        ("cbr_small", "none", "cbr_small")
    assert written["transfer_learning"] is False
    assert "not transfer learning" in written["summary"]
    assert written["is_fid"] is False and written["frechet_note"].startswith("not an FID")
    assert "not an FID" in written["summary"]
    assert written["kind"] == "dcgan" and written["source_run"] == str(run.resolve())
    assert written["test"]["n_real"] > 0 and 0 <= written["test"]["auc"] <= 1
    # the test part's shares at the threshold the validation part chose (Youden's J)
    assert written["test"]["youden_threshold"] == written["validation"]["youden_threshold"]
    assert 0 <= written["test"]["generated_taken_for_real_at_youden"] <= 1
    # the two-class folder the classifier trained on, and its finished run
    assert sorted(p.name for p in (out / "images").iterdir() if not p.name.startswith(".")) == \
        ["generated", "real"]
    assert len(list((out / "images" / "real").glob("*.png"))) == N
    assert (out / "classifier" / "metrics.json").is_file()
    assert json.loads((out / "classifier" / "config.json").read_text())["dataset"] == "folder"


def test_images_of_one_kind_are_indistinguishable(tmp_path):
    # real and generated drawn alike (uniform noise): nothing to tell them apart by
    result = judging.judge_images(_noise(3), _noise(4), tmp_path, epochs=1, log=lambda _: None,
                                  **TINY)
    lower, upper = result["test"]["auc_ci"]
    assert lower <= 0.5 <= upper
    assert result["verdict"] == "indistinguishable"
    assert "could not tell" in result["summary"] and "which holds 0.5" in result["summary"]
    assert result["frechet_distance"] < 0.1


def test_identical_sets_have_frechet_distance_zero_and_different_ones_do_not():
    from kandel_repro.core.frechet import frechet_distance

    extract = judging.feature_extractor("cbr_small", "none", 32, seed=0)
    real = _noise(5)
    same = frechet_distance(extract(real), extract(real.copy()))
    other = frechet_distance(extract(real), extract(_grey()))
    assert same == pytest.approx(0.0, abs=1e-9)
    assert other > 0
    assert extract(real).shape == (N, 256)  # cbr_small's pooled channels
    assert judging.feature_size_of("inception_v3", real) == 75  # its smallest input
    assert judging.feature_size_of("cbr_small", real) == SIDE
    with pytest.raises(ConfigError, match="at least 75"):
        judging.feature_size_of("inception_v3", real, 32)


def test_the_verdict_needs_an_interval_above_chance():
    assert judging.verdict_of(0.62, 0.9) == "told apart"
    assert judging.verdict_of(0.3, 0.7) == "indistinguishable"
    assert judging.verdict_of(0.5, 0.8) == "indistinguishable"
    # worse than chance on held-out images: the classifier failed, it told nothing apart
    assert judging.verdict_of(0.05, 0.45) == "indistinguishable"
    with pytest.raises(ValueError):
        judging.verdict_of(0.7, 0.6)


def test_a_missing_imagenet_file_of_the_feature_net_is_one_clear_refusal(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    out = tmp_path / "out"
    with pytest.raises(WeightsUnavailable) as caught:
        judging.judge_images(_noise(), _grey(), out, **dict(TINY, feature_net="inception_v3",
                                                            feature_weights="imagenet"))
    message = str(caught.value)
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "keras" / "models") in message and "--feature-weights none" in message
    assert "\n" not in message
    assert not out.exists()  # refused before anything was written
    with pytest.raises(WeightsUnavailable, match="cbr_small has no ImageNet weights"):
        judging.check_feature_weights("cbr_small", "imagenet")
    assert judging.check_feature_weights("inception_v3", "random") == "none"


def test_judge_refuses_before_making_images(tmp_path, monkeypatch, fake_pretrain):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsUnavailable, match="put the file"):
        judging.judge(tmp_path / "run", samples=N)
    with pytest.raises(ConfigError, match="--samples"):
        judging.judge(tmp_path / "run", samples=2, feature_weights="none")
    assert fake_pretrain == []


@pytest.mark.parametrize("real, fake, match", [
    (_noise()[:3], _noise()[:3], "at least 8"),
    (_noise(), _noise()[:, :16, :16], "32×32 and generated ones 16×16"),
    (_noise().astype(np.float32), _noise(), "uint8"),
    (_noise()[..., :1], _noise(), "n × height × width × 3"),
])
def test_unusable_images_are_refused(tmp_path, real, fake, match):
    with pytest.raises(DataError, match=match):
        judging.judge_images(real, fake, tmp_path / "out", **TINY)
    assert not (tmp_path / "out").exists()


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--epochs"):
        judging.judge_images(_noise(), _grey(), tmp_path, **dict(TINY, epochs=0))
    with pytest.raises(ConfigError, match="meanvar"):
        judging.judge_images(_noise(), _grey(), tmp_path, **dict(TINY, weights="meanvar"))


def test_the_command_line_reaches_judge_with_its_options(monkeypatch, capsys):
    import argparse

    from kandel_repro.cli import judge_options
    from kandel_repro.cli.main import cmd_judge

    parser = argparse.ArgumentParser(prog="kandel-repro")
    judge_options.add_judge_parser(parser.add_subparsers(dest="command"))
    seen = {}
    monkeypatch.setattr(judging, "judge", lambda run, **kwargs: seen.update(kwargs, run=run))
    args = parser.parse_args(["judge", "RUN"])
    cmd_judge(args)
    assert seen == dict(run="RUN", backbone="vgg16", weights="imagenet",
                        first_trainable_block=None, learning_rate=1e-4,
                        samples=judging.DEFAULT_SAMPLES, epochs=judging.DEFAULT_EPOCHS,
                        feature_net="inception_v3", feature_weights="imagenet", out=None, seed=0)
    cmd_judge(parser.parse_args(
        ["judge", "RUN", "--backbone", "cbr-small", "--weights", "none", "--first-block", "3",
         "--lr", "1e-3", "--samples", "64", "--epochs", "2", "--feature-net", "cbr_small",
         "--feature-weights", "none", "--out", "J", "--seed", "4"]))
    assert (seen["backbone"], seen["first_trainable_block"], seen["samples"], seen["out"],
            seen["seed"]) == ("cbr_small", 3, 64, "J", 4)
    with pytest.raises(SystemExit):
        parser.parse_args(["judge", "RUN", "--samples", "3"])
    assert "at least 8" in capsys.readouterr().err
    # no interval (too few images, or a variance of 0): not assessable, never [1, 1]
    assert judging.verdict_of(float("nan"), float("nan")) == "not assessable"
    assert judging.verdict_of(None, None) == "not assessable"


def test_too_few_images_to_judge_give_no_verdict(tmp_path):
    """8 real and 8 generated images: the 25 % test part holds 2 of each kind, too few for
    an interval; the judge says "not assessable", not "told apart" with AUC [1, 1]."""
    lines = []
    result = judging.judge_images(_noise(6)[:8], _grey()[:8], tmp_path, epochs=1,
                                  log=lines.append, **TINY)
    test = result["test"]
    assert test["n_real"] + test["n_generated"] == 4
    assert result["verdict"] == "not assessable"
    assert test["auc_ci"] == [None, None] or all(np.isnan(test["auc_ci"]))
    assert "holds 2 images of class 'generated'" in test["auc_ci_not_assessable"]
    assert "Judge more samples" in result["summary"]
    text = "\n".join(lines)
    assert "[not assessable]" in text and "[1.000, 1.000]" not in text and "warning" in text


def test_the_feature_nets_file_is_the_one_of_the_features_size(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsUnavailable, match=r"_1\.0_96_no_top\.h5"):
        judging.check_feature_weights("mobilenet_v2", "imagenet", 96)


def test_a_data_set_of_too_few_held_out_images_is_named_not_samples(fake_pretrain, tmp_path,
                                                                   monkeypatch):
    """Six held-out images in all: asking for more --samples cannot help, so the message
    names the data set as the limit."""
    from kandel_repro.pretraining import pretrain

    monkeypatch.setattr(pretrain, "held_out_images", lambda run_dir, n, seed=0: _noise()[:6])
    with pytest.raises(DataError, match="holds 6 held-out image.* fewer than the 8 of each "
                                        "kind the judge needs: judge a pretrain run of a "
                                        "larger data set") as err:
        judging.judge(tmp_path, samples=15, epochs=1, log=lambda _: None, **TINY)
    assert "--samples" not in str(err.value)

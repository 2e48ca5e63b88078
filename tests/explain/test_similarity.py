"""Linear CKA, full and minibatch (kandel_repro.explain.similarity), and the checks of
``kandel-repro similarity`` and ``export-weights``."""
import json

import numpy as np
import pytest
from helpers import LEGACY

from kandel_repro.explain.similarity import MinibatchCKA, hsic_unbiased, linear_cka


def _features(n=200, p=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = x @ rng.normal(size=(p, 20)) + 0.5 * rng.normal(size=(n, 20))
    return x, y


def reference_hsic(k, l):
    """The unbiased HSIC written from its definition (Song et al. 2012, eq. 5), with
    explicit sums over distinct index tuples: an implementation independent of ours."""
    n = len(k)
    k = k * (1 - np.eye(n))
    l = l * (1 - np.eye(n))
    term1 = np.trace(k @ l)
    term2 = k.sum() * l.sum() / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * np.sum(k @ l)
    return (term1 + term2 - term3) / (n * (n - 3))


def test_a_representation_is_identical_to_itself():
    x, _ = _features()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x, debiased=True) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_rotations_and_isotropic_scaling_but_not_to_anisotropic():
    x, y = _features()
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(30, 30)))
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(3.7 * x, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x * np.linspace(0.1, 10, 30), y) != pytest.approx(base, abs=1e-3)
    assert 0 < base < 1


def test_agrees_with_the_definition():
    x, y = _features(n=60)
    k, l = x @ x.T, y @ y.T
    assert hsic_unbiased(k, l) == pytest.approx(reference_hsic(k, l), rel=1e-10)
    expected = reference_hsic(k, l) / np.sqrt(reference_hsic(k, k) * reference_hsic(l, l))
    assert linear_cka(x, y, debiased=True) == pytest.approx(expected, rel=1e-10)
    # the biased estimator from its own definition: HSIC = tr(KHLH) / (n−1)²
    h = np.eye(60) - 1 / 60
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    assert linear_cka(x, y) == pytest.approx(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)),
                                             rel=1e-10)


def test_the_minibatch_estimate_is_close_to_the_full_one():
    x, y = _features(n=2000, seed=3)
    minibatch = MinibatchCKA()
    for i in range(0, 2000, 100):
        minibatch.update(x[i:i + 100], y[i:i + 100])
    assert minibatch.result() == pytest.approx(linear_cka(x, y, debiased=True), abs=0.02)
    with pytest.raises(ValueError, match="at least 4"):
        hsic_unbiased(np.eye(3), np.eye(3))


@pytest.fixture(scope="module")
def two_runs(tiny_pcam, tmp_path_factory):
    """``{backbone: finished run}``: a vgg16 run (block 5 trained) and a cbr_tiny run on the
    tiny set, 1 epoch each (read-only for tests: copy to modify)."""
    from kandel_repro.runs.single import train_single

    root = tmp_path_factory.mktemp("similarity_runs")
    runs = {"vgg16": (5, root / "vgg16_blocks5-5_lr1e-03"),
            "cbr_tiny": (1, root / "cbr_tiny_blocks1-4_lr1e-03")}
    for backbone, (first, run_dir) in runs.items():
        train_single(run_dir, tiny_pcam, backbone, first, 1e-3, workers=1, verbose=0,
                     weights="none", max_epochs=1, batch_size=16)
    return {backbone: run_dir for backbone, (_, run_dir) in runs.items()}


@pytest.mark.slow
def test_similarity_of_a_run_frozen_blocks_unchanged_and_its_weights_exported(tiny_pcam,
                                                                             two_runs,
                                                                             tmp_path, capsys):
    from kandel_repro.cli.main import main

    run = two_runs["vgg16"]  # blocks 5, lr 1e-3
    assert main(["similarity", str(run), "--images", "12", "--batch", "6",
                 "--out", str(tmp_path / "sim")]) == 0
    out = capsys.readouterr().out
    import pandas as pd

    frame = pd.read_csv(tmp_path / "sim" / "similarity.csv")
    cka = dict(zip(frame["block"], frame["cka"]))
    assert list(cka) == [1, 2, 3, 4, 5]
    for block in (1, 2, 3, 4):  # frozen: the same weights as at the start
        assert cka[block] == pytest.approx(1.0, abs=1e-6)
    assert cka[5] < 1 - 1e-6  # fine-tuned
    assert "block 5" in out and (tmp_path / "sim" / "similarity.png").is_file()
    # its weights become pretrained weights for another run, which the table names
    assert main(["export-weights", str(run), "--out", str(tmp_path / "weights")]) == 0
    note = json.loads((tmp_path / "weights" / "vgg16.json").read_text())
    assert note["source_run"] == str(run.resolve()) and note["synthetic"] is True
    other = tmp_path / "runs2" / "vgg16_blocks5-5_lr1e-03"
    assert main(["train", "--data", str(tiny_pcam), "--run-dir", str(other), "--first-block", "5",
                 "--lr", "1e-3", "--weights", str(tmp_path / "weights"), "--epochs", "1",
                 "--batch-size", "16", "--workers", "1"]) == 0
    import keras

    first = keras.saving.load_model(run / "best_model.keras").get_layer("block1_conv1")
    second = keras.saving.load_model(other / "best_model.keras").get_layer("block1_conv1")
    np.testing.assert_array_equal(first.kernel.numpy(), second.kernel.numpy())



# A finished run written by an earlier version (vgg16, block 5, 32×32 tiny_pcam), without
# its best_model.keras: the files the argument checks read, with no network to train.
LEGACY_RUN = LEGACY / "table2" / "vgg16_blocks5-5_lr1e-04"


def _fake_run(tmp_path, name, config=True, finished=True, model=True, source=LEGACY_RUN,
              **changes):
    """``tmp_path/name``: ``source``'s config.json (with ``changes``) and metrics.json, and
    an empty best_model.keras — the files the checks read, with no network to load."""
    fake = tmp_path / name
    fake.mkdir()
    if config:
        settings = json.loads((source / "config.json").read_text())
        (fake / "config.json").write_text(json.dumps({**settings, **changes}))
    if finished:
        (fake / "metrics.json").write_text((source / "metrics.json").read_text())
    if model:
        (fake / "best_model.keras").write_bytes(b"")
    return fake


@pytest.fixture
def no_activations(monkeypatch):
    """Fail the test if similarity starts computing (reads its validation images)."""
    from kandel_repro.explain import similarity

    def refuse(*args, **kwargs):
        raise AssertionError("activations computed before the arguments were checked")

    monkeypatch.setattr(similarity, "_validation_images", refuse)


def _one_line_error(capsys, *words):
    """The one-line error ``cli.main`` printed, checked to name each of ``words``."""
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.out + captured.err
    assert len(err.splitlines()) == 1 and err.startswith("kandel-repro: error: "), err
    for word in words:
        assert str(word) in err, (word, err)
    return err


BAD_RUN_B = {
    "another backbone": (dict(backbone="cbr_tiny"), ["cbr_tiny run", "vgg16", "backbone"]),
    "another image size": (dict(image_size=48), ["48×48", "32×32", "image size"]),
    "missing": (None, ["no such run folder"]),
    "unfinished": (dict(finished=False), ["not a finished run", "metrics.json"]),
    "no config": (dict(config=False), ["config.json"]),
    "no best model": (dict(model=False), ["best_model.keras"]),
}


@pytest.mark.parametrize("case", list(BAD_RUN_B))
def test_similarity_refuses_a_bad_run_b_before_computing(tmp_path, capsys, no_activations,
                                                        case):
    from kandel_repro.cli.main import main

    fake, words = BAD_RUN_B[case]
    run = _fake_run(tmp_path, "a")
    other = tmp_path / "nowhere" if fake is None else _fake_run(tmp_path, "b", **fake)
    out = tmp_path / "sim"
    assert main(["similarity", str(run), str(other), "--images", "12", "--batch", "6",
                 "--out", str(out)]) == 2
    _one_line_error(capsys, f"RUN_B {other}", *words)
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "unfinished", "no config", "no best model"])
def test_similarity_refuses_a_missing_or_unfinished_run(tmp_path, capsys, no_activations, case):
    from kandel_repro.cli.main import main

    fake, words = BAD_RUN_B[case]
    run = tmp_path / "nowhere" if fake is None else _fake_run(tmp_path, "a", **fake)
    out = tmp_path / "sim"
    assert main(["similarity", str(run), str(_fake_run(tmp_path, "b")), "--images", "12",
                 "--batch", "6", "--out", str(out)]) == 2
    _one_line_error(capsys, f"RUN {run}", *words)
    assert not out.exists()


def test_similarity_checks_its_output_and_minibatch_before_computing(tmp_path, capsys,
                                                                     no_activations):
    from kandel_repro.cli.main import main

    run = _fake_run(tmp_path, "a")
    (tmp_path / "a_file").write_text("not a folder\n")
    for out, words in ((tmp_path / "a_file", ["is a file, not a folder"]),
                       (tmp_path / "a_file" / "sub", ["cannot write into"])):
        assert main(["similarity", str(run), "--images", "12", "--batch", "6",
                     "--out", str(out)]) == 2
        _one_line_error(capsys, out, "--out", *words)
    assert main(["similarity", str(run), "--images", "4", "--batch", "6",
                 "--out", str(tmp_path / "sim")]) == 2
    _one_line_error(capsys, "--images 4", "--batch 6")
    assert (tmp_path / "a_file").read_text() == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a_file"]


def test_export_weights_checks_every_run_and_its_output_before_writing(tmp_path, capsys):
    from kandel_repro.cli.main import main

    first = _fake_run(tmp_path, "vgg16_a")
    out = tmp_path / "weights"
    bad = [(_fake_run(tmp_path, "vgg16_b"), ["both vgg16 runs", "one run per backbone"]),
           (_fake_run(tmp_path, "cbr", backbone="cbr_tiny", finished=False),
            ["not a finished run"]),
           (_fake_run(tmp_path, "cbr2", backbone="cbr_tiny", model=False), ["best_model.keras"]),
           (tmp_path / "nowhere", ["no such run folder"])]
    for second, words in bad:
        assert main(["export-weights", str(first), str(second), "--out", str(out)]) == 2
        _one_line_error(capsys, second, *words)
        assert not out.exists()
    (tmp_path / "a_file").write_text("not a folder\n")
    for target in (tmp_path / "a_file", tmp_path / "a_file" / "sub"):
        assert main(["export-weights", str(first), "--out", str(target)]) == 2
        _one_line_error(capsys, target, "--out")
    assert (tmp_path / "a_file").read_text() == "not a folder\n"


@pytest.mark.slow
def test_similarity_and_export_of_trained_runs_of_two_backbones(two_runs, tmp_path, capsys):
    import pandas as pd

    from kandel_repro.cli.main import main

    vgg, cbr = two_runs["vgg16"], two_runs["cbr_tiny"]
    assert main(["similarity", str(vgg), str(cbr), "--images", "12", "--batch", "6",
                 "--out", str(tmp_path / "sim")]) == 2
    _one_line_error(capsys, f"RUN_B {cbr} is a cbr_tiny run")
    assert not (tmp_path / "sim").exists()
    # a RUN_B of the same backbone: a network against itself is unchanged in every block
    assert main(["similarity", str(vgg), str(vgg), "--images", "12", "--batch", "6",
                 "--out", str(tmp_path / "sim"), "--name", "itself"]) == 0
    frame = pd.read_csv(tmp_path / "sim" / "itself.csv")
    assert list(frame["block"]) == [1, 2, 3, 4, 5]
    assert frame["cka"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    capsys.readouterr()
    out = tmp_path / "weights"
    second_vgg = _fake_run(tmp_path, "vgg16_b", source=vgg)
    assert main(["export-weights", str(vgg), str(cbr), str(second_vgg), "--out", str(out)]) == 2
    _one_line_error(capsys, "both vgg16 runs")
    assert not out.exists()
    # one run per backbone: each backbone's weights and its note, nothing else
    assert main(["export-weights", str(vgg), str(cbr), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "cbr_tiny.json", "cbr_tiny.weights.h5", "vgg16.json", "vgg16.weights.h5"]
    assert json.loads((out / "cbr_tiny.json").read_text())["source_run"] == str(cbr.resolve())

"""Linear CKA, full and minibatch (kandel_repro.similarity)."""
import numpy as np
import pytest

from kandel_repro.similarity import MinibatchCKA, hsic_unbiased, linear_cka


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


@pytest.mark.slow
def test_similarity_of_a_run_frozen_blocks_unchanged_and_its_weights_exported(tiny_pcam,
                                                                             tmp_path, capsys):
    import json

    from kandel_repro.cli import main

    run = tmp_path / "runs" / "vgg16_blocks5-5_lr1e-03"
    assert main(["train", "--data", str(tiny_pcam), "--run-dir", str(run), "--first-block", "5",
                 "--lr", "1e-3", "--weights", "none", "--epochs", "1", "--batch-size", "16",
                 "--workers", "1"]) == 0
    capsys.readouterr()
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

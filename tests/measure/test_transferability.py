"""LogME and the H-score (kandel_repro.measure.transferability) on known cases."""
import numpy as np
import pytest

from kandel_repro.measure.transferability import (_class_evidence, h_score, log_evidence,
                                                  logme)


def test_h_score_by_hand():
    """One feature: class 0 at 0 and 2, class 1 at 4 and 6. Centred: −3, −1, 1, 3 → var 5;
    class means 1 and 5, centred −2, 2 → between-class variance 4; H = 4 / 5."""
    assert h_score([[0.0], [2.0], [4.0], [6.0]], [0, 0, 1, 1]) == pytest.approx(0.8)
    # a feature that is the label exactly: all its variance is explained, H = 1
    assert h_score([[0.0], [0.0], [1.0], [1.0]], [0, 0, 1, 1]) == pytest.approx(1.0)


def test_logme_is_the_evidence_at_mackays_fixed_point():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 5))
    target = (features[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(float)
    u, s, _ = np.linalg.svd(features, full_matrices=False)
    evidence, alpha, beta = _class_evidence(u, s ** 2, 5, target)
    # the SVD form equals the evidence computed from the matrices themselves
    assert evidence == pytest.approx(log_evidence(features, target, alpha, beta), rel=1e-9)
    # and (α, β) is MacKay's fixed point: α = γ / mᵀm, β = (n − γ) / ‖Fm − y‖²
    a = alpha * np.eye(5) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ target)
    gamma = np.sum(beta * s ** 2 / (alpha + beta * s ** 2))
    assert alpha == pytest.approx(gamma / (m @ m), rel=1e-4)
    assert beta == pytest.approx((40 - gamma) / np.sum((features @ m - target) ** 2), rel=1e-4)


def test_features_that_tell_the_classes_apart_score_higher():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 50)
    useful = rng.normal(size=(100, 8)) + labels[:, None] * 2.0
    noise = rng.normal(size=(100, 8))
    assert logme(useful, labels) > logme(noise, labels)
    assert h_score(useful, labels) > 10 * h_score(noise, labels)
    # more features than images: the evidence stays finite
    wide = rng.normal(size=(20, 50))
    assert np.isfinite(logme(wide, np.repeat([0, 1], 10)))


@pytest.mark.slow
def test_score_blocks_writes_a_score_per_block_and_its_cost(tmp_path):
    from kandel_repro.cli.main import main
    from kandel_repro.readers.synthetic.folder import write_synthetic_folder

    data = write_synthetic_folder(tmp_path / "tiles", classes=2, images=60, patients=6,
                                  size=8, seed=0, progress=False)
    assert main(["score-blocks", "vgg16", "--data", str(data), "--weights", "none",
                 "--image-size", "32", "--out", str(tmp_path / "out")]) == 0
    import pandas as pd

    scores = pd.read_csv(tmp_path / "out" / "vgg16_block_scores.csv")
    assert list(scores["block"]) == [1, 2, 3, 4, 5]
    assert list(scores["channels"]) == [64, 128, 256, 512, 512]
    assert scores[["logme", "h_score", "probe_val_auc"]].notna().all().all()
    assert ((scores["probe_val_auc"] >= 0) & (scores["probe_val_auc"] <= 1)).all()
    md = (tmp_path / "out" / "vgg16_block_scores.md").read_text()
    assert "one whole-network training epoch" in md
    assert (tmp_path / "out" / "vgg16_block_scores.png").is_file()

"""``--dataset images``: a folder of unlabelled images, for pretraining only."""
import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError, DataError
from kandel_repro.pretraining import pretrain as P
from kandel_repro.readers.registry import get_reader

TINY = dict(batch_size=8, widths=(8, 16, 16, 16), latent=8, verbose=0, workers=1)


def _folder(root, count, sizes=((40, 30), (20, 20), (64, 48))):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(count):
        width, height = sizes[k % len(sizes)]
        place = root / ("scans" if k % 2 else "") / f"{k:03d}.png"
        place.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(place)
    (root / "notes.txt").write_text("not an image")
    return root


def test_every_image_under_the_folder_is_one_unlabelled_class(tmp_path):
    root = _folder(tmp_path / "data", 12)
    index = get_reader("images").read_index(root)
    assert len(index) == 12 and set(index["label"]) == {"unlabelled"}
    assert any(i.startswith("scans/") for i in index["id"])
    # mixed sizes are packed at one size
    data = get_reader("images").load(root, tmp_path / "cache", workers=1, image_size=32,
                                     progress=False)
    assert data.x.shape == (12, 32, 32, 3)


def test_a_classifier_cannot_train_on_it(tmp_path):
    from kandel_repro.runs.single import train_single

    root = _folder(tmp_path / "data", 4)
    with pytest.raises(ConfigError, match="holds no labels: it serves `kandel-repro pretrain`"):
        train_single(tmp_path / "run", root, "cbr_small", 1, 1e-3, weights="none",
                     dataset="images", image_size=32)


def test_empty_and_one_image_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image"):
        get_reader("images").read_index(tmp_path / "empty")
    one = _folder(tmp_path / "one", 1)
    with pytest.raises(ConfigError, match=r"fewer than one batch \(--batch-size 8\)"):
        P.pretrain("vae", one, tmp_path / "run", dataset="images", images="all",
                   image_size=32, cache_dir=tmp_path / "cache", **TINY)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_vae_pretrains_on_a_flat_folder(tmp_path):
    root = _folder(tmp_path / "data", 20)
    metrics = P.pretrain("vae", root, tmp_path / "run", dataset="images", epochs=1,
                         image_size=32, cache_dir=tmp_path / "cache", **TINY)
    assert metrics["status"] == "ok"
    assert P.pretrain_config(tmp_path / "run")["n_images"] == 16  # the split's 80 %
    assert P.held_out_images(tmp_path / "run", 2).shape == (2, 32, 32, 3)


def test_an_image_size_the_networks_cannot_halve_is_refused_before_packing(tmp_path):
    root = _folder(tmp_path / "data", 4)
    with pytest.raises(ConfigError, match="--image-size 40: .* a multiple of 16"):
        P.pretrain("dcgan", root, tmp_path / "run", dataset="images", image_size=40,
                   cache_dir=tmp_path / "cache", **dict(TINY, widths=None))
    assert not (tmp_path / "cache").exists()

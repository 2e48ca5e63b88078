"""The own-data packing figures of `make bench` at a tiny scale: that they are measured,
and on what (their values are `make bench`'s, not a unit test's)."""
import json
import os

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.measure.bench import own_packing, replicate_folder
from kandel_repro.measure.bench_report import TARGETS, render_own


def test_own_packing_measures_jpeg_and_png_and_memory(tmp_path):
    f = own_packing(tmp_path, images=24, size=32, workers=1, distinct=6)
    assert json.loads(json.dumps(f)) == f  # (goes into bench.json as it is)
    assert (f["own_pack_images"], f["own_pack_distinct_images"], f["own_pack_image_size"],
            f["own_pack_workers"]) == (24, 6, 32, 1)
    for key in ("own_pack_jpeg_files_per_second", "own_pack_png_files_per_second",
                "own_pack_peak_rss_bytes_at_n_workers_1", "own_pack_peak_rss_bytes_at_4n_workers_1",
                "own_pack_peak_rss_ratio"):
        assert f[key] > 0, key
    assert f["own_pack_peak_rss_ratio"] == f["own_pack_peak_rss_ratio_workers_1"] == pytest.approx(
        f["own_pack_peak_rss_bytes_at_4n_workers_1"] / f["own_pack_peak_rss_bytes_at_n_workers_1"])
    assert "own_pack_peak_rss_ratio_workers_2" not in f  # one worker: measured once
    # the memory was measured on 4× the images: the cache grew 4×, and was removed
    assert f["own_pack_cache_bytes_at_4n"] == pytest.approx(4 * f["own_pack_cache_bytes_at_n"],
                                                            rel=0.01)
    assert not (tmp_path / "cache-memory").exists()
    packed = {}
    for fmt, ext in (("jpeg", ".jpg"), ("png", ".png")):
        files = [p for p in (tmp_path / f"{fmt}-32px-24").rglob("*") if p.is_file()
                 and p.suffix != ".json"]
        assert len(files) == 24 and {p.suffix for p in files} == {ext}
        packed[fmt] = np.load(tmp_path / f"cache-{fmt}" / "folder-32" / "x.npy")
        assert packed[fmt].shape == (24, 32, 32, 3) and packed[fmt].dtype == np.uint8
    # the same synthetic images, encoded twice: lossy JPEG close to lossless PNG, not equal
    difference = np.abs(packed["jpeg"].astype(int) - packed["png"].astype(int))
    assert 0 < difference.mean() < 20


def test_replicated_folder_links_each_class_in_turn(tmp_path):
    src = tmp_path / "src"
    for name in ("a", "b"):
        (src / name).mkdir(parents=True)
        for i in range(2):
            (src / name / f"{i}.png").write_bytes(f"{name}{i}".encode())
    (src / "SYNTHETIC.json").write_text("{}")
    dst = replicate_folder(src, tmp_path / "dst", 5)
    for name in ("a", "b"):
        files = sorted((dst / name).iterdir())
        assert [p.read_bytes() for p in files] == [f"{name}{n % 2}".encode() for n in range(5)]
        assert os.path.samefile(files[2], src / name / "0.png")  # a hard link, not a copy
    assert (dst / "SYNTHETIC.json").exists()
    inode = (dst / "a" / "000000-0.png").stat().st_ino
    assert replicate_folder(src, dst, 5) == dst  # reused ...
    assert (dst / "a" / "000000-0.png").stat().st_ino == inode
    replicate_folder(src, dst, 3)  # ... rebuilt for another count
    assert len(list((dst / "a").iterdir())) == 3


def test_too_few_images_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="at least 3 images"):
        own_packing(tmp_path, images=2, size=32, workers=1, distinct=2)
    assert not any(tmp_path.iterdir())


def test_section_shows_every_pool_and_the_target():
    mib = 2**20
    f = {"own_pack_images": 600, "own_pack_image_size": 224, "own_pack_distinct_images": 60,
         "own_pack_workers": 2, "own_pack_jpeg_files_per_second": 321.0,
         "own_pack_png_files_per_second": 123.0, "own_pack_cache_bytes_at_n": 86 * mib,
         "own_pack_cache_bytes_at_4n": 344 * mib,
         "own_pack_peak_rss_bytes_at_n_workers_1": 100 * mib,
         "own_pack_peak_rss_bytes_at_4n_workers_1": 110 * mib,
         "own_pack_peak_rss_bytes_at_n_workers_2": 120 * mib,
         "own_pack_peak_rss_bytes_at_4n_workers_2": 156 * mib,
         "own_pack_peak_rss_ratio_workers_1": 1.1, "own_pack_peak_rss_ratio_workers_2": 1.3,
         "own_pack_peak_rss_ratio": 1.3}
    text = "\n".join(render_own(f, lambda key: f"verdict on {key}"))
    assert "| JPEG packing, files/s | 321 |" in text and "| PNG packing, files/s | 123 |" in text
    assert "| packed cache at N / 4N | 86.0 / 344.0 MiB |" in text
    assert "1 worker(s) | 100 / 110 MiB (ratio 1.10)" in text
    assert "2 worker(s) | 120 / 156 MiB (ratio 1.30)" in text
    assert (f"**1.30** | ≤ {TARGETS['own_pack_peak_rss_ratio']} "
            "(verdict on own_pack_peak_rss_ratio)") in text
    assert "N = 600" in text and "224×224" in text

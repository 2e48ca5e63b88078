"""The benchmark's plumbing at a tiny scale (its figures are not checked here: timings
belong in `make bench`, not in unit tests)."""
import json
import subprocess
import sys

import pytest

from kandel_repro.measure.bench import replicate_pcam, run_bench


@pytest.mark.slow
def test_bench_writes_every_figure(tmp_path, capsys):
    # the own-data packing at its smallest (tests/measure/test_own_packing.py checks it)
    figures = run_bench(tmp_path / "out", tmp_path / "work", images=40, copies=2, size=32,
                        warm=1, steps=1, rounds=1, augment_seconds=0.3, rss_steps=1,
                        batch_size=8, own_images=6, own_size=32, own_distinct=3, own_workers=1,
                        tta_images=10, generative_steps=1)
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved == json.loads(json.dumps(figures))
    assert saved["batch_size"] == 8  # (the paper's 64 unless given)
    assert (saved["own_pack_images"], saved["own_pack_image_size"], saved["own_pack_workers"]) \
        == (6, 32, 1)
    depths = ["5", "4-5", "3-5", "2-5", "1-5"]
    for key in (["augment_speedup", "augment_colour_speedup", "augment_hed_speedup",
                 "augment_colour_images_per_second", "augment_hed_images_per_second",
                 "pipeline_vs_preaugmented", "peak_rss_vs_limit",
                 "pack_files_per_second", "table2_hours_at_50_epochs_per_run",
                 "own_pack_jpeg_files_per_second", "own_pack_peak_rss_ratio",
                 "vae_step_vs_classifier", "dcgan_step_vs_classifier"]
                + [f"speed_blocks_{d}_vs_whole_network" for d in depths]):
        assert isinstance(saved[key], float) and saved[key] > 0, key
    assert saved["augment_speedup"] == pytest.approx(
        saved["augment_fast_images_per_second"]
        / saved["augment_imagedatagenerator_flow_images_per_second"])
    flow = saved["augment_imagedatagenerator_flow_images_per_second"]
    for name in ("colour", "hed"):  # the colour ops' rates, as ratios to the same flow
        assert saved[f"augment_{name}_speedup"] == pytest.approx(
            saved[f"augment_{name}_images_per_second"] / flow)
    assert saved["augment_colour_settings"] == {"brightness": 0.1, "contrast": 0.2,
                                                "saturation": 0.2, "hue": 0.05, "crop": 0.875,
                                                "stain_jitter": 0.2}
    assert saved["target_augment_colour_speedup"] == 5.0
    assert saved["met_augment_colour_speedup"] == (saved["augment_colour_speedup"] >= 5)
    assert saved["speed_blocks_1-5_vs_whole_network"] == 1.0
    assert saved["tta_images"] == 10
    for views in (4, 8):  # the cost of test-time augmentation, as a ratio to plain
        assert saved[f"tta{views}_cost_ratio"] == pytest.approx(
            saved["tta_plain_images_per_second"] / saved[f"tta{views}_images_per_second"],
            rel=1e-2)
        assert f"| `--tta {views}` |" in (tmp_path / "out" / "bench.md").read_text()
    assert saved["pack_files"] == 2 * (40 + 10)
    assert saved["peak_rss_limit_bytes"] == 1.5 * saved["packed_bytes"] + 2 * 2**30
    assert saved["table2_hours_at_50_epochs_per_run"] > saved["table2_hours_at_11_epochs_per_run"]
    assert saved["met_augment_speedup"] == (saved["augment_speedup"] >= 5)
    text = (tmp_path / "out" / "bench.md").read_text()
    assert f"{saved['augment_speedup']:.1f}×" in text and saved["device"] in text
    assert f"**{saved['augment_colour_speedup']:.1f}×**" in text and "stain_jitter 0.2" in text
    assert "does not report epoch counts" in text


def test_replicated_set_reads_as_the_same_data(tiny_pcam, tmp_path):
    from kandel_repro.readers import pcam_layout

    root = replicate_pcam(tiny_pcam, tmp_path / "x3", 3)
    index = pcam_layout.read_index(root)
    original = pcam_layout.read_index(tiny_pcam)
    assert len(index.train_ids) == 3 * len(original.train_ids)
    assert list(index.train_labels[:len(original.train_ids)]) == list(original.train_labels)
    assert (root / "SYNTHETIC.json").exists()
    assert replicate_pcam(tiny_pcam, tmp_path / "x3", 3) == root  # reused, not rebuilt


UNGUARDED = """
from kandel_repro.readers.registry import get_reader
from kandel_repro.core.errors import DataError
try:
    get_reader("pcam").pack({root!r}, {cache!r}, workers=2, progress=False)
except DataError as exc:
    print("CAUGHT", exc)
"""


def test_packing_from_an_unguarded_script_says_what_to_do(tiny_pcam, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(UNGUARDED.format(root=str(tiny_pcam), cache=str(tmp_path / "cache")))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert "CAUGHT" in run.stdout and '__name__ == "__main__"' in run.stdout
    assert "--workers 1" in run.stdout
    assert not (tmp_path / "cache").exists()

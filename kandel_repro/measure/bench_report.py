"""``bench.md``: the figures of :func:`kandel_repro.measure.bench.run_bench` as Markdown,
with the targets they are held to."""
from __future__ import annotations

from collections.abc import Callable

from ..core.protocol import PCAM
from .augment_bench import TARGETS as AUGMENT_TARGETS
from .augment_bench import render_augment
from .generative_bench import render_generative

# PCam's Kaggle split sizes (paper §4.1), for the projection.
PCAM_TRAIN, PCAM_VAL, PCAM_TEST = 176_020, 44_005, 57_458
TARGETS = {**AUGMENT_TARGETS, "pipeline_vs_preaugmented": 0.9, "peak_rss_vs_limit": 1.0,
           "own_pack_peak_rss_ratio": 1.2}


def render_own(f: dict, ok: Callable[[str], str]) -> list[str]:
    """The own-data packing section of ``bench.md`` (``ok``: a target's verdict)."""
    n, size, mib = f["own_pack_images"], f["own_pack_image_size"], 2**20
    lines = [
        "", "## Packing your own data (`--dataset folder`)", "",
        f"{n:,} synthetic {size}×{size} images (3 classes, hard links to {f['own_pack_distinct_images']}"
        f" distinct ones) decoded and resized to {size} by {f['own_pack_workers']} decoding "
        f"worker(s), as `data pack`. Memory: the peak resident memory (VmHWM) of a process packing "
        f"N = {n:,} or 4N JPEG images (with workers, the one streaming their chunks into the "
        "memory-mapped cache: the workers are other processes).", "",
        "| figure | value | target |", "|---|---|---|",
        f"| JPEG packing, files/s | {f['own_pack_jpeg_files_per_second']:,.0f} | |",
        f"| PNG packing, files/s | {f['own_pack_png_files_per_second']:,.0f} | |",
        f"| packed cache at N / 4N | {f['own_pack_cache_bytes_at_n'] / mib:,.1f} / "
        f"{f['own_pack_cache_bytes_at_4n'] / mib:,.1f} MiB | |"]
    for w in sorted({1, f["own_pack_workers"]}):
        n_mib, n4_mib = (f[f"own_pack_peak_rss_bytes_at_{k}_workers_{w}"] / mib for k in ("n", "4n"))
        lines.append(f"| peak RSS at N / 4N, {w} worker(s) | {n_mib:,.0f} / {n4_mib:,.0f} MiB "
                     f"(ratio {f[f'own_pack_peak_rss_ratio_workers_{w}']:.2f}) | |")
    return lines + [f"| **peak RSS ratio 4N / N** (the worse) | **{f['own_pack_peak_rss_ratio']:.2f}**"
                    f" | ≤ {TARGETS['own_pack_peak_rss_ratio']} ({ok('own_pack_peak_rss_ratio')}) |"]


def render(f: dict, depth_rates: dict[str, float]) -> str:
    def ok(key):
        return "met" if f[f"met_{key}"] else "**NOT met**"

    whole = depth_rates["1–5"]
    lines = [
        "# Benchmark: the input pipeline's cost",
        "",
        f"- Measured on: {f['device']}; {f['image_size']}×{f['image_size']} images "
        f"(synthetic PCam in the Kaggle layout), batch {f['batch_size']}, precision "
        f"{f['precision']}, XLA for the step: {f['jit']}",
        "- Made by: `make bench` (`kandel-repro bench`); every figure from one run, side by side",
        f"- Data: {f['distinct_images']:,} distinct synthetic training images in the Kaggle "
        f"layout, each hard-linked {f['copies']} times, so that packing and memory see "
        f"{f['packed_bytes'] / 2**30:.2f} GiB",
        "- Timings leave out the first steps of each measurement (tracing, compilation, "
        "warm-up). The augmentation rates, and the two training speeds compared, are measured "
        f"in alternating rounds ({f['rounds']}, median) so that they see the same machine state; the speed "
        "by depth is the median step (`kandel_repro.measure.cost.depth_costs`, as `make cost`).",
        "", "| figure | value | target |", "|---|---|---|",
        *render_augment(f, ok),
        f"| training images/s, VGG16 top block only, full pipeline | {f['train_pipeline_images_per_second']:,.1f} | |",
        f"| training images/s, same model fed pre-augmented tensors in memory | {f['train_preaugmented_images_per_second']:,.1f} | |",
        f"| **ratio pipeline / pre-augmented** | **{f['pipeline_vs_preaugmented']:.3f}** | ≥ {TARGETS['pipeline_vs_preaugmented']} ({ok('pipeline_vs_preaugmented')}) |",
        f"| tif packing, files/s ({f['pack_files']:,} files) | {f['pack_files_per_second']:,.0f} | |",
        f"| peak resident memory of a training process | {f['peak_rss_bytes'] / 2**30:.2f} GiB | |",
        f"| packed data (train + test uint8) | {f['packed_bytes'] / 2**30:.3f} GiB | |",
        f"| **peak / (1.5 × packed + 2 GiB)** | **{f['peak_rss_vs_limit']:.2f}** | ≤ 1 ({ok('peak_rss_vs_limit')}) |",
        "", "## Training speed by depth (VGG16, full pipeline)", "",
        "The paper's claim that fine-tuning fewer blocks saves time, quantified: images/s",
        "while training, and the speed-up over fine-tuning the whole network.",
        "", "| fine-tuned blocks | training images/s | speed vs whole network |", "|---|---|---|",
    ]
    lines += [f"| {blocks} | {rate:,.1f} | {rate / whole:.2f}× |" for blocks, rate in depth_rates.items()]
    lines += [
        "", f"Prediction (validation and test, augmentation off): {f['predict_images_per_second']:,.1f} images/s.",
        "", "## Test-time augmentation's cost (VGG16, whole network)", "",
        f"{f['tta_images']} images predicted plain and averaged over the dihedral views "
        "(`--tta 4`, `--tta 8`), each TTA batch holding eval batch / views images so that the "
        "forward batch is the same (best of one timed pass after an untimed batch).",
        "", "| | images/s | cost vs plain |", "|---|---|---|",
        f"| plain | {f['tta_plain_images_per_second']:,.1f} | 1 |",
        f"| `--tta 4` | {f['tta4_images_per_second']:,.2f} | {f['tta4_cost_ratio']:.2f}× |",
        f"| `--tta 8` | {f['tta8_images_per_second']:,.2f} | {f['tta8_cost_ratio']:.2f}× |",
        "", "## Projection: Table 2 on the real PCam split, on this machine", "",
        f"From the throughputs above: 15 runs (5 depths × 3 learning rates), each epoch "
        f"training on {PCAM_TRAIN:,} images and predicting {PCAM_VAL:,} validation images, "
        f"and each run predicting the {PCAM_TEST:,} test images once. The paper does not "
        f"report epoch counts; with patience {PCAM.patience} a run takes at least "
        f"{PCAM.patience + 1} epochs, and at most {PCAM.max_epochs} (our cap).",
        "", "| | hours |", "|---|---|",
        f"| one epoch of all 15 runs | {f['table2_hours_per_epoch_of_all_15_runs']:,.1f} |",
        f"| Table 2 at {PCAM.patience + 1} epochs per run | {f['table2_hours_at_11_epochs_per_run']:,.1f} |",
        f"| Table 2 at {PCAM.max_epochs} epochs per run | {f['table2_hours_at_50_epochs_per_run']:,.1f} |",
        *render_own(f, ok),
        "", *render_generative(f),
        f"Measured on {f['device']}; this benchmark took {f['bench_wall_seconds']:.0f} s.", "",
    ]
    return "\n".join(lines)

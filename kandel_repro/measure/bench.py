"""``make bench``: the input pipeline's cost, measured side by side on one machine.

Every figure is measured in one process run on the machine at hand (a GPU when there is
one, otherwise the CPU) on synthetic PCam-sized data (96×96, written in the Kaggle
layout and packed by the same code as the real data), and written to
``tables/bench.md`` and ``tables/bench.json`` (one key per figure; ratios as plain
numbers; ``target_*`` and ``met_*`` keys for the issue's targets):

- augmented images/s: the fused transform (``--augmenter fast``) vs
  ``ImageDataGenerator.flow`` on the same uint8 images and parameters, and the fused
  transform with the colour, crop and HED stain ops on (:mod:`.augment_bench`);
- training images/s of VGG16 fine-tuning its top block only (the fastest step, where
  the input pipeline weighs most) with the full pipeline (uint8 in RAM → ``tf.data`` →
  cast, augment, preprocess on the device) vs the same model fed pre-augmented,
  preprocessed float32 tensors already in memory, in alternating rounds so that both
  see the same machine state;
- training images/s at every VGG16 depth, as a ratio to the whole network;
- tif packing files/s, and the peak resident memory of a training process against the
  packed data size;
- own-data packing (the folder reader) files/s of 224×224 JPEG and PNG, and the peak
  resident memory of a packing process at N and 4N images;
- a projection of Table 2's wall time from these throughputs;
- training images/s of a VAE and a DCGAN step against a classifier step of the same
  backbone (:mod:`.generative_bench`; alone: ``kandel-repro bench --only generative``).

Timings exclude the first steps of each measurement (tracing, compilation, warm-up).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError
from ..core.files import write_json, write_text
from ..core.protocol import LEARNING_RATES, PCAM
from ..data.layouts import HIDDEN_LABELS, MARKER
from ..readers.registry import get_reader
from ..readers.synthetic.folder import write_synthetic_folder
from ..readers.synthetic.pcam import write_synthetic_pcam
from ..runs.config import resolve_config, resolve_runtime
from ..runs.settings import RunSettings
from ..runs.train import build_run_models
from ..training.pipeline import in_memory_dataset, predict_uint8
from ..training.runtime import device_description
from ..training.tta import tta_cost
from . import BENCH_DEFAULTS as DEFAULTS
from .augment_bench import augment_figures
from .bench_report import PCAM_TEST, PCAM_TRAIN, PCAM_VAL, TARGETS, render
from .cost import depth_costs, step_timer
from .generative_bench import generative_figures

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when the benchmark runs
    import keras

    from ..data.packed import PackedData

OWN_CLASSES, OWN_FORMATS = 3, ("jpeg", "png")  # the own-data packing sets
# The end of each memory script, printing the peak resident memory. NOTE: VmHWM, not
# ru_maxrss: Linux keeps ru_maxrss across exec (a big parent's child reports its peak).
PEAK_RSS = """
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT", json.dumps({"peak_rss_bytes": peak}))
"""
# A fresh training process (argv: root, cache, steps[, batch]).
RSS_SCRIPT = """
import json, resource, sys
from kandel_repro.readers.registry import get_reader
from kandel_repro.runs.config import resolve_config, resolve_runtime
from kandel_repro.runs.train import build_run_models
from kandel_repro.training.pipeline import in_memory_dataset, predict_uint8
root, cache, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
batch = {"batch_size": int(sys.argv[4])} if len(sys.argv) > 4 else {}
data = get_reader("pcam").load(root, cache, progress=False)
config = resolve_runtime(resolve_config("vgg16", 1, 1e-4, weights="none", **batch))
models = build_run_models(config, data.image_shape)
train_idx, val_idx, _ = data.split(config)
ds = in_memory_dataset(data.x, data.y, train_idx, config.batch_size).repeat()
models.trainer.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
# A share of each prediction: memory is that of one batch, however many there are.
predict_uint8(models.predictor, data.x, config.eval_batch_size, indices=val_idx[:1024])
predict_uint8(models.predictor, data.test_x[:512], config.eval_batch_size)
""" + PEAK_RSS
# The folder reader packing one folder (argv: root, cache, workers, size), as `data pack`.
OWN_RSS_SCRIPT = """
import json, resource, sys
from kandel_repro.readers.registry import get_reader
get_reader("folder").pack(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), force=True,
                          image_size=int(sys.argv[4]), progress=False)
""" + PEAK_RSS


def _log(message):
    print(f"[bench] {message}", flush=True)


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def replicate_pcam(src: str | Path, dst: str | Path, copies: int) -> Path:
    """A Kaggle-layout set holding every image of ``src`` ``copies`` times (hard links).

    The ids get a ``-k`` suffix; the synthetic marker and hidden test labels follow.
    Rebuilt only when missing.
    """
    import pandas as pd

    src, dst = Path(src), Path(dst)
    done = dst / "REPLICATED.json"
    if done.exists() and json.loads(done.read_text()) == {"copies": copies, "source": str(src)}:
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    for split, csv in (("train", "train_labels.csv"), ("test", "sample_submission.csv")):
        (dst / split).mkdir(parents=True)
        table = pd.read_csv(src / csv, dtype={"id": str})
        rows = []
        for k in range(copies):
            for image_id, label in zip(table["id"], table["label"]):
                new = f"{image_id}-{k}"
                _link(src / split / f"{image_id}.tif", dst / split / f"{new}.tif")
                rows.append((new, label))
        pd.DataFrame(rows, columns=["id", "label"]).to_csv(dst / csv, index=False)
    hidden = pd.read_csv(src / HIDDEN_LABELS, dtype={"id": str})
    pd.concat([hidden.assign(id=hidden["id"] + f"-{k}") for k in range(copies)]).to_csv(
        dst / HIDDEN_LABELS, index=False)
    shutil.copyfile(src / MARKER, dst / MARKER)
    write_json(done, {"copies": copies, "source": str(src)})
    return dst


def replicate_folder(src: str | Path, dst: str | Path, per_class: int) -> Path:
    """A folder-layout set of ``per_class`` images per class: hard links to the images of
    each class folder of ``src`` in turn (``<n>-<name>``); the synthetic marker follows.
    Rebuilt only when missing."""
    src, dst = Path(src), Path(dst)
    done, params = dst / "REPLICATED.json", {"per_class": per_class, "source": str(src)}
    if done.exists() and json.loads(done.read_text()) == params:
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    for folder in sorted(entry for entry in src.iterdir() if entry.is_dir()):
        files = sorted(folder.iterdir())
        (dst / folder.name).mkdir(parents=True)
        for n in range(per_class):
            _link(files[n % len(files)], dst / folder.name / f"{n:06d}-{files[n % len(files)].name}")
    shutil.copyfile(src / MARKER, dst / MARKER)
    write_json(done, params)
    return dst


def _rate(count, seconds):
    return float(count) / max(seconds, 1e-9)


def _train_rate(trainer, dataset, warm, steps, batch_size):
    timer = step_timer(warm)
    trainer.fit(dataset, steps_per_epoch=warm + steps, epochs=1, verbose=0,
                callbacks=[timer], shuffle=False)
    return timer.images_per_second(batch_size)


def _config(first, batch_size=None):
    """The resolved settings of a VGG16 run at depth ``first``; the paper's batch unless
    given."""
    return resolve_runtime(resolve_config("vgg16", first, 1e-4, weights="none",
                                          batch_size=batch_size))


def pipeline_vs_preaugmented(data: PackedData, train_idx: np.ndarray, warm: int, steps: int,
                             rounds: int, batch_size: int | None = None
                             ) -> tuple[float, float, RunSettings]:
    """Median training images/s of block 5 with the full pipeline and pre-augmented, and
    the run's settings (Keras' XLA choice resolved)."""
    import keras
    import tensorflow as tf

    config = _config(5, batch_size)
    batch = config.batch_size
    model, trainer, _, _ = build_run_models(config, data.image_shape)
    config = config.updated(jit="on" if trainer.jit_compile else "off")
    pipeline = in_memory_dataset(data.x, data.y, train_idx, batch).repeat()
    # The baseline: the paper's model alone, fed tensors augmented and preprocessed
    # beforehand and held in memory — the input pipeline removed.
    stage = trainer.get_layer("input_stage")
    pool = data.x[train_idx[:batch * 8]]
    ready = stage(tf.constant(pool), training=True)
    labels = data.y[train_idx[:batch * 8]].astype(np.float32)
    preaugmented = (tf.data.Dataset.from_tensor_slices((ready, labels)).batch(batch)
                    .repeat().prefetch(tf.data.AUTOTUNE))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy",
                  metrics=["accuracy"], jit_compile=trainer.jit_compile)
    with_pipeline, without = [], []
    for _ in range(rounds):
        with_pipeline.append(_train_rate(trainer, pipeline, warm, steps, batch))
        without.append(_train_rate(model, preaugmented, warm, steps, batch))
    return float(np.median(with_pipeline)), float(np.median(without)), config


def depth_throughput(data: PackedData, train_idx: np.ndarray, warm: int, steps: int,
                     batch_size: int | None = None) -> tuple[dict[str, float], keras.Model]:
    """Training images/s of each VGG16 depth (top block only … whole network), timed by
    :func:`kandel_repro.measure.cost.depth_costs` (median step) on the packed images, and the
    whole network's predictor (prediction costs the same at every depth)."""
    config = _config(1, batch_size)
    frame = depth_costs("vgg16", data.image_shape[0], config["batch_size"], steps, warm,
                        images=data.x[train_idx], labels=data.y[train_idx])
    out = dict(zip(frame["blocks"], frame["images_per_second"]))
    for blocks, rate in out.items():
        _log(f"VGG16 blocks {blocks}: {rate:.1f} training images/s")
    return out, build_run_models(config, data.image_shape).predictor


def eval_throughput(predictor: keras.Model, x: np.ndarray, batch: int,
                    repeats: int = 3) -> float:
    n = min(len(x), batch * 2)
    predict_uint8(predictor, x[:n], batch)  # trace
    started = time.perf_counter()
    for _ in range(repeats):
        predict_uint8(predictor, x[:n], batch)
    return _rate(n * repeats, time.perf_counter() - started)


def peak_rss(root: str | Path, cache: str | Path, steps: int,
             batch_size: int | None = None) -> int:
    """Peak resident memory of a fresh process that loads the data, trains and predicts."""
    batch = [] if batch_size is None else [batch_size]
    return _peak(RSS_SCRIPT, root, cache, steps, *batch)


def _peak(script, *args):
    """The peak resident memory of a fresh process running ``script`` on ``args``."""
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"memory measurement failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.split("RESULT", 1)[1])["peak_rss_bytes"]


def own_packing(work_dir: str | Path, images: int = DEFAULTS["own_images"],
                size: int = DEFAULTS["own_size"], workers: int | None = None,
                distinct: int = DEFAULTS["own_distinct"]) -> dict:
    """The ``own_pack_*`` figures of the folder reader (``--dataset folder``): files/s
    packing ``images`` JPEG, then PNG, images of ``size``×``size`` (3 classes; hard links to
    ``distinct`` synthetic ones, written once per format) with ``workers`` decoding
    processes (default: the reader's), into ``work_dir/cache-<format>/folder-<size>``; and
    the peak resident memory of fresh processes packing the JPEG set at ``images`` (N) and
    4N, with one worker (the process decodes too: the worst case for its memory) and with
    ``workers`` > 1 (the one measured streams the workers' chunks into the memory-mapped
    cache). ``own_pack_peak_rss_ratio``: peak(4N) / peak(N), the worse of the two."""
    if min(images, distinct) < OWN_CLASSES:
        raise ConfigError(f"the own-data packing needs at least {OWN_CLASSES} images and "
                          f"{OWN_CLASSES} distinct ones (one per class), got {images}, {distinct}")
    work, per_class = Path(work_dir), images // OWN_CLASSES
    unique, count = min(distinct, images) // OWN_CLASSES, per_class * OWN_CLASSES
    workers = workers or min(8, os.cpu_count() or 1)  # (cache.build's default)
    figures = {"own_pack_images": count, "own_pack_distinct_images": unique * OWN_CLASSES,
               "own_pack_image_size": size, "own_pack_workers": workers}
    for fmt in OWN_FORMATS:
        base = write_synthetic_folder(work / f"synthetic-{fmt}-{size}px-{unique}", OWN_CLASSES,
                                      unique, min(12, unique), size, 0, fmt, progress=False)
        root = replicate_folder(base, work / f"{fmt}-{size}px-{count}", per_class)
        t0 = time.perf_counter()
        get_reader("folder").pack(root, work / f"cache-{fmt}", workers=workers, force=True,
                                  image_size=size, progress=False)
        figures[f"own_pack_{fmt}_files_per_second"] = _rate(count, time.perf_counter() - t0)
    sets = {"n": work / f"jpeg-{size}px-{count}", "4n": replicate_folder(
        work / f"synthetic-jpeg-{size}px-{unique}", work / f"jpeg-{size}px-{4 * count}", 4 * per_class)}
    ratios = {}
    for pool in sorted({1, workers}):
        for label, root in sets.items():  # (each packed into cache-memory, then removed)
            figures[f"own_pack_peak_rss_bytes_at_{label}_workers_{pool}"] = _peak(
                OWN_RSS_SCRIPT, root, work / "cache-memory", pool, size)
            x = work / "cache-memory" / f"folder-{size}" / "x.npy"
            figures[f"own_pack_cache_bytes_at_{label}"] = x.stat().st_size  # (the images only)
            shutil.rmtree(work / "cache-memory")
        at_n, at_4n = (figures[f"own_pack_peak_rss_bytes_at_{k}_workers_{pool}"] for k in sets)
        ratios[f"own_pack_peak_rss_ratio_workers_{pool}"] = at_4n / at_n
    return dict(figures, **ratios, own_pack_peak_rss_ratio=max(ratios.values()))


def projection(depth_rates: dict[str, float], eval_rate: float) -> dict[str, float]:
    """Hours for Table 2 on the real PCam split at the measured throughputs."""
    per_epoch = {blocks: PCAM_TRAIN / rate + PCAM_VAL / eval_rate for blocks, rate in depth_rates.items()}
    test = PCAM_TEST / eval_rate
    lrs = len(LEARNING_RATES)

    def hours(epochs):
        return lrs * sum(epochs * seconds + test for seconds in per_epoch.values()) / 3600

    return {
        "table2_hours_per_epoch_of_all_15_runs": lrs * sum(per_epoch.values()) / 3600,
        "table2_hours_at_11_epochs_per_run": hours(PCAM.patience + 1),
        "table2_hours_at_50_epochs_per_run": hours(PCAM.max_epochs),
    }


def run_bench(out_dir: str | Path = "tables", work_dir: str | Path = "data/bench",
              images: int = DEFAULTS["images"], copies: int = DEFAULTS["copies"],
              size: int = DEFAULTS["size"], warm: int = DEFAULTS["warm"],
              steps: int = DEFAULTS["steps"], rounds: int = DEFAULTS["rounds"],
              augment_seconds: float = DEFAULTS["augment_seconds"], rss_steps: int = 3,
              batch_size: int | None = None, own_images: int = DEFAULTS["own_images"],
              own_size: int = DEFAULTS["own_size"], own_distinct: int = DEFAULTS["own_distinct"],
              own_workers: int | None = None, tta_images: int = DEFAULTS["tta_images"],
              generative_steps: int = DEFAULTS["generative_steps"]) -> dict:
    """Measure every figure and write ``bench.md`` and ``bench.json`` into ``out_dir``;
    training batches of ``batch_size`` (default: the paper's, 64); the own-data packing
    figures of :func:`own_packing` (``own_*``: its arguments); test-time augmentation's
    cost on ``tta_images`` images (:func:`kandel_repro.training.tta.tta_cost`); the
    pretraining steps timed over ``generative_steps`` steps
    (:func:`~kandel_repro.measure.generative_bench.generative_figures`)."""
    import tensorflow as tf

    # NOTE: each depth builds a new model, whose step function TF would report as
    # "retracing"; expected here, so TF's Python warnings are silenced.
    tf.get_logger().setLevel("ERROR")
    started = time.time()
    work = Path(work_dir)
    device = device_description()
    _log(f"device: {device}")
    base = write_synthetic_pcam(work / f"base-{size}", images, max(images // 10, 10), seed=0,
                                size=size, progress=False)
    root = replicate_pcam(base, work / f"pcam-{size}x{copies}", copies)
    cache = work / f"cache-{size}x{copies}"
    files = len(list((root / "train").iterdir())) + len(list((root / "test").iterdir()))
    t0 = time.perf_counter()
    get_reader("pcam").pack(root, cache, progress=False, force=True)
    pack_rate = _rate(files, time.perf_counter() - t0)
    _log(f"packing: {files} tifs at {pack_rate:.0f} files/s")
    packed_bytes = sum(p.stat().st_size for p in cache.glob("*_x.npy"))
    own = own_packing(work / "own", own_images, own_size, own_workers, own_distinct)
    _log(f"own-data packing: JPEG {own['own_pack_jpeg_files_per_second']:.0f}, PNG {own['own_pack_png_files_per_second']:.0f}"
         f" files/s; peak RSS 4N/N {own['own_pack_peak_rss_ratio']:.2f}")
    data = get_reader("pcam").load(root, cache, progress=False)
    train_idx, _, _ = data.split(_config(5))

    augment = augment_figures(data.x[train_idx[:2048]], augment_seconds, rounds)
    _log(f"augmentation: fast {augment['augment_fast_images_per_second']:.0f}, with colour "
         f"{augment['augment_colour_images_per_second']:.0f}, with HED alone "
         f"{augment['augment_hed_images_per_second']:.0f}, ImageDataGenerator.flow "
         f"{augment['augment_imagedatagenerator_flow_images_per_second']:.0f} images/s")
    with_pipeline, preaugmented, config = pipeline_vs_preaugmented(data, train_idx, warm, steps,
                                                                   rounds, batch_size)
    _log(f"training block 5: pipeline {with_pipeline:.1f}, pre-augmented {preaugmented:.1f} images/s")
    depth_rates, predictor = depth_throughput(data, train_idx, warm, steps, batch_size)
    eval_rate = eval_throughput(predictor, data.x, config["eval_batch_size"])
    _log(f"prediction: {eval_rate:.1f} images/s")
    tta_x = np.asarray(data.x[:tta_images])
    tta = tta_cost(predictor, tta_x, config["eval_batch_size"], rounds=1)
    _log(f"test-time augmentation: 4 views cost {tta['tta4_cost_ratio']:.2f}×, 8 views "
         f"{tta['tta8_cost_ratio']:.2f}× plain prediction")
    del data
    generative = generative_figures(batch=config["batch_size"], steps=generative_steps,
                                    rounds=rounds)
    _log(f"pretraining steps: VAE {generative['vae_step_vs_classifier']:.2f}×, DCGAN "
         f"{generative['dcgan_step_vs_classifier']:.2f}× the classifier's images/s")
    rss = peak_rss(root, cache, rss_steps, batch_size)
    rss_limit = 1.5 * packed_bytes + 2 * 2**30
    _log(f"peak RSS {rss / 2**30:.2f} GiB; packed data {packed_bytes / 2**30:.3f} GiB")

    whole = depth_rates["1–5"]
    figures = {
        "device": device,
        "image_size": size,
        "batch_size": config["batch_size"],
        "precision": config["precision"],
        "jit": config["jit"],
        "train_images_measured": len(train_idx),
        **{key: value for key, value in augment.items() if not key.startswith("met_")},
        "train_pipeline_images_per_second": with_pipeline,
        "train_preaugmented_images_per_second": preaugmented,
        "pipeline_vs_preaugmented": with_pipeline / preaugmented,
        **{f"train_images_per_second_blocks_{k.replace('–', '-')}": v for k, v in depth_rates.items()},
        **{f"speed_blocks_{k.replace('–', '-')}_vs_whole_network": v / whole
           for k, v in depth_rates.items()},
        "predict_images_per_second": eval_rate,
        "tta_images": len(tta_x),
        **{f"tta_{key}" if key.startswith("plain") else key: value for key, value in tta.items()},
        "pack_files": files,
        "pack_files_per_second": pack_rate,
        "packed_bytes": packed_bytes,
        "peak_rss_bytes": rss,
        "peak_rss_limit_bytes": rss_limit,
        "peak_rss_vs_limit": rss / rss_limit,
        **own,
        **generative,
        **projection(depth_rates, eval_rate),
        "distinct_images": images, "copies": copies, "rounds": rounds,
        "bench_wall_seconds": time.time() - started,
    }
    figures.update({f"target_{k}": v for k, v in TARGETS.items()})
    figures.update({key: value for key, value in augment.items() if key.startswith("met_")})
    figures["met_pipeline_vs_preaugmented"] = (figures["pipeline_vs_preaugmented"]
                                              >= TARGETS["pipeline_vs_preaugmented"])
    figures["met_peak_rss_vs_limit"] = figures["peak_rss_vs_limit"] <= TARGETS["peak_rss_vs_limit"]
    figures["met_own_pack_peak_rss_ratio"] = (figures["own_pack_peak_rss_ratio"]
                                             <= TARGETS["own_pack_peak_rss_ratio"])
    out = Path(out_dir)
    write_json(out / "bench.json", figures)
    write_text(out / "bench.md", render(figures, depth_rates))
    _log(f"wrote {out / 'bench.md'} and {out / 'bench.json'} in {figures['bench_wall_seconds']:.0f} s")
    return figures

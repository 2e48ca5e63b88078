"""``make bench``'s pretraining figures: training images per second of a VAE step and a
DCGAN step against a classifier step of the same backbone (``dcgan_small`` with the
paper's head), measured side by side in one process on the same in-memory images.

Each model is fed the same float images already in [-1, 1] (the trunk's preprocessing)
from memory, so that the figures compare the steps and not an input pipeline; the three
are timed in alternating rounds (median of the rounds), after untimed warm-up steps.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.files import write_json, write_text

from . import BENCH_DEFAULTS

DEFAULTS = {"size": 32, "batch": 64, "warm": 3, "steps": BENCH_DEFAULTS["generative_steps"],
            "rounds": 3}


def _timer(warm):
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.stamps = []

        def on_train_batch_end(self, batch, logs=None):
            float(next(iter(logs.values())))  # wait for the step to finish
            self.stamps.append(time.perf_counter())

        def images_per_second(self, batch_size):
            seconds = np.diff(self.stamps[warm - 1:])
            return len(seconds) * batch_size / max(float(seconds.sum()), 1e-9)

    return StepTimer()


def _rate(model, dataset, warm, steps, batch):
    timer = _timer(warm)
    model.fit(dataset, steps_per_epoch=warm + steps, epochs=1, verbose=0, callbacks=[timer],
              shuffle=False)
    return timer.images_per_second(batch)


def generative_figures(size: int = DEFAULTS["size"], batch: int = DEFAULTS["batch"],
                       warm: int = DEFAULTS["warm"], steps: int = DEFAULTS["steps"],
                       rounds: int = DEFAULTS["rounds"], seed: int = 0) -> dict:
    """``{key: value}``: images/s of the three steps at ``size``×``size``, batch ``batch``,
    and the VAE's and the DCGAN's as ratios to the classifier's."""
    import keras
    import tensorflow as tf

    from ..models.build import build_model
    from ..models.generative import TRUNK
    from ..models.generative_nets import build_dcgan, build_vae

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch * 4, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 2, batch * 4).astype(np.float32)
    images = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True).repeat()
    labelled = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()
    vae = build_vae(size, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    gan = build_dcgan(size, seed=seed)
    gan.compile()
    classifier, _ = build_model(TRUNK, (size, size, 3), "none")
    classifier.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    rates = {"vae": [], "dcgan": [], "classifier": []}
    for _ in range(rounds):
        rates["classifier"].append(_rate(classifier, labelled, warm, steps, batch))
        rates["vae"].append(_rate(vae, images, warm, steps, batch))
        rates["dcgan"].append(_rate(gan, images, warm, steps, batch))
    median = {key: float(np.median(values)) for key, values in rates.items()}
    return {"generative_image_size": size, "generative_batch_size": batch,
            "generative_rounds": rounds,
            **{f"{key}_step_images_per_second": value for key, value in median.items()},
            "vae_step_vs_classifier": median["vae"] / median["classifier"],
            "dcgan_step_vs_classifier": median["dcgan"] / median["classifier"]}


def render_generative(f: dict) -> list[str]:
    """The markdown lines of the pretraining figures."""
    size, batch = f["generative_image_size"], f["generative_batch_size"]
    return [
        f"## Pretraining steps (dcgan_small, {size}×{size}, batch {batch}, median of "
        f"{f['generative_rounds']} alternating rounds)",
        "",
        "| step | training images/s | vs the classifier step |",
        "|---|---:|---:|",
        f"| classifier (dcgan_small + Dropout + Dense, whole network) | "
        f"{f['classifier_step_images_per_second']:.0f} | 1.00 |",
        f"| VAE (encoder = the trunk, decoder, ELBO) | {f['vae_step_images_per_second']:.0f} | "
        f"{f['vae_step_vs_classifier']:.2f} |",
        f"| DCGAN (discriminator = the trunk, generator; one D and one G update) | "
        f"{f['dcgan_step_images_per_second']:.0f} | {f['dcgan_step_vs_classifier']:.2f} |",
        "",
        "A DCGAN step runs the generator and updates both networks (two optimisers); a VAE "
        "step runs the encoder and the decoder and updates both.",
        ""]


def run_generative_bench(out_dir: str | Path = "tables", **options) -> dict:
    """``kandel-repro bench --only generative``: measure :func:`generative_figures` and
    write ``bench_generative.md`` and ``bench_generative.json`` into ``out_dir``."""
    from ..training.runtime import device_description

    started = time.time()
    figures = {"device": device_description(), **generative_figures(**options)}
    figures["bench_wall_seconds"] = time.time() - started
    out = Path(out_dir)
    write_json(out / "bench_generative.json", figures)
    write_text(out / "bench_generative.md", "\n".join(
        ["# Pretraining benchmark (`kandel-repro bench --only generative`)", "",
         f"Measured on {figures['device']} in {figures['bench_wall_seconds']:.0f} s.", "",
         *render_generative(figures)]))
    return figures

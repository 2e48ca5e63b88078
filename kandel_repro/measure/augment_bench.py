"""``make bench``'s augmentation figures: the fused transform against ``ImageDataGenerator``.

Augmented images/s on the same uint8 images, in one process: the fused in-graph
transform (``--augmenter fast``) with the paper's augmentation; the same with every
colour op, the crop and the HED stain jitter on (:data:`COLOUR`: a moderate value of
each), and with the stain jitter alone (:data:`HED`); and the legacy
``ImageDataGenerator.flow`` with the paper's augmentation, the baseline of every ratio
(it has no colour or stain ops: the ratios say what the extra ops cost against the
paper's own pipeline). Each rate leaves out the first batch (tracing, compilation) and
is the median of alternating rounds.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..core.protocol import PCAM
from ..training.augment import image_data_generator, make_input_stage

# The colour settings measured (kandel_repro.training.colour.COLOUR_KEYS; crop 1 and the
# others 0 are off): all of them together, and the HED stain jitter alone.
COLOUR = {"brightness": 0.1, "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "crop": 0.875,
          "stain_jitter": 0.2}
HED = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "crop": 1.0,
       "stain_jitter": 0.2}
# The ratios' targets (fused / flow); bench.json's target_* and met_* keys.
TARGETS = {"augment_speedup": 5.0, "augment_colour_speedup": 5.0}


def _rate(count, seconds):
    return float(count) / max(seconds, 1e-9)


def _timed(run_batch: Callable[[], int], seconds: float) -> float:
    """Images/s of ``run_batch`` (which returns the images it made) over ``seconds``."""
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        count += run_batch()
    return _rate(count, time.perf_counter() - started)


def stage_timer(x: np.ndarray, colour: dict | None = None) -> Callable[[float], float]:
    """A function of ``seconds`` → images/s of the fused transform (the paper's
    augmentation, and ``colour``) on the uint8 images ``x``, batch by batch (the paper's
    batch size); traced and compiled here."""
    import tensorflow as tf

    batch = PCAM.batch_size
    stage = make_input_stage(PCAM.augmentation.to_kwargs(), lambda t: t, seed=0, colour=colour)
    step = tf.function(lambda b: tf.reduce_mean(stage(b, training=True)))
    batches = [tf.constant(x[i:i + batch]) for i in range(0, len(x) - batch + 1, batch)]
    float(step(batches[0]))  # trace and compile
    position = iter(())

    def run_batch():
        nonlocal position
        b = next(position, None)
        if b is None:
            position = iter(batches)
            b = next(position)
        float(step(b))  # the value forces the computation to finish
        return len(b)

    return lambda seconds: _timed(run_batch, seconds)


def flow_timer(x: np.ndarray) -> Callable[[float], float]:
    """A function of ``seconds`` → images/s of ``ImageDataGenerator.flow`` with the
    paper's augmentation on ``x``."""
    flow = image_data_generator(PCAM.augmentation.to_kwargs()).flow(
        x, batch_size=PCAM.batch_size, shuffle=False, seed=0)
    next(flow)  # (its first batch, as the fused transform's, is left out)
    return lambda seconds: _timed(lambda: len(next(flow)), seconds)


def augment_figures(x: np.ndarray, seconds: float, rounds: int = 3) -> dict:
    """The ``augment_*`` figures of ``bench.json``, with the ``met_*`` verdicts of
    :data:`TARGETS`: each rate the median of ``rounds`` alternating rounds of
    ``seconds / rounds`` (so that all see the same machine state)."""
    timers = {"fast": stage_timer(x), "colour": stage_timer(x, COLOUR),
              "hed": stage_timer(x, HED), "flow": flow_timer(x)}
    rates = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            rates[name].append(timer(seconds / rounds))
    fast, coloured, hed, flow = (float(np.median(rates[name])) for name in timers)
    figures = {
        "augment_fast_images_per_second": fast,
        "augment_imagedatagenerator_flow_images_per_second": flow,
        "augment_speedup": fast / flow,
        "augment_colour_images_per_second": coloured,
        "augment_colour_speedup": coloured / flow,
        "augment_hed_images_per_second": hed,
        "augment_hed_speedup": hed / flow,
        "augment_colour_settings": dict(COLOUR),
    }
    figures.update({f"met_{key}": figures[key] >= target for key, target in TARGETS.items()})
    return figures


def render_augment(f: dict, ok: Callable[[str], str]) -> list[str]:
    """The augmentation rows of ``bench.md``'s table (``ok``: a target's verdict)."""
    settings = ", ".join(f"{key} {value:g}" for key, value in f["augment_colour_settings"].items())

    def target(key):
        return f"≥ {TARGETS[key]:.0f}× ({ok(key)})"

    return [
        "| augmented images/s, fused in-graph (`--augmenter fast`) | "
        f"{f['augment_fast_images_per_second']:,.0f} | |",
        "| augmented images/s, `ImageDataGenerator.flow` | "
        f"{f['augment_imagedatagenerator_flow_images_per_second']:,.0f} | |",
        f"| **ratio fast / flow** | **{f['augment_speedup']:.1f}×** | "
        f"{target('augment_speedup')} |",
        f"| augmented images/s, fused, with colour, crop and HED jitter ({settings}) | "
        f"{f['augment_colour_images_per_second']:,.0f} | |",
        f"| **ratio fused with colour / flow** | **{f['augment_colour_speedup']:.1f}×** | "
        f"{target('augment_colour_speedup')} |",
        f"| augmented images/s, fused, with HED jitter alone (σ {HED['stain_jitter']:g}); "
        f"ratio to flow | {f['augment_hed_images_per_second']:,.0f} "
        f"({f['augment_hed_speedup']:.1f}×) | |",
    ]

"""Where and how a run computes: device, precision, XLA, distribution.

These settings change speed, not the experiment; each run records what it resolved to
in its ``config.json`` (``device``, ``precision``, ``jit``, ``replicas``, ...).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..core.errors import ConfigError

if TYPE_CHECKING:  # NOTE: annotations only; TensorFlow loads when a run starts
    import tensorflow as tf


def gpus() -> list[tf.config.PhysicalDevice]:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def device_description() -> str:
    """``"GPU: NVIDIA H100 80GB HBM3"`` or ``"CPU (N cores)"``."""
    import os

    import tensorflow as tf

    found = gpus()
    if not found:
        return f"CPU ({os.cpu_count()} cores)"
    names = []
    for gpu in found:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # noqa: BLE001 - a name is cosmetic
            names.append(gpu.name)
    return "GPU: " + ", ".join(names)


def resolve_precision(precision: str) -> str:
    """``auto`` → ``mixed_float16`` on a GPU, ``float32`` on a CPU."""
    if precision == "auto":
        return "mixed_float16" if gpus() else "float32"
    if precision not in ("float32", "mixed_float16"):
        raise ConfigError(f"precision must be auto, float32 or mixed_float16, got {precision!r}")
    return precision


@contextlib.contextmanager
def precision_scope(policy: str) -> Iterator[None]:
    """Build models under Keras' global dtype ``policy``, restoring the old one after."""
    import keras

    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def make_strategy(distribute: str) -> tf.distribute.Strategy:
    """``none`` → the default strategy; ``mirrored`` → ``tf.distribute.MirroredStrategy``."""
    import tensorflow as tf

    if distribute == "none":
        return tf.distribute.get_strategy()
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ConfigError(f"distribute must be none or mirrored, got {distribute!r}")


def jit_setting(jit: str) -> bool | str:
    """``compile(jit_compile=…)`` value of ``--jit auto|on|off``."""
    return {"auto": "auto", "on": True, "off": False}[jit]


def default_eval_batch_size() -> int:
    # NOTE: on a CPU a prediction batch of 64 — the paper's training batch — is as fast
    # as larger ones (63.6 against 64.2 images/s for 128, VGG16 at 96×96, 2 cores) and
    # fits in the memory training already took: a batch of 128 raised a training
    # process's peak memory by 0.33 GiB (make bench's peak-memory figure).
    return 1024 if gpus() else 64


def reset_memory_peak() -> None:
    """Start measuring the first GPU's peak memory anew (nothing on a CPU)."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")


def memory_peak() -> int | None:
    """The first GPU's peak memory since :func:`reset_memory_peak`, in bytes; None on a
    CPU, where no per-run figure can be had (the process's peak holds the data set and
    every earlier run of a grid)."""
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


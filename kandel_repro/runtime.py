"""Where and how a run computes: device, precision, XLA, distribution.

These settings change speed, not the experiment; each run records what it resolved to
in its ``config.json`` (``device``, ``precision``, ``jit``, ``replicas``, ...).
"""
from __future__ import annotations

import contextlib

from .errors import ConfigError


def gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def device_description():
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


def resolve_precision(precision):
    """``auto`` → ``mixed_float16`` on a GPU, ``float32`` on a CPU."""
    if precision == "auto":
        return "mixed_float16" if gpus() else "float32"
    if precision not in ("float32", "mixed_float16"):
        raise ConfigError(f"precision must be auto, float32 or mixed_float16, got {precision!r}")
    return precision


@contextlib.contextmanager
def precision_scope(policy):
    """Build models under Keras' global dtype ``policy``, restoring the old one after."""
    import keras

    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def make_strategy(distribute):
    """``none`` → the default strategy; ``mirrored`` → ``tf.distribute.MirroredStrategy``."""
    import tensorflow as tf

    if distribute == "none":
        return tf.distribute.get_strategy()
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ConfigError(f"distribute must be none or mirrored, got {distribute!r}")


def jit_setting(jit):
    """``compile(jit_compile=…)`` value of ``--jit auto|on|off``."""
    return {"auto": "auto", "on": True, "off": False}[jit]


def default_eval_batch_size():
    # NOTE: on a CPU a prediction batch of 64 — the paper's training batch — is as fast
    # as larger ones (63.6 against 64.2 images/s for 128, VGG16 at 96×96, 2 cores) and
    # fits in the memory training already took: a batch of 128 raised a training
    # process's peak memory by 0.33 GiB (make bench's peak-memory figure).
    return 1024 if gpus() else 64


# What TensorFlow's native code prints on every start on a machine without CUDA (or with
# it), before any Python runs: no information for a user, and it buries a one-line error.
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "cudart_stub.cc",  # "Could not find cuda drivers on your machine, GPU will not be used."
    "failed call to cuInit",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "TF-TRT Warning: Could not find TensorRT",
)


@contextlib.contextmanager
def quiet_native_startup():
    """Leave out :data:`NATIVE_NOISE` from what native code writes to the standard error.

    Native code writes to file descriptor 2, Python to ``sys.stderr``: for the body,
    ``sys.stderr`` writes to a copy of the original descriptor (progress bars unchanged),
    while descriptor 2 becomes a pipe whose lines a thread copies to the original,
    leaving out the noise. Everything else native code writes still arrives.
    """
    import os
    import sys
    import threading

    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 to redirect
        yield
        return
    read_end, write_end = os.pipe()

    def copy():
        pending = b""
        while True:
            chunk = os.read(read_end, 65536)
            pending += chunk
            lines = pending.split(b"\n")
            pending = b"" if not chunk else lines.pop()
            kept = [line for line in lines if line and not any(
                noise.encode() in line for noise in NATIVE_NOISE)]
            if kept:
                os.write(original, b"\n".join(kept) + b"\n")
            if not chunk:
                return

    thread = threading.Thread(target=copy, name="native-stderr", daemon=True)
    thread.start()
    python_stderr = sys.stderr
    sys.stderr = open(os.dup(original), "w", buffering=1, encoding=python_stderr.encoding,
                      errors="backslashreplace")
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer here; child processes may hold it
        thread.join(timeout=1)
        sys.stderr.close()
        sys.stderr = python_stderr
        os.close(original)

"""What the ``kandel-repro`` console shows: TensorFlow's native start-up noise left out."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
def quiet_native_startup() -> Iterator[None]:
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

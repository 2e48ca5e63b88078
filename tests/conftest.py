import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

TINY = 32  # image side for tests (VGG's minimum input size)


@pytest.fixture(scope="session")
def tiny_pcam(tmp_path_factory):
    """A small synthetic set in the Kaggle layout (read-only for tests: copy to modify)."""
    from kandel_repro.data.synthetic import write_synthetic_pcam

    return write_synthetic_pcam(tmp_path_factory.mktemp("pcam") / "tiny", n_train=60,
                                n_test=20, seed=3, size=TINY, progress=False)


@pytest.fixture
def pcam_copy(tiny_pcam, tmp_path):
    """A private, modifiable copy of the tiny set."""
    import shutil

    dst = tmp_path / "pcam"
    shutil.copytree(tiny_pcam, dst, ignore=shutil.ignore_patterns(".kandel_cache"))
    return dst

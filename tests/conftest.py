import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("KANDEL_TORCH_TESTS"):
    # NOTE: PyTorch loaded after TensorFlow crashes the process; the reference tests
    # (make test-torch, make test-timm) load it first, before any test loads TensorFlow
    import torch  # noqa: F401

TINY = 32  # image side for tests (VGG's minimum input size)

# The test files that take longest (over half a minute of a 2-core machine each), started
# first: `make test` runs the files on two processes (pytest-xdist, --dist loadfile),
# which take the files in collection order (see pytest_configure), so the long ones do not
# end the run alone.
LONGEST_FIRST = ("notebooks/test_notebooks.py", "grid/test_cluster.py", "runs/test_resume.py",
                 "models/test_vit.py", "measure/test_bench.py",
                 "kaggle/test_kernel.py", "data/test_breakhis.py", "training/test_augment.py",
                 "models/test_families.py", "runs/test_own_data.py", "models/test_inception_v4.py",
                 "kaggle/test_kaggle_submit.py", "models/test_model.py", "training/test_colour.py",
                 "runs/test_tta_runs.py", "report/test_filters.py", "report/test_augmentation_table.py",
                 "runs/test_pretrain_kill.py", "cli/test_pretrain_cli.py", "runs/test_pretrain.py")


def pytest_configure(config):
    # NOTE: pytest-xdist hands out the files of --dist loadfile by their number of tests,
    # most first, unless told not to (--no-loadscope-reorder): a long file of few tests
    # (the bench's, the notebooks') would start last and end the run alone.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.path.as_posix()
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture(scope="session")
def tiny_pcam(tmp_path_factory):
    """A small synthetic set in the Kaggle layout (read-only for tests: copy to modify)."""
    from kandel_repro.readers.synthetic.pcam import write_synthetic_pcam

    return write_synthetic_pcam(tmp_path_factory.mktemp("pcam") / "tiny", n_train=60,
                                n_test=20, seed=3, size=TINY, progress=False)


@pytest.fixture
def pcam_copy(tiny_pcam, tmp_path):
    """A private, modifiable copy of the tiny set."""
    import shutil

    dst = tmp_path / "pcam"
    shutil.copytree(tiny_pcam, dst, ignore=shutil.ignore_patterns(".kandel_cache"))
    return dst


@pytest.fixture(scope="session")
def tiny_breakhis(tmp_path_factory):
    """A small synthetic BreakHis (2 patients per subtype, 2 images per magnification:
    128 PNGs; read-only for tests: pass a cache folder of the test's own when packing).
    tests/golden/legacy_runs/table6 was made from this set."""
    from kandel_repro.readers.synthetic.breakhis import write_synthetic_breakhis

    return write_synthetic_breakhis(tmp_path_factory.mktemp("bh") / "bh", patients_per_subtype=2,
                                    images_per_magnification=2, seed=2, progress=False)


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """Keras' downloads fail at once, as offline, and its models folder is an empty one of
    the test's own; the names of the files asked for."""
    from keras.src.utils import file_utils

    asked = []

    def fail(fname, *args, **kwargs):
        asked.append(fname)
        raise Exception(f"URL fetch failure on https://storage.googleapis.com/{fname}")

    monkeypatch.setattr(file_utils, "get_file", fail)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return asked


KAGGLE_USER, KAGGLE_KEY = "tester", "not-a-real-key"


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """Client settings that reach only the stand-in; no real credentials read or written."""
    from fake_kaggle import FakeKaggle

    from kandel_repro.kaggle.api import COMPETITION

    def start(archive=None, username=KAGGLE_USER, key=KAGGLE_KEY, **server_settings):
        server = FakeKaggle(KAGGLE_USER, KAGGLE_KEY, COMPETITION, archive, **server_settings)
        monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.setenv("no_proxy", "")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        (tmp_path / "home").mkdir(exist_ok=True)
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
        monkeypatch.setenv("KAGGLE_USERNAME", username)
        monkeypatch.setenv("KAGGLE_KEY", key)
        monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
        # the stand-in scores synthetic runs; the real Kaggle cannot (explicit opt-in)
        monkeypatch.setenv("KANDEL_REPRO_SUBMIT_SYNTHETIC", "1")
        return server
    return start

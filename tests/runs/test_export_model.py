"""``kandel-repro export``: a finished run's model on uint8 images, its preprocessing inside
as Keras' own layers, gives the run's own test scores when loaded by Keras alone (no
kandel_repro imported) or as a SavedModel; every backbone's preprocessing is the affine map
of the channels it is exported as; a run folder holding only what runs have always written
exports and predicts. A tiny run: cbr_tiny, 32×32, one epoch, random weights."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError
from kandel_repro.data.images import decode_image
from kandel_repro.readers.synthetic.folder import write_synthetic_folder
from kandel_repro.runs import rundir, single
from kandel_repro.runs.export import export_model, preprocessing_map
from kandel_repro.runs.predict import predict

QUICK = dict(weights="none", max_epochs=1, image_size=32, batch_size=16, verbose=0, workers=1)

# Keras alone, in a fresh interpreter: load the exported model and score the images.
LOAD_ALONE = """
import sys
import keras
import numpy as np
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]), verbose=0)))
print(sorted(name.split(".")[0] for name in sys.modules if name.startswith("kandel")))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = write_synthetic_folder(root / "tiles", classes=2, images=20, patients=10, size=40,
                                  seed=4, progress=False)
    single.train_single(root / "run", data, "cbr_tiny", 1, 1e-3, dataset="folder", **QUICK)
    ids, _, scores = rundir.read_predictions(root / "run" / rundir.TEST_PREDICTIONS)
    images = np.stack([decode_image(data / str(i), 32) for i in ids])
    return root / "run", data, images, scores


def test_the_exported_model_loads_in_keras_alone_and_gives_the_runs_scores(run, tmp_path):
    run_dir, _, images, scores = run
    out = tmp_path / "model.keras"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run([sys.executable, "-c", LOAD_ALONE, str(out),
                           str(tmp_path / "images.npy"), str(tmp_path / "scores.npy")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"  # no kandel_repro module imported
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy").reshape(-1), scores, atol=1e-6)


def test_the_savedmodel_serves_the_runs_scores(run, tmp_path):
    import tensorflow as tf

    run_dir, _, images, scores = run
    out = tmp_path / "served"
    out.mkdir()
    (out / "stale.txt").write_text("an earlier export")
    try:
        export_model(run_dir, out, "savedmodel")
    except ConfigError as exc:
        pytest.skip(str(exc))
    assert not (out / "stale.txt").exists()  # replaced as a whole
    served = tf.saved_model.load(str(out))
    np.testing.assert_allclose(np.asarray(served.serve(tf.constant(images))).reshape(-1), scores,
                               atol=1e-6)


def test_an_out_of_the_wrong_kind_is_refused_before_anything_is_written(run, tmp_path):
    run_dir = run[0]
    with pytest.raises(ConfigError, match="ends in .keras"):
        export_model(run_dir, tmp_path / "model.h5")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file; a SavedModel is a folder"):
        export_model(run_dir, tmp_path / "file", "savedmodel")
    with pytest.raises(ConfigError, match="--format must be one of keras, savedmodel"):
        export_model(run_dir, tmp_path / "m.keras", "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50_v2", "densenet121", "efficientnet_b0",
                                      "cbr_tiny", "dcgan_small", "inception_v4"])
def test_each_preprocessing_is_the_affine_map_it_is_exported_as(backbone):
    import keras

    from kandel_repro.models.backbones import get_backbone

    kernel, bias = preprocessing_map(backbone)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 5, 3)).astype(np.float32)
    expected = np.asarray(get_backbone(backbone).preprocess_input()(
        keras.ops.convert_to_tensor(pixels)))
    np.testing.assert_allclose(pixels @ kernel + bias, expected, rtol=1e-6,
                               atol=1e-6 * np.abs(expected).max())
    if backbone == "vgg16":  # Caffe's: RGB to BGR, the ImageNet mean taken away
        np.testing.assert_array_equal(kernel, np.eye(3, dtype=np.float32)[::-1])
        np.testing.assert_allclose(bias, [-103.939, -116.779, -123.68], rtol=1e-6)


def test_a_run_folder_of_the_files_runs_have_always_written_predicts_and_exports(run, tmp_path):
    run_dir, data, images, scores = run
    old = tmp_path / "old-run"
    old.mkdir()
    for name in (rundir.CONFIG, rundir.METRICS, rundir.BEST_MODEL, rundir.TEST_PREDICTIONS):
        shutil.copy(run_dir / name, old / name)
    frame = predict(old, data, progress=False)
    ids, _, _ = rundir.read_predictions(old / rundir.TEST_PREDICTIONS)
    np.testing.assert_allclose(frame.set_index("path").loc[[str(i) for i in ids], "score"],
                               scores, atol=1e-6)
    import keras

    exported = keras.models.load_model(export_model(old, tmp_path / "m.keras"))
    np.testing.assert_allclose(exported.predict(images, verbose=0).reshape(-1), scores,
                               atol=1e-6)

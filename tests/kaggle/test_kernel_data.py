"""Kaggle kernels of the depth study: on the competition's data or a user's own data set
(folder, csv); the driver's data location and command lines on a simulated /kaggle root."""
import ast
import importlib.util
import json
import subprocess

import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.kaggle.api import COMPETITION
from kandel_repro.kaggle.kernel import kernel_command, make_kernel

NONE = ["--weights", "none"]
VGG19 = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


def quiet(*args):
    pass


def settings_of(driver):
    tree = ast.parse(driver.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "SETTINGS")
    return ast.literal_eval(node.value)


def metadata_of(folders):
    return json.loads((folders["kernel"] / "kernel-metadata.json").read_text())


def depth_kernel(out, grid_args=NONE, **kwargs):
    kwargs = {"dataset": "folder", "data_source": "owner/my-tiles", "data_path": "tiles", **kwargs}
    return make_kernel("depth", out, "tester", wheel=False, log=quiet, grid_args=grid_args,
                       grid_settings={"weights": "none"} if grid_args == NONE else {}, **kwargs)


def test_a_depth_kernel_on_own_data_attaches_the_data_set_and_the_backbone_weights(
        tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / VGG19).write_bytes(b"weights")
    folders = depth_kernel(tmp_path / "k", grid_args=(), backbone="vgg19")
    meta = metadata_of(folders)
    assert meta["id"] == "tester/kandel-repro-depth-vgg19"
    assert meta["competition_sources"] == []
    assert meta["dataset_sources"] == ["tester/kandel-repro-wheel",
                                       "tester/kandel-repro-imagenet-weights", "owner/my-tiles"]
    assert (folders["weights"] / VGG19).read_bytes() == b"weights"
    settings = settings_of(folders["kernel"] / "driver.py")
    assert settings["weight_files"] == [VGG19]
    assert (settings["table"], settings["dataset"], settings["backbone"]) == ("depth", "folder", "vgg19")
    assert (settings["data_source"], settings["data_path"]) == ("owner/my-tiles", "tiles")


def test_depth_kernels_name_their_backbone_and_default_to_vgg16_on_the_competition(tmp_path):
    folders = make_kernel("depth", tmp_path / "k", "tester", shard="2/4", wheel=False, log=quiet,
                          grid_args=NONE, grid_settings={"weights": "none"})
    meta = metadata_of(folders)
    assert meta["id"] == "tester/kandel-repro-depth-vgg16-shard-2-of-4"
    assert meta["competition_sources"] == [COMPETITION]
    assert meta["dataset_sources"] == ["tester/kandel-repro-wheel"]
    settings = settings_of(folders["kernel"] / "driver.py")
    assert (settings["dataset"], settings["backbone"], settings["data_source"]) == ("pcam", "vgg16", "")
    inception = depth_kernel(tmp_path / "i", backbone="inception_v3", dataset="csv", data_path="")
    assert metadata_of(inception)["id"] == "tester/kandel-repro-depth-inception-v3"
    table2 = make_kernel("table2", tmp_path / "t", "tester", wheel=False, log=quiet,
                         grid_args=NONE, grid_settings={"weights": "none"})
    assert metadata_of(table2)["id"] == "tester/kandel-repro-table2"
    assert settings_of(table2["kernel"] / "driver.py")["backbone"] is None


def test_the_kernel_command_writes_to_the_backbones_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    logged = []
    folders = kernel_command("depth", user="tester", backbone="vgg19", dataset="csv",
                             data_source="owner/labels", wheel=False, log=logged.append,
                             grid_args=NONE, grid_settings={"weights": "none"})
    assert folders["kernel"].resolve() == tmp_path / "kaggle" / "kandel-repro-depth-vgg19" / "kernel"
    assert "owner/labels" in logged[0] and "(vgg19 on csv)" in logged[0]
    assert f"kaggle kernels push -p {folders['kernel']}" in logged[-1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(data_source=None), "--dataset folder: give --data-source OWNER/DATASET"),
    (dict(data_source="my tiles"), "--data-source takes a data set as OWNER/SLUG"),
    (dict(data_path="../other"), "a path inside the data set owner/my-tiles"),
    (dict(dataset="pcam", data_path=""), "--data-source owner/my-tiles: depth on pcam reads the "
     "competition's data"),
    (dict(dataset="pcam", data_source=None), "--data-path tiles: the kernel finds"),
    (dict(dataset="breakhis"), "--dataset breakhis: a kernel reads the competition's data"),
    (dict(table="table2", backbone="vgg16", dataset=None, data_source=None, data_path=""),
     "table2 trains vgg16 itself; --backbone applies to the depth study"),
    (dict(table="table2", dataset="folder"), "table2 trains on the competition's data; "
     "--dataset folder applies to the depth study"),
    (dict(table="table7", dataset=None, data_source=None, data_path=""), "table7 trains on BreakHis"),
])
def test_bad_data_settings_fail_here_not_on_kaggle(tmp_path, kwargs, message):
    kwargs = {"table": "depth", "dataset": "folder", "data_source": "owner/my-tiles",
              "data_path": "tiles", **kwargs}
    with pytest.raises(ConfigError, match=message):
        make_kernel(out=tmp_path, user="tester", wheel=False, log=quiet, grid_args=NONE,
                    grid_settings={"weights": "none"}, **kwargs)
    assert not (tmp_path / "kernel").exists()


# --- the driver, with its grid and table recorded instead of run -------------------------

def load_driver(folders):
    spec = importlib.util.spec_from_file_location("kernel_driver", folders["kernel"] / "driver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_driver(driver, root, monkeypatch):
    """``driver.main`` on ``root``: the wheel's install and the commands recorded."""
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(driver, "install", lambda inputs, settings: (root / "pkg", root / "x.whl"))
    monkeypatch.setattr(driver.subprocess, "run", run)
    code = driver.main(["--root", str(root), "--cache", str(root / "cache")])
    return code, commands, json.loads((root / "working" / "kandel-kernel.json").read_text())


def option(command, name):
    return command[command.index(name) + 1]


def test_the_driver_runs_the_grid_and_table_on_the_attached_folder(tmp_path, monkeypatch):
    driver = load_driver(depth_kernel(tmp_path / "k", backbone="vgg19"))
    root = tmp_path / "kaggle"
    data = root / "input" / "datasets" / "owner" / "my-tiles" / "tiles"  # nested, as Kaggle may
    (data / "tumour").mkdir(parents=True)
    code, (grid, table), report = run_driver(driver, root, monkeypatch)
    assert code == 0 and "error" not in report
    assert grid[3:5] == ["grid", "depth"] and table[3:5] == ["table", "depth"]
    for command in (grid, table):
        assert option(command, "--dataset") == "folder" and option(command, "--backbone") == "vgg19"
    assert option(grid, "--data") == str(data)
    assert option(grid, "--runs") == option(table, "--runs") == str(root / "working" / "runs" / "depth")
    assert grid[-2:] == NONE and "--submit" not in grid


def test_the_driver_takes_the_only_csv_of_the_data_set(tmp_path, monkeypatch):
    driver = load_driver(depth_kernel(tmp_path / "k", dataset="csv", data_path=""))
    root = tmp_path / "kaggle"
    mount = root / "input" / "my-tiles"
    (mount / "images").mkdir(parents=True)
    (mount / "labels.csv").write_text("path,label\n")
    code, (grid, table), _ = run_driver(driver, root, monkeypatch)
    assert code == 0
    assert option(grid, "--data") == str(mount / "labels.csv")
    assert option(grid, "--dataset") == option(table, "--dataset") == "csv"
    assert option(grid, "--backbone") == "vgg16"
    (mount / "other.csv").write_text("path,label\n")
    with pytest.raises(driver.KernelError, match=r"2 \.csv files .*labels\.csv, other\.csv.*--data-path"):
        driver.find_data(root / "input", driver.SETTINGS)
    named = {**driver.SETTINGS, "data_path": "other.csv"}
    assert driver.find_data(root / "input", named) == mount / "other.csv"


def test_the_driver_explains_a_missing_data_set_or_path(tmp_path, monkeypatch):
    driver = load_driver(depth_kernel(tmp_path / "k"))
    root = tmp_path / "kaggle"
    (root / "input" / "kandel-repro-wheel").mkdir(parents=True)
    code, commands, report = run_driver(driver, root, monkeypatch)
    assert code == 1 and commands == []
    assert "the data set 'owner/my-tiles' is not under" in report["error"]
    assert "attach it to this kernel" in report["error"]
    (root / "input" / "my-tiles").mkdir()
    with pytest.raises(driver.KernelError, match="'tiles' is not in the data set 'owner/my-tiles'.*--data-path"):
        driver.find_data(root / "input", driver.SETTINGS)
    with pytest.raises(driver.KernelError, match="no .csv files in .*--data-path"):
        driver.find_data(root / "input", {**driver.SETTINGS, "dataset": "csv", "data_path": ""})


def run_on_competition(tmp_path, monkeypatch, table, **kernel):
    """The driver of a PCam kernel of ``table`` on a simulated competition folder:
    ``(grid command, table command)``, having checked it read the competition."""
    folders = make_kernel(table, tmp_path / "k", "tester", wheel=False, log=quiet,
                          grid_args=NONE, grid_settings={"weights": "none"}, **kernel)
    driver = load_driver(folders)
    root = tmp_path / "kaggle"
    competition = root / "input" / COMPETITION
    competition.mkdir(parents=True)
    for name in ("train_labels.csv", "sample_submission.csv"):
        (competition / name).write_text("id,label\n")
    code, (grid, table), _ = run_driver(driver, root, monkeypatch)
    assert code == 0 and option(grid, "--data") == str(competition)
    return grid, table


def test_the_driver_of_a_pcam_depth_kernel_reads_the_competition(tmp_path, monkeypatch):
    grid, table = run_on_competition(tmp_path, monkeypatch, "depth", backbone="vgg19")
    for command in (grid, table):
        assert option(command, "--dataset") == "pcam" and option(command, "--backbone") == "vgg19"


def test_the_driver_of_a_pcam_table_names_no_dataset_nor_backbone(tmp_path, monkeypatch):
    grid, table = run_on_competition(tmp_path, monkeypatch, "table2")
    assert not {"--dataset", "--backbone"} & set(grid + table)


def test_a_mobilenet_v2_kernel_on_pcam_takes_the_weights_file_of_96_pixels(tmp_path, monkeypatch):
    """MobileNetV2's Keras constructor loads the ImageNet file of its input size: a kernel on
    PCam's 96-pixel patches attaches that file, not the 224 one."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    (tmp_path / "keras" / "models" / name).write_bytes(b"weights")
    folders = make_kernel("depth", tmp_path / "k", "tester", wheel=False, log=quiet,
                          grid_args=(), grid_settings={}, backbone="mobilenet_v2")
    assert settings_of(folders["kernel"] / "driver.py")["weight_files"] == [name]
    assert (folders["weights"] / name).read_bytes() == b"weights"

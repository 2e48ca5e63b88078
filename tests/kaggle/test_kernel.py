"""Kaggle kernels: the folder, the driver on a simulated /kaggle root, the push, budgets."""
import ast
import json
import shutil
import subprocess
import sys

import pytest

from kandel_repro.cli.main import main
from kandel_repro.cli.options import parse_grid_args
from kandel_repro.core.errors import ConfigError
from kandel_repro.kaggle.api import COMPETITION
from kandel_repro.kaggle.kernel import make_kernel
from kandel_repro.studies.cells import shard_cells
from kandel_repro.studies.registry import get_study

QUICK = ["--weights", "none", "--epochs", "1", "--batch-size", "16"]


def quiet(*args):
    pass


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernel")
    return make_kernel("table2", out, "tester", shard="1/8", grid_args=QUICK,
                       grid_settings=parse_grid_args("table2", QUICK), log=quiet)


def settings_of(driver):
    tree = ast.parse(driver.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "SETTINGS")
    return ast.literal_eval(node.value)


def test_the_kernel_folder(kernel):
    meta = json.loads((kernel["kernel"] / "kernel-metadata.json").read_text())
    assert meta["id"] == "tester/kandel-repro-table2-shard-1-of-8" and meta["title"] == "kandel-repro-table2-shard-1-of-8"
    assert meta["enable_gpu"] is True and meta["enable_internet"] is False and meta["is_private"] is True
    assert meta["competition_sources"] == [COMPETITION]
    assert meta["dataset_sources"] == ["tester/kandel-repro-wheel"]  # no weights: --weights none
    assert meta["code_file"] == "driver.py" and meta["kernel_type"] == "script"
    settings = settings_of(kernel["kernel"] / "driver.py")
    assert settings["table"] == "table2" and settings["shard"] == "1/8"
    assert settings["grid_args"] == QUICK and settings["weight_files"] == []
    assert 0 < settings["budget_seconds"] < 12 * 3600
    wheels = list(kernel["wheel"].glob("kandel_repro-*.whl"))
    assert len(wheels) == 1
    data_meta = json.loads((kernel["wheel"] / "dataset-metadata.json").read_text())
    assert data_meta["id"] == "tester/kandel-repro-wheel"
    assert "weights" not in kernel


def test_imagenet_kernels_carry_the_weight_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(ConfigError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.*no internet|no internet.*vgg16_weights"):
        make_kernel("table2", tmp_path / "k", "tester", wheel=False, log=quiet)
    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    (models / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"weights")
    folders = make_kernel("table2", tmp_path / "k", "tester", wheel=False, log=quiet)
    assert (folders["weights"] / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").read_bytes() == b"weights"
    meta = json.loads((folders["kernel"] / "kernel-metadata.json").read_text())
    assert meta["dataset_sources"] == ["tester/kandel-repro-wheel", "tester/kandel-repro-imagenet-weights"]
    assert settings_of(folders["kernel"] / "driver.py")["weight_files"] == [
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(table="table6"), "BreakHis"),
    (dict(budget_hours=12), "below Kaggle's 12-hour"),
    (dict(grid_settings={"max_epochs": 0}), "--epochs must be a positive integer"),
    (dict(resume_from=["not a kernel"]), "OWNER/SLUG"),
    (dict(name="My Kernel"), "lower-case letters"),
])
def test_bad_kernel_settings_fail_here_not_on_kaggle(tmp_path, kwargs, message):
    kwargs = {"table": "table2", "grid_args": ["--weights", "none"],
              "grid_settings": {"weights": "none"}, **kwargs}
    with pytest.raises(ConfigError, match=message):
        make_kernel(out=tmp_path, user="tester", wheel=False, log=quiet, **kwargs)


@pytest.mark.parametrize("grid_args, message", [
    (["--epochs", "many"], "invalid grid options"),
    (["--shard", "1/2"], "sets --shard itself"),
])
def test_bad_kernel_grid_options_fail_when_parsed(grid_args, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid_args("table2", grid_args)


@pytest.mark.slow
def test_the_driver_runs_its_shard_on_a_simulated_kaggle_root_and_resumes(kernel, tiny_pcam, tmp_path):
    from helpers import finished_grid

    root = tmp_path / "kaggle"
    inputs = root / "input"
    shutil.copytree(kernel["wheel"], inputs / "kandel-repro-wheel")
    shutil.copytree(tiny_pcam, inputs / COMPETITION, ignore=shutil.ignore_patterns(".kandel_cache"))
    # An earlier kernel's output: the shard's first run, finished (written as the grid
    # leaves it, without training: the driver trains the shard's other run itself).
    earlier = inputs / "kandel-repro-table2-shard-1-of-8" / "runs" / "table2"
    cells = get_study("table2").cells()
    first = shard_cells(cells, (1, 15))[0][1].folder
    assert finished_grid("table2", inputs / COMPETITION, earlier,
                         skip={c.folder for c in cells} - {first}, weights="none", max_epochs=1,
                         batch_size=16) == [first]
    shutil.rmtree(inputs / COMPETITION / ".kandel_cache")  # the input as Kaggle mounts it
    for path in (inputs / COMPETITION).rglob("*.tif"):  # a later session: other times
        path.touch()
    before = (earlier / first / "metrics.json").read_text()
    run = subprocess.run([sys.executable, str(kernel["kernel"] / "driver.py"), "--root", str(root),
                          "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "resumed 1 finished run(s)" in run.stdout
    assert "[1/15] table2: vgg16 blocks 5, lr 1e-3: finished, skipped" in run.stdout
    assert "[9/15] table2: vgg16 blocks 3–5, lr 1e-5: training" in run.stdout
    report = json.loads((root / "working" / "kandel-kernel.json").read_text())
    expected = [c.folder for _, c in shard_cells(get_study("table2").cells(), (1, 8))]
    assert report["finished_runs"] == sorted(expected) and "error" not in report
    runs = root / "working" / "runs" / "table2"
    assert (runs / first / "metrics.json").read_text() == before  # copied, not retrained
    assert (root / "working" / "tables" / "table2.md").is_file()
    assert not (root / "working" / "kandel_pkg").exists()  # the package is not in the output


def test_the_driver_finds_the_competition_wherever_kaggle_mounts_it(tiny_pcam, tmp_path):
    from kandel_repro.kaggle import driver as kaggle_driver

    inputs = tmp_path / "input"
    (inputs / "other-dataset").mkdir(parents=True)
    (inputs / "other-dataset" / "train_labels.csv").write_text("id,label\n")  # no sample_submission
    with pytest.raises(kaggle_driver.KernelError, match=f"add the competition '{COMPETITION}'"):
        kaggle_driver.find_competition(inputs, COMPETITION)
    nested = inputs / "competitions" / COMPETITION
    shutil.copytree(tiny_pcam, nested, ignore=shutil.ignore_patterns(".kandel_cache", "*.tif"))
    assert kaggle_driver.find_competition(inputs, COMPETITION) == nested


def test_the_driver_explains_a_missing_wheel(kernel, tmp_path):
    root = tmp_path / "kaggle"
    (root / "input").mkdir(parents=True)
    run = subprocess.run([sys.executable, str(kernel["kernel"] / "driver.py"), "--root", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "no kandel_repro wheel" in run.stderr and "tester/kandel-repro-wheel" in run.stderr
    assert "error" in json.loads((root / "working" / "kandel-kernel.json").read_text())


def test_the_driver_puts_weight_files_where_keras_looks(tmp_path, monkeypatch):
    from kandel_repro.kaggle import driver as kaggle_driver

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    inputs = tmp_path / "input"
    (inputs / "kandel-repro-imagenet-weights").mkdir(parents=True)
    (inputs / "kandel-repro-imagenet-weights" / "vgg19_notop.h5").write_bytes(b"w")
    settings = {"weight_files": ["vgg19_notop.h5"], "weights_dataset": "tester/w"}
    assert kaggle_driver.place_weights(inputs, settings) == [tmp_path / "keras" / "models" / "vgg19_notop.h5"]
    with pytest.raises(kaggle_driver.KernelError, match="attach the data set 'tester/w'"):
        kaggle_driver.place_weights(inputs, {**settings, "weight_files": ["other.h5"]})


def test_push_uploads_the_data_sets_and_the_kernel(kernel, kaggle_env, tmp_path, capsys):
    with kaggle_env() as server:
        out = tmp_path / "k"
        assert main(["kaggle-kernel", "table2", "--out", str(out), "--push", "--", *QUICK]) == 0
        assert main(["kaggle-kernel", "table2", "--out", str(out), "--push", "--", *QUICK]) == 0
    wheel = server.datasets["tester/kandel-repro-wheel"]
    assert len(wheel["versions"]) == 2 and wheel["private"] is True
    (uploaded,) = wheel["versions"][1].values()
    assert uploaded == next(out.glob("wheel/*.whl")).read_bytes()
    pushed = server.kernels["tester/kandel-repro-table2"]
    assert len(pushed) == 2
    assert pushed[-1]["text"] == (out / "kernel" / "driver.py").read_text()
    assert pushed[-1]["enableGpu"] is True and pushed[-1]["enableInternet"] is False
    assert pushed[-1]["competitionDataSources"] == [COMPETITION]
    assert "version 2" in capsys.readouterr().out


def test_the_kaggle_command_line_pushes_the_kernel_too(kernel, kaggle_env):
    with kaggle_env() as server:
        server.datasets["tester/kandel-repro-wheel"] = {"versions": [], "private": True}
        run = subprocess.run([sys.executable, "-m", "kaggle", "kernels", "push", "-p",
                              str(kernel["kernel"])], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tester/kandel-repro-table2-shard-1-of-8" in server.kernels


def test_the_driver_carries_a_search_s_paused_and_stopped_runs_into_the_next_kernel(tmp_path):
    from kandel_repro.kaggle import driver

    earlier = tmp_path / "input" / "kandel-repro-table2" / "runs" / "table2"
    for name, files in {"finished": ("metrics.json", "history.csv"),
                        "paused": ("resume.npz", "history.csv"),
                        "stopped": ("resume.npz", "search.json", "history.csv"),
                        "unfinished": ("history.csv",)}.items():
        (earlier / name).mkdir(parents=True)
        for file in files:
            (earlier / name / file).write_text(f"{name} {file}")
    runs = tmp_path / "working" / "runs" / "table2"
    (runs / "stopped").mkdir(parents=True)  # this kernel's own copy, further on: kept
    (runs / "stopped" / "resume.npz").write_text("this kernel's")
    assert driver.resume(tmp_path / "input", runs) == 1
    assert driver.resume(tmp_path / "input", runs, "resume.npz") == 1
    assert sorted(p.name for p in runs.iterdir()) == ["finished", "paused", "stopped"]
    assert (runs / "paused" / "resume.npz").read_text() == "paused resume.npz"
    assert (runs / "stopped" / "resume.npz").read_text() == "this kernel's"
    assert driver.resume(tmp_path / "input", runs, "resume.npz") == 0  # (nothing new)
    # two earlier kernels hold the same paused run: the one further on is taken
    further = tmp_path / "input" / "kandel-repro-table2-later" / "runs" / "table2" / "later"
    (earlier / "later").mkdir()
    further.mkdir(parents=True)
    for folder, epochs in ((earlier / "later", 1), (further, 3)):
        (folder / "resume.npz").write_text(f"{epochs} epochs")
        (folder / "history.csv").write_text("epoch\n" + "".join(f"{e}\n" for e in range(epochs)))
    assert driver.resume(tmp_path / "input", runs, "resume.npz") == 1
    assert (runs / "later" / "resume.npz").read_text() == "3 epochs"

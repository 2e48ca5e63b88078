"""The grid: a study's runs in order, resumable, sharded, within a time budget."""
import json

import pytest
from helpers import cut_table2

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError
from kandel_repro.core.files import write_json
from kandel_repro.grid import grid as grid_mod
from kandel_repro.grid.grid import GridOptions
from kandel_repro.readers.registry import get_reader
from kandel_repro.runs import train as train_mod
from kandel_repro.runs.settings import UserSettings
from kandel_repro.studies.cells import parse_seeds, parse_shard, shard_cells
from kandel_repro.studies.registry import get_study


def quiet(*args):
    pass


# --- the grid, with a fast stand-in for training ------------------------------------

def _fake_train(fail_on=(), interrupt_on=None, calls=None):
    def fake(run_dir, data, config, verbose="auto", deadline=None, pause_after=None,
             resume=True):
        name = run_dir.name
        calls.append(name)
        if name == interrupt_on:
            raise KeyboardInterrupt
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", config.to_config())
        if name in fail_on:
            raise RuntimeError(f"boom in {name}")
        metrics = {"status": "ok", "val_auc": 0.5 + config["first_trainable_block"] / 100,
                   "best_epoch": 1, "epochs_run": 1}
        write_json(run_dir / "metrics.json", metrics)
        return metrics
    return fake


def test_grid_runs_15_cells_records_failures_and_resumes(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    names = [c.folder for c in get_study("table2").cells()]
    assert len(names) == 15 and names[0] == "vgg16_blocks5-5_lr1e-03"

    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(fail_on={names[4]}, calls=calls))
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(weights="none"),
                                 log=lambda m: None)
    assert calls == names
    assert statuses[names[4]] == "failed" and list(statuses.values()).count("ok") == 14
    error = json.loads((runs / names[4] / "error.json").read_text())
    assert "boom in" in error["error"]

    calls.clear()
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(weights="none"),
                                 log=lambda m: None)
    assert calls == [names[4]]  # finished runs skipped, the failed one retried
    assert list(statuses.values()).count("skipped") == 14


def test_interrupted_grid_loses_only_the_run_in_progress(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    names = [c.folder for c in get_study("table2").cells()]
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(interrupt_on=names[6], calls=calls))
    with pytest.raises(KeyboardInterrupt):
        grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(weights="none"),
                          log=lambda m: None)
    assert sum((runs / n / "metrics.json").exists() for n in names) == 6
    calls.clear()
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(weights="none"),
                      log=lambda m: None)
    assert calls == names[6:]


def test_shards_are_disjoint_cover_the_table_and_assemble(tiny_pcam, tmp_path, monkeypatch):
    from kandel_repro.report.collect import collect

    cells = get_study("table4").cells()
    for count in (1, 2, 3, 4, 39, 40):
        shares = [[c.folder for _, c in shard_cells(cells, (i, count))]
                  for i in range(1, count + 1)]
        flat = [name for share in shares for name in share]
        assert sorted(flat) == sorted(c.folder for c in cells) and len(set(flat)) == len(cells)
    for bad in ("3", "0/2", "3/2", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)

    runs = tmp_path / "runs"
    names = [c.folder for c in get_study("table2").cells()]
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    for i in (1, 2, 3):  # three machines, one share each, into one folder
        grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(shard=f"{i}/3"),
                          UserSettings(weights="none"), log=lambda m: None)
        assert (runs / f"grid-shard-{i}of3.json").exists()
    assert calls == names[0::3] + names[1::3] + names[2::3]
    frame, _ = collect("table2", runs)
    assert (frame["status"] == "ok").all()


def test_grid_refuses_to_mix_settings(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=[]))
    grid_mod.run_grid("table2", tiny_pcam, runs,
                      settings=UserSettings(weights="none", max_epochs=3), log=lambda m: None)
    with pytest.raises(ConfigError, match="max_epochs: 3 there, 4 now"):
        grid_mod.run_grid("table2", tiny_pcam, runs,
                          settings=UserSettings(weights="none", max_epochs=4), log=lambda m: None)


@pytest.mark.slow
def test_real_grid_trains_and_skips(tiny_pcam, tmp_path, monkeypatch):
    """Two real cells (the study cut to one depth × two LRs) train, then are skipped."""
    cut_table2(monkeypatch, learning_rates=(1e-3, 1e-4))
    runs = tmp_path / "runs"
    logs = []
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(verbose=0),
                                 UserSettings(weights="none", max_epochs=1, batch_size=16),
                                 log=logs.append)
    assert list(statuses.values()) == ["ok", "ok"]
    assert any("[1/2]" in line and "training" in line for line in logs)
    stamp = (runs / "vgg16_blocks5-5_lr1e-03" / "metrics.json").stat().st_mtime_ns
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(verbose=0),
                                 UserSettings(weights="none", max_epochs=1, batch_size=16),
                                 log=logs.append)
    assert list(statuses.values()) == ["skipped", "skipped"]
    assert (runs / "vgg16_blocks5-5_lr1e-03" / "metrics.json").stat().st_mtime_ns == stamp


def test_grid_refuses_images_too_small_for_the_backbone(tiny_pcam, tmp_path):
    with pytest.raises(ConfigError, match="inception_v3 needs images of at least 75×75"):
        grid_mod.run_grid("table4", tiny_pcam, tmp_path / "runs",
                          settings=UserSettings(weights="none"), log=lambda m: None)


def test_runs_made_before_data_identities_are_still_reused(tiny_pcam, tmp_path, monkeypatch):
    """Run folders that recorded the old path-and-time fingerprint of the same data are
    skipped, not refused; another data fingerprint still is refused."""
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    runs = tmp_path / "runs"
    grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(shard="1/15"),
                      UserSettings(weights="none"), log=lambda m: None)
    (name,) = calls
    data = get_reader("pcam").load(tiny_pcam, progress=False, workers=1)
    assert data.legacy_fingerprint and data.legacy_fingerprint != data.fingerprint
    config = json.loads((runs / name / "config.json").read_text())
    (runs / name / "config.json").write_text(json.dumps({**config, "data_fingerprint": data.legacy_fingerprint}))
    calls.clear()
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(shard="1/15"),
                                 UserSettings(weights="none"), log=lambda m: None)
    assert statuses == {name: "skipped"} and calls == []
    (runs / name / "config.json").write_text(json.dumps({**config, "data_fingerprint": "other"}))
    with pytest.raises(ConfigError, match="data_fingerprint: 'other' there"):
        grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(shard="1/15"),
                          UserSettings(weights="none"), log=lambda m: None)


def test_a_grid_with_no_time_left_starts_nothing(tiny_pcam, tmp_path):
    statuses = grid_mod.run_grid("table2", tiny_pcam, tmp_path / "runs",
                                 GridOptions(shard="1/8", time_budget=1e-6),
                                 UserSettings(weights="none", max_epochs=1), log=quiet)
    assert set(statuses.values()) == {"out of time"} and len(statuses) == 2
    assert not list((tmp_path / "runs").glob("*/metrics.json"))


def test_grid_table5_accepts_any_spelling_of_random_weights(tiny_pcam, tmp_path, monkeypatch,
                                                             capsys):
    """`grid table5 --weights scratch` (an alias of none) trains; imagenet is refused."""
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    monkeypatch.setattr(grid_mod, "_check_input_size", lambda study, data: None)
    code = main(["grid", "table5", "--data", str(tiny_pcam), "--runs", str(tmp_path / "r"),
                 "--weights", "scratch", "--shard", "1/9"])
    assert code == 0 and calls == ["vgg16_scratch_lr1e-03"]
    config = json.loads((tmp_path / "r" / calls[0] / "config.json").read_text())
    assert config["weights"] == "none"
    code = main(["grid", "table5", "--data", str(tiny_pcam), "--runs", str(tmp_path / "r"),
                 "--weights", "imagenet"])
    assert code == 2 and "table5 fixes --weights none; got 'imagenet'" in capsys.readouterr().err


def _read_only(folder, monkeypatch):
    """Make ``folder`` read-only; as root (who writes anyway) writes into it fail too."""
    import os
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and str(dir).startswith(str(folder)):
                raise PermissionError(13, "Permission denied", str(dir))
            return real(*args, dir=dir, **kwargs)
        monkeypatch.setattr(tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("verb", ["grid", "train", "table"])
def test_an_unwritable_output_folder_is_named_before_any_work(tiny_pcam, tmp_path, monkeypatch,
                                                              capsys, verb):
    locked = tmp_path / "locked"
    _read_only(locked, monkeypatch)
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    if verb == "table":
        (tmp_path / "runs" / "vgg16_blocks5-5_lr1e-03").mkdir(parents=True)
    argv = {"grid": ["grid", "table2", "--data", str(tiny_pcam), "--runs", str(locked),
                     "--weights", "none"],
            "train": ["train", "--data", str(tiny_pcam), "--run-dir", str(locked / "one"),
                      "--first-block", "5", "--lr", "1e-4", "--weights", "none"],
            "table": ["table", "table2", "--runs", str(tmp_path / "runs"), "--out", str(locked)]}
    option = {"grid": "--runs", "train": "--run-dir", "table": "--out"}[verb]
    try:
        assert main(argv[verb]) == 2
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert f"cannot write into {locked}" in err and f"give {option} a folder" in err
    assert "Traceback" not in err and calls == []


def test_a_run_folder_that_cannot_be_written_fails_alone(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    names = [c.folder for c in get_study("table2").cells()]
    (runs / names[0]).write_text("a file where the run's folder belongs")
    calls, logs = [], []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, settings=UserSettings(weights="none"),
                                 log=logs.append)
    assert statuses[names[0]] == "failed" and calls == names[1:]
    assert any(names[0] in line and "FAILED" in line and "not recorded" in line for line in logs)


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_a_time_budget_is_checked_when_parsed(tiny_pcam, tmp_path, capsys, value):
    with pytest.raises(SystemExit):
        main(["grid", "table2", "--data", str(tiny_pcam), "--runs", str(tmp_path / "r"),
              "--time-budget", value])
    assert "--time-budget" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--time-budget must be"):
        grid_mod.run_grid("table2", tiny_pcam, tmp_path / "r", GridOptions(time_budget=value),
                          log=quiet)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("size, message", [("0", "--image-size: must be a positive integer"),
                                           ("10", "vgg16 needs images of at least 32×32")])
def test_an_image_size_is_refused_before_anything_is_packed(tiny_breakhis, tmp_path, capsys,
                                                            size, message):
    cache = tmp_path / "cache"
    argv = ["grid", "table6", "--data", str(tiny_breakhis), "--runs", str(tmp_path / "r"),
            "--image-size", size, "--weights", "none", "--cache", str(cache)]
    if size == "0":  # refused when parsed (argparse's one line)
        with pytest.raises(SystemExit):
            main(argv)
    else:  # refused when resolved, for the backbone
        assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not cache.exists() and not (tmp_path / "r").exists()


def test_seeds_train_each_cell_once_per_seed_and_resume_mid_seed(tiny_pcam, tmp_path,
                                                                 monkeypatch):
    runs = tmp_path / "runs"
    cells = [c.folder for c in get_study("table2").cells()]
    order = cells + [f"{n}_seed1" for n in cells] + [f"{n}_seed2" for n in cells]
    calls = []
    interrupt = f"{cells[4]}_seed1"
    monkeypatch.setattr(train_mod, "train_run", _fake_train(interrupt_on=interrupt, calls=calls))
    with pytest.raises(KeyboardInterrupt):
        grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(seeds=3),
                          UserSettings(weights="none"), log=quiet)
    assert calls == order[:order.index(interrupt) + 1]
    seeds = {json.loads((runs / n / "config.json").read_text())["seed"] for n in order[:19]}
    assert seeds == {0, 1}
    calls.clear()
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(seeds="0,1,2"),
                                 UserSettings(weights="none"), log=quiet)
    assert calls == order[order.index(interrupt):]  # finished (cell, seed) runs not retrained
    assert list(statuses.values()).count("skipped") == 15 + 4
    config = json.loads((runs / f"{cells[0]}_seed2" / "config.json").read_text())
    assert config["seed"] == 2 and config["split_seed"] == 0  # the split stays fixed


def test_shards_and_a_single_seed_of_a_seeded_grid(tiny_pcam, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    calls = []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    for i in (1, 2):
        grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(seeds=2, shard=f"{i}/2"),
                          UserSettings(weights="none"), log=quiet)
    assert len(calls) == len(set(calls)) == 30
    calls.clear()
    grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(shard="1/15"),
                      UserSettings(weights="none", seed=7),
                      log=quiet)  # --seed S alone: the one seed S
    assert calls == ["vgg16_blocks5-5_lr1e-03_seed7"]
    with pytest.raises(ConfigError, match="not both"):
        grid_mod.run_grid("table2", tiny_pcam, runs, GridOptions(seeds=2),
                          UserSettings(weights="none", seed=1), log=quiet)
    for bad in ("0", "-1,2", "a", "1,1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
    assert parse_seeds("3") == (0, 1, 2) and parse_seeds("0,3,7") == (0, 3, 7)
    assert parse_seeds("5,") == (5,)


def test_asking_for_ray_without_it_says_how_to_install(tiny_pcam, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    cache = tmp_path / "cache"
    code = main(["grid", "table2", "--data", str(tiny_pcam), "--runs", str(tmp_path / "runs"),
                 "--cache", str(cache), "--weights", "none", "--executor", "ray"])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "pip install 'kandel_repro[ray]'" in err
    assert not cache.exists()  # refused before anything was packed


@pytest.mark.parametrize("argv, message", [
    (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be a number ≥ 0"),
    (["--executor", "ray", "--cpus-per-run", "nan"], "--cpus-per-run must be a number ≥ 0"),
    (["--executor", "ray", "--cpus-per-run", "0"], "a run needs a CPU or a GPU"),
    (["--gpus-per-run", "1"], "apply to --executor ray"),
])
def test_ray_resources_are_checked_before_anything_is_packed(tiny_pcam, tmp_path, capsys, argv,
                                                             message):
    cache = tmp_path / "cache"
    code = main(["grid", "table2", "--data", str(tiny_pcam), "--runs", str(tmp_path / "runs"),
                 "--cache", str(cache), "--weights", "none", *argv])
    assert code != 0 and message in capsys.readouterr().err
    assert not cache.exists()


# --- the depth study of several backbones, and data of another layout ---------------------

def test_grid_json_records_every_backbone_of_a_depth_grid(tiny_pcam, tmp_path, monkeypatch):
    runs, calls = tmp_path / "runs", []
    monkeypatch.setattr(train_mod, "train_run", _fake_train(calls=calls))
    statuses = grid_mod.run_grid("depth", tiny_pcam, runs,
                                 GridOptions(backbone="cbr_small,cbr_tiny", dataset="pcam",
                                             learning_rates="1e-3"),
                                 UserSettings(weights="none"), log=quiet)
    assert {name.split("_blocks")[0] for name in statuses} == {"cbr_small", "cbr_tiny"}
    record = json.loads((runs / "grid.json").read_text())
    assert record["backbones"] == ["cbr_small", "cbr_tiny"]
    assert record["study"] == "depth" and record["dataset"] == "pcam" and record["shard"] is None
    grid_mod.run_grid("depth", tiny_pcam, runs,
                      GridOptions(backbone="cbr_tiny", dataset="pcam", learning_rates="1e-3",
                                  shard="1/2"),
                      UserSettings(weights="none"), log=quiet)
    shard = json.loads((runs / "grid-shard-1of2.json").read_text())
    assert shard["backbones"] == ["cbr_tiny"] and shard["shard"] == [1, 2]
    assert set(shard) == set(record)  # one backbone or several: the same keys


@pytest.fixture(scope="module")
def paper_layouts(tiny_pcam, tiny_breakhis, tmp_path_factory):
    """``{reader: folder}``: the paper's data sets in their own layouts."""
    from kandel_repro.readers.synthetic.pcam_h5 import write_synthetic_pcam_h5

    h5 = write_synthetic_pcam_h5(tmp_path_factory.mktemp("h5") / "h5", n_train=8, n_valid=4,
                                 n_test=4, size=32, progress=False)
    return {"pcam": tiny_pcam, "pcam-h5": h5, "breakhis": tiny_breakhis}


@pytest.mark.parametrize("reader, words", [
    ("pcam", ["Kaggle layout", "train_labels.csv"]),
    ("pcam-h5", ["HDF5 release"]),
    ("breakhis", ["BreaKHis_v1"])])
def test_the_depth_study_on_a_paper_layout_without_dataset_names_it(paper_layouts, tmp_path,
                                                                     capsys, reader, words):
    data = paper_layouts[reader]
    assert main(["grid", "depth", "--backbone", "cbr_small", "--data", str(data), "--runs",
                 str(tmp_path / "r"), "--weights", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kandel-repro: error: "), err
    for word in [str(data), "--dataset folder", f"--dataset {reader}", *words]:
        assert word in err, (word, err)
    assert not (tmp_path / "r").exists()


def test_the_depth_study_on_a_folder_of_no_known_layout_keeps_the_folder_message(tmp_path,
                                                                                 capsys):
    (tmp_path / "data" / "only").mkdir(parents=True)
    assert main(["grid", "depth", "--backbone", "cbr_small", "--data", str(tmp_path / "data"),
                 "--runs", str(tmp_path / "r"), "--weights", "none"]) == 2
    err = capsys.readouterr().err
    assert "--dataset pcam" not in err and "--dataset breakhis" not in err
    assert str(tmp_path / "data") in err

"""Grids on a real local Ray: every run trained as a task, a killed task retried, finished
runs skipped, the runs folder checked on the worker; a cluster that does not answer and a
request no node can meet refused in one line, before any task. Skipped (with the reason)
where Ray is not installed; `make test` installs it (the ``ray`` extra)."""
import os

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'kandel_repro[ray]' "
                          "(make test installs it)")

from helpers import cut_table2  # noqa: E402

from kandel_repro.cli.main import main  # noqa: E402
from kandel_repro.core.errors import ConfigError  # noqa: E402
from kandel_repro.grid import cluster  # noqa: E402
from kandel_repro.grid import grid as grid_mod  # noqa: E402
from kandel_repro.grid.attempt import Attempt  # noqa: E402
from kandel_repro.grid.grid import GridOptions  # noqa: E402
from kandel_repro.report.collect import assemble  # noqa: E402
from kandel_repro.runs import rundir  # noqa: E402
from kandel_repro.runs.settings import UserSettings  # noqa: E402
from kandel_repro.studies.levels import depth_rows, lr_columns  # noqa: E402
from kandel_repro.studies.registry import STUDIES
from kandel_repro.studies.types import Study  # noqa: E402

pytestmark = pytest.mark.slow

SETTINGS = UserSettings(weights="none", max_epochs=2, batch_size=16)
ON_RAY = GridOptions(executor="ray", verbose=0)


def small_grid(monkeypatch, learning_rates, rows):
    """Register as Table 2 a grid of the small CBR-Small network (what is checked here is
    how Ray runs a grid, not the backbone: its runs train in a fraction of VGG16's time)."""
    study = Study("table2", "A grid of CBR-Small on PCam", "pcam", depth_rows("cbr_small")[rows],
                  lr_columns(learning_rates), "Fine-tuned blocks")
    monkeypatch.setitem(STUDIES, "table2", study)
    return study


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A real Ray on this machine (two CPUs), its workers told where the kill marker is."""
    marker = tmp_path_factory.mktemp("ray") / "kill-once"
    os.environ[cluster.KILL_ONCE] = str(marker)  # workers inherit the driver's environment
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield marker
    finally:
        ray.shutdown()
        del os.environ[cluster.KILL_ONCE]


def arm_kill(marker):
    """Make the next task that trains die after its first epoch; the path of the note
    that names its run."""
    killed = marker.with_name(marker.name + ".killed")
    killed.unlink(missing_ok=True)
    marker.touch()
    return killed


@pytest.fixture
def no_ray():
    """No Ray in this process, as a fresh ``kandel-repro grid`` finds it (these tests come
    before those of :func:`local_ray`; one that came after gets its Ray back)."""
    had = ray.is_initialized()
    if had:
        ray.shutdown()
    yield
    if had:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def grid_error(tiny_pcam, tmp_path, capsys, *options):
    """The exit status and the lines after the packing progress on stderr of
    ``kandel-repro grid table2 --executor ray OPTIONS`` (table2 cut to one run)."""
    code = main(["grid", "table2", "--data", str(tiny_pcam), "--runs", str(tmp_path / "r"),
                 "--weights", "none", "--epochs", "1", "--executor", "ray", *options])
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if not line.startswith("packing ")]


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "auto", None])
def test_a_cluster_that_does_not_answer_is_refused_in_one_line(
        no_ray, address, tiny_pcam, tmp_path, capsys, monkeypatch):
    cut_table2(monkeypatch)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if address == "auto":  # as on a machine where no Ray runs (nor any other test's)
        from ray._private import services

        monkeypatch.setattr(services, "find_gcs_addresses", frozenset)
        monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    options = ["--address", address]
    if address is None:  # the address Ray reads when --address is not given
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
        options = []
    code, err = grid_error(tiny_pcam, tmp_path, capsys, *options)
    assert code == 2 and len(err) == 1, err
    assert ("RAY_ADDRESS=127.0.0.1:1" if address is None else f"--address {address}") in err[0]
    assert "ray start --head" in err[0] and "ray://HEAD:10001" in err[0]
    assert ("runs on this machine" if address == "auto" else "answers at 127.0.0.1:1") in err[0]
    assert not ray.is_initialized()


def test_a_request_no_node_can_meet_is_refused_and_the_grid_s_own_ray_shut_down(
        no_ray, tiny_pcam, tmp_path, capsys, monkeypatch):
    cut_table2(monkeypatch)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, err = grid_error(tiny_pcam, tmp_path, capsys, "--gpus-per-run", "1")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("kandel-repro: error: --gpus-per-run 1: the Ray on this machine "
                             "has 2 CPU(s) and 0 GPU(s)") and "--gpus-per-run 0" in err[0]
    assert not ray.is_initialized()  # the Ray the grid started is gone again
    assert not [p for p in (tmp_path / "r").iterdir() if p.is_dir()]  # no run started


def test_a_grid_on_ray_stops_on_ctrl_c_resumes_retries_a_killed_task_and_skips(
        local_ray, tiny_pcam, tmp_path, monkeypatch):
    # 6 runs on 2 CPUs: when the first is reported, at least two have not started, however
    # slowly a loaded machine lets the driver read the reports
    study = small_grid(monkeypatch, learning_rates=(1e-3, 1e-4), rows=slice(0, 3))
    n = len(study.cells())
    runs = tmp_path / "runs"

    def finished():
        names = [p.name for p in runs.iterdir() if p.is_dir()]
        return sorted(n for n in names if rundir.read_run(runs / n).status == "ok")

    # 1. Ctrl-C on the driver once the first run is reported: the rest are cancelled
    logs = []

    def interrupt_after_first(line):
        logs.append(line)
        if "val AUC" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        grid_mod.run_grid("table2", tiny_pcam, runs, ON_RAY, SETTINGS, log=interrupt_after_first)
    assert any(line.startswith("interrupted: cancelling") for line in logs)
    done_first = finished()
    assert 1 <= len(done_first) <= n - 2
    stamps = {n: (runs / n / rundir.METRICS).stat().st_mtime_ns for n in done_first}

    # 2. the same command resumes; the first task to train dies after its first epoch
    killed = arm_kill(local_ray)
    logs = []
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, ON_RAY, SETTINGS, log=logs.append)
    assert not local_ray.exists() and killed.exists(), "no task was killed"
    assert statuses[killed.read_text()] == "ok"  # retried, and finished
    assert sorted(statuses.values()) == sorted(["skipped"] * len(done_first)
                                               + ["ok"] * (n - len(done_first))), logs
    assert stamps == {n: (runs / n / rundir.METRICS).stat().st_mtime_ns for n in done_first}
    assert sum("val AUC" in line and "(on " in line for line in logs) == n - len(done_first)
    for name in statuses:
        run = rundir.read_run(runs / name)
        assert run.status == "ok" and run.error is None
        assert all((runs / name / f).exists() for f in (rundir.HISTORY, rundir.BEST_MODEL,
                                                        rundir.VAL_PREDICTIONS, rundir.SUBMISSION))
        assert len((runs / name / rundir.HISTORY).read_text().splitlines()) == 3  # 2 epochs
        assert list((runs / name / rundir.TENSORBOARD).rglob("events.out.tfevents.*"))
    table = assemble("table2", runs)
    assert len(table.cells) == n and table.cells["mean"].between(0, 1).all()
    assert main(["table", "table2", "--runs", str(runs), "--out", str(tmp_path / "tables")]) == 0
    assert study.title in (tmp_path / "tables" / "table2.md").read_text()

    # 3. once more: everything is finished, nothing is submitted
    logs = []
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, ON_RAY, SETTINGS, log=logs.append)
    assert sorted(statuses.values()) == ["skipped"] * n
    assert sum("finished, skipped" in line for line in logs) == n


@pytest.mark.parametrize("gpus, cpus, refused", [
    (None, 8, "--cpus-per-run 8: the Ray cluster this process is connected to has 2 CPU(s) "
              "and 0 GPU(s); no run could start: give --cpus-per-run 2 or less"),
    (0.5, None, "--gpus-per-run 0.5: the Ray cluster this process is connected to has 2 "
                "CPU(s) and 0 GPU(s); no run could start: give --gpus-per-run 0 (CPU only)")])
def test_a_request_the_cluster_cannot_meet_is_refused_before_any_task(
        local_ray, gpus, cpus, refused, tiny_pcam, tmp_path):
    logs = []
    with pytest.raises(ConfigError) as error:
        job = cluster.RayJob(str(tmp_path / "runs"), str(tiny_pcam), "pcam", None, Attempt(),
                             gpus_per_run=gpus, cpus_per_run=cpus)
        cluster.run_on_ray([("[1/1] t", "run")], {"run": {}}, job, logs.append)
    assert str(error.value).startswith(refused)
    assert logs == [] and ray.is_initialized()  # nothing submitted; the caller's Ray kept


def test_the_port_of_a_running_cluster_answers(local_ray):
    port = ray.get_runtime_context().gcs_address.rpartition(":")[2]
    cluster.check_reachable(f"127.0.0.1:{port}", "--address")  # no error
    with pytest.raises(ConfigError, match="--address 127.0.0.1: give HOST:PORT"):
        cluster.check_reachable("127.0.0.1", "--address 127.0.0.1")


def test_a_task_that_cannot_see_the_runs_folder_fails_before_training(local_ray, tiny_pcam,
                                                                       tmp_path):
    logs = []
    unseen = tmp_path / "not-shared"  # as a folder only the driver's machine holds
    config = {"model": "vgg16"}
    job = cluster.RayJob(str(unseen), str(tiny_pcam), "pcam", str(tmp_path / "cache"), Attempt())
    statuses = cluster.run_on_ray([("[1/1] t", "run")], {"run": config}, job, logs.append)
    assert statuses == {"run": "failed"}
    assert any("is not visible from" in line and "shared storage" in line for line in logs)
    assert not unseen.exists() and not (tmp_path / "cache").exists()  # nothing loaded


def test_a_task_killed_more_often_than_retried_is_recorded_as_failed(local_ray, tiny_pcam,
                                                                     tmp_path, monkeypatch):
    small_grid(monkeypatch, learning_rates=(1e-3, 1e-4), rows=slice(0, 1))  # 2 runs
    monkeypatch.setattr(cluster, "RETRIES", 0)
    runs = tmp_path / "runs"
    note = arm_kill(local_ray)
    logs = []
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, ON_RAY, SETTINGS, log=logs.append)
    killed = note.read_text()
    assert statuses[killed] == "failed"
    assert [s for n, s in statuses.items() if n != killed] == ["ok"]  # the grid went on
    assert any("FAILED on Ray after 0 retries" in line for line in logs)
    error = rundir.read_run(runs / killed).error
    assert error and "Worker" in error["error"]


def test_the_kill_marker_is_taken_by_one_task_only(tmp_path):
    """Two tasks starting together: the one that removes the marker is killed, the other
    trains (checking for the marker, then removing it, once failed the second task)."""
    marker = tmp_path / "kill-once"
    marker.touch()
    assert [cluster._claim(str(marker)), cluster._claim(str(marker))] == [True, False]
    assert not marker.exists()


def test_a_search_on_ray_trains_each_rung_as_tasks_and_decides_as_the_replay(
        local_ray, tiny_pcam, tmp_path, monkeypatch):
    import pandas as pd

    from kandel_repro.grid.halving import replay

    small_grid(monkeypatch, learning_rates=(1e-3, 1e-4), rows=slice(0, 3))  # 6 cells
    runs = tmp_path / "runs"
    logs = []
    options = GridOptions(executor="ray", verbose=0, search="halving", eta=3, min_epochs=1)
    statuses = grid_mod.run_grid("table2", tiny_pcam, runs, options,
                                 UserSettings(weights="none", max_epochs=3, batch_size=16),
                                 log=logs.append)
    assert sum("submitted to Ray" in line for line in logs) == 2  # the rung, then the end
    histories = {name: pd.read_csv(runs / name / rundir.HISTORY)["val_auc"].tolist()
                 for name in statuses}
    expected = replay(histories, 3, 1, 3)
    assert sorted(statuses.values()).count("stopped") == 4
    for name, status in statuses.items():
        if status == "stopped":
            assert expected.stopped_at[name] == 1 and len(histories[name]) == 1
            assert rundir.read_search(runs / name)["stopped_at_epoch"] == 1
            assert (runs / name / rundir.RESUME).is_file()  # paused: a plain grid resumes it
        else:
            assert status == "ok" and expected.stopped_at[name] is None
            assert rundir.is_finished(runs / name) and not (runs / name / rundir.RESUME).exists()

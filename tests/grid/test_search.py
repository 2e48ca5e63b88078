"""Successive halving trained as it searches (kandel_repro.grid.search): its decisions
are the replayed rule's on the same histories, it resumes after a kill between rungs as
if never stopped, and it refuses what it cannot do. Training is a stand-in that plays a
hand-made validation AUC per epoch (the real pause and resume: tests/runs/test_resume.py)."""
import json

import numpy as np
import pandas as pd
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.core.files import write_csv, write_json
from kandel_repro.grid import grid as grid_mod
from kandel_repro.grid.grid import GridOptions
from kandel_repro.grid.halving import replay
from kandel_repro.runs import rundir
from kandel_repro.runs.rundir import read_search as read_stopped
from kandel_repro.runs import train as train_mod
from kandel_repro.runs.settings import UserSettings
from kandel_repro.studies.registry import get_study

EPOCHS = 9
NAMES = [c.folder for c in get_study("table2").cells()]
# each cell's validation AUC per epoch: noisy rises to a level of its own; three stop
# early (shorter histories), one after the first rung
RNG = np.random.default_rng(7)
HISTORIES = {name: list(np.round(0.5 + (0.02 * (i % 7) + 0.01 * (i // 7))
                                 * np.log1p(np.arange(1, EPOCHS + 1))
                                 + RNG.normal(0, 0.01, EPOCHS), 4))
             for i, name in enumerate(NAMES)}
for name, length in ((NAMES[2], 2), (NAMES[9], 5), (NAMES[13], 7)):
    HISTORIES[name] = HISTORIES[name][:length]
SETTINGS = UserSettings(weights="none", max_epochs=EPOCHS)
HALVING = GridOptions(search="halving", eta=3, min_epochs=1)
DEFAULTS = GridOptions(search="halving")  # (η 3, R 1: the same search)


def _played(calls, kill_on=None, fail_on=None):
    """A train_run that plays HISTORIES: epochs from the paused one (resume.npz) to
    ``pause_after`` or the history's end; a KeyboardInterrupt at call ``kill_on``, an
    error at call ``fail_on``."""
    def fake(run_dir, data, config, verbose="auto", deadline=None, pause_after=None,
             resume=True):
        calls.append((run_dir.name, pause_after))
        if kill_on is not None and len(calls) == kill_on:
            raise KeyboardInterrupt
        if fail_on is not None and len(calls) == fail_on:
            raise RuntimeError("out of memory (a test's)")
        history = HISTORIES[run_dir.name]
        state = run_dir / rundir.RESUME
        done = 0
        if resume and state.is_file():
            with np.load(state) as npz:
                done = json.loads(npz["facts"].tobytes())["epochs"]
        else:
            rundir.start(run_dir)
        (run_dir / rundir.SEARCH).unlink(missing_ok=True)
        write_json(run_dir / rundir.CONFIG, dict(config.to_config(), n_train=48, n_val=12,
                                                 n_test=20, precision="float32",
                                                 device="CPU (written by a test)"))
        end = len(history) if pause_after is None else min(pause_after, len(history))
        assert end > done, (run_dir.name, done, pause_after)
        write_csv(run_dir / rundir.HISTORY, pd.DataFrame(
            {"epoch": range(1, end + 1), "val_auc": history[:end], "train_seconds": 2.0,
             "loss": 0.5}))
        if end == pause_after and end < len(history):
            facts = np.frombuffer(json.dumps({"epochs": end}).encode(), dtype=np.uint8)
            np.savez(state, facts=facts)
            return {"status": "paused", "epochs_run": end, "val_auc": max(history[:end])}
        state.unlink(missing_ok=True)
        metrics = {"status": "ok", "val_auc": max(history), "epochs_run": end,
                   "best_epoch": int(np.argmax(history)) + 1}
        write_json(run_dir / rundir.METRICS, metrics)
        return metrics
    return fake


def _search(tiny_pcam, runs, monkeypatch, calls, kill_on=None, options=HALVING, fail_on=None):
    monkeypatch.setattr(train_mod, "train_run", _played(calls, kill_on, fail_on))
    return grid_mod.run_grid("table2", tiny_pcam, runs, options, SETTINGS, log=lambda m: None)


def test_the_search_decides_as_the_replayed_rule(tiny_pcam, tmp_path, monkeypatch):
    calls = []
    statuses = _search(tiny_pcam, tmp_path / "runs", monkeypatch, calls, options=DEFAULTS)
    assert json.loads((tmp_path / "runs" / "grid.json").read_text())["search"] == {
        "method": "halving", "eta": 3, "min_epochs": 1}  # (the defaults)
    expected = replay(HISTORIES, 3, 1, EPOCHS)
    assert expected.rungs[0][0] == 1 and [r[0] for r in expected.rungs] == [1, 3]
    for name in NAMES:
        folder = tmp_path / "runs" / name
        at = expected.stopped_at[name]
        if at is None:  # trained to its end
            assert statuses[name] == "ok" and rundir.is_finished(folder)
        elif at < len(HISTORIES[name]):  # dropped while it could still train
            assert statuses[name] == "stopped"
            stopped = read_stopped(folder)
            assert stopped["stopped_at_epoch"] == at
            assert stopped["val_auc"] == pytest.approx(max(HISTORIES[name][:at]))
        else:  # it stopped by itself before the rung that dropped it: finished
            assert rundir.is_finished(folder) and read_stopped(folder) is None
    # the epochs it trained are the replay's; the chosen cell is the best survivor's
    trained = sum(len(pd.read_csv(tmp_path / "runs" / n / rundir.HISTORY)) for n in NAMES)
    assert trained == expected.epochs < expected.grid_epochs
    finished = {n: rundir.read_metrics(tmp_path / "runs" / n)["val_auc"] for n in NAMES
                if expected.stopped_at[n] is None}
    assert max(finished, key=finished.get) == expected.chosen
    # every run trains to the first rung, the survivors on from where they paused
    assert sorted(n for n, p in calls if p == 1) == sorted(
        n for n in NAMES if len(HISTORIES[n]) >= 1)
    assert all(p in (1, 3, None) for _, p in calls)


@pytest.mark.parametrize("kill_on", [len(NAMES) + 1, len(NAMES) + 3])
def test_a_search_killed_between_or_inside_rungs_resumes_to_the_same_end(
        tiny_pcam, tmp_path, monkeypatch, kill_on):
    whole = _search(tiny_pcam, tmp_path / "whole", monkeypatch, [])
    calls = []
    with pytest.raises(KeyboardInterrupt):  # the second rung's first run, or its third
        _search(tiny_pcam, tmp_path / "killed", monkeypatch, calls, kill_on=kill_on)
    assert calls[-1][1] == 3 and all(p == 1 for _, p in calls[:len(NAMES)])
    done_at_three = [n for n, p in calls[len(NAMES):-1]]
    calls.clear()
    resumed = _search(tiny_pcam, tmp_path / "killed", monkeypatch, calls)
    assert all(p != 1 for _, p in calls)  # no run of the first rung trained again
    assert not {n for n, p in calls if p == 3} & set(done_at_three)  # nor of the second
    assert resumed == whole
    for name in NAMES:
        assert read_stopped(tmp_path / "killed" / name) == read_stopped(tmp_path / "whole" / name)
    # run again once finished: nothing trains, nothing changes
    calls.clear()
    assert _search(tiny_pcam, tmp_path / "killed", monkeypatch, calls) == {
        n: ("skipped" if s == "ok" else s) for n, s in whole.items()}
    assert calls == []


def test_a_plain_grid_finishes_what_the_search_stopped(tiny_pcam, tmp_path, monkeypatch):
    _search(tiny_pcam, tmp_path / "runs", monkeypatch, [])
    stopped = [n for n in NAMES if read_stopped(tmp_path / "runs" / n)]
    calls = []
    statuses = _search(tiny_pcam, tmp_path / "runs", monkeypatch, calls, options=GridOptions())
    assert sorted(n for n, _ in calls) == sorted(stopped) and stopped
    assert all(statuses[n] == "ok" and read_stopped(tmp_path / "runs" / n) is None
               for n in stopped)


def test_a_run_that_fails_at_a_rung_stops_the_search_until_it_trains(tiny_pcam, tmp_path,
                                                                      monkeypatch):
    whole = _search(tiny_pcam, tmp_path / "whole", monkeypatch, [])
    logs = []
    monkeypatch.setattr(train_mod, "train_run", _played([], fail_on=3))
    statuses = grid_mod.run_grid("table2", tiny_pcam, tmp_path / "runs", HALVING, SETTINGS,
                                 log=logs.append)
    assert statuses[NAMES[2]] == "failed" and "stopped" not in statuses.values()
    assert any("search: stopped at this rung: 1 run(s) failed" in line for line in logs)
    assert (tmp_path / "runs" / NAMES[2] / rundir.ERROR).is_file()
    assert _search(tiny_pcam, tmp_path / "runs", monkeypatch, []) == whole  # once it trains


@pytest.mark.parametrize("options, message", [
    (GridOptions(search="halving", shard="1/2"), "cannot: run the search without --shard"),
    (GridOptions(search="halving", min_epochs=9), "leaves no rung below"),
    (GridOptions(search="halving", eta=1), "--eta must be a whole number ≥ 2"),
    (GridOptions(search="random"), "--search must be one of halving"),
    (GridOptions(eta=2), "--eta and --min-epochs apply to --search halving"),
])
def test_a_search_it_cannot_run_is_refused_before_any_run(tiny_pcam, tmp_path, options,
                                                          message):
    with pytest.raises(ConfigError, match=message):
        grid_mod.run_grid("table2", tiny_pcam, tmp_path / "runs", options, SETTINGS,
                          log=lambda m: None)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_table_of_a_searched_grid_shows_the_stopped_cells_and_the_cost(
        tiny_pcam, tmp_path, monkeypatch):
    from kandel_repro.report.tables import write_table

    _search(tiny_pcam, tmp_path / "runs", monkeypatch, [])
    expected = replay(HISTORIES, 3, 1, EPOCHS)
    paths = write_table("table2", tmp_path / "runs", tmp_path / "tables", log=lambda m: None)
    markdown = next(p for p in paths if str(p).endswith(".md")).read_text()
    dropped = [n for n in NAMES if expected.stopped_at[n] is not None
               and expected.stopped_at[n] < len(HISTORIES[n])]
    for name in dropped:
        at = expected.stopped_at[name]
        assert f"stopped at epoch {at} (validation AUC {max(HISTORIES[name][:at]):.4f})" \
            in markdown
    assert "## What the search cost" in markdown
    finished = [n for n in NAMES if n not in dropped]
    mean = np.mean([len(HISTORIES[n]) for n in finished])
    full = sum(len(HISTORIES[n]) for n in finished) + sum(
        max(expected.stopped_at[n], mean) for n in dropped)
    assert (f"stopped {len(dropped)}: {expected.epochs} epochs of an estimated {full:.0f} "
            f"for the full grid ({expected.epochs / full:.0%})") in markdown
    assert f"{2 * expected.epochs} training seconds" in markdown


def test_with_two_seeds_a_cell_is_ranked_by_its_seeds_mean_and_they_share_its_fate(
        tiny_pcam, tmp_path, monkeypatch):
    import math

    # seed 1 of each cell: seed 0's history with noise, so that the mean of the two, not
    # either seed alone, ranks the cells
    rng = np.random.default_rng(11)
    for name in NAMES:
        monkeypatch.setitem(HISTORIES, f"{name}_seed1", list(np.round(
            np.array(HISTORIES[name]) + rng.normal(0, 0.05, len(HISTORIES[name])), 4)))
    statuses = _search(tiny_pcam, tmp_path / "runs", monkeypatch, [],
                       options=GridOptions(search="halving", seeds=2))

    def runs(cell):
        return (cell, f"{cell}_seed1")

    def score(cell, epoch):
        return np.mean([max(HISTORIES[n][:epoch]) for n in runs(cell)])

    alive, stopped_at = list(NAMES), {}
    for epoch in (1, 3):  # the rungs of R 1, η 3 below 9 epochs
        keep = math.ceil(len(alive) / 3)
        ranked = sorted(alive, key=lambda c: (-score(c, epoch), NAMES.index(c)))
        stopped_at.update({c: epoch for c in ranked[keep:]})
        alive = ranked[:keep]
    assert len(alive) == 2 and len(stopped_at) == 13
    for cell in NAMES:
        for name in runs(cell):
            if cell in stopped_at and len(HISTORIES[name]) > stopped_at[cell]:
                expected = "stopped"  # dropped with its cell while it could still train
            else:
                expected = "ok"  # a survivor's, or one that ended by itself before the rung
            assert statuses[name] == expected, (name, statuses[name])

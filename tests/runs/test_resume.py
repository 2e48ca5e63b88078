"""A run paused after an epoch and resumed ends as if it had never stopped
(kandel_repro.runs.epochs): the histories, the best model and the predictions equal an
uninterrupted run's, with the fused augmentation, with ImageDataGenerator's, with a
strategy that changes what trains each epoch, with an optimiser per group of variables
(SGD's momentum), under a distribution strategy, after a kill in the epochs that followed
the pause, and after the time budget stopped the run."""
import numpy as np
import pandas as pd
import pytest

from kandel_repro.readers.registry import get_reader
from kandel_repro.runs import epochs, rundir
from kandel_repro.runs.config import resolve_config
from kandel_repro.runs.train import train_run

CASES = {"fast": {}, "imagedatagenerator": {"augmenter": "imagedatagenerator"},
         "gradual": {"strategy": "gradual"},
         "two optimisers": {"head_lr_mult": 10.0, "optimizer": "sgd", "momentum": 0.9},
         "mirrored": {"distribute": "mirrored"}}


@pytest.fixture(scope="module")
def data(tiny_pcam):
    return get_reader("pcam").load(tiny_pcam, progress=False, workers=1)


def _config(data, tiny_pcam, **extra):
    # patience 2 of 4 epochs: early stopping's counter matters across the pause
    config = resolve_config("vgg16", 4, 1e-3, weights="none", max_epochs=4, batch_size=16,
                            patience=2, **extra)
    return config.updated(data_dir=str(tiny_pcam), data_fingerprint=data.fingerprint)


def _same_run(a, b):
    history_a, history_b = (pd.read_csv(d / rundir.HISTORY) for d in (a, b))
    columns = [c for c in history_a.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(history_a[columns], history_b[columns])
    pd.testing.assert_frame_equal(pd.read_csv(a / rundir.VAL_PREDICTIONS),
                                  pd.read_csv(b / rundir.VAL_PREDICTIONS))
    import keras

    weights_a, weights_b = (keras.saving.load_model(d / rundir.BEST_MODEL).get_weights()
                            for d in (a, b))
    assert all(np.array_equal(x, y) for x, y in zip(weights_a, weights_b))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_paused_run_resumed_equals_an_uninterrupted_one(data, tiny_pcam, tmp_path, case):
    config = _config(data, tiny_pcam, **CASES[case])
    whole = train_run(tmp_path / "whole", data, config, verbose=0)
    paused = train_run(tmp_path / "paused", data, config, verbose=0, pause_after=2)
    assert paused["status"] == "paused" and paused["epochs_run"] == 2
    assert (tmp_path / "paused" / rundir.RESUME).is_file()
    assert not rundir.is_finished(tmp_path / "paused")
    assert epochs.paused_epochs(tmp_path / "paused") == 2
    resumed = train_run(tmp_path / "paused", data, config, verbose=0)
    assert not (tmp_path / "paused" / rundir.RESUME).exists()
    assert resumed["epochs_run"] == whole["epochs_run"] >= 3
    assert resumed["val_auc"] == whole["val_auc"]
    assert resumed["best_epoch"] == whole["best_epoch"]
    _same_run(tmp_path / "whole", tmp_path / "paused")


def _after_epoch(monkeypatch, epoch, action):
    """Call ``action`` once a run has written the history of ``epoch`` epochs (the end of
    that epoch's validation, its best model saved)."""
    real = epochs.write_csv

    def write_then_act(path, frame):
        real(path, frame)
        if len(frame) == epoch:
            action()

    monkeypatch.setattr(epochs, "write_csv", write_then_act)


@pytest.mark.slow
def test_a_run_killed_after_its_pause_resumes_from_the_pause(data, tiny_pcam, tmp_path,
                                                             monkeypatch):
    config = _config(data, tiny_pcam)
    train_run(tmp_path / "whole", data, config, verbose=0)
    train_run(tmp_path / "killed", data, config, verbose=0, pause_after=2)

    def kill():
        raise KeyboardInterrupt

    # (the third epoch's row and best model are written, then…)
    _after_epoch(monkeypatch, 3, kill)
    with pytest.raises(KeyboardInterrupt):
        train_run(tmp_path / "killed", data, config, verbose=0)
    monkeypatch.undo()
    assert len(pd.read_csv(tmp_path / "killed" / rundir.HISTORY)) == 3
    assert epochs.paused_epochs(tmp_path / "killed") == 2  # the pause's state, intact
    train_run(tmp_path / "killed", data, config, verbose=0)
    _same_run(tmp_path / "whole", tmp_path / "killed")


@pytest.mark.slow
def test_a_run_the_time_budget_stopped_resumes_from_that_epoch(data, tiny_pcam, tmp_path,
                                                               monkeypatch):
    import time as real_time
    import types

    from kandel_repro.runs.train import TimeBudgetExceeded

    config = _config(data, tiny_pcam)
    train_run(tmp_path / "whole", data, config, verbose=0)
    late = {"by": 0.0}
    _after_epoch(monkeypatch, 2, lambda: late.update(by=10.0 ** 7))  # the clock jumps
    monkeypatch.setattr(epochs, "time", types.SimpleNamespace(
        time=lambda: real_time.time() + late["by"], perf_counter=real_time.perf_counter))
    with pytest.raises(TimeBudgetExceeded, match=r"after epoch 2 .*\(it resumes from there\)"):
        train_run(tmp_path / "budget", data, config, verbose=0,
                  deadline=real_time.time() + 10.0 ** 6)
    monkeypatch.undo()
    assert epochs.paused_epochs(tmp_path / "budget") == 2
    assert not rundir.is_finished(tmp_path / "budget")
    metrics = train_run(tmp_path / "budget", data, config, verbose=0)
    _same_run(tmp_path / "whole", tmp_path / "budget")
    assert metrics["wall_seconds"] > 0


def test_a_paused_run_with_other_settings_is_refused(data, tiny_pcam, tmp_path):
    from kandel_repro.core.errors import ConfigError

    config = _config(data, tiny_pcam)
    assert train_run(tmp_path / "run", data, config.updated(max_epochs=2), verbose=0,
                     pause_after=1)["status"] == "paused"
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="a paused run made with other settings .*"
                                          "delete .*resume.npz"):
        train_run(tmp_path / "run", data, config.updated(learning_rate=1e-4), verbose=0)
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == before and epochs.paused_epochs(tmp_path / "run") == 1  # nothing touched
    # --rerun's way: trained from its start, the paused state dropped
    metrics = train_run(tmp_path / "run", data, config.updated(learning_rate=1e-4,
                                                               max_epochs=2),
                        verbose=0, resume=False)
    assert metrics["epochs_run"] == 2 and not (tmp_path / "run" / rundir.RESUME).exists()


@pytest.mark.parametrize("damage", ["not a zip", "truncated"])
def test_a_damaged_pause_file_is_named(tmp_path, damage):
    import io

    from kandel_repro.core.errors import ConfigError

    if damage == "truncated":  # (a real state cut short: zipfile's own error)
        buffer = io.BytesIO()
        np.savez(buffer, facts=np.frombuffer(b'{"epochs": 2}', dtype=np.uint8),
                 v0=np.zeros(1000))
        (tmp_path / rundir.RESUME).write_bytes(buffer.getvalue()[:200])
    else:
        (tmp_path / rundir.RESUME).write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="resume.npz cannot be read"):
        epochs.paused_epochs(tmp_path)


def test_a_state_left_beside_a_finished_run_is_not_resumed(tmp_path):
    from kandel_repro.core.files import write_json

    np.savez(tmp_path / rundir.RESUME, facts=np.frombuffer(b'{"epochs": 2}', dtype=np.uint8))
    assert epochs.paused_epochs(tmp_path) == 2
    write_json(tmp_path / rundir.METRICS, {"status": "ok", "val_auc": 0.9})
    assert epochs.paused_epochs(tmp_path) is None

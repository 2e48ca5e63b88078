"""Atomic writes and staging names (kandel_repro.core.files)."""
import os
import stat

import pytest

from kandel_repro.core.files import FILE_MODE, read_json, write_json, write_text


def test_result_files_get_the_usual_permissions_not_mkstemps(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    write_json(tmp_path / "x.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == FILE_MODE == 0o666 & ~mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_json(tmp_path / "x.json", {"a": 1})
    with pytest.raises(TypeError, match="cannot write object"):
        write_json(tmp_path / "x.json", {"a": object()})
    assert read_json(tmp_path / "x.json") == {"a": 1}
    write_text(tmp_path / "t.txt", "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt", "x.json"]


def test_no_nan_is_ever_written_into_json(tmp_path):
    import json

    import numpy as np

    write_json(tmp_path / "m.json", {"val_auc": float("nan"), "rates": [np.float64("inf"), 0.5],
                                     "n": np.int64(3)})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"val_auc": None, "rates": [None, 0.5], "n": 3}


def _dead_pid():
    """The id of a process that has ended."""
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_a_staging_name_lies_beside_its_path_and_names_the_host_and_the_process(tmp_path):
    from kandel_repro.core.files import HOST, staging_path

    target = tmp_path / "cache"
    assert staging_path(target) == tmp_path / f".cache.tmp-{HOST}-{os.getpid()}"
    assert staging_path(str(target), "old") == tmp_path / f".cache.old-{HOST}-{os.getpid()}"
    model = staging_path(tmp_path / "best_model.keras", suffix=".keras")
    assert model.name == f".best_model.keras.tmp-{HOST}-{os.getpid()}.keras"
    assert "/" not in HOST and " " not in HOST


def test_only_the_staging_folders_of_dead_processes_of_this_host_are_removed(tmp_path):
    from kandel_repro.core.files import HOST, remove_stale_staging

    dead, alive = _dead_pid(), os.getpid()
    names = {f".out.tmp-{HOST}-{dead}": False, f".out.old-{HOST}-{dead}": True,
             f".out.tmp-{HOST}-{alive}": True, f".out.tmp-elsewhere-{dead}": True,
             f".out.tmp-{dead}": True, f".other.tmp-{HOST}-{dead}": True, "out": True}
    for name in names:
        (tmp_path / name / "half").mkdir(parents=True)
    remove_stale_staging(tmp_path / "out")
    assert {name: (tmp_path / name).exists() for name in names} == names
    remove_stale_staging(tmp_path / "out", kinds=("tmp", "old"), hostless=True)
    left = {name for name in names if (tmp_path / name).exists()}
    assert left == {f".out.tmp-{HOST}-{alive}", f".out.tmp-elsewhere-{dead}",
                    f".other.tmp-{HOST}-{dead}", "out"}
    remove_stale_staging(tmp_path / "gone" / "out")  # no folder: nothing to remove


def test_a_process_is_alive_while_it_runs():
    from kandel_repro.core.files import process_alive

    assert process_alive(os.getpid()) and not process_alive(_dead_pid())

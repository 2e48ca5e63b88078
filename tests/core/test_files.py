"""Atomic writes (kandel_repro.core.files)."""
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

import subprocess
import sys

from kandel_repro.cli import main


def test_help_lists_every_verb():
    out = subprocess.run([sys.executable, "-m", "kandel_repro", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for verb in ("data", "blocks", "train", "grid", "table"):
        assert verb in out


def test_grid_without_data_stops_with_a_message(tmp_path, capsys):
    code = main(["grid", "table2", "--data", str(tmp_path / "pcam"), "--runs", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not exist" in err and "histopathologic-cancer-detection" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_grid_without_weights_stops_before_training(tiny_pcam, tmp_path, capsys, monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    code = main(["grid", "table2", "--data", str(tiny_pcam), "--runs", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in err
    assert not (tmp_path / "r").exists()


def test_synthetic_then_table_from_cli(tmp_path, capsys):
    assert main(["data", "synthetic", "--out", str(tmp_path / "s"), "--train", "8", "--test",
                 "4", "--size", "32", "--quiet"]) == 0
    assert (tmp_path / "s" / "train_labels.csv").exists()
    assert main(["data", "synthetic", "--out", str(tmp_path / "s"), "--train", "9", "--quiet"]) == 2
    assert "already holds" in capsys.readouterr().err
    (tmp_path / "runs" / "vgg16_blocks5-5_lr1e-03").mkdir(parents=True)  # started, not done
    assert main(["table", "table2", "--runs", str(tmp_path / "runs"), "--out",
                 str(tmp_path / "t")]) == 0
    assert "Runs finished: 0 of 15" in (tmp_path / "t" / "table2.md").read_text()


def test_verify_says_what_it_checks_and_what_not(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["data", "verify", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "does not decode the images" in out and "checksums" in out

import subprocess
import sys

from kandel_repro.cli.main import main


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


def test_train_by_layer_needs_no_block_and_refuses_both(tmp_path, capsys, monkeypatch):
    import pytest

    from kandel_repro.runs import single

    calls = []
    monkeypatch.setattr(single, "train_single", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    common = ["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--lr", "1e-4"]
    assert main([*common, "--first-layer", "14"]) == 0
    (args, kwargs), = calls
    assert args[3] == 1 and kwargs["first_trainable_layer"] == 14  # blocks as a layer-wise study's
    with pytest.raises(SystemExit):
        main([*common, "--first-layer", "1", "--first-block", "5"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(common)
    assert "one of the arguments --first-block --first-layer is required" in capsys.readouterr().err


def test_tensorflows_start_up_noise_is_left_out_of_the_console(tmp_path):
    """What TensorFlow's native code prints on start (absl, CUDA probes) does not bury the
    command's own output; Python's own standard error still arrives."""
    from kandel_repro.cli.console import NATIVE_NOISE

    done = subprocess.run([sys.executable, "-c", "import sys; from kandel_repro.cli.main import main; "
                           "sys.exit(main())", "blocks", "vgg16", "--json"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and '"block1_conv1"' in done.stdout
    assert not [line for line in done.stderr.splitlines()
                if any(noise in line for noise in NATIVE_NOISE)], done.stderr
    child = ("import os, sys; from kandel_repro.cli.console import quiet_native_startup\n"
             "with quiet_native_startup():\n"
             "    os.write(2, b'I0000 cudart_stub.cc:31] Could not find cuda drivers\\nnative kept\\n')\n"
             "    print('python kept', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    # (the two arrive by different paths: their order is not kept)
    assert sorted(done.stderr.splitlines()) == ["native kept", "python kept"]


def test_output_cut_short_by_its_reader_is_no_traceback():
    """``kandel-repro blocks vgg16 --json | head -1``: the reader closes the pipe before
    the command has written (here: at once), and the command ends without a traceback."""
    process = subprocess.Popen([sys.executable, "-m", "kandel_repro", "blocks", "vgg16",
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr

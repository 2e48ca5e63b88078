"""The check of a run's ImageNet weights before anything is written, at the run's own
input size: MobileNet and MobileNetV2 have a weights file per size."""
import pytest


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
def test_train_checks_the_weights_file_of_its_own_image_size(tiny_breakhis, no_download,
                                                             tmp_path, capsys):
    from kandel_repro.cli.main import main

    run_dir = tmp_path / "out" / "run"
    status = main(["train", "--dataset", "breakhis", "--data", str(tiny_breakhis),
                   "--backbone", "MobileNetV2", "--image-size", "96", "--first-block", "5",
                   "--lr", "1e-4", "--epochs", "1", "--run-dir", str(run_dir),
                   "--cache", str(tmp_path / "cache")])
    expected = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    error = capsys.readouterr().err.strip()
    assert status == 2 and no_download == [expected]
    assert error.startswith("kandel-repro: error: could not download the ImageNet weights of "
                            "mobilenet_v2") and "\n" not in error
    assert f"Put the file {expected} into {tmp_path / 'keras' / 'models'}/" in error
    assert not (tmp_path / "out").exists()  # refused before the run folder is made

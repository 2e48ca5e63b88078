"""Trainable parameters and time per step of each depth (kandel_repro.measure.cost, `kandel-repro cost`)."""
import pandas as pd
import pytest

from kandel_repro.cli.main import main
from kandel_repro.core.errors import ConfigError
from kandel_repro.measure.cost import default_size, depth_costs
from kandel_repro.report import plots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cost_command_measures_each_depth(tmp_path, capsys):
    assert main(["cost", "vgg16", "--image-size", "32", "--batch-size", "4", "--steps", "1",
                 "--warm", "1", "--first-blocks", "5", "3", "1", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "cost_vs_depth.csv")
    assert frame["blocks"].tolist() == ["5", "3–5", "1–5"]
    assert frame["trainable_parameters"].is_monotonic_increasing
    assert frame["trainable_parameters"].nunique() == 3
    # The whole network trains every parameter; the top block only, block 5 + the head.
    assert frame["trainable_parameters"].iloc[-1] == frame["total_parameters"].iloc[-1]
    assert frame["trainable_parameters"].iloc[0] == 3 * (3 * 3 * 512 * 512 + 512) + 512 + 1
    assert (frame["seconds_per_step"] > 0).all()
    assert (tmp_path / "cost_vs_depth.png").read_bytes()[:8] == PNG
    fig = plots.cost_vs_depth(pd.concat([frame, frame.assign(backbone="copy")]))
    assert len(fig.axes) == 4  # two panels, each with its twin axis


def test_cost_refuses_images_too_small_for_the_backbone():
    with pytest.raises(ConfigError, match="--image-size 32: inception_v3 needs images of at "
                                          "least 75×75"):
        depth_costs("inception_v3", image_size=32)


def test_without_a_size_each_backbone_is_measured_at_its_smallest_on_a_cpu():
    assert default_size("inception_v3") == 75 and default_size("vgg16") == 32
    assert default_size("cbr_tiny") == 32  # at least 32, though it takes 16

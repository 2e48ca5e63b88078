"""The depth study (``grid depth --backbone B --dataset D``): the paper's depth ×
learning-rate grid for any backbone on any data set, and its table on multi-class runs
(macro AUC, bootstrap intervals and paired tests, the confusion matrix, the questions
it answers). The runs are written as a grid would leave them, without training."""
import pandas as pd
import pytest
from helpers import three_class_set, write_study_runs

from kandel_repro.core.errors import ConfigError
from kandel_repro.readers.synthetic.folder import write_synthetic_folder
from kandel_repro.report.tables import write_table
from kandel_repro.studies.cells import study_configs
from kandel_repro.studies.registry import get_study


def test_the_depth_study_is_made_for_the_backbone_and_data_set_asked_for():
    study = get_study("depth", backbone="inception_v3", dataset="csv")
    assert (study.protocol, study.dataset, study.backbones) == ("own", "csv", ("inception_v3",))
    assert [level.label for level in study.rows][:2] == ["13", "12–13"]
    assert [level.label for level in study.columns] == ["1e-3", "1e-4", "1e-5"]
    assert study.findings[1].claim == ("rows_apart", "1–13", "13") and not study.paper
    on_breakhis = get_study("depth", backbone="vgg19", dataset="breakhis")
    assert on_breakhis.protocol == "breakhis" and on_breakhis.backbones == ("vgg19",)
    with pytest.raises(ConfigError, match="table2 trains vgg16 itself; --backbone applies to "
                                          "the depth study"):
        get_study("table2", backbone="vgg19")


def test_the_grid_command_line_takes_the_depth_studys_backbone_and_data_set():
    from kandel_repro.cli.options import build_parser

    args = build_parser().parse_args(["grid", "depth", "--backbone", "vgg19", "--dataset", "csv",
                                      "--data", "m.csv", "--runs", "r", "--group-column",
                                      "patient", "--bootstrap", "500"])
    assert (args.backbone, args.dataset, args.group_column, args.bootstrap) == (
        "vgg19", "csv", "patient", 500)


def write_depth_runs(runs, data, data_dir, backbone, quality):
    """The runs of the depth study of ``backbone`` on ``data`` as a grid leaves them:
    test predictions whose quality is ``quality[row label]`` (halved off 1e-4), seed 0;
    trainable parameters growing with the depth."""
    study = get_study("depth", backbone=backbone, dataset="folder")
    write_study_runs(
        runs, study, study_configs(study, weights="none", image_size=32), data, data_dir,
        lambda cell: quality[cell.row.label] * (1.0 if cell.column.label == "1e-4" else 0.5),
        metrics=lambda cell: {"trainable_parameters": 1000 * 4 ** (
            len(study.rows) - cell.first_trainable_block + 1)})  # 4 ** (trained blocks)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    return (root, *three_class_set(root))


@pytest.fixture(scope="module")
def depth_runs(own_data):
    """The 15 runs of the depth study (VGG16) on a 3-class set: blocks 3–5 and 2–5 alike
    and best at 1e-4, the top block alone far below."""
    root, data_dir, data = own_data
    runs = root / "runs"
    write_depth_runs(runs, data, data_dir, "vgg16",
                     {"5": 0.2, "4–5": 0.6, "3–5": 2.5, "2–5": 2.5, "1–5": 1.0})
    return runs


def test_a_multiclass_depth_table_shows_macro_aucs_intervals_ties_and_answers(depth_runs, tmp_path):
    written = write_table("depth", depth_runs, tmp_path, bootstrap=300)
    names = sorted(path.name for path in written)
    assert "depth_confusion.png" in names and "depth_radar.png" in names
    assert "depth_roc.png" not in names  # one-vs-rest ROC curves: not drawn for k ≥ 3
    md = (tmp_path / "depth.md").read_text()
    assert "How deeply to fine-tune VGG16 — your data (folder layout)" in md
    assert "macro one-vs-rest ROC AUC on the held-out" in md
    assert "a 95 % stratified-bootstrap interval" in md
    assert "the paired stratified bootstrap of the macro AUC (300 resamples)" in md
    assert "- Classes: 3 (" in md and "synthetic 3-class set" in md
    assert "## What the runs answer (no paper speaks of this grid)" in md
    cells = pd.read_csv(tmp_path / "depth_cells.csv")
    best = cells[cells["best"]]
    assert list(best["row"]) in (["3–5"], ["2–5"]) and list(best["learning_rate"]) == [1e-4]
    tied = cells[cells["tied_with_best"] == True]  # noqa: E712 - a column of objects
    assert {"3–5", "2–5"} - set(best["row"]) <= set(tied["row"])
    assert "5" not in set(tied["row"])
    assert "**answered** (one run per cell, seed 0): the best is blocks" in md
    assert "tied with it: blocks" in md
    assert "Is fine-tuning the whole network (blocks 1–5) distinguishable from the top block " \
           "alone (block 5) at each learning rate? — **distinguishable**" in md
    assert "[0." in md  # each cell: its AUC and interval


def test_the_depth_tables_backbone_comes_from_its_runs_unless_given(depth_runs, tmp_path):
    write_table("depth", depth_runs, tmp_path, backbone="vgg16", dataset="folder", bootstrap=200)
    assert "VGG16" in (tmp_path / "depth.md").read_text()
    with pytest.raises(ConfigError, match="holds no run of depth"):
        write_table("depth", depth_runs, tmp_path / "other", backbone="vgg19", bootstrap=200)


def test_several_backbones_get_a_table_each_and_a_comparison_of_their_depths(own_data, depth_runs,
                                                                            tmp_path):
    import shutil

    root, data_dir, data = own_data
    runs = tmp_path / "runs"
    shutil.copytree(depth_runs, runs)
    write_depth_runs(runs, data, data_dir, "vgg19",
                     {"5": 1.5, "4–5": 0.6, "3–5": 0.5, "2–5": 0.4, "1–5": 0.3})
    written = {path.relative_to(tmp_path / "out").as_posix()
               for path in write_table("depth", runs, tmp_path / "out", bootstrap=200)}
    assert {"vgg16/depth.md", "vgg19/depth.md", "depth_backbones.csv",
            "depth_backbones.png"} <= written
    assert "VGG19" in (tmp_path / "out" / "vgg19" / "depth.md").read_text()
    frame = pd.read_csv(tmp_path / "out" / "depth_backbones.csv")
    assert sorted(frame["backbone"].unique()) == ["vgg16", "vgg19"] and len(frame) == 10
    best = frame[frame["best_depth"]].set_index("backbone")["depth"]
    assert best["vgg19"] == "5" and best["vgg16"] in ("3–5", "2–5")
    assert (frame.groupby("backbone")["trainable_parameters"].max() == 1000 * 4 ** 5).all()
    only = write_table("depth", runs, tmp_path / "one", backbone="vgg19", bootstrap=200)
    assert (tmp_path / "one" / "depth.md") in only


def test_a_grid_of_several_backbones_checks_them_all_before_training(tmp_path):
    from kandel_repro.grid.grid import GridOptions, run_grid
    from kandel_repro.runs.settings import UserSettings

    data = write_synthetic_folder(tmp_path / "tiles", classes=3, images=12, patients=12,
                                  size=8, seed=0, progress=False)
    with pytest.raises(ConfigError, match="--image-size 40: inception_v3 needs images of at "
                                          "least 75×75"):
        run_grid("depth", data, tmp_path / "runs",
                 GridOptions(backbone="vgg16,inception_v3", dataset="folder"),
                 UserSettings(weights="none", image_size=40))
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="names a backbone twice"):
        run_grid("depth", data, tmp_path / "runs",
                 GridOptions(backbone="vgg16,VGG16", dataset="folder"))


def test_the_depth_study_at_chosen_learning_rates_and_its_table_reads_them(own_data, tmp_path):
    import shutil

    study = get_study("depth", backbone="vgg16", dataset="folder", learning_rates="1e-4")
    assert [c.folder for c in study.cells()][:2] == ["vgg16_blocks5-5_lr1e-04",
                                                       "vgg16_blocks4-5_lr1e-04"]
    with pytest.raises(ConfigError, match="--learning-rates applies to the depth study"):
        get_study("table2", learning_rates="1e-4")
    with pytest.raises(ConfigError, match="--learning-rates takes rates above 0, none twice"):
        get_study("depth", learning_rates="1e-4,0.0001")
    root, data_dir, data = own_data
    runs = tmp_path / "runs"
    write_depth_runs(runs, data, data_dir, "vgg16",
                     {"5": 0.2, "4–5": 0.6, "3–5": 2.5, "2–5": 2.5, "1–5": 1.0})
    for folder in runs.iterdir():  # keep the 1e-4 column only
        if not folder.name.endswith("lr1e-04"):
            shutil.rmtree(folder)
    write_table("depth", runs, tmp_path / "out", bootstrap=200)
    md = (tmp_path / "out" / "depth.md").read_text()
    assert "| Fine-tuned blocks | 1e-4 |" in md and "Runs finished: 5 of 5" in md

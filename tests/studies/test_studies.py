"""The study registry: the paper's tables as data (kandel_repro.studies.registry)."""
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.studies import validation
from kandel_repro.studies.cells import MAX_SEEDS, parse_seeds, study_configs
from kandel_repro.studies.levels import depth_rows, lr_columns
from kandel_repro.studies.registry import STUDIES, get_study
from kandel_repro.studies.types import Study


def test_every_paper_table_is_a_study():
    counts = {name: len(get_study(name).cells()) for name in
              ("table2", "table3", "table4", "table5", "table6", "table7", "table8")}
    assert counts == {"table2": 15, "table3": 15, "table4": 39, "table5": 9,
                      "table6": 15, "table7": 15, "table8": 39}
    rows4 = [level.label for level in get_study("table4").rows]
    assert rows4[0] == "13" and rows4[7] == "6–13" and rows4[-1] == "1–13"
    assert [level.label for level in get_study("table5").rows] == ["VGG16", "VGG19", "InceptionV3"]
    assert get_study("table6").protocol == "breakhis" and get_study("table2").protocol == "pcam"
    assert get_study("table5").backbones == ("vgg16", "vgg19", "inception_v3")


def test_run_folder_names_are_those_grids_have_always_written():
    names = [cell.folder for cell in get_study("table2").cells()]
    assert names[:4] == ["vgg16_blocks5-5_lr1e-03", "vgg16_blocks5-5_lr1e-04",
                         "vgg16_blocks5-5_lr1e-05", "vgg16_blocks4-5_lr1e-03"]
    assert names[-1] == "vgg16_blocks1-5_lr1e-05"
    assert get_study("table4").cells()[3].folder == "inception_v3_blocks12-13_lr1e-03"
    assert [cell.folder for cell in get_study("table5").cells()][::3] == [
        "vgg16_scratch_lr1e-03", "vgg19_scratch_lr1e-03", "inception_v3_scratch_lr1e-03"]


def test_a_cell_carries_its_settings():
    cell = get_study("table2").cells()[7]  # blocks 3–5 at 1e-4
    assert (cell.backbone, cell.first_trainable_block, cell.learning_rate) == ("vgg16", 3, 1e-4)
    assert cell.description == "blocks 3–5, lr 1e-4"
    scratch = get_study("table5").cells()[0]
    assert dict(scratch.settings) == {"weights": "none", "backbone": "vgg16",
                                      "first_trainable_block": 1, "learning_rate": 1e-3}


def test_the_scratch_table_fixes_random_weights_in_any_spelling():
    configs = study_configs(get_study("table5"))
    assert {c["weights"] for c in configs.values()} == {"none"}
    assert {c["first_trainable_block"] for c in configs.values()} == {1}
    for spelling in ("scratch", "random", "None", "none"):  # all mean random weights
        configs = study_configs(get_study("table5"), weights=spelling)
        assert {c["weights"] for c in configs.values()} == {"none"}
    with pytest.raises(ConfigError, match="table5 fixes --weights none; got 'imagenet'"):
        study_configs(get_study("table5"), weights="imagenet")
    with pytest.raises(ConfigError, match="BreakHis only"):
        study_configs(get_study("table2"), image_size=64)


def test_a_new_study_is_an_entry(monkeypatch):
    study = Study("demo-lr", "VGG16 blocks 4–5 at two rates", "pcam", depth_rows("vgg16")[1:2],
                  lr_columns((1e-2, 1e-4)), "Fine-tuned blocks", fixed={"head_pooling": "avg"})
    monkeypatch.setitem(STUDIES, study.name, study)
    configs = study_configs(get_study("demo-lr"), weights="none")
    assert list(configs) == ["vgg16_blocks4-5_lr1e-02", "vgg16_blocks4-5_lr1e-04"]
    assert {c["head_pooling"] for c in configs.values()} == {"avg"}
    assert [c["learning_rate"] for c in configs.values()] == [1e-2, 1e-4]


def test_an_unknown_study_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown study 'table9'; available: table2, table3"):
        get_study("table9")


def test_tajbakhshs_questions_are_entries_of_the_registry():
    layerwise = get_study("layerwise-vgg16")
    assert [level.label for level in layerwise.rows][:3] == ["head only", "13", "12–13"]
    assert layerwise.rows[-1].label == "from scratch" and len(layerwise.cells()) == 15
    assert "layers 11–13 = blocks 5" in [level.phrase for level in layerwise.rows]
    assert len(get_study("layerwise-vgg19").cells()) == 18
    configs = study_configs(layerwise)
    assert configs["vgg16_head_lr1e-04"]["first_trainable_layer"] == 14
    assert configs["vgg16_scratch_lr1e-04"]["weights"] == "none"
    assert configs["vgg16_layers11-13_lr1e-04"]["layers"] == "11–13"
    datasize = study_configs(get_study("datasize"), weights="none")
    assert [c["train_fraction"] for c in datasize.values()][::2] == [1, 0.5, 0.25, 0.125, 0.0625,
                                                                     0.03125]
    assert {c["learning_rate"] for c in datasize.values()} == {1e-4}
    init = study_configs(get_study("init"))
    assert [c["init"] for c in init.values()] == [None, "glorot", "he", "gaussian"]
    assert [c["weights"] for c in init.values()] == ["imagenet", "none", "none", "none"]


def test_the_augmentation_study_crosses_vgg16_depths_with_four_policies():
    from kandel_repro.core.protocol import PCAM, deviations

    study = get_study("augmentation")
    assert [level.label for level in study.columns] == [
        "none", "paper", "paper + colour", "paper + HED strong"]
    assert [level.label for level in study.rows] == ["5", "4–5", "3–5", "2–5", "1–5"]
    configs = study_configs(study, seeds=(0, 1))
    assert len(configs) == 40 and "vgg16_blocks3-5_aug-hed-strong_seed1" in configs
    assert {c["learning_rate"] for c in configs.values()} == {1e-4}
    none, paper = configs["vgg16_blocks5-5_aug-none"], configs["vgg16_blocks5-5_aug-paper"]
    colour, hed = configs["vgg16_blocks5-5_aug-colour"], configs["vgg16_blocks5-5_aug-hed-strong"]
    assert none["augmentation"] is None and deviations(none) == [
        "augmentation: off (paper: on, training split only)"]
    assert paper["augmentation"] == PCAM.augmentation.to_kwargs() and deviations(paper) == []
    assert colour["augmentation"] == paper["augmentation"] and deviations(colour) == [
        "brightness: 0.1 (our default: 0.0)", "contrast: 0.2 (our default: 0.0)",
        "saturation: 0.2 (our default: 0.0)", "hue: 0.05 (our default: 0.0)"]
    assert deviations(hed) == ["stain_jitter: 0.2 (our default: 0.0)"]
    # each cell's augmentation is its own dict: one run cannot change another's
    assert paper["augmentation"] is not configs["vgg16_blocks4-5_aug-paper"]["augmentation"]


def test_the_datasize_fractions_can_be_changed():
    study = get_study("datasize", fractions="1,0.1")
    assert [level.label for level in study.rows] == ["1", "1/10"]
    assert [c.folder for c in study.cells()][:2] == ["frac1_vgg16_blocks3-5", "frac1_vgg16_scratch"]
    for bad in ("0", "2", "a,b", ""):
        with pytest.raises(ConfigError, match="--fractions takes numbers"):
            get_study("datasize", fractions=bad)
    with pytest.raises(ConfigError, match="applies to the datasize and unlabelled studies"):
        get_study("table2", fractions="0.5")


@pytest.mark.parametrize("study, setting, message", [
    ("partial-transfer", {"transfer_blocks": 3},
     r"partial-transfer sets --transfer-blocks itself: its rows \(blocks transferred\) are "
     r"0 \(none\), 1, 2, 3, 4, 5 \(all\); leave --transfer-blocks out$"),
    ("datasize", {"train_fraction": 0.5},
     "datasize sets --train-fraction itself.*choose its values with --fractions"),
    ("init", {"init": "he"}, "init sets --init itself"),
    ("augmentation", {"stain_jitter": "light"}, "augmentation sets --stain-jitter itself: its "
     r"columns \(augmentation \(training split\)\) are none, paper, paper \+ colour"),
    ("augmentation", {"augmentation": None}, "augmentation sets --no-augmentation itself"),
])
def test_a_setting_the_study_varies_is_refused_not_overridden(study, setting, message):
    with pytest.raises(ConfigError, match=message):
        study_configs(get_study(study), **setting)


def test_weights_choose_the_pretrained_rows_where_only_some_rows_are_from_scratch():
    configs = study_configs(get_study("datasize"), weights="none")
    assert {c["weights"] for c in configs.values()} == {"none"}
    with pytest.raises(ConfigError, match="partial-transfer transfers blocks of pretrained "
                       "weights: give --weights imagenet"):
        study_configs(get_study("partial-transfer"), weights="none")


@pytest.mark.parametrize("fractions, message", [
    ("1,1", "names a fraction twice"),
    ("0.1234567,0.1234568", r"0.1234567 and 0.1234568 would share one run folder "
                            r"\(frac0.123457\)"),
])
def test_fractions_that_would_share_a_run_are_refused(fractions, message):
    with pytest.raises(ConfigError, match=message):
        get_study("datasize", fractions)


def test_fractions_keep_their_value_in_the_table():
    labels = [row.label for row in get_study("datasize", "1,0.5,0.50001").rows]
    assert labels == ["1", "1/2", "0.50001"]


def test_a_seed_count_far_beyond_any_study_is_refused_at_once():
    assert len(parse_seeds(MAX_SEEDS)) == MAX_SEEDS
    with pytest.raises(ConfigError, match="--seeds 10000: at most 100 seeds"):
        parse_seeds("10000")


def test_the_registrys_figure_names_are_the_figures_a_table_draws():
    from kandel_repro.report.figures import FIGURES

    assert set(FIGURES) == set(validation.FIGURE_NAMES)
    assert len(set(validation.FIGURE_NAMES)) == len(validation.FIGURE_NAMES)


def test_the_registrys_claim_kinds_are_those_verdict_handles():
    from kandel_repro.core.protocol import CLAIM_KINDS
    from kandel_repro.report import compare

    assert set(CLAIM_KINDS) == set(compare.CLAIM_KINDS)


def _demo(figures=("heatmap",), claim=None):
    from kandel_repro.core.protocol import Finding

    return Study("demo", "VGG16, the top two depths", "pcam", depth_rows("vgg16")[:2],
                 lr_columns((1e-4,)), "Fine-tuned blocks", figures=figures,
                 findings=(Finding("a finding", claim),))


def test_every_registered_study_is_valid():
    for study in STUDIES.values():
        validation.validate_study(study)
    validation.validate_study(_demo(claim=("all", [("best", ("4–5", "1e-4")),
                                                ("worse", ("5", "1e-4"), ("4–5", "1e-4")),
                                                ("best_in_column", "1e-4", "5"),
                                                ("best_in_row", "5", "1e-4"),
                                                ("similar_row", "4–5"),
                                                ("not_converged", [("5", "1e-4")])])))


@pytest.mark.parametrize("study, message", [
    (_demo(figures=("heatmap", "heatmapp")), "study 'demo': unknown figure 'heatmapp'; known: "
                                             "heatmap, curves"),
    (_demo(claim=("bst", ("5", "1e-4"))), "study 'demo': claim .* unknown kind 'bst'; known: all,"),
    (_demo(claim=("all", [("best", ("5", "1e-4")), ("wrose", ("5", "1e-4"))])),
     "study 'demo': claim .* unknown kind 'wrose'"),
    (_demo(claim=("best", ("3–5", "1e-4"))),
     "study 'demo': claim .* names row '3–5'; its rows are 5, 4–5"),
    (_demo(claim=("worse", ("5", "1e-4"), ("5", "1e-3"))),
     "study 'demo': claim .* names column '1e-3'; its columns are 1e-4"),
    (_demo(claim=("best_in_column", "4–5", "1e-4")),  # column and row swapped
     "study 'demo': claim .* names row '1e-4'"),
    (_demo(claim=("similar_row", "3-5")), "study 'demo': claim .* names row '3-5'"),
    (_demo(claim=("not_converged", [("5", "1e-4"), ("5",)])),
     r"study 'demo': claim .*: \('5',\) is not a cell \(row, column\)"),
    (_demo(claim=("best", "5", "1e-4")),
     "study 'demo': claim .*: a 'best' claim has 1 item"),
])
def test_a_study_with_a_bad_figure_or_claim_is_refused(study, message):
    with pytest.raises(ValueError, match=message):
        validation.validate_study(study)

import json
import os

import numpy as np
import pandas as pd
import pytest
from helpers import GOLDEN

from kandel_repro.core.errors import ConfigError
from kandel_repro.core.files import write_json
from kandel_repro.report import collect, figures, header, markdown, tables
from kandel_repro.runs.config import resolve_config
from kandel_repro.studies.registry import get_study

LABELS = np.random.default_rng(1).integers(0, 2, 300)  # one validation split for every run
IDS = [f"v{k:03d}" for k in range(len(LABELS))]


def strength(first, lr):
    """How well a fake cell separates the classes: peaks at blocks 3–5, lr 1e-4."""
    if (first, lr) == (3, 1e-4):
        return 2.6
    if (first, lr) == (2, 1e-4):
        return 2.45  # a close runner-up
    return 0.8 + 0.1 * (5 - first) - (0.6 if (first, lr) == (1, 1e-3) else 0)


def make_runs(root, kaggle=False, seeds=(0,), predictions=True):
    """Fake finished runs, seed by seed, with validation predictions whose AUC is the
    run's val_auc: blocks 3–5 at 1e-4 best, blocks 2–5 at 1e-4 nearly as good."""
    from sklearn.metrics import roc_auc_score

    from kandel_repro.studies.cells import run_name

    for seed in seeds:
        for i, cell in enumerate(get_study("table2").cells()):
            first, lr = cell.first_trainable_block, cell.learning_rate
            name = run_name(cell, seed)
            run = root / name
            run.mkdir(parents=True)
            config = resolve_config("vgg16", first, lr, weights="none", max_epochs=3, seed=seed)
            config = config.updated(dataset="pcam", synthetic=True, image_size=32,
                                    n_train=1200, n_val=300, n_test=300)
            write_json(run / "config.json", config.to_config())
            if cell.folder == "vgg16_blocks2-5_lr1e-03":
                write_json(run / "error.json", {"status": "failed", "error": "RuntimeError: boom"})
                continue
            if cell.folder == "vgg16_blocks1-5_lr1e-05":
                continue  # not finished
            noise = np.random.default_rng([seed, i]).normal(size=len(LABELS))
            scores = 1 / (1 + np.exp(-(LABELS * strength(first, lr) + noise - 1)))
            if predictions:
                pd.DataFrame({"id": IDS, "label": LABELS, "prediction": scores}).to_csv(
                    run / "val_predictions.csv", index=False)
            auc = float(roc_auc_score(LABELS, scores))
            metrics = {"status": "ok", "val_auc": auc, "best_epoch": 2, "epochs_run": 3,
                       "wall_seconds": 10.0 + i, "train_images_per_second": 100.0}
            if kaggle:
                metrics.update(kaggle_private_auc=auc - 0.01, kaggle_public_auc=auc - 0.02)
            write_json(run / "metrics.json", metrics)


def test_table_matches_golden(tmp_path):
    make_runs(tmp_path / "runs")
    table = collect.assemble("table2", tmp_path / "runs")
    text = markdown.render_markdown(table, "kandel-repro table table2 --runs RUNS --out OUT")
    golden = GOLDEN / "table2.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_one_seed_shows_delong_intervals_and_ties(tmp_path):
    from kandel_repro.core import stats

    make_runs(tmp_path / "runs")
    table = collect.assemble("table2", tmp_path / "runs")
    cells = table.cells.set_index(["row", "column"])
    # in this seed the runner-up by design edges ahead: one run per cell decides little
    assert table.best == ("2–5", "1e-4") and cells.loc[("2–5", "1e-4"), "best"]
    assert bool(cells.loc[("3–5", "1e-4"), "tied_with_best"])  # … and the two are tied
    assert not cells.loc[("1–5", "1e-3"), "tied_with_best"]
    # the interval shown is DeLong's on the run's predictions
    run = tmp_path / "runs" / "vgg16_blocks2-5_lr1e-04" / "val_predictions.csv"
    predictions = pd.read_csv(run)
    auc, low, high = stats.auc_ci(predictions["label"], predictions["prediction"])
    assert cells.loc[("2–5", "1e-4"), "ci_low"] == pytest.approx(low, abs=1e-12)
    text = markdown.render_markdown(table, "cmd")
    assert f"**{auc:.4f} [{low:.4f}, {high:.4f}]**" in text
    # the p-values against the best: DeLong's paired test, Holm-adjusted over the table
    others = [c for c in table.evidence.cells() if c != table.best]
    best_scores = predictions["prediction"]
    raw = []
    for cell in others:
        name = table.evidence.runs[cell][0]
        other = pd.read_csv(tmp_path / "runs" / name / "val_predictions.csv")["prediction"]
        raw.append(stats.paired_test(LABELS, other, best_scores)[2])
    expected = dict(zip(others, stats.holm(raw)))
    for cell, p in expected.items():
        assert cells.loc[cell, "p_vs_best_seed0"] == pytest.approx(p, rel=1e-9)


def test_several_seeds_give_spread_and_the_best_per_seed(tmp_path):
    make_runs(tmp_path / "runs", seeds=(0, 1, 2))
    md, csv, cells_csv, *pngs = tables.write_table("table2", tmp_path / "runs",
                                                      tmp_path / "out")
    text = md.read_text()
    frame = pd.read_csv(csv, dtype={"row": str, "column": str})
    assert len(frame) == 45 and sorted(frame["seed"].unique()) == [0, 1, 2]
    assert (tmp_path / "runs" / "vgg16_blocks3-5_lr1e-04_seed2").is_dir()
    cells = pd.read_csv(cells_csv, dtype={"row": str, "column": str}).set_index(["row", "column"])
    best = cells.loc[("3–5", "1e-4")]
    seeds = frame[(frame["row"] == "3–5") & (frame["column"] == "1e-4")]["val_auc"]
    assert best["n"] == 3 and best["mean"] == pytest.approx(seeds.mean(), abs=1e-15)
    assert f"({seeds.min():.4f}–{seeds.max():.4f}, n=3)" in text
    assert "Seeds 0, 1, 2 (split seed 0" in text and "Best cell per seed:" in text
    assert "in at least one seed" in text
    assert "**" in text.split("| 3–5 |")[1].split("\n")[0]  # over three seeds, 3–5 at 1e-4
    assert best["best_in_seeds"] == 2 and "in 2 of 3 seeds" in text
    assert [p.name for p in pngs] == ["table2_heatmap.png", "table2_roc.png",
                                         "table2_radar.png"]
    # the table can be cut to chosen seeds
    md, *_ = tables.write_table("table2", tmp_path / "runs", tmp_path / "one", seeds="1")
    assert "- Seed 0 (" in md.read_text() and "n=3" not in md.read_text()
    assert f"--out {tmp_path / 'one'} --seeds 1`" in md.read_text()  # says how it was cut


def test_seeds_without_runs_are_named_and_none_at_all_is_refused(tmp_path):
    make_runs(tmp_path / "runs", seeds=(0, 1))
    lines = []
    md, csv, *_ = tables.write_table("table2", tmp_path / "runs", tmp_path / "out",
                                     seeds="0,7", log=lines.append)
    assert any("--seeds 0,7: no run of seed 7 in" in line and "shows seed 0" in line
               for line in lines)
    assert sorted(pd.read_csv(csv)["seed"].unique()) == [0]
    assert "- Seed 0 (" in md.read_text()
    with pytest.raises(ConfigError, match="--seeds 5,6: .* holds no run of table2 with seed "
                       "5, 6; its runs have seed 0, 1"):
        tables.write_table("table2", tmp_path / "runs", tmp_path / "none", seeds="5,6")
    assert not (tmp_path / "none").exists()


def test_the_papers_findings_get_this_grids_answer(tmp_path):
    make_runs(tmp_path / "runs")
    table = collect.assemble("table2", tmp_path / "runs")
    answers = [(verdict, reason) for _, verdict, reason in table.findings]
    best, whole, two, top, time = answers
    assert best[0] == "not distinguishable" and "the best of the table is blocks 2–5" in best[1]
    assert whole[0] == "supported" and two[0] == "not distinguishable"
    assert top[0] == "supported" and time[0] == "not assessable"
    text = markdown.render_markdown(table, "cmd")
    assert "— **supported** (one run per cell, seed 0): blocks 1–5 at 1e-4" in text


def test_runs_without_prediction_files_still_render(tmp_path):
    make_runs(tmp_path / "runs", predictions=False)
    text = markdown.render_markdown(collect.assemble("table2", tmp_path / "runs"), "cmd")
    assert "Tied with the best: not judged" in text and "**" in text


def test_table_files_and_metric_choice(tmp_path):
    make_runs(tmp_path / "runs", kaggle=True)
    md, csv, cells, png, *pngs = tables.write_table("table2", tmp_path / "runs", tmp_path / "out")
    text = md.read_text()
    frame = pd.read_csv(csv)
    best = frame.loc[frame["kaggle_private_auc"].idxmax()]
    assert "Kaggle private-leaderboard test ROC AUC" in text
    assert f"**{best['kaggle_private_auc']:.4f}**" in text
    assert "validation split (Kaggle keeps the test labels)" in text
    assert len(frame) == 15 and set(frame["status"]) == {"ok", "failed", "missing"}
    assert frame["kaggle_public_auc"].notna().sum() == 13
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in pngs] == ["table2_roc.png", "table2_radar.png"]  # no histories


def test_curves_roc_and_radar_figures_of_a_table(tmp_path):
    make_runs(tmp_path / "runs")
    for run in (tmp_path / "runs").glob("*/metrics.json"):
        auc = json.loads(run.read_text())["val_auc"]
        pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.7, 0.5, 0.4],
                      "val_auc": [0.6, auc, auc - 0.01]}).to_csv(run.parent / "history.csv",
                                                                 index=False)
    table = collect.assemble("table2", tmp_path / "runs")
    histories, colors, styles = figures.run_histories(table)
    assert len(histories) == 13  # the finished runs
    assert colors["blocks 3–5, lr 1e-4"] == 2 and styles["blocks 3–5, lr 1e-4"] == 1
    best = figures.best_cell_predictions(table)
    assert list(best)[1] == "lr 1e-4: blocks 2–5"  # best per column
    paths = tables.write_table("table2", tmp_path / "runs", tmp_path / "out")
    assert [p.name for p in paths[3:]] == ["table2_heatmap.png", "table2_curves.png",
                                           "table2_roc.png", "table2_radar.png"]
    for path in paths[3:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = figures.table_heatmap(table)
    hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert len(hatched) == int(table.cells["tied_with_best"].eq(True).sum()) >= 1
    radar = figures.radar_figure(table, None)
    assert len(radar.axes[0].lines) == 5  # the best cell of each of the five depths


def test_partial_kaggle_scores_fall_back_to_validation_auc(tmp_path):
    make_runs(tmp_path / "runs", kaggle=True)
    (tmp_path / "runs" / "vgg16_blocks5-5_lr1e-03" / "metrics.json").write_text(
        '{"status": "ok", "val_auc": 0.7}')
    frame, configs = collect.collect("table2", tmp_path / "runs")
    assert collect.choose_metric(frame, get_study("table2")) == "val_auc"


def test_paper_settings_give_no_deviation():
    config = resolve_config("vgg16", 3, 1e-4).updated(image_size=96)
    assert header.deviations_of([config]) == []
    config = resolve_config("vgg16", 3, 1e-4, augmentation=None,
                            max_epochs=3).updated(image_size=96)
    assert header.deviations_of([config]) == [
        "augmentation: off (paper: on, training split only)", "max_epochs: 3 (our default: 50)"]


def test_table5_marks_runs_that_did_not_converge(tmp_path):
    for i, cell in enumerate(get_study("table5").cells()):
        run = tmp_path / cell.folder
        run.mkdir()
        config = resolve_config(cell.backbone, 1, cell.learning_rate, weights="none")
        config = config.updated(dataset="pcam", image_size=96, n_train=100, n_val=25,
                                n_test=10)
        write_json(run / "config.json", config.to_config())
        metrics = {"status": "ok", "val_auc": 0.6 + i / 100, "best_epoch": 1, "epochs_run": 3}
        if cell.folder == "vgg16_scratch_lr1e-03":
            metrics["val_auc"] = 0.51  # below the rule's 0.55
        if cell.folder == "vgg19_scratch_lr1e-03":
            metrics.update(val_auc=0.7, stopped_reason="non-finite loss")
        write_json(run / "metrics.json", metrics)
    md, csv, *_ = tables.write_table("table5", tmp_path, tmp_path / "out")
    text = md.read_text()
    assert "| VGG16 | did not converge | 0.6100 | 0.6200 |" in text
    assert "| VGG19 | did not converge |" in text
    assert "| InceptionV3 | 0.6600 | 0.6700 | **0.6800** |" in text
    assert "below 0.55 or a non-finite loss" in text
    assert "weights: none (paper" not in text  # random weights are Table 5's experiment
    assert "random weights" not in text.split("\n")[2]  # from scratch is the experiment itself
    frame = pd.read_csv(csv)
    assert frame["converged"].tolist().count(False) == 2


def test_breakhis_tables_show_test_auc(tmp_path):
    for cell in get_study("table6").cells():
        run = tmp_path / cell.folder
        run.mkdir()
        config = resolve_config("vgg16", cell.first_trainable_block, cell.learning_rate,
                                protocol="breakhis", image_size=64, split="patient")
        config = config.updated(dataset="breakhis", synthetic=True, n_train=100, n_val=12,
                                n_test=12)
        write_json(run / "config.json", config.to_config())
        write_json(run / "metrics.json", {"status": "ok", "val_auc": 0.9, "best_epoch": 1,
                                          "test_auc": 0.5 + cell.first_trainable_block / 10})
    md, *_ = tables.write_table("table6", tmp_path, tmp_path / "out")
    text = md.read_text()
    assert "held-out 10 % test split" in text and "| 5 | **1.0000** | 1.0000 | 1.0000 |" in text
    assert "synthetic BreakHis-like set" in text and "patient-level split" in text
    assert "split: patient (paper: image)" in text and "image_size: 64 (our default: 224)" in text
    assert "patience" not in text  # 50 on BreakHis is the paper's value


def test_a_folder_mixing_experiments_is_refused_naming_the_runs(tmp_path, capsys):
    from kandel_repro.cli.main import main

    make_runs(tmp_path / "runs")
    odd = tmp_path / "runs" / "vgg16_blocks4-5_lr1e-04" / "config.json"
    config = json.loads(odd.read_text())
    odd.write_text(json.dumps(dict(config, max_epochs=1, data_fingerprint="other-data")))
    with pytest.raises(ConfigError, match="mixes runs made with different settings") as caught:
        tables.write_table("table2", tmp_path / "runs", tmp_path / "out")
    message = str(caught.value)
    assert "max_epochs: 3 in vgg16_blocks5-5_lr1e-03" in message
    assert "and 9 more; 1 in vgg16_blocks4-5_lr1e-04" in message
    assert "data_fingerprint" in message and "own --runs folder" in message
    assert not (tmp_path / "out").exists()  # nothing written
    assert main(["table", "table2", "--runs", str(tmp_path / "runs"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "1 in vgg16_blocks4-5_lr1e-04" in capsys.readouterr().err
    # how a run computed is not part of the experiment: such runs share a table
    odd.write_text(json.dumps(dict(config, augmenter="imagedatagenerator", precision="float32")))
    tables.write_table("table2", tmp_path / "runs", tmp_path / "out")


def test_a_wrong_runs_folder_is_an_error_not_an_empty_table(tmp_path, capsys):
    from kandel_repro.cli.main import main

    assert main(["table", "table2", "--runs", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err
    (tmp_path / "runs3" / "vgg19_blocks5-5_lr1e-03").mkdir(parents=True)  # Table 3's runs
    assert main(["table", "table2", "--runs", str(tmp_path / "runs3"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "holds no run of table2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _fake_study_runs(root, study_name, seeds=(0, 1), **settings):
    """Finished runs of any study, with histories, predictions and parameter counts."""
    from sklearn.metrics import roc_auc_score

    from kandel_repro.studies.cells import study_configs

    study = get_study(study_name)
    configs = study_configs(study, seeds=seeds, **settings)
    for i, (name, config) in enumerate(configs.items()):
        run = root / name
        run.mkdir(parents=True)
        n_train = int(1200 * config["train_fraction"])
        write_json(run / "config.json", dict(config, dataset="pcam", synthetic=True,
                                             image_size=32, n_train=n_train, n_val=300,
                                             n_test=300))
        strength = 0.5 + (i % 7) / 5
        noise = np.random.default_rng([config["seed"], i]).normal(size=len(LABELS))
        scores = 1 / (1 + np.exp(-(LABELS * strength + noise - 1)))
        pd.DataFrame({"id": IDS, "label": LABELS, "prediction": scores}).to_csv(
            run / "val_predictions.csv", index=False)
        auc = float(roc_auc_score(LABELS, scores))
        pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.7, 0.6, 0.5],
                      "val_auc": [auc - 0.1, auc - 0.02, auc]}).to_csv(run / "history.csv",
                                                                      index=False)
        write_json(run / "metrics.json", {"status": "ok", "val_auc": auc, "best_epoch": 3,
                                          "epochs_run": 3, "trainable_parameters": 1000 * (i + 1),
                                          "train_images_per_second": 50.0 + i})
    return configs


@pytest.mark.parametrize("study, figure", [("layerwise-vgg16", "params"),
                                           ("datasize", "datasize"), ("init", "convergence"),
                                           ("small-nets", "small-nets"),
                                           ("partial-transfer", "convergence")])
def test_the_beyond_the_paper_studies_render_with_their_figures(tmp_path, study, figure):
    _fake_study_runs(tmp_path / "runs", study,
                     weights=None if study == "partial-transfer" else "none")
    paths = tables.write_table(study, tmp_path / "runs", tmp_path / "out", log=lambda m: None)
    names = [p.name for p in paths]
    assert f"{study}_{figure}.png" in names and f"{study}_radar.png" in names
    text = (tmp_path / "out" / f"{study}.md").read_text()
    assert "Seeds 0, 1" in text and "n=2" in text
    assert "Made from synthetic data" in text
    if study == "datasize":
        assert "| 1/32 |" in text and "train_fraction" not in text  # set by the study
        fig = figures.datasize_figure(collect.assemble(study, tmp_path / "runs"), None)
        assert [line.get_label() for line in fig.axes[0].lines] == ["fine-tuned, blocks 3–5",
                                                                   "from scratch"]
        assert list(fig.axes[0].lines[0].get_xdata()) == [37, 75, 150, 300, 600, 1200]


def test_the_layer_wise_cells_say_which_layer_each_row_starts_from(tmp_path):
    _fake_study_runs(tmp_path / "runs", "layerwise-vgg16", seeds=(0,), weights="none")
    _, csv, cells_csv, *_ = tables.write_table("layerwise-vgg16", tmp_path / "runs",
                                               tmp_path / "out", log=lambda m: None)
    cells = pd.read_csv(cells_csv, dtype={"row": str})
    assert list(cells["first_trainable_layer"]) == [14, *range(13, 0, -1), 1]
    assert list(cells["row"][:2]) == ["head only", "13"] and cells["row"].iloc[-1] == "from scratch"
    assert pd.read_csv(csv)["first_trainable_layer"].iloc[1] == 13


def test_partial_transfer_says_how_fast_each_depth_reaches_the_target(tmp_path):
    _fake_study_runs(tmp_path / "runs", "partial-transfer")
    table = collect.assemble("partial-transfer", tmp_path / "runs")
    target, epochs = collect.epochs_to_target(table)
    full = table.frame[table.frame["row"] == "5 (all)"]["val_auc"].mean()
    assert target == pytest.approx(0.9 * full)
    assert set(epochs) == {"0 (none)", "1", "2", "3", "4", "5 (all)"}
    for row, values in epochs.items():
        for name, reached in zip(table.frame[table.frame["row"] == row]["run"], values):
            auc = pd.read_csv(tmp_path / "runs" / name / "history.csv")["val_auc"].to_numpy()
            first = next((i + 1 for i, a in enumerate(auc) if a >= target), None)
            assert reached == first
    text = markdown.render_markdown(table, "cmd")
    assert "Epochs to reach a validation AUC of" in text and "- 0 (none): " in text
    assert "epochs_to_target" in table.cells.columns


def test_one_comparison_is_said_in_the_singular(tmp_path):
    from kandel_repro.studies.levels import depth_rows, lr_columns
    from kandel_repro.studies.types import Study

    study = Study("two-cells", "two cells", "pcam", depth_rows("vgg16")[:1],
                  lr_columns((1e-3, 1e-4)), "Fine-tuned blocks")
    table = collect.Table(study, tmp_path, pd.DataFrame(), [], pd.DataFrame(
        {"tied_with_best": [None, True], "test_not_assessable": [False, False]}), "val_auc",
        (0,), type("Evidence", (), {"split": "validation", "split_problem": lambda self: None})(),
        ("5", "1e-4"), [])
    line = markdown._ties_line(table)
    assert "over the table's 1 comparison, 5 %" in line and "comparisons" not in line


def test_a_table_of_one_seed_says_its_findings_are_one_runs(tmp_path):
    """One seed: the header says the variance of training is not assessed and how to run
    more seeds, and each verdict is worded as one run's; several seeds say neither."""
    make_runs(tmp_path / "one")
    text = markdown.render_markdown(collect.assemble("table2", tmp_path / "one"), "cmd")
    assert "- Training variance: not assessed (one seed)" in text
    assert "`--seeds 3` trains three seeds per cell" in text
    findings = [line for line in text.splitlines() if line.startswith("- ") and " — **" in line]
    judged = [line for line in findings if "**not assessable**" not in line]
    assert judged and all("(one run per cell, seed 0)" in line for line in judged)
    assert "These are one run's answers" in text
    make_runs(tmp_path / "two", seeds=(0, 1))
    text = markdown.render_markdown(collect.assemble("table2", tmp_path / "two"), "cmd")
    assert "Training variance" not in text and "one run per cell" not in text
    assert "These are one run's answers" not in text

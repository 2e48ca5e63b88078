"""Tables of runs scored with test-time augmentation: the TTA grid beside the plain one."""
import numpy as np
import pandas as pd
import pytest
from helpers import cut_table2, finished_grid

from kandel_repro.core.files import write_csv, write_json
from kandel_repro.report import collect, tables
from kandel_repro.runs import rundir
from kandel_repro.training.tta import tta_metrics


@pytest.fixture(scope="module")
def pcam160(tmp_path_factory):
    """A synthetic PCam whose validation split holds at least 10 images of each class
    (the fewest an interval or a paired test is made on)."""
    from kandel_repro.readers.synthetic.pcam import write_synthetic_pcam

    return write_synthetic_pcam(tmp_path_factory.mktemp("pcam160") / "d", n_train=160,
                                n_test=10, seed=3, size=32, progress=False)


@pytest.fixture
def grid(pcam160, tmp_path, monkeypatch):
    """A finished 2 × 2 cut of Table 2 (no TTA yet): ``(runs folder, run names)``."""
    cut_table2(monkeypatch, learning_rates=(1e-3, 1e-4), rows=slice(0, 2))
    runs = tmp_path / "runs"
    return runs, finished_grid("table2", pcam160, runs, weights="none")


def add_tta(run, strength, views=8):
    """TTA files and metrics as a run with ``--tta`` writes them: validation scores that
    separate the classes by ``strength``."""
    ids, labels, _ = rundir.read_predictions(run / rundir.VAL_PREDICTIONS)
    noise = np.random.default_rng(int(strength * 100)).normal(size=len(labels))
    scores = 1 / (1 + np.exp(-(labels * strength + noise - 0.5)))
    write_csv(run / rundir.VAL_PREDICTIONS_TTA, rundir.prediction_frame(ids, labels, scores))
    metrics = {**rundir.read_metrics(run), **tta_metrics(views, labels, scores)}
    write_json(run / rundir.METRICS, metrics)
    return metrics


def grid_of(markdown, heading=None):
    """The rows of the first Markdown grid after ``heading`` (the first grid if None)."""
    text = markdown if heading is None else markdown.split(heading, 1)[1]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    end = next((i for i in range(1, len(rows)) if rows[i].startswith("| Fine-tuned")), len(rows))
    return rows[:end]


def test_without_tta_runs_the_table_has_no_tta_part(grid, tmp_path):
    runs, _ = grid
    table = collect.assemble("table2", runs)
    assert table.tta is None and "tta_views" not in table.frame.columns
    paths = tables.write_table("table2", runs, tmp_path / "out", command="x", log=lambda m: None)
    assert not (tmp_path / "out" / "table2_tta_cells.csv").exists()
    markdown = paths[0].read_text()
    assert "test-time" not in markdown.lower() and "TTA" not in markdown


def test_tta_runs_get_their_own_grid_with_its_best_cell_ties_and_views(grid, tmp_path):
    runs, names = grid
    plain = tables.write_table("table2", runs, tmp_path / "before", command="x",
                               log=lambda m: None)[0].read_text()
    # The TTA scores rank the cells otherwise than the plain ones; one run has none.
    strengths = dict(zip(names, (3.0, 0.2, 0.3)))
    recorded = {name: add_tta(runs / name, s) for name, s in strengths.items()}
    no_tta = [n for n in names if n not in strengths][0]
    paths = tables.write_table("table2", runs, tmp_path / "out", command="x", log=lambda m: None)
    markdown = paths[0].read_text()

    assert grid_of(markdown) == grid_of(plain)  # the plain grid is as it was
    assert ("- Test-time augmentation: 8 views in 3 of 4 finished runs; their grid follows "
            "the plain one") in markdown
    section = markdown.split("## With test-time augmentation (8 views)", 1)[1]
    assert "validation ROC AUC of the best epoch's model (chosen by the plain validation AUC) " \
           "on 8 dihedral views of each image" in section
    assert "- Runs with TTA: 3 of 4 finished" in section
    assert markdown.index("## With test-time") < markdown.index("## The paper's findings")

    table = collect.assemble("table2", runs)
    tta = table.tta
    assert tta.metric == "val_auc_tta"
    assert tta.evidence.file == rundir.VAL_PREDICTIONS_TTA
    cells = {(c["row"], c["column"]): c for _, c in tta.cells.iterrows()}
    frame = table.frame.set_index("run")
    for name, metrics in recorded.items():
        key = (frame.loc[name, "row"], frame.loc[name, "column"])
        assert cells[key]["mean"] == pytest.approx(metrics["val_auc_tta"])
        low, high = metrics["val_auc_tta_ci"]
        shown = (f"[{low:.4f}, {high:.4f}]" if np.isfinite([low, high]).all()
                 else "[not assessable]")  # (a perfect separation: DeLong's variance is 0)
        assert f"{metrics['val_auc_tta']:.4f} {shown}" in cells[key]["text"]
    best_name = max(recorded, key=lambda n: recorded[n]["val_auc_tta"])
    best = (frame.loc[best_name, "row"], frame.loc[best_name, "column"])
    assert tta.best == best and cells[best]["text"].startswith("**")
    assert cells[(frame.loc[no_tta, "row"], frame.loc[no_tta, "column"])]["text"] == "no TTA"
    # The ties come from DeLong's paired tests on the TTA prediction files, Holm-adjusted.
    from kandel_repro.core.stats import holm, paired_test

    _, labels, top = rundir.read_tta_predictions(runs / best_name)
    others = [n for n in recorded if n != best_name]
    raw = [paired_test(labels, rundir.read_tta_predictions(runs / n)[2], top)[2] for n in others]
    for name, p in zip(others, holm(raw)):
        cell = cells[(frame.loc[name, "row"], frame.loc[name, "column"])]
        assert cell["p_vs_best_seed0"] == pytest.approx(p)
        assert cell["tied_with_best"] == (p >= 0.05)
    assert "≈: tied with the best — not significantly below it by DeLong's paired test on " \
           "the same validation split images, Holm-adjusted over the table's 2 comparisons" \
           in section
    assert "`no TTA`: the cell's runs were finished without test-time augmentation" in section
    tta_rows = grid_of(markdown, "## With test-time augmentation")
    assert len(tta_rows) == 1 + 2 and "no TTA" in tta_rows[2]  # the header, two rows

    written = pd.read_csv(tmp_path / "out" / "table2_tta_cells.csv")
    assert written["metric"].eq("val_auc_tta").all() and written["n"].sum() == 3
    runs_csv = pd.read_csv(tmp_path / "out" / "table2.csv").set_index("run")
    assert runs_csv.loc[best_name, "tta_views"] == 8
    assert runs_csv.loc[best_name, "val_auc_tta_ci_low"] == pytest.approx(
        recorded[best_name]["val_auc_tta_ci"][0], nan_ok=True)
    assert np.isnan(runs_csv.loc[no_tta, "val_auc_tta"])


def test_mixed_view_counts_are_named_and_a_kaggle_tta_score_becomes_the_metric(grid):
    runs, names = grid
    for i, name in enumerate(names):
        metrics = add_tta(runs / name, 1.0 + i, views=4 if i == 0 else 8)
        write_json(runs / name / rundir.METRICS, dict(metrics, kaggle_private_auc_tta=0.8 + i / 100,
                                                      kaggle_public_auc_tta=0.7))
    table = collect.assemble("table2", runs)
    assert collect.tta_views_of(table.frame) == [4, 8]
    assert table.metric == "val_auc"  # no plain Kaggle score: the plain grid stays validation
    assert table.tta.metric == "kaggle_private_auc_tta"
    assert table.tta.cells["mean"].max() == pytest.approx(0.8 + (len(names) - 1) / 100)
    from kandel_repro.report.markdown import render_markdown

    markdown = render_markdown(table, "x")
    assert "## With test-time augmentation (4 or 8 views)" in markdown
    assert "Kaggle private-leaderboard test ROC AUC of the best epoch's model on 4 or 8 " \
           "dihedral views" in markdown
    assert "(Kaggle keeps the test labels)" in markdown.split("## With test-time")[1]


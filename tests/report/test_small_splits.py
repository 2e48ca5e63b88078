"""A split too small for an interval or a paired test: its AUC is shown, its interval and
its comparisons are "not assessable" — never a zero-width interval or p = 0."""
import numpy as np
import pandas as pd

from kandel_repro.core.assessable import MIN_PER_CLASS
from kandel_repro.core.files import write_json
from kandel_repro.core.stats import run_summary
from kandel_repro.report import collect, markdown
from kandel_repro.runs.config import resolve_config
from kandel_repro.studies.cells import run_name
from kandel_repro.studies.registry import get_study


def _runs(root, labels, strength):
    """Finished Table 2 runs scored on the validation ``labels``; cell i separates them
    with ``strength(i)``; metrics as a run records them (run_summary)."""
    from sklearn.metrics import roc_auc_score

    ids = [f"v{k:03d}" for k in range(len(labels))]
    for i, cell in enumerate(get_study("table2").cells()):
        run = root / run_name(cell, 0)
        run.mkdir(parents=True)
        config = resolve_config("vgg16", cell.first_trainable_block, cell.learning_rate,
                                weights="none", max_epochs=3, seed=0)
        config = config.updated(dataset="pcam", synthetic=True, image_size=32, n_train=100,
                                n_val=len(labels), n_test=10)
        write_json(run / "config.json", config.to_config())
        noise = np.random.default_rng(i).normal(size=len(labels))
        scores = 1 / (1 + np.exp(-(labels * strength(i) + noise - 1)))
        pd.DataFrame({"id": ids, "label": labels, "prediction": scores}).to_csv(
            run / "val_predictions.csv", index=False)
        write_json(run / "metrics.json", {"status": "ok", "best_epoch": 2, "epochs_run": 3,
                                          "val_auc": float(roc_auc_score(labels, scores)),
                                          **run_summary(labels, scores)})


def test_a_validation_split_with_one_positive_is_not_assessable(tmp_path):
    labels = np.array([1] + [0] * 40)  # one positive image
    _runs(tmp_path, labels, lambda i: 0.5 + 0.4 * i)
    table = collect.assemble("table2", tmp_path)
    text = markdown.render_markdown(table, "kandel-repro table table2")
    cells = table.cells
    assert cells["ci_low"].isna().all() and cells["ci_high"].isna().all()
    assert (cells["text"].str.contains("not assessable")).all()
    assert "1 image of class 1" in text and f"at least {MIN_PER_CLASS}" in text
    assert "Tied with the best: not assessable" in text
    assert "≈" not in "\n".join(cells["text"]) and not cells["tied_with_best"].any()
    # no verdict rests on a test, and no p of 0 is printed
    assert all(v == "not assessable" for _, v, _ in table.findings)
    assert "p ≤ 0" not in text and "[1.0000, 1.0000]" not in text


def test_perfectly_separated_classes_have_no_zero_width_interval(tmp_path):
    labels = np.array([0, 1] * 30)
    # every cell but the first separates the classes perfectly: DeLong's variance is 0
    _runs(tmp_path, labels, lambda i: 1.0 if i == 0 else 60.0)
    table = collect.assemble("table2", tmp_path)
    text = markdown.render_markdown(table, "kandel-repro table table2")
    perfect = table.cells[table.cells["mean"] == 1.0]
    assert len(perfect) >= 10
    assert perfect["text"].str.contains(r"1\.0000.*\[not assessable\]").all()
    assert "perfectly separated" in text and "[1.0000, 1.0000]" not in text
    assert "p ≤ 0 " not in text and "p ≤ 0)" not in text


def test_a_large_enough_split_keeps_its_intervals_and_ties(tmp_path):
    labels = np.random.default_rng(3).integers(0, 2, 200)
    _runs(tmp_path, labels, lambda i: 0.5 + 0.2 * i)
    table = collect.assemble("table2", tmp_path)
    assert table.cells["ci_low"].notna().all()
    assert not table.cells["text"].str.contains("not assessable").any()
    assert table.evidence.split_problem() is None


def test_runs_of_earlier_versions_with_zero_width_intervals_show_none(tmp_path):
    """Runs recorded before the rule may hold [a, a] from a split too small: the table
    shows their AUC and "[not assessable]", never the zero-width interval."""
    import json

    labels = np.array([1] + [0] * 40)
    _runs(tmp_path, labels, lambda i: 0.5 + 0.4 * i)
    for metrics in tmp_path.glob("*/metrics.json"):
        old = json.loads(metrics.read_text())
        old.pop("intervals_not_assessable")
        old["val_auc_ci"] = [old["val_auc"], old["val_auc"]]  # as earlier versions wrote
        metrics.write_text(json.dumps(old))
    table = collect.assemble("table2", tmp_path)
    assert table.cells["text"].str.endswith("[not assessable]").sum() >= 13
    assert not table.cells["text"].str.contains(r"\[\d\.\d{4}, \d\.\d{4}\]").any()

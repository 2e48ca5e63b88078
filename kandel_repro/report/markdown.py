"""A :class:`~kandel_repro.report.collect.Table` as Markdown: the header (data, weights, seeds,
deviations from the paper, the metric), the grid, ties, the same grid with test-time
augmentation where runs have it (:func:`_tta_lines`), and the paper's findings with this
grid's verdict."""
from __future__ import annotations

import numpy as np

from ..core.bootstrap import BOOTSTRAP
from ..core.protocol import NOT_CONVERGED_BELOW_AUC
from .collect import METRICS, TARGET_SHARE, TIED_MARK, Table, tta_views_of
from .header import (caveat_of, column_legend, computed_with, describe_data, describe_weights,
                     deviations_of)


# What a TTA grid's metric is ({views}: the views in words, :func:`_views_text`).
TTA_METRICS = {
    "val_auc_tta": "validation ROC AUC of the best epoch's model (chosen by the plain "
                   "validation AUC) on {views}",
    "test_auc_tta": "ROC AUC on the held-out test split of the model of the best (plain) "
                    "validation epoch on {views}",
    "kaggle_private_auc_tta": "Kaggle private-leaderboard test ROC AUC of the best epoch's "
                              "model on {views} (`submission_tta.csv`, scored by Kaggle)",
}


def _views_text(views):
    """``8 dihedral views of each image, probabilities averaged`` (several counts: each)."""
    counts = " or ".join(map(str, views))
    return (f"{counts} dihedral views of each image (rotations, flips, transposes; "
            "`kandel_repro/training/tta.py`), probabilities averaged")


def _metric_text(metric, configs):
    """The header's metric; a test AUC says the test split's share of the images, as the
    runs' ``n_train``/``n_val``/``n_test`` have it (BreakHis: about the protocol's 10 %;
    the HDF5 release: its own split) — of a run that trained on the whole training
    split (no ``--train-fraction``, no downsampling), else no share."""
    text = METRICS[metric]
    if any(c.num_classes > 2 for c in configs):
        text = "macro one-vs-rest " + text
    whole = [c for c in configs if metric == "test_auc" and c.get("train_fraction", 1.0) == 1.0
             and c.get("balance", "none") == "none"
             and all(c.get(f"n_{part}") for part in ("train", "val", "test"))]
    if not whole:
        return text
    c = whole[0]
    share = 100 * c["n_test"] / (c["n_train"] + c["n_val"] + c["n_test"])
    return text.replace("held-out test split",
                        f"held-out {share:.{0 if share >= 1 else 1}f} % test split")


def render_markdown(table: Table, command: str) -> str:
    """The Markdown of a :class:`Table`."""
    study, metric, configs = table.study, table.metric, table.configs
    lines = [f"# {study.title}: {study.row_header.lower()} × {study.column_header.lower()}", ""]
    caveat = caveat_of(configs, study)
    if caveat:
        lines += [f"> **Made from {caveat}: not comparable to the paper.**", ""]
    devs = deviations_of(configs, study)
    done = int((table.frame["status"] == "ok").sum())
    split_seeds = sorted({c.get("split_seed", 0) for c in configs}) or [0]
    lines += [
        f"- Data: {describe_data(configs)}",
        f"- Backbone: {', '.join(study.backbones)}; weights: {describe_weights(configs)}",
        f"- Metric: {_metric_text(metric, configs)}",
        f"- Runs finished: {done} of {len(table.frame)}",
        _seeds_line(table, split_seeds),
        *_one_seed_lines(table),
        _ties_line(table),
    ]
    if metric == "test_auc":
        lines.append(_selection_line(table))
    if table.multiclass:
        lines.append(f"- Classes: {len(table.classes)} ({', '.join(table.classes)}); the CSV "
                     "holds each run's per-class AUCs, accuracy, balanced accuracy and macro "
                     "F1 (prediction: the most probable class)")
    if study.marks_non_convergence:
        lines.append(f"- \"did not converge\": best validation AUC below "
                     f"{NOT_CONVERGED_BELOW_AUC} or a non-finite loss")
    own = any(c.get("protocol") == "own" for c in configs)
    lines.append(("- Settings that differ from the protocol (the paper's PCam settings with "
                  "an 80/10/10 split, `kandel_repro/core/protocol.py`):" if own
                  else "- Settings that differ from the paper:") + ("" if devs else " none"))
    lines += [f"  - {d}" for d in devs]
    if study.column_legend:
        lines.append(f"- Columns ({study.column_header.lower()}), each as it differs from the "
                     "paper:")
        lines += [f"  - {line}" for line in column_legend(study)]
    if table.tta is not None:
        lines.append(_tta_header(table))
    if configs:
        lines.append(f"- Computed with: {computed_with(configs)}")
    lines += [f"- Made by: `{command}`", ""]
    lines += _grid_lines(table)
    lines.append("`—`: not run yet; `failed`: the run raised (its error is in the CSV)."
                 + (" `stopped at epoch k`: dropped there by the search (successive halving; "
                    "its validation AUC then), paused: a plain `grid` finishes it."
                    if (table.frame["status"] == "stopped").any() else ""))
    if study.note:
        lines += ["", study.note]
    lines += _target_lines(table)
    lines += _cost_lines(table)
    lines += _search_lines(table)
    lines += _tta_lines(table)
    test = _test_name(table)
    if study.paper:
        lines += ["", "## The paper's findings for this table (its text), and this grid's answer", ""]
    else:
        lines += ["", "## What the runs answer (no paper speaks of this grid)", ""]
    run_of = (f" (one run per cell, seed {table.seeds[0]})" if len(table.seeds) == 1
              else "")
    lines += [f"- {text} — **{v}**{run_of if v != 'not assessable' else ''}: {reason}."
              for text, v, reason in table.findings]
    lines += _recommendation_lines(table)
    if table.findings and study.paper:
        lines += ["", "Answers are computed from the runs (`kandel_repro/report/compare.py`): "
                  f"*supported* or *contradicted* when {test} separates the cells "
                  "named at 5 % (Holm-adjusted) in every seed, *not distinguishable* otherwise."]
    elif table.findings:
        lines += ["", "Answers are computed from the runs (`kandel_repro/report/compare.py`): "
                  f"two cells are told apart when {test} separates them at 5 % "
                  "(Holm-adjusted) in every seed."]
    if table.findings and len(table.seeds) == 1:
        lines += ["", f"These are one run's answers: {test} holds each cell's trained "
                  "network fixed and measures how much the answer depends on which images "
                  f"were scored, not on the training — another seed (or the same seed on "
                  "another machine, whose arithmetic differs in the last bits) trains other "
                  "networks and can change an answer. Run more seeds to see that variance: "
                  "`kandel-repro grid … --seeds 3` (`make demo SEEDS=3`), then "
                  "`kandel-repro table … --seeds 3`; a cell is then below another only if "
                  "it is in every seed."]
    lines.append("")
    return "\n".join(lines)


def _grid_lines(table):
    """The grid of a :class:`Table` and the line naming its best cell (per seed too)."""
    study = table.study
    header = [study.row_header] + [level.label for level in study.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    _, texts = table.texts
    for r, level in enumerate(study.rows):
        lines.append("| " + " | ".join([level.label] + [str(t) for t in texts[r]]) + " |")
    lines.append("")
    if table.best is not None:
        lines.append(f"Best cell in bold{' (highest mean over the seeds)' if len(table.seeds) > 1 else ''}: "
                     + (f"{study.rows[table.position(table.best)[0]].phrase} at learning rate "
                        f"{table.best[1]}." if study.columns_are_learning_rates
                        else f"{table.describe(table.best)}."))
        counts = table.cells[table.cells["best_in_seeds"] > 0].sort_values(
            "best_in_seeds", ascending=False)
        if len(table.seeds) > 1 and len(counts):
            lines.append("Best cell per seed: " + "; ".join(
                f"{table.describe((c['row'], c['column']))} in {c['best_in_seeds']} of "
                f"{len(table.seeds)} seeds" for _, c in counts.iterrows()) + ".")
    return lines


def _tta_runs(table):
    """``(runs with TTA scores, finished runs)`` of a table."""
    done = table.frame[table.frame["status"] == "ok"]
    return int(done["tta_views"].notna().sum()), len(done)


def _tta_header(table):
    """The header's line on test-time augmentation: how many views, in how many runs."""
    views, (scored, done) = tta_views_of(table.frame), _tta_runs(table)
    return (f"- Test-time augmentation: {' or '.join(map(str, views))} views in {scored} of "
            f"{done} finished runs; their grid follows the plain one (the plain numbers are "
            "the runs' own: model selection does not use TTA)")


def _tta_lines(table):
    """The grid of the runs' TTA AUCs (:attr:`Table.tta`), its metric, ties and best cell."""
    tta = table.tta
    if tta is None:
        return []
    views, (scored, done) = tta_views_of(table.frame), _tta_runs(table)
    lines = ["", f"## With test-time augmentation ({' or '.join(map(str, views))} views)", "",
             f"- Metric: {TTA_METRICS[tta.metric].format(views=_views_text(views))}",
             f"- Runs with TTA: {scored} of {done} finished", _ties_line(tta), ""]
    lines += _grid_lines(tta)
    if (tta.cells["text"] == "no TTA").any():
        lines.append("`no TTA`: the cell's runs were finished without test-time augmentation "
                     "(`kandel-repro grid … --tta N` scores them without training them again).")
    return lines


def _target_lines(table):
    """Partial transfer: how many epochs each row needed to reach the target AUC."""
    target, epochs = table.to_target
    if target is None:
        return []

    def words(values):
        reached = [e for e in values if e is not None]
        text = ", ".join("not reached" if e is None else str(e) for e in values)
        return f"{text} (mean {np.mean(reached):.1f})" if reached else text or "no run"

    return ["", f"Epochs to reach a validation AUC of {target:.4f} ({TARGET_SHARE:g} × the "
            "mean best of the run that transfers every block; our choice of target), per run:",
            ""] + [f"- {label}: {words(values)}" for label, values in epochs.items()]


def _selection_line(table):
    """Where the test split is labelled: which cell the validation AUC would choose."""
    choice = _validation_choice(table)
    if choice is None:
        return "- Model selection: the validation AUC (nothing finished yet)"
    cell, val, test = choice
    return (f"- Model selection: each run keeps the epoch of its best validation AUC; by "
            f"validation AUC the best cell is {table.describe(cell)} (validation "
            f"{val:.4f}, test {test:.4f}) — the test split is not used to choose")


def _validation_choice(table):
    """``(cell, validation AUC, test AUC)`` of the cell the validation split chooses (its
    runs' means), or None before any run has finished."""
    done = table.frame[(table.frame["status"] == "ok") & table.frame["val_auc"].notna()]
    if done.empty:
        return None
    means = done.groupby(["row", "column"])[["val_auc", "test_auc"]].mean()
    cell = means["val_auc"].idxmax()
    return cell, means.loc[cell, "val_auc"], means.loc[cell, "test_auc"]


def _recommendation_lines(table):
    """The configuration a user acts on, for a study no paper speaks of whose metric is
    the test split's: chosen on the validation split, its test AUC reported apart."""
    choice = None if table.study.paper or table.metric != "test_auc" \
        else _validation_choice(table)
    if choice is None:
        return []
    cell, val, test = choice
    bold = ("it is also the bold cell" if table.best == cell else
            f"the bold cell ({table.describe(table.best)}) is the best on the test split, "
            "known only after scoring every cell there: the grid's ceiling, not what "
            "choosing gives")
    return [f"- **Recommended configuration**, chosen on the validation split: "
            f"{table.describe(cell)} (validation {val:.4f}); its test "
            f"AUC {test:.4f} estimates what this choice gives "
            f"on new images of the same kind — {bold}."]


def _test_name(table):
    """The paired test that compares two cells' runs, in words."""
    if table.multiclass:
        resamples = table.evidence.bootstrap or BOOTSTRAP
        return f"the paired stratified bootstrap of the macro AUC ({resamples:,} resamples)"
    return "DeLong's paired test"


def _seeds_line(table, split_seeds):
    seeds = ", ".join(map(str, table.seeds))
    split = f"split seed {', '.join(map(str, split_seeds))}"
    if len(table.seeds) == 1:
        interval = ("a 95 % stratified-bootstrap interval" if table.multiclass
                    else "DeLong's 95 % confidence interval")
        notes = sorted({str(n) for n in table.cells["ci_not_assessable"].dropna()})
        missing = (f"; `[not assessable]`: {'; '.join(notes)}" if notes else "")
        return (f"- Seed {seeds} ({split}); a cell shows its AUC and {interval} [low, "
                f"high]{missing}")
    return (f"- Seeds {seeds} ({split}: every run scored on the same images); a cell shows "
            "the mean over its seeds (min–max, n = runs)")


def _one_seed_lines(table):
    """Beside a table of one seed: the variance of training is not assessed."""
    if len(table.seeds) != 1 or table.best is None:
        return []
    return ["- Training variance: not assessed (one seed). Each cell is one trained "
            "network: its interval and the ties below measure the sampling of the scored "
            "images, not the spread of training again with another seed; `--seeds 3` "
            "trains three seeds per cell"]


def _ties_line(table):
    compared = sum(1 for _, c in table.cells.iterrows() if c["tied_with_best"] is not None)
    if table.best is None:
        return "- Tied with the best: nothing to compare yet"
    problem = table.evidence.split_problem()
    if problem:
        return (f"- Tied with the best: not assessable — {problem}; no paired test is made "
                "and no cell is marked")
    if not compared:
        return ("- Tied with the best: not judged (no prediction files to compare; runs made "
                "before predictions were kept, or a single cell)")
    split = f"{table.evidence.split} split"
    if table.metric in ("kaggle_private_auc", "kaggle_private_auc_tta"):
        split += " (Kaggle keeps the test labels)"
    comparisons = f"{compared} comparison" + ("s" if compared != 1 else "")
    seeds = (", in at least one seed (a cell counts as below the best only if it is in every "
             "seed)" if len(table.seeds) > 1 else "")
    unjudged = int(table.cells["test_not_assessable"].sum())
    skipped = (f"; {unjudged} cell{'s' if unjudged != 1 else ''} not assessable (the paired "
               "test's variance is 0 while the AUCs differ): not marked" if unjudged else "")
    return (f"- {TIED_MARK}: tied with the best — not significantly below it by "
            f"{_test_name(table)} on the same {split} images, Holm-adjusted over the table's "
            f"{comparisons}, 5 %{seeds}{skipped}")


def _cost_lines(table):
    """What each cell cost, where a study's rows mix strategies with block-wise depths,
    and the cheapest cell tied with the best."""
    if "cost" not in table.study.figures:
        return []
    from .costs import cell_costs, cheapest_tied

    costs = cell_costs(table)
    if costs.empty:
        return []
    lines = ["", "## What each cell cost", "",
             "Training seconds (evaluation left out) and epochs relative to the whole network "
             "fine-tuned block-wise at the same learning rate, on the machine of these runs; "
             "trainable parameters averaged over the epochs.", "",
             "| Row | Column | epochs | training s | × whole network (s) | trainable parameters |",
             "|---|---|---|---|---|---|"]
    for _, c in costs.iterrows():
        relative = f"{c['relative_seconds']:.2f}" if c["relative_seconds"] == c["relative_seconds"] \
            else "—"
        lines.append(f"| {c['row']} | {c['column']} | {c['epochs']:.0f} | "
                     f"{c['train_seconds']:.0f} | {relative} | {c['trainable_parameters']:,.0f} |")
    _, sentence = cheapest_tied(table, costs)
    lines += ["", f"Cheapest of the cells tied with the best: {sentence}."]
    return lines



def _search_lines(table):
    """What a grid searched by successive halving spent, against the full grid."""
    from .costs import search_cost

    cost = search_cost(table)
    if cost is None:
        return []
    over = (f" The search is not over: {cost['unfinished']} run(s) paused, failed or not "
            "run yet; the same `grid … --search halving` command goes on."
            if cost["unfinished"] else "")
    return ["", "## What the search cost", "",
            f"Successive halving trained {cost['finished']} run(s) to their end and stopped "
            f"{cost['stopped']}: {cost['epochs']:.0f} epochs of an estimated "
            f"{cost['full_epochs']:.0f} for the full grid ({cost['epochs'] / cost['full_epochs']:.0%}), "
            f"{cost['seconds']:.0f} training seconds of an estimated {cost['full_seconds']:.0f} "
            f"({cost['seconds'] / max(cost['full_seconds'], 1e-9):.0%}).{over} Estimated: each "
            f"stopped run is taken to have trained as long as the finished ones did on average "
            f"({cost['mean_epochs']:.1f} epochs; they are the better cells, and a cell dropped "
            "early might have stopped early too), at its own epoch time (its epochs after the "
            "first where it ran more than one). Training seconds only: evaluation, and the "
            "search's own overhead (each continued run built again and its data order "
            "replayed), are left out. Whether the search's choice is the full grid's: "
            "`kandel-repro evaluate-search` on a finished grid."]

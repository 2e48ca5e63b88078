"""The verdicts on the paper's findings (kandel_repro.report.compare), every branch of
:func:`verdict`, on small synthetic evidence: no training, no TensorFlow.

Each fake run has a metric value (what the table reads, here chosen by the test) and,
unless told otherwise, predictions on one shared split (what DeLong's paired test
compares). Scores of two kinds make the outcome certain: ``GOOD`` separates the classes
(AUC ≈ 0.98) and ``POOR`` does not (AUC ≈ 0.5), so GOOD against POOR is significant with
p ≈ 0; two runs with the *same* scores have identical rankings, so p = 1 (tied).
"""
import numpy as np
import pandas as pd
import pytest

from kandel_repro.core import protocol
from kandel_repro.report import compare
from kandel_repro.report.compare import CONTRADICTED, SUPPORTED, TIED, UNKNOWN, Evidence, verdict
from kandel_repro.runs import rundir
from kandel_repro.studies.registry import get_study

LABELS = np.array([0, 1] * 100)
IDS = [f"i{k:03d}" for k in range(len(LABELS))]
GOOD = LABELS * 3.0 + np.random.default_rng(0).normal(size=len(LABELS))
POOR = np.random.default_rng(1).normal(size=len(LABELS))


def name(cell):
    return f"{cell[0]} at {cell[1]}"


def make_evidence(root, cells, split="validation", converged=None, ids=None):
    """Evidence of fake runs: ``cells`` is ``{(row, column): {seed: (value, scores)}}``.

    ``value`` None: a finished run without a number (Table 5: did not converge);
    ``scores`` None: a run without predictions. ``ids``: ``{(cell, seed): ids}`` for runs
    that predicted other images."""
    values, runs = {}, {}
    for i, (cell, seeds) in enumerate(cells.items()):
        for seed, (value, scores) in seeds.items():
            run = f"run{i}_seed{seed}"
            (root / run).mkdir(parents=True)
            runs.setdefault(cell, {})[seed] = run
            if value is not None:
                values.setdefault(cell, {})[seed] = value
            if scores is not None:
                file = rundir.TEST_PREDICTIONS if split == "test" else rundir.VAL_PREDICTIONS
                pd.DataFrame({"id": (ids or {}).get((cell, seed), IDS), "label": LABELS,
                              "prediction": scores}).to_csv(root / run / file, index=False)
    return Evidence(None, root, values, runs, split, converged)


def one_seed(**cells):
    """``{cell: {0: (value, scores)}}`` from keyword ``"row|column"=(value, scores)``."""
    return {tuple(key.split("|")): {0: spec} for key, spec in cells.items()}


A, B, C = ("3–5", "1e-4"), ("1–5", "1e-4"), ("3–5", "1e-3")


def test_the_claim_kinds_are_those_verdict_handles_and_the_protocol_names():
    assert compare.CLAIM_KINDS == protocol.CLAIM_KINDS
    assert len(set(compare.CLAIM_KINDS)) == len(compare.CLAIM_KINDS)


def test_verdict_answers_every_claim_kind_the_protocol_names(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.98, GOOD)}, B: {0: (0.5, POOR)},
                                        C: {0: (0.51, POOR)}})
    evidence.study = get_study("table2")  # (the study's rows and columns, for some kinds)
    claims = {"all": ("all", [("best", A)]), "best": ("best", A),
              "best_in_column": ("best_in_column", A[1], A[0]),
              "best_in_row": ("best_in_row", A[0], A[1]), "worse": ("worse", B, A),
              "similar_row": ("similar_row", A[0]), "not_converged": ("not_converged", [A]),
              "tied_with_best": ("tied_with_best",), "rows_apart": ("rows_apart", A[0], B[0]),
              "columns_apart": ("columns_apart", A[1], C[1]),
              "best_row_by_column": ("best_row_by_column",)}
    assert sorted(claims) == sorted(protocol.CLAIM_KINDS)
    answers = {SUPPORTED, TIED, CONTRADICTED, UNKNOWN, compare.ANSWERED, compare.APART,
               compare.SAME_BEST, compare.BEST_CHANGES}
    for kind, claim in claims.items():
        answer, reason = verdict(claim, evidence, name)
        assert answer in answers and reason, kind


def test_no_claim_is_not_assessable_and_an_unknown_kind_is_a_programming_error(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.9, GOOD)}})
    assert verdict(None, evidence, name) == (UNKNOWN, "not a claim this grid can check")
    with pytest.raises(ValueError, match="unknown claim \\('bst',"):
        verdict(("bst", A), evidence, name)


# --- "best": the best cell of the table ------------------------------------------------

def test_best_is_supported_when_every_other_cell_is_significantly_below(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.98, GOOD)}, B: {0: (0.5, POOR)},
                                        C: {0: (0.51, POOR)}})
    outcome, reason = verdict(("best", A), evidence, name)
    assert outcome == SUPPORTED
    assert reason == ("3–5 at 1e-4 is best of the table (0.9800), every other cell "
                      "significantly below it")


def test_best_is_tied_when_another_cell_is_not_significantly_below(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.98, GOOD)}, B: {0: (0.97, GOOD)},
                                        C: {0: (0.5, POOR)}})
    outcome, reason = verdict(("best", A), evidence, name)
    assert outcome == TIED
    assert reason == ("3–5 at 1e-4 is best of the table (0.9800), but 1–5 at 1e-4 are not "
                      "significantly below it")


def test_best_tied_with_many_names_three_and_counts_the_rest(tmp_path):
    cells = {A: {0: (0.98, GOOD)}}
    cells.update({(str(k), "1e-4"): {0: (0.9 - k / 100, GOOD)} for k in range(5)})
    outcome, reason = verdict(("best", A), make_evidence(tmp_path, cells), name)
    assert outcome == TIED
    assert reason.endswith("0 at 1e-4, 1 at 1e-4, 2 at 1e-4 and 2 more are not significantly "
                           "below it")


def test_best_is_contradicted_when_the_claimed_cell_is_significantly_below_the_best(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.5, POOR)}, B: {0: (0.98, GOOD)}})
    outcome, reason = verdict(("best", A), evidence, name)
    assert outcome == CONTRADICTED
    assert reason.startswith("the best of the table is 1–5 at 1e-4 (0.9800); 3–5 at 1e-4 "
                             "0.5000, significantly lower (p ≤ ")


def test_best_is_tied_when_the_claimed_cell_is_second_but_not_significantly_lower(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.97, GOOD)}, B: {0: (0.98, GOOD)}})
    outcome, reason = verdict(("best", A), evidence, name)
    assert outcome == TIED
    assert reason == ("the best of the table is 1–5 at 1e-4 (0.9800); 3–5 at 1e-4 0.9700, "
                      "not significantly lower (p up to 1)")


def test_best_is_not_assessable_without_a_result_a_rival_or_predictions(tmp_path):
    no_result = make_evidence(tmp_path / "a", {B: {0: (0.9, GOOD)}, C: {0: (0.8, POOR)}})
    assert verdict(("best", A), no_result, name) == (UNKNOWN, "3–5 at 1e-4 has no result")
    alone = make_evidence(tmp_path / "b", {A: {0: (0.9, GOOD)}})
    assert verdict(("best", A), alone, name) == (UNKNOWN, "the table has a single result")
    unpredicted = make_evidence(tmp_path / "c", {A: {0: (0.98, GOOD)}, B: {0: (0.5, None)}})
    assert verdict(("best", A), unpredicted, name) == (
        UNKNOWN, "predictions are missing for some runs")


def test_a_claim_of_superiority_must_hold_in_every_seed(tmp_path):
    """Two seeds: the claimed cell is significantly best in one and tied in the other."""
    evidence = make_evidence(tmp_path, {A: {0: (0.98, GOOD), 1: (0.98, GOOD)},
                                        B: {0: (0.5, POOR), 1: (0.97, GOOD)}})
    assert verdict(("best", A), evidence, name)[0] == TIED
    assert verdict(("worse", B, A), evidence, name)[0] == TIED


# --- "best_in_column" and "best_in_row": the best of a column or a row -------------------

def test_best_in_column_looks_only_at_that_column(tmp_path):
    # the table's best (B) is in another column; in column 1e-3, C beats D
    D = ("1–5", "1e-3")
    evidence = make_evidence(tmp_path, {B: {0: (0.99, GOOD)}, C: {0: (0.98, GOOD)},
                                        D: {0: (0.5, POOR)}})
    outcome, reason = verdict(("best_in_column", "1e-3", "3–5"), evidence, name)
    assert outcome == SUPPORTED and reason.startswith("3–5 at 1e-3 is best of column 1e-3")
    outcome, reason = verdict(("best_in_column", "1e-3", "1–5"), evidence, name)
    assert outcome == CONTRADICTED
    assert reason.startswith("the best of column 1e-3 is 3–5 at 1e-3 (0.9800)")
    assert verdict(("best_in_column", "1e-4", "1–5"), evidence, name) == (
        UNKNOWN, "column 1e-4 has a single result")
    assert verdict(("best_in_column", "1e-5", "1–5"), evidence, name) == (
        UNKNOWN, "1–5 at 1e-5 has no result")


def test_best_in_row_looks_only_at_that_row(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.97, GOOD)}, C: {0: (0.98, GOOD)},
                                        B: {0: (0.99, POOR)}})
    outcome, reason = verdict(("best_in_row", "3–5", "1e-3"), evidence, name)
    assert outcome == TIED
    assert reason.startswith("3–5 at 1e-3 is best of row 3–5 (0.9800), but")
    outcome, reason = verdict(("best_in_row", "3–5", "1e-4"), evidence, name)
    assert outcome == TIED and reason.startswith("the best of row 3–5 is 3–5 at 1e-3")
    assert verdict(("best_in_row", "1–5", "1e-4"), evidence, name) == (
        UNKNOWN, "row 1–5 has a single result")


# --- "worse": one cell below another ----------------------------------------------------

def test_worse_gives_each_verdict(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.98, GOOD)}, B: {0: (0.5, POOR)},
                                        C: {0: (0.97, GOOD)}})
    outcome, reason = verdict(("worse", B, A), evidence, name)
    assert outcome == SUPPORTED
    assert reason.startswith("1–5 at 1e-4 0.5000 against 3–5 at 1e-4 0.9800, significantly "
                             "lower (p ≤ ")
    outcome, reason = verdict(("worse", A, B), evidence, name)
    assert outcome == CONTRADICTED and "significantly higher (p ≤ " in reason
    assert verdict(("worse", C, A), evidence, name) == (
        TIED, "3–5 at 1e-3 0.9700 against 3–5 at 1e-4 0.9800, not significantly different "
              "(p up to 1)")


def test_worse_is_not_assessable_without_both_results_or_comparable_predictions(tmp_path):
    evidence = make_evidence(tmp_path / "a", {A: {0: (0.98, GOOD)}, B: {0: (0.5, None)}})
    assert verdict(("worse", C, A), evidence, name) == (UNKNOWN, "3–5 at 1e-3 has no result")
    assert verdict(("worse", A, C), evidence, name) == (UNKNOWN, "3–5 at 1e-3 has no result")
    assert verdict(("worse", B, A), evidence, name) == (
        UNKNOWN, "no predictions to compare 1–5 at 1e-4 with 3–5 at 1e-4")
    # runs that predicted other images are not compared, and the table says so
    other = make_evidence(tmp_path / "b", {A: {0: (0.98, GOOD)}, B: {0: (0.5, POOR)}},
                          ids={(B, 0): [f"x{k}" for k in range(len(LABELS))]})
    assert verdict(("worse", B, A), other, name)[0] == UNKNOWN
    assert other.problems == ["seed 0: run1_seed0 and run0_seed0 predicted other images"]


def test_the_test_split_compares_the_test_predictions(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.98, GOOD)}, B: {0: (0.5, POOR)}},
                             split="test")
    assert evidence.file == rundir.TEST_PREDICTIONS
    assert not (tmp_path / "run0_seed0" / rundir.VAL_PREDICTIONS).exists()
    assert verdict(("worse", B, A), evidence, name)[0] == SUPPORTED


# --- "similar_row": the cells of a row alike -------------------------------------------

def test_similar_row_gives_each_verdict(tmp_path):
    D = ("3–5", "1e-5")
    alike = make_evidence(tmp_path / "a", {A: {0: (0.98, GOOD)}, C: {0: (0.97, GOOD)},
                                           D: {0: (0.975, GOOD)}, B: {0: (0.5, POOR)}})
    assert verdict(("similar_row", "3–5"), alike, name) == (
        SUPPORTED, "no two differ significantly (spread 0.0100)")
    apart = make_evidence(tmp_path / "b", {A: {0: (0.98, GOOD)}, C: {0: (0.5, POOR)}})
    assert verdict(("similar_row", "3–5"), apart, name) == (
        CONTRADICTED, "3–5 at 1e-4 and 3–5 at 1e-3 differ significantly in every seed")
    # seed 0 tells them apart, seed 1 does not
    sometimes = make_evidence(tmp_path / "c", {A: {0: (0.98, GOOD), 1: (0.98, GOOD)},
                                               C: {0: (0.5, POOR), 1: (0.97, GOOD)}})
    assert verdict(("similar_row", "3–5"), sometimes, name) == (
        TIED, "some pairs differ in some seeds but not in all")
    assert verdict(("similar_row", "1–5"), alike, name) == (
        UNKNOWN, "row 1–5 has fewer than two results")


# --- "not_converged" (Table 5's rule) --------------------------------------------------

def test_not_converged_gives_each_verdict(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (None, POOR), 1: (None, POOR)},
                                        B: {0: (0.9, GOOD)}, C: {0: (None, POOR)}},
                             converged={A: {0: False, 1: False}, B: {0: True},
                                        C: {0: False}})
    assert verdict(("not_converged", [A, C]), evidence, name) == (
        SUPPORTED, "every one of their 3 run(s) did not converge")
    assert verdict(("not_converged", [B]), evidence, name) == (
        CONTRADICTED, "all 1 run(s) converged")
    assert verdict(("not_converged", [A, B]), evidence, name) == (
        TIED, "2 of 3 run(s) did not converge")
    assert verdict(("not_converged", [("2–5", "1e-3")]), evidence, name) == (
        UNKNOWN, "those runs have not finished")


# --- "all": every sub-claim -------------------------------------------------------------

def test_all_is_as_strong_as_its_weakest_claim(tmp_path):
    evidence = make_evidence(tmp_path, {A: {0: (0.98, GOOD)}, B: {0: (0.5, POOR)},
                                        C: {0: (0.97, GOOD)}})
    supported, tied = ("worse", B, A), ("worse", C, A)
    contradicted, unknown = ("worse", A, B), ("best", ("2–5", "1e-4"))
    outcome, reason = verdict(("all", [supported, supported]), evidence, name)
    assert outcome == SUPPORTED and reason.count("; ") == 1
    assert verdict(("all", [supported, tied]), evidence, name)[0] == TIED
    assert verdict(("all", [supported, tied, unknown]), evidence, name)[0] == UNKNOWN
    outcome, reason = verdict(("all", [unknown, contradicted, supported]), evidence, name)
    assert outcome == CONTRADICTED
    assert reason.split("; ")[0] == "2–5 at 1e-4 has no result"


# --- Table 5: runs that did not converge have no number -------------------------------

def table5_evidence(root, vgg16_1e3_converged=False):
    """Table 5 as :func:`kandel_repro.report.collect.assemble` builds it: a run that did
    not converge is finished (in ``runs`` and ``converged``) but has no value."""
    runs = {("VGG16", "1e-3"): (0.5, POOR, vgg16_1e3_converged),
            ("VGG16", "1e-4"): (0.95, GOOD, True), ("VGG16", "1e-5"): (0.6, POOR, True),
            ("VGG19", "1e-3"): (0.5, POOR, False), ("VGG19", "1e-4"): (0.55, POOR, True),
            ("VGG19", "1e-5"): (0.94, GOOD, True),
            ("InceptionV3", "1e-4"): (0.93, GOOD, True)}
    cells = {cell: {0: (value if converged else None, scores)}
             for cell, (value, scores, converged) in runs.items()}
    converged = {cell: {0: flag} for cell, (_, _, flag) in runs.items()}
    return make_evidence(root, cells, converged=converged)


def test_table5s_findings_get_their_verdicts(tmp_path):
    claims = [f.claim for f in get_study("table5").findings]
    evidence = table5_evidence(tmp_path / "a")
    assert [verdict(c, evidence, name)[0] for c in claims] == [
        SUPPORTED, SUPPORTED, UNKNOWN, UNKNOWN]
    # InceptionV3's row has a single result; the last finding makes no claim
    assert verdict(claims[2], evidence, name) == (UNKNOWN, "row InceptionV3 has a single result")
    # a non-converged run has no number, so it is not a rival in its row
    assert sorted(c for c in evidence.cells() if c[0] == "VGG16") == [("VGG16", "1e-4"),
                                                                     ("VGG16", "1e-5")]
    outcome, reason = verdict(("best_in_row", "VGG19", "1e-4"), evidence, name)
    assert outcome == CONTRADICTED and reason.startswith("the best of row VGG19 is VGG19 at 1e-5")
    converged = table5_evidence(tmp_path / "b", vgg16_1e3_converged=True)
    assert verdict(claims[0], converged, name) == (TIED, "1 of 2 run(s) did not converge")
    # VGG16 at 1e-3 converged with a poor number: at 1e-4 it is still best of its row
    outcome, reason = verdict(("best_in_row", "VGG16", "1e-4"), converged, name)
    assert outcome == SUPPORTED and reason.startswith("VGG16 at 1e-4 is best of row VGG16")


# --- the best cell and its ties ---------------------------------------------------------

def test_ties_mark_the_cells_not_significantly_below_the_best(tmp_path):
    D = ("5", "1e-4")
    evidence = make_evidence(tmp_path / "a", {A: {0: (0.98, GOOD)}, B: {0: (0.5, POOR)},
                                              C: {0: (0.97, GOOD)}, D: {0: (0.4, None)}})
    best, per_cell, tied = evidence.ties()
    assert best == A and evidence.best_per_seed() == {0: A}
    assert tied == {B: False, C: True, D: None}  # None: no predictions to compare
    assert [(seed, p) for seed, _, p in per_cell[C]] == [(0, 1.0)]
    assert make_evidence(tmp_path / "b", {A: {0: (None, GOOD)}}).ties() == (None, {}, {})


# --- questions of a study without a paper (the depth study) -------------------------------

def depth_evidence(root, cells, study=None, **kwargs):
    evidence = make_evidence(root, cells, **kwargs)
    evidence.study = study or get_study("depth")
    return evidence


def test_tied_with_best_names_the_cells_not_significantly_below_the_best(tmp_path):
    evidence = depth_evidence(tmp_path, one_seed(**{"3–5|1e-4": (0.98, GOOD),
                                                    "4–5|1e-4": (0.97, GOOD),
                                                    "5|1e-4": (0.5, POOR)}))
    outcome, reason = verdict(("tied_with_best",), evidence, name)
    assert outcome == compare.ANSWERED
    assert reason == ("the best is 3–5 at 1e-4 (0.9800); tied with it: 4–5 at 1e-4 (0.9700); "
                      "1 of 2 other cells are significantly below it")


def test_tied_with_best_when_nothing_is_tied_or_nothing_to_compare(tmp_path):
    alone = depth_evidence(tmp_path / "a", one_seed(**{"3–5|1e-4": (0.98, GOOD)}))
    assert verdict(("tied_with_best",), alone, name) == (
        UNKNOWN, "3–5 at 1e-4 is the only result")
    apart = depth_evidence(tmp_path / "b", one_seed(**{"3–5|1e-4": (0.98, GOOD),
                                                       "5|1e-4": (0.5, POOR)}))
    assert verdict(("tied_with_best",), apart, name) == (
        compare.ANSWERED, "the best is 3–5 at 1e-4 (0.9800); every other cell is significantly "
        "below it")


def test_rows_apart_tells_whole_network_from_top_block_per_column(tmp_path):
    cells = one_seed(**{"1–5|1e-4": (0.98, GOOD), "5|1e-4": (0.5, POOR),
                        "1–5|1e-3": (0.9, GOOD), "5|1e-3": (0.91, GOOD)})
    outcome, reason = verdict(("rows_apart", "1–5", "5"), depth_evidence(tmp_path, cells), name)
    assert outcome == "partly distinguishable"
    assert "1–5 at 1e-3 0.9000 against 5 at 1e-3 0.9100, not significantly different" in reason
    assert "1–5 at 1e-4 0.9800 against 5 at 1e-4 0.5000, significantly higher" in reason
    only = one_seed(**{"1–5|1e-4": (0.98, GOOD), "5|1e-4": (0.5, POOR)})
    assert verdict(("rows_apart", "1–5", "5"), depth_evidence(tmp_path / "b", only),
                   name)[0] == compare.APART
    none = one_seed(**{"1–5|1e-4": (0.98, GOOD), "5|1e-3": (0.5, POOR)})
    assert verdict(("rows_apart", "1–5", "5"), depth_evidence(tmp_path / "c", none), name) == (
        UNKNOWN, "rows 1–5 and 5 have no column where both have results")


def _policies(root, spec):
    """Evidence of the augmentation study: ``spec`` is ``{policy: {depth: kind}}``, a kind
    "good" (GOOD scores, 0.98) or "poor" (POOR, 0.5); "good2" is GOOD at 0.97."""
    kinds = {"good": (0.98, GOOD), "good2": (0.97, GOOD), "poor": (0.5, POOR)}
    cells = {(depth, policy): {0: kinds[kind]} for policy, depths in spec.items()
             for depth, kind in depths.items()}
    return depth_evidence(root, cells, study=get_study("augmentation"))


UNJUDGED = " (not judged, fewer than two results: paper + colour, paper + HED strong)"


def test_best_depth_by_policy_same_tied_or_changed(tmp_path):
    claim = ("best_row_by_column",)
    same = _policies(tmp_path / "a", {"none": {"5": "good", "1–5": "poor"},
                                      "paper": {"5": "good", "1–5": "good2"}})
    outcome, reason = verdict(claim, same, name)
    assert outcome == compare.SAME_BEST
    assert reason == ("the same best depth in every column — none: blocks 5 (0.9800); "
                      "paper: blocks 5 (0.9800), tied with blocks 1–5" + UNJUDGED)
    # the best differs, but blocks 5 is tied with the best under both policies
    tied = _policies(tmp_path / "b", {"none": {"5": "good", "1–5": "poor"},
                                      "paper": {"5": "good2", "1–5": "good"}})
    outcome, reason = verdict(claim, tied, name)
    assert outcome == TIED and reason.endswith(
        UNJUDGED + "), but blocks 5 is not significantly below the best in any column")
    changed = _policies(tmp_path / "c", {"none": {"5": "good", "1–5": "poor"},
                                         "paper": {"5": "poor", "1–5": "good"}})
    outcome, reason = verdict(claim, changed, name)
    assert outcome == compare.BEST_CHANGES
    assert reason == ("no depth is tied with the best in every column — none: blocks 5 "
                      "(0.9800); paper: blocks 1–5 (0.9800)" + UNJUDGED)
    # a policy with fewer than two depths finished is left out, and said to be
    short = _policies(tmp_path / "d", {"none": {"5": "good", "1–5": "poor"},
                                       "paper": {"5": "good", "1–5": "poor"},
                                       "paper + colour": {"5": "good"}})
    assert verdict(claim, short, name)[1].endswith(
        "(not judged, fewer than two results: paper + colour, paper + HED strong)")
    one = _policies(tmp_path / "e", {"none": {"5": "good", "1–5": "poor"}})
    assert verdict(claim, one, name) == (
        UNKNOWN, "fewer than two columns have results for two rows or more")


def test_multiclass_runs_are_compared_by_the_paired_bootstrap(tmp_path):
    """Three classes: the score files hold score_0 … score_2 and the comparison is the
    paired stratified bootstrap of the macro AUC, seeded (the same p every time)."""
    rng = np.random.default_rng(0)
    labels = np.arange(150) % 3
    good = np.eye(3)[labels] * 2.0 + rng.normal(size=(150, 3))
    poor = rng.normal(size=(150, 3))
    runs = {}
    for cell, scores in ((A, good), (B, poor), (C, good + rng.normal(0, 0.05, size=(150, 3)))):
        run = f"run_{cell[0]}_{cell[1]}"
        (tmp_path / run).mkdir()
        rundir.prediction_frame([f"i{k}" for k in range(150)], labels, scores).to_csv(
            tmp_path / run / rundir.VAL_PREDICTIONS, index=False)
        runs[cell] = {0: run}
    values = {A: {0: 0.9}, B: {0: 0.5}, C: {0: 0.89}}
    evidence = Evidence(get_study("depth"), tmp_path, values, runs, "validation", bootstrap=300)
    results = evidence.compare([(B, A), (C, A)])
    (seed, diff_b, p_b), = results[(B, A)]
    (_, diff_c, p_c), = results[(C, A)]
    assert seed == 0 and diff_b < -0.2 and p_b < 0.05
    assert abs(diff_c) < 0.02 and p_c > 0.05
    again = Evidence(get_study("depth"), tmp_path, values, runs, "validation", bootstrap=300)
    assert again.compare([(B, A), (C, A)]) == results

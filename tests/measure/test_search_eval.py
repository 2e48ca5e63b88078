"""evaluate-search: successive halving replayed on a finished grid (kandel_repro.measure.
search_eval), on the strategies study's written runs (tests/report/test_strategies_table)."""
import pandas as pd
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.measure.search_eval import evaluate, parse_ints, write_evaluation
from tests.report.test_strategies_table import strategy_runs  # noqa: F401 - a fixture (used by name)


def test_the_replay_against_the_grid_s_own_verdict(strategy_runs, tmp_path):  # noqa: F811
    table, frame = evaluate("strategies", strategy_runs, etas=(2, 3), min_epochs=(1,))
    assert list(frame["search"]) == ["full grid (validation's choice)"] + \
        ["successive halving"] * 2
    grid = frame.iloc[0]
    assert grid["share_of_grid"] == 1.0 and grid["epochs"] == 33 * 2  # 11 rows × 3 rates
    halving = frame.iloc[1:]
    # every cell trains its first epoch; the better 1/η (17 at η = 2, 11 at η = 3) its
    # second, the last these runs recorded
    assert list(halving["epochs"]) == [33 + 17, 33 + 11]
    assert (halving["share_of_grid"] < 1).all() and (frame["regret"] >= -1e-12).all()
    assert set(frame["tied_with_best"]) <= {True, False}
    assert frame["best"].nunique() == 1 and frame["metric"].iloc[0] == "test_auc"


def test_the_command_writes_its_table(strategy_runs, tmp_path):  # noqa: F811
    written = write_evaluation("strategies", strategy_runs, tmp_path, (2,), (1,), log=print)
    md = (tmp_path / "strategies_search.md").read_text()
    assert "| successive halving | 2 | 1 |" in md and "searches reached a cell tied" in md
    assert [p.name for p in written] == ["strategies_search.md", "strategies_search.csv"]
    assert len(pd.read_csv(tmp_path / "strategies_search.csv")) == 2


def test_options_are_checked():
    assert parse_ints("2,3", "--eta") == (2, 3)
    with pytest.raises(ConfigError, match="--eta takes whole numbers"):
        parse_ints("two", "--eta")


def test_block_scores_against_the_grid(strategy_runs, tmp_path):  # noqa: F811
    from kandel_repro.measure.search_eval import scores_against_grid

    table, _ = evaluate("strategies", strategy_runs, etas=(2,), min_epochs=(1,))
    # VGG16: blocks 1–4 score the depths 2–5 … 5 (block 5 would leave the head alone)
    scores = pd.DataFrame({"block": [1, 2, 3, 4, 5], "logme": [0.9, 0.8, 0.2, 0.1, 0.0],
                           "h_score": [0.1, 0.2, 0.3, 0.4, 0.5],
                           "probe_val_auc": [0.9, 0.9, 0.6, 0.5, 0.5]})
    frame = scores_against_grid(table, scores).set_index("score")
    # four depths: too few for a rank correlation
    assert frame["depths"].tolist() == [4, 4, 4] and frame["spearman"].isna().all()
    assert frame.loc["logme", "top_block"] == 1
    assert frame.loc["logme", "top_depth"] == "blocks 2–5 at 1e-4"  # its best rate
    assert bool(frame.loc["logme", "top_tied_with_best"]) is True
    assert frame.loc["h_score", "top_depth"].startswith("the head alone")
    written = write_evaluation("strategies", strategy_runs, tmp_path, (2,), (1,), log=print,
                               block_scores=_csv(scores, tmp_path))
    assert "## Block scores before training, against the grid" in written[0].read_text()
    with pytest.raises(ConfigError, match="is not a score-blocks CSV"):
        write_evaluation("strategies", strategy_runs, tmp_path, (2,), (1,), log=print,
                         block_scores=_csv(scores.drop(columns="logme"), tmp_path))


def _csv(frame, folder):
    path = folder / f"scores{len(frame.columns)}.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_trained_search_is_set_against_the_grid(strategy_runs, tmp_path):  # noqa: F811
    import shutil

    from kandel_repro.core.files import write_json
    from kandel_repro.runs import rundir

    searched = tmp_path / "searched"
    shutil.copytree(strategy_runs, searched)
    write_json(searched / "grid.json", {"study": "strategies",
                                        "search": {"method": "halving", "eta": 3,
                                                   "min_epochs": 1}})
    folders = sorted(p for p in searched.iterdir() if (p / rundir.METRICS).is_file())
    validation = {p.name: rundir.read_metrics(p)["val_auc"] for p in folders}
    stopped = sorted(validation, key=validation.get)[:len(folders) - 3]  # all but 3 stopped
    for name in stopped:
        (searched / name / rundir.METRICS).unlink()
        write_json(searched / name / rundir.SEARCH, {"stopped_at_epoch": 1, "rung": 1,
                                                      "val_auc": 0.5})
    table, frame = evaluate("strategies", strategy_runs, etas=(3,), min_epochs=(1,),
                            searched=searched)
    row = frame.iloc[-1]
    assert row["search"] == "successive halving, trained (--search halving)"
    assert (row["eta"], row["min_epochs"]) == (3, 1)
    assert row["epochs"] == len(stopped) * 1 + 3 * 2  # the stopped at 1, the rest their 2
    best_finished = max((n for n in validation if n not in stopped), key=validation.get)
    assert row["chosen_value"] == pytest.approx(
        table.evidence.mean(next(c for c, runs in table.evidence.runs.items()
                                 if runs[min(runs)] == best_finished)))
    md = write_evaluation("strategies", strategy_runs, tmp_path, (3,), (1,), log=print,
                          searched=searched)[0].read_text()
    assert "| successive halving, trained (--search halving) | 3 | 1 |" in md
    assert f"--searched {searched}`" in md
    with pytest.raises(ConfigError, match="holds no finished run"):
        evaluate("strategies", strategy_runs, searched=tmp_path / "empty")
    (searched / stopped[0] / rundir.SEARCH).unlink()  # paused, not stopped: not over
    with pytest.raises(ConfigError, match=f"is not over \\({stopped[0]} is neither"):
        evaluate("strategies", strategy_runs, searched=searched)

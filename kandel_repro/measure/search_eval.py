"""``kandel-repro evaluate-search``: would successive halving have reached the full grid's
verdict, and at what share of its epochs? Replayed from a finished grid's own per-epoch
validation AUCs (:func:`kandel_repro.grid.halving.replay`), for several η and R, without
training.

For each (η, R) the table gives the cell the search would choose (by validation AUC, as a
search must), whether it is tied with the grid's best cell (the table's own paired tests:
the best cell or not significantly below it), its regret (the best cell's metric minus the
chosen cell's, on the table's metric: the test split where labelled) and the epochs it
would have spent as a share of the grid's. One row also gives the full grid's own
validation choice, the reference a search is cheaper than.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..core.files import check_writable, write_csv, write_text
from ..grid.halving import replay
from ..report.collect import assemble
from ..report.run_studies import study_of_runs
from ..runs import rundir


def _histories(table):
    """``{cell: validation AUC per epoch}`` and ``{cell: training seconds per epoch}`` of
    each cell's seed-0 (first) run, and the protocol's epochs (the largest any run was
    allowed)."""
    import pandas as pd

    histories, seconds, max_epochs = {}, {}, 0
    for cell, runs in table.evidence.runs.items():
        if not runs:
            continue
        run = table.runs_dir / runs[min(runs)]
        path = run / rundir.HISTORY
        config = rundir.read_config(run) or {}
        if not path.is_file() or (rundir.read_metrics(run) or {}).get("status") != "ok":
            continue
        history = pd.read_csv(path)
        histories[cell] = [float(v) for v in history["val_auc"]]
        seconds[cell] = [float(v) for v in history.get("train_seconds", [np.nan] * len(history))]
        max_epochs = max(max_epochs, int(config.get("max_epochs") or 0))
    return histories, seconds, max_epochs


def _searched(table, searched):
    """``(chosen cell, epochs, training seconds, η, R)`` of a grid trained by ``grid
    --search halving`` into ``searched``, over the same cells as ``table``'s grid: the
    finished cell with the best validation AUC (the search's choice), and what its runs
    trained (a stopped run up to the epoch it stopped at)."""
    import pandas as pd

    request = rundir.read_grid(searched) or {}
    search = request.get("search") or {}
    choice, epochs, seconds = {}, 0, 0.0
    for cell, runs in table.evidence.runs.items():
        folder = Path(searched) / runs[min(runs)]
        path = folder / rundir.HISTORY
        if not path.is_file():
            continue
        history = pd.read_csv(path)
        stopped = rundir.read_search(folder)
        metrics = rundir.read_metrics(folder)
        if stopped:
            history = history.head(int(stopped["stopped_at_epoch"]))
        elif not metrics:
            raise ConfigError(f"the search in {searched} is not over ({folder.name} is "
                              "neither finished nor stopped): run its `grid … --search "
                              "halving` command again first")
        epochs += len(history)
        seconds += float(history.get("train_seconds", pd.Series([np.nan])).sum())
        if metrics and metrics.get("val_auc") is not None:
            choice[cell] = metrics["val_auc"]
    if not choice:
        raise ConfigError(f"{searched} holds no finished run of {table.study.name}: run "
                          "`kandel-repro grid … --search halving` into it first")
    order = list(table.evidence.runs)
    chosen = max(choice, key=lambda c: (choice[c], -order.index(c)))
    return chosen, epochs, seconds, search.get("eta"), search.get("min_epochs")


def evaluate(study_name: str, runs_dir: str | Path, etas: Sequence[int] = (2, 3),
             min_epochs: Sequence[int] = (1, 2), backbone: str | None = None,
             dataset: str | None = None, searched: str | Path | None = None):
    """``(table, frame)``: the study's table (its ties and metric) and one row per (η, R)
    of what a replayed search would have done; with ``searched`` (the run folders of the
    same grid trained by ``grid --search halving``) a row of what that search did."""
    import pandas as pd

    study = study_of_runs(study_name, runs_dir, backbone, dataset)
    table = assemble(study, Path(runs_dir), (0,))
    histories, seconds, max_epochs = _histories(table)
    if len(histories) < 2:
        raise ConfigError(f"{runs_dir} holds {len(histories)} finished run(s) of {study.name} "
                          "with a history: a search needs two or more")
    best, _, tied = table.evidence.ties()
    metric = {cell: table.evidence.mean(cell) for cell in histories}
    validation = {cell: max(h) for cell, h in histories.items()}
    grid_choice = max(histories, key=lambda c: (validation[c], -list(histories).index(c)))
    grid_epochs = sum(len(h) for h in histories.values())
    grid_seconds = sum(sum(s) for s in seconds.values())

    def spent(stopped_at):
        return sum(sum(seconds[c][:len(seconds[c]) if at is None else at])
                   for c, at in stopped_at.items())

    def row(search, eta, r, chosen, epochs, train_seconds):
        same = chosen == best or tied.get(chosen)
        return {"search": search, "eta": eta, "min_epochs": r, "chosen": table.describe(chosen),
                "tied_with_best": None if tied.get(chosen) is None and chosen != best
                else bool(same),
                "regret": metric[best] - metric[chosen], "metric": table.metric,
                "chosen_value": metric[chosen], "best": table.describe(best),
                "best_value": metric[best], "epochs": epochs, "grid_epochs": grid_epochs,
                "share_of_grid": epochs / grid_epochs, "train_seconds": train_seconds,
                "seconds_share": train_seconds / grid_seconds if grid_seconds else np.nan}

    rows = [row("full grid (validation's choice)", None, None, grid_choice, grid_epochs,
                grid_seconds)]
    for eta in etas:
        for r in min_epochs:
            result = replay(histories, eta, r, max_epochs)
            rows.append(row("successive halving", eta, r, result.chosen, result.epochs,
                            spent(result.stopped_at)))
    if searched is not None:
        chosen, epochs, train_seconds, eta, r = _searched(table, searched)
        rows.append(row("successive halving, trained (--search halving)", eta, r, chosen,
                        epochs, train_seconds))
    return table, pd.DataFrame(rows)


def write_evaluation(study_name: str, runs_dir: str | Path, out_dir: str | Path,
                     etas: Sequence[int] = (2, 3), min_epochs: Sequence[int] = (1, 2),
                     backbone: str | None = None, dataset: str | None = None,
                     log: Callable[[str], None] = print,
                     block_scores: str | Path | None = None,
                     searched: str | Path | None = None) -> list[Path]:
    """``<study>_search.md`` and ``.csv`` in ``out_dir``; with ``block_scores`` (a
    ``score-blocks`` CSV of the grid's backbone) a section on how its scores rank the
    depths; with ``searched`` a row of a search trained on the same grid (:func:`evaluate`)."""
    table, frame = evaluate(study_name, runs_dir, etas, min_epochs, backbone, dataset,
                            searched)
    out_dir = check_writable(out_dir, "--out")
    stem = out_dir / f"{table.study.name}_search"
    write_csv(stem.with_suffix(".csv"), frame)
    lines = [f"# Successive halving replayed on {table.study.title}", "",
             f"- Runs: `{runs_dir}` ({len(table.evidence.runs)} cells, seed 0); the search "
             "chooses by validation AUC; tied: the chosen cell is the best or not "
             "significantly below it by the table's own paired test; regret: the best "
             f"cell's {table.metric} minus the chosen one's.",
             f"- Made by: `kandel-repro evaluate-search {table.study.name} --runs {runs_dir} "
             f"--out {out_dir} --eta {','.join(map(str, etas))} --min-epochs "
             f"{','.join(map(str, min_epochs))}"
             + (f" --searched {searched}`" if searched is not None else "`"), "",
             "| search | η | R | chosen | tied with the best | regret | epochs (share of the "
             "grid) | training seconds (share) |", "|---|---|---|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        tied = {True: "yes", False: "**no**", None: "not assessable"}[r["tied_with_best"]]
        eta = "—" if r["eta"] is None or r["eta"] != r["eta"] else int(r["eta"])
        rr = "—" if r["min_epochs"] is None or r["min_epochs"] != r["min_epochs"] \
            else int(r["min_epochs"])
        lines.append(f"| {r['search']} | {eta} | {rr} | {r['chosen']} ({r['chosen_value']:.4f}) "
                     f"| {tied} | {r['regret']:.4f} | {int(r['epochs'])} "
                     f"({r['share_of_grid']:.0%}) | {r['train_seconds']:.0f} "
                     f"({r['seconds_share']:.0%}) |")
    halving = frame[frame["search"].str.startswith("successive halving")]
    reached = halving[halving["tied_with_best"] == True]  # noqa: E712 - object column
    lines += ["", f"The grid's best: {frame['best'].iloc[0]} ({frame['best_value'].iloc[0]:.4f}). "
              f"{len(reached)} of {len(halving)} searches reached a cell tied with it"
              + (f", the cheapest at {reached['share_of_grid'].min():.0%} of the grid's epochs."
                 if len(reached) else "."), ""]
    if block_scores is not None:
        lines += _score_lines(table, block_scores)
    write_text(stem.with_suffix(".md"), "\n".join(lines))
    for path in (stem.with_suffix(".md"), stem.with_suffix(".csv")):
        log(f"wrote {path}")
    return [stem.with_suffix(".md"), stem.with_suffix(".csv")]


def _score_lines(table, path):
    """The Markdown section on the block scores of ``path`` against the grid."""
    import pandas as pd

    try:
        scores = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--block-scores {path}: cannot be read ({error})") from None
    missing = {"block", "logme", "h_score", "probe_val_auc"} - set(scores.columns)
    if missing:
        raise ConfigError(f"--block-scores {path} is not a score-blocks CSV: no column "
                          f"{', '.join(sorted(missing))}")
    frame = scores_against_grid(table, scores)
    lines = ["## Block scores before training, against the grid", "",
             f"Scores of `{path}`; block k's score is set against the best pretrained cell of "
             "the depth fine-tuned from block k + 1 (blocks 1…k frozen: the features scored). "
             f"Spearman's ρ over the depths, 95 % bootstrap interval over them "
             f"({BOOTSTRAP_RESAMPLES:,} resamples; not assessable under {MIN_BLOCKS} depths).",
             "", "| score | depths | Spearman ρ | top-scored block → depth | tied with the best |",
             "|---|---|---|---|---|"]
    for r in frame.itertuples():
        rho = ("not assessable" if r.spearman != r.spearman
               else f"{r.spearman:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]")
        tied = {True: "yes", False: "**no**", None: "—"}[r.top_tied_with_best]
        lines.append(f"| {r.score} | {r.depths} | {rho} | block {r.top_block} → "
                     f"{r.top_depth} | {tied} |")
    return lines + [""]


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """``2,3`` as whole numbers, for ``--eta`` and ``--min-epochs``."""
    try:
        values = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or np.any(np.array(values) < 1):
        raise ConfigError(f"{option} takes whole numbers, e.g. 2,3; got {text!r}")
    return values


BOOTSTRAP_RESAMPLES = 2000
MIN_BLOCKS = 5  # fewer depths than this: a rank correlation is not assessable


def scores_against_grid(table, scores, seed: int = 0):
    """How the block scores (``<backbone>_block_scores.csv``: ``block``, ``logme``,
    ``h_score``, ``probe_val_auc``) rank the grid's depths. Block k's features are what the
    depth fine-tuned from block k + 1 keeps frozen, so its score is set against that
    depth's best cell among the pretrained ones (a column that sets no random weights).
    One row per score: Spearman's ρ with a bootstrap interval over the depths (not
    assessable under :data:`MIN_BLOCKS` depths), the top-scored depth and whether its cell
    is tied with the grid's best."""
    import pandas as pd
    from scipy.stats import spearmanr

    best, _, tied = table.evidence.ties()
    rows = {level.settings.get("first_trainable_block"): level for level in table.study.rows
            if level.settings.get("strategy", "blocks") == "blocks"}
    pretrained = [c.label for c in table.study.columns if c.settings.get("weights") != "none"]
    depth_value, depth_cell = {}, {}
    for first, level in rows.items():
        cells = [(level.label, c) for c in pretrained if table.evidence.values.get((level.label, c))]
        if cells:
            top = max(cells, key=table.evidence.mean)
            depth_value[first], depth_cell[first] = table.evidence.mean(top), top
    out = []
    rng = np.random.default_rng(seed)
    for score in ("logme", "h_score", "probe_val_auc"):
        pairs = [(float(r[score]), depth_value[int(r["block"]) + 1])
                 for _, r in scores.iterrows() if int(r["block"]) + 1 in depth_value]
        x, y = (np.array(v) for v in zip(*pairs)) if pairs else (np.array([]), np.array([]))
        rho, low, high = (np.nan,) * 3
        if len(x) >= MIN_BLOCKS:
            rho = float(spearmanr(x, y).statistic)
            draws = []
            for _ in range(BOOTSTRAP_RESAMPLES):
                pick = rng.integers(0, len(x), len(x))
                if np.ptp(x[pick]) > 0 and np.ptp(y[pick]) > 0:
                    draws.append(spearmanr(x[pick], y[pick]).statistic)
            low, high = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
        top_block = int(scores.loc[scores[score].idxmax(), "block"])
        cell = depth_cell.get(top_block + 1)
        out.append({"score": score, "depths": len(x), "spearman": rho, "ci_low": low,
                    "ci_high": high, "top_block": top_block,
                    "top_depth": table.describe(cell) if cell else "the head alone (every "
                    "block frozen: not a cell of this grid)",
                    "top_tied_with_best": None if cell is None else bool(
                        cell == best or tied.get(cell))})
    return pd.DataFrame(out)


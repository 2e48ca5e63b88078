"""What a table's figures of curves read from its run folders: each finished run's
learning curves (:func:`run_histories`) and the predictions behind the ROC curves of the
best cell of each column (:func:`best_cell_predictions`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..data.readers import get_reader
from ..runs import rundir

if TYPE_CHECKING:
    import pandas as pd

    from .collect import Table


def run_histories(table: Table
                  ) -> tuple[dict[str, pd.DataFrame], dict[str, int], dict[str, int]]:
    """``({label: history DataFrame}, {label: colour index}, {label: style index})`` of
    the finished runs: colour by row (depth or architecture), line style by column
    (learning rate; see :func:`curve_legend` for the names)."""
    import pandas as pd

    study = table.study
    rows = [level.label for level in study.rows]
    columns = [level.label for level in study.columns]
    histories, colors, styles = {}, {}, {}
    for _, run in table.frame[table.frame["status"] == "ok"].iterrows():
        path = table.runs_dir / run["run"] / rundir.HISTORY
        if not path.exists():
            continue
        label = (f"{study.rows[rows.index(run['row'])].phrase}, "
                 f"{study.columns[columns.index(run['column'])].phrase}"
                 + (f", seed {run['seed']}" if len(table.seeds) > 1 else ""))
        histories[label] = pd.read_csv(path)
        colors[label] = rows.index(run["row"])
        styles[label] = columns.index(run["column"])
    return histories, colors, styles


def best_cell_predictions(table: Table) -> dict[str, tuple[pd.Series, pd.Series]]:
    """``{label: (labels, scores)}``: per column (learning rate), the predictions of the
    cell with the best mean, of its first seed — on the held-out test split where the
    data set's test split is labelled (BreakHis), else on the validation split (Kaggle's
    PCam, whose test labels are hidden)."""
    import pandas as pd

    name = (rundir.TEST_PREDICTIONS if get_reader(table.dataset).labelled_test
            else rundir.VAL_PREDICTIONS)
    curves = {}
    for column in table.study.columns:
        cells = [c for c in table.evidence.cells() if c[1] == column.label]
        ranked = sorted(cells, key=table.evidence.mean, reverse=True)
        for cell in ranked:
            run = table.evidence.runs[cell][min(table.evidence.values[cell])]
            path = table.runs_dir / run / name
            if path.is_file():
                predictions = pd.read_csv(path)
                label = f"{column.phrase}: {table.study.rows[table.position(cell)[0]].phrase}"
                curves[label] = (predictions["label"], predictions["prediction"])
                break
    return curves

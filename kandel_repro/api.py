"""The package's public Python API: ``import kandel_repro as kr``.

Every function here is the front of the function that the ``kandel-repro`` command calls
for the same work (the grid, the table, training, packing, the Kaggle tools), never a
second implementation: what the command line does, Python does with the same code. The
names follow the conventions people know from timm (``list_models``/``create_model``).
The sections below: finding things, a network for one's own training loop, data, one run,
a study, figures and costs, what a run learnt, Kaggle.

NOTE: importing this module loads no TensorFlow, Keras, pandas or scikit-learn (the
modules it imports load them inside the functions that need them), and ``import
kandel_repro`` does not even import this module until one of its names is used
(``kandel_repro.__getattr__``).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.errors import ConfigError, DataError, KandelError
from .explain import filters as filter_figures, gradcam
from .grid.grid import GridOptions, run_grid
from .kaggle import api as kaggle_api, submission
from .kaggle.submission import SubmissionError
from .measure import cost
from .models import build as model_build, freeze
from .models.backbones import REGISTRY, assign_layers, get_backbone
from .readers.registry import READERS, get_reader
from .readers.synthetic import (breakhis as synthetic_breakhis, folder as synthetic_folder,
                                pcam as synthetic_pcam, pcam_h5 as synthetic_pcam_h5)
from .report import collect, figures as study_figures, markdown, plots, tables
from .runs import predict as predicting, rundir, single
from .runs.config import normalise
from .runs.settings import RunSettings, UserSettings
from .studies import registry as studies
from .studies.types import Study

if TYPE_CHECKING:  # NOTE: annotations only; each loads when a function needs it
    import keras
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from .data.packed import PackedData
    from .report.collect import Table

__all__ = [
    "list_backbones", "list_studies", "list_datasets", "get_study", "block_map",
    "create_model", "preprocessing", "pack", "load_data", "write_synthetic", "train",
    "load_run", "Run", "predict", "run_study", "render_study", "load_study", "study_markdown",
    "study_figure", "plot_learning_curves", "plot_roc", "depth_costs", "plot_costs",
    "explain_run", "filters", "kaggle_credentials", "submission_files", "validate_submission",
    "submit", "GridOptions", "UserSettings", "RunSettings", "KandelError", "ConfigError",
    "DataError", "SubmissionError",
]


# --- finding things ---------------------------------------------------------------------

def list_backbones(pattern: str = "") -> list[str]:
    """The backbones a run can fine-tune, sorted; ``pattern`` (shell-style, as timm's
    ``list_models``) keeps those it matches.

    >>> kr.list_backbones("vgg*")
    ['vgg16', 'vgg19']
    """
    return sorted(name for name in REGISTRY if not pattern or fnmatch.fnmatch(name, pattern))


def list_studies(pattern: str = "") -> list[str]:
    """The studies the grid runs and the table renders (the paper's tables and those
    beyond it), in the registry's order; ``pattern`` keeps those it matches.
    (``kr.list_studies("table*")``)."""
    return [name for name in studies.STUDIES if not pattern or fnmatch.fnmatch(name, pattern)]


def list_datasets() -> list[str]:
    """The data sets a run reads (``dataset=``), in the registry's order (what each
    folder holds: ``kandel-repro data pack --help``).

    >>> kr.list_datasets()
    ['pcam', 'pcam-h5', 'breakhis', 'folder', 'csv', 'images']
    """
    return list(READERS)


def get_study(name: str | Study, *, backbone: str | None = None, dataset: str | None = None,
              fractions: str | None = None,
              learning_rates: str | Sequence[float] | None = None) -> Study:
    """A study (its rows, columns, runs and the paper's findings it checks); the depth
    study made for ``backbone`` on ``dataset`` (and ``learning_rates``); ``fractions``:
    the data-size studies' training-set fractions.

    >>> kr.get_study("depth", backbone="resnet50", dataset="folder").cells()[0].backbone
    'resnet50'
    """
    return studies.get_study(name, fractions, backbone=backbone, dataset=dataset,
                             learning_rates=learning_rates)


def block_map(backbone: str, *, layers: bool = False) -> dict[int, Any]:
    """``{block: [layer names]}`` of a backbone, block 1 nearest the input (built with
    random weights: nothing is downloaded); with ``layers``, ``{layer: {"layers", "block",
    "parameters"}}``, the granularity of ``first_trainable_layer``.

    >>> kr.block_map("vgg16")[5][:2]
    ['block5_conv1', 'block5_conv2']
    """
    return model_build.layer_map_of(backbone) if layers else model_build.block_map_of(backbone)


# --- a network for one's own training loop ----------------------------------------------

def create_model(backbone: str, first_trainable_block: int = 1, *,
                 weights: str | Path | None = "imagenet", num_classes: int = 2,
                 input_shape: Sequence[int] = (96, 96, 3), head_pooling: str = "flatten",
                 dropout: float = 0.5, first_trainable_layer: int | None = None) -> keras.Model:
    """The paper's network: ``backbone`` with its head (pooling, Dropout, one sigmoid unit
    for 2 classes, a softmax of ``num_classes`` otherwise), every block below
    ``first_trainable_block`` frozen (or every layer below ``first_trainable_layer``);
    ``weights``: ``"imagenet"``, ``None`` (random) or a weights file. Not compiled
    (compile it after changing ``trainable``); its input is preprocessed images
    (:func:`preprocessing`), as a run's ``best_model.keras``.

    >>> model = kr.create_model("vgg16", 3, weights=None, input_shape=(32, 32, 3))
    >>> model.get_layer("block2_conv1").trainable, model.get_layer("block3_conv1").trainable
    (False, True)
    """
    model, blocks = model_build.build_model(backbone, tuple(input_shape), weights,
                                            head_pooling, dropout, classes=num_classes)
    if first_trainable_layer is None:
        freeze.set_trainable_blocks(model, blocks, first_trainable_block)
    else:
        freeze.set_trainable_layers(model, assign_layers(model.layers), first_trainable_layer)
    return model


def preprocessing(backbone: str) -> Callable[[Any], Any]:
    """The function from uint8-valued images to a :func:`create_model` network's input:
    the backbone's own (``keras.applications``' ``preprocess_input``; ours for the CBR
    networks, ``x / 255``), which a run records as ``"preprocessing": "backbone"``.

    >>> kr.preprocessing("cbr_small")(np.full((1, 32, 32, 3), 255.0)).max()
    1.0
    """
    return get_backbone(backbone).preprocess_input()


# --- data -------------------------------------------------------------------------------

def _reader_options(reader: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    unused = sorted(key for key, value in options.items()
                    if value is not None and key not in reader.options)
    if unused:
        raise ConfigError(f"reader option {unused[0]!r} does not apply to the data set "
                          f"{reader.name!r} (it takes: {', '.join(reader.options) or 'none'})")
    given = {key: value for key, value in options.items() if value is not None}
    if "window" in given:
        given["window"] = normalise("window", given["window"])
    return given


def pack(data: str | Path, dataset: str = "pcam", cache_dir: str | Path | None = None, *,
         workers: int | None = None, force: bool = False, image_size: int | None = None,
         verify: bool = True, progress: bool = True, **reader_options: Any) -> Path:
    """Decode a data set's images once into its uint8 cache (``kandel-repro data pack``)
    and return the cache folder; an unchanged cache is reused. ``reader_options``: the
    data set's own (``window``, ``positive_class``, ``path_column``…).

    >>> cache = kr.pack("data/my-images", "folder", image_size=224)
    """
    reader = get_reader(dataset)
    return reader.pack(data, cache_dir, workers=workers, force=force, image_size=image_size,
                       verify=verify, progress=progress,
                       **_reader_options(reader, reader_options))


def load_data(data: str | Path, dataset: str = "pcam", cache_dir: str | Path | None = None, *,
              workers: int | None = None, image_size: int | None = None,
              progress: bool = True, **reader_options: Any) -> PackedData:
    """A data set's images and labels as uint8 arrays (``.x``, ``.y``, ``.ids``; PCam's
    unlabelled ``.test_x``), packed first if needed; its ``split(config)`` gives a run's
    train, validation and test indices (``kr.load_data("data/pcam").x.shape``).
    """
    reader = get_reader(dataset)
    return reader.load(data, cache_dir, workers=workers, progress=progress,
                       image_size=image_size, **_reader_options(reader, reader_options))


SYNTHETIC = {"pcam": synthetic_pcam.write_synthetic_pcam,
             "pcam-h5": synthetic_pcam_h5.write_synthetic_pcam_h5,
             "breakhis": synthetic_breakhis.write_synthetic_breakhis,
             "folder": synthetic_folder.write_synthetic_folder}


def write_synthetic(out: str | Path, dataset: str = "pcam", *, progress: bool = False,
                    **options: Any) -> Path:
    """Write (or reuse) a small synthetic data set in a data set's layout (``pcam``,
    ``pcam-h5``, ``breakhis``, ``folder``: ``kandel-repro data synthetic…``), so that
    everything runs without the real data; ``options``: its writer's (``n_train``,
    ``n_test``, ``size``, ``seed``…). Returns its folder.

    >>> kr.write_synthetic("data/demo", "pcam", n_train=200, n_test=40, size=32)
    PosixPath('data/demo')
    """
    if dataset not in SYNTHETIC:
        raise ConfigError(f"no synthetic data in the layout {dataset!r}; one of "
                          f"{', '.join(SYNTHETIC)}")
    return Path(SYNTHETIC[dataset](out, progress=progress, **options))


# --- one run ----------------------------------------------------------------------------

def train(run_dir: str | Path, data: str | Path, *, learning_rate: float,
          backbone: str = "vgg16", first_trainable_block: int | None = None,
          first_trainable_layer: int | None = None, dataset: str = "pcam",
          cache_dir: str | Path | None = None, workers: int | None = None,
          verbose: int | str = "auto", **settings: Any) -> dict:
    """One fine-tuning run into ``run_dir`` (``kandel-repro train``): the data set's
    protocol, with ``settings`` (``weights``, ``max_epochs``, ``image_size``… each a run
    setting; an unknown one is refused) over it. Trains from ``first_trainable_block``
    (default 1, the whole network) or ``first_trainable_layer``; returns its metrics.

    >>> kr.train("runs/one", "data/pcam", backbone="vgg16", first_trainable_block=4,
    ...          learning_rate=1e-4, weights="none", max_epochs=2)["val_auc"]
    """
    # NOTE: as the command line: a layer-wise run is recorded from block 1 on
    first_block = 1 if first_trainable_block is None else first_trainable_block
    return single.train_single(run_dir, data, backbone, first_block, learning_rate,
                               dataset=dataset, cache_dir=cache_dir, workers=workers,
                               verbose=verbose, first_trainable_layer=first_trainable_layer,
                               **settings)


class Run:
    """A finished run folder: its settings (:attr:`config`), :attr:`metrics`,
    :attr:`history` and best :attr:`model` (read when first asked), its recorded
    :meth:`predictions`, and :meth:`predict` for new images.

    >>> run = kr.load_run("runs/table2/vgg16_blocks4-5_lr1e-04")
    >>> run.metrics["val_auc"], run.config.backbone, len(run.history)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        run = rundir.read_run(self.path) if self.path.is_dir() else None
        if run is None or run.config is None:
            raise ConfigError(f"{self.path} is not a run folder (no readable {rundir.CONFIG})")
        if run.metrics is None:
            raise ConfigError(f"{self.path} is not a finished run (no readable "
                              f"{rundir.METRICS}): let its training finish first")
        # NOTE: the best model is asked for when it is used (model, predict): a run copied
        # without it (its predictions and metrics only) still reads
        self.config = RunSettings.of(run.config)
        self.metrics: dict = run.metrics

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @functools.cached_property
    def history(self) -> pd.DataFrame:
        """One row per epoch: ``epoch``, ``loss``, ``val_auc``… (``history.csv``)."""
        import pandas as pd

        return pd.read_csv(self.path / rundir.HISTORY)

    @functools.cached_property
    def model(self) -> keras.Model:
        """The best epoch's model (``best_model.keras``), on preprocessed input
        (:func:`preprocessing`); :meth:`predict` takes image files instead."""
        import keras

        rundir.finished_config(self.path, use="load")  # (names a missing best model)
        return keras.saving.load_model(self.path / rundir.BEST_MODEL, compile=False)

    def predictions(self, split: str = "val", tta: bool = False) -> pd.DataFrame:
        """The run's own predictions of ``split`` (``val`` or ``test``; ``tta``: the
        test-time-augmented ones): ``id``, ``label`` and the score(s)."""
        val, _, test = rundir.prediction_files(tta)
        if split not in ("val", "test"):
            raise ConfigError(f"split must be 'val' or 'test', got {split!r}")
        path = self.path / (val if split == "val" else test)
        if not path.is_file():
            raise DataError(f"{path}: this run has no {split} predictions"
                            + (" with test-time augmentation (grid --tta N)" if tta else ""))
        import pandas as pd

        return pd.read_csv(path, dtype={"id": str})

    def predict(self, data: str | Path, out: str | Path | None = None,
                **options: Any) -> pd.DataFrame:
        """:func:`predict` with this run."""
        return predict(self.path, data, out, **options)

    def predict_images(self, images: np.ndarray, **options: Any) -> np.ndarray:
        """Scores of decoded uint8 images (N×S×S×3, the run's image size) through the
        run's preprocessing: one per image for 2 classes, N×k for k; ``options``: ``tta``,
        ``batch_size``."""
        return predicting.predict_images(self.path, images, **options)


def load_run(path: str | Path) -> Run:
    """A finished run folder as a :class:`Run`; a folder that is not one is refused,
    saying what it lacks.
    (``kr.load_run("runs/one").predict("new-images/", out="predictions.csv")``)."""
    return Run(path)


def predict(run: str | Path | Run, data: str | Path, out: str | Path | None = None,
            **options: Any) -> pd.DataFrame:
    """A finished run's best model applied to new images (``kandel-repro predict``): a
    folder, a CSV manifest, one image or DICOM file, decoded and preprocessed exactly as
    the run's own; one row per image with its score(s) and predicted label. ``options``:
    ``dataset``, ``tta``, ``threshold``, ``batch_size``, ``progress`` and reader options.
    (``kr.predict("runs/one", "new-images/", out="predictions.csv", threshold="youden")``).
    """
    return predicting.predict(run.path if isinstance(run, Run) else run, data, out, **options)


# --- a study ----------------------------------------------------------------------------

GRID_FIELDS = frozenset(field.name for field in dataclasses.fields(GridOptions))


def run_study(study: str, data: str | Path, runs: str | Path,
              options: GridOptions | None = None, settings: UserSettings | None = None, *,
              log: Callable[[str], None] = print, **keywords: Any) -> dict[str, str]:
    """Train every unfinished run of a study (``kandel-repro grid``); returns
    ``{run name: status}``. How the grid runs is ``options`` (:class:`GridOptions`:
    ``seeds``, ``shard``, ``time_budget``, ``executor``…), what each run computes is
    ``settings`` (:class:`UserSettings`: ``weights``, ``max_epochs``…); ``keywords`` are
    either, sorted by name, where the objects are not given.

    >>> kr.run_study("table2", "data/pcam", "runs/table2", seeds=3, weights="imagenet")
    {'vgg16_blocks5-5_lr1e-04': 'ok', ...}
    """
    how = {key: value for key, value in keywords.items() if key in GRID_FIELDS}
    given = {key: value for key, value in keywords.items() if key not in GRID_FIELDS}
    if options is not None and how:
        raise ConfigError(f"give {', '.join(sorted(how))} in options, or no options")
    if settings is not None and given:
        raise ConfigError(f"give {', '.join(sorted(given))} in settings, or no settings")
    return run_grid(study, data, runs, options or GridOptions(**how),
                    settings or UserSettings(**given), log=log)


def render_study(study: str | Study, runs: str | Path, out: str | Path = "tables", *,
                 seeds: int | str | Sequence[int] | None = None, fractions: str | None = None,
                 backbone: str | None = None, dataset: str | None = None,
                 bootstrap: int | None = None,
                 log: Callable[[str], None] = print) -> list[Path]:
    """A study's table from its run folders (``kandel-repro table``): ``<study>.md``,
    ``.csv``, ``_cells.csv`` and its figures, into ``out``; returns the paths written.

    >>> kr.render_study("table2", "runs/table2", "tables")
    [PosixPath('tables/table2.md'), ...]
    """
    return tables.write_table(study, runs, out, log=log, seeds=seeds, fractions=fractions,
                              backbone=backbone, dataset=dataset, bootstrap=bootstrap)


def load_study(study: str | Study, runs: str | Path, *,
               seeds: int | str | Sequence[int] | None = None,
               bootstrap: int | None = None) -> Table:
    """A study's run folders read into a table, as :func:`render_study` reads them:
    ``.frame`` (a row per run), ``.cells`` (a row per cell), ``.best``, ``.findings``
    (the paper's, each with this grid's verdict).

    >>> table = kr.load_study("table2", "runs/table2")
    >>> table.describe(table.best)  # the best cell in words
    """
    return collect.assemble(study, runs, seeds, bootstrap)


def study_markdown(table: Table, command: str = "") -> str:
    """A :func:`load_study` table as the Markdown :func:`render_study` writes
    (``command``: what made it, in its header).
    (``print(kr.study_markdown(kr.load_study("table2", "runs/table2")))``)."""
    return markdown.render_markdown(table, command)


def study_figure(table: Table, name: str, path: str | Path | None = None) -> Figure | None:
    """One of a study's figures (``heatmap``, ``curves``, ``roc``, ``radar``,
    ``confusion``…) of a :func:`load_study` table, saved to ``path`` when given; None
    when there is nothing to draw yet.
    (``kr.study_figure(kr.load_study("table2", "runs/table2"), "heatmap")``)."""
    if name not in study_figures.FIGURES:
        raise ConfigError(f"unknown figure {name!r}; one of {', '.join(study_figures.FIGURES)}")
    return study_figures.FIGURES[name](table, path)


# --- figures and costs ------------------------------------------------------------------

def plot_learning_curves(runs: Mapping[str, Run | pd.DataFrame], path: str | Path | None = None,
                         title: str | None = None) -> Figure:
    """Training loss and validation AUC per epoch, one line per run (``{label: Run or
    history}``), the best epoch marked.
    (``kr.plot_learning_curves({"blocks 4–5": kr.load_run("runs/one")})``)."""
    histories = {label: run.history if isinstance(run, Run) else run
                 for label, run in runs.items()}
    return plots.learning_curves(histories, path, title=title)


def plot_roc(curves: Mapping[str, tuple[Any, Any]], path: str | Path | None = None,
             title: str | None = None) -> Figure:
    """ROC curves with their AUC, ``{label: (labels, scores)}``.

    >>> val = kr.load_run("runs/one").predictions("val")
    >>> kr.plot_roc({"validation": (val["label"], val["prediction"])})
    """
    return plots.roc_curves(dict(curves), path, title=title)


def depth_costs(backbone: str, image_size: int | None = 96, batch_size: int = 32,
                steps: int = 5, warm: int = 2,
                first_blocks: Sequence[int] | None = None) -> pd.DataFrame:
    """Trainable layers, parameters and measured time per training step of each depth of
    a backbone (``kandel-repro cost``), one row per depth, random weights and images.
    (``kr.depth_costs("vgg16", 96, 64)[["blocks", "trainable_parameters"]]``)."""
    return cost.depth_costs(backbone, image_size, batch_size, steps, warm,
                            first_blocks=first_blocks)


def plot_costs(costs: pd.DataFrame, path: str | Path | None = None,
               title: str | None = None) -> Figure:
    """:func:`depth_costs` rows as a figure: parameters (bars) and time (line) per depth.
    (``kr.plot_costs(kr.depth_costs("vgg16"))``)."""
    return plots.cost_vs_depth(costs, path, title=title)


# --- what a run learnt ------------------------------------------------------------------

def explain_run(run: str | Path | Run, split: str = "val", *, layer: str | None = None,
            count: int = gradcam.DEFAULT_COUNT, data: str | Path | None = None,
            out: str | Path | None = None, threshold: float | str | None = None,
            log: Callable[[str], None] = print) -> list[Path]:
    """Grad-CAM of a run's most confident right and wrong answers (``kandel-repro
    explain``), written into the run folder (or ``out``); returns the paths.

    >>> kr.explain_run("runs/one")
    [PosixPath('runs/one/gradcam.png'), PosixPath('runs/one/gradcam.json')]
    """
    return gradcam.explain_command(run.path if isinstance(run, Run) else run, split=split,
                                   layer=layer, count=count, data_dir=data, out=out,
                                   threshold=threshold, log=log)


def filters(runs: Sequence[str | Path | Run], out: str | Path | None = None, *,
            log: Callable[[str], None] = print) -> list[Path]:
    """The first convolution's filters of runs before and after training, and how far
    each moved (``kandel-repro filters``), written beside the first run; returns the paths.
    (``kr.filters(["runs/table2/vgg16_blocks1-5_lr1e-04"])``)."""
    return filter_figures.filters_command([r.path if isinstance(r, Run) else r for r in runs],
                                          out=out, log=log)


# --- Kaggle -----------------------------------------------------------------------------

def kaggle_credentials() -> bool:
    """Whether Kaggle credentials are set up (``~/.kaggle/kaggle.json`` or the
    environment), without calling Kaggle. (``kr.kaggle_credentials()``)."""
    return kaggle_api.has_credentials()


def submission_files(run: str | Path | Run, sample: str | Path | None = None) -> tuple[Path, Path]:
    """``(submission file, sample_submission.csv)`` of a finished PCam run.
    (``csv, sample = kr.submission_files("runs/one")``)."""
    return submission.run_submission(run.path if isinstance(run, Run) else run, sample)


def validate_submission(csv: str | Path, sample: str | Path) -> pd.DataFrame:
    """A Kaggle submission file checked against the competition's sample (header, the
    exact ids, probabilities); a :class:`SubmissionError` names every problem.

    >>> kr.validate_submission("runs/one/submission.csv", "data/pcam/sample_submission.csv")
    """
    return submission.validate_submission(csv, sample)


def submit(run: str | Path | Run, message: str | None = None, *, timeout: float | None = None,
           poll: float | None = None, log: Callable[[str], None] = print) -> dict:
    """Validate, submit and score a finished PCam run on Kaggle (``kandel-repro submit``);
    returns its metrics with the public and private AUC.

    >>> kr.submit("runs/one", "vgg16 blocks 4–5")["kaggle_private_auc"]
    """
    waits = {key: value for key, value in (("timeout", timeout), ("poll", poll))
             if value is not None}
    return submission.submit_run(run.path if isinstance(run, Run) else run, message, log=log,
                                 **waits)

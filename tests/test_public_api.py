"""The public Python API (``import kandel_repro as kr``): importing it loads no TensorFlow,
its names are those of :mod:`kandel_repro.api`, and each function does what it says, on
tiny data (32×32 images, random weights, one epoch of a small network, trained once for
the module). The walkthrough notebooks import nothing else."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

import kandel_repro as kr
from kandel_repro import api
from kandel_repro.core.errors import ConfigError
from kandel_repro.models.backbones import HEAD_LAYERS, REGISTRY
from kandel_repro.readers.registry import READERS
from kandel_repro.runs import predict as predicting, rundir
from kandel_repro.studies.registry import STUDIES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras", "pandas", "sklearn")
QUICK = dict(weights="none", max_epochs=1, batch_size=16, verbose=0, workers=1)


@pytest.fixture(scope="module")
def run_dir(tiny_pcam, tmp_path_factory):
    """One finished run, trained through the API."""
    run = tmp_path_factory.mktemp("api") / "cbr_small_blocks3–4_lr1e-03"
    kr.train(run, tiny_pcam, backbone="cbr_small", first_trainable_block=3,
             learning_rate=1e-3, **QUICK)
    return run


def _imports(code):
    """``(module, names)`` of each import statement in ``code``."""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", tuple(alias.name for alias in node.names)


# --- the package's front ----------------------------------------------------------------

def test_importing_the_package_and_listing_loads_no_tensorflow_keras_pandas_or_sklearn():
    code = ("import sys, kandel_repro as kr\n"
            "print(kr.list_backbones(), kr.list_studies(), kr.list_datasets())\n"
            "kr.get_study('depth', backbone='resnet50')\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    *listed, loaded = done.stdout.strip().splitlines()
    assert loaded == "[]"
    assert "'vgg16'" in listed[0] and "'table2'" in listed[0]


def test_the_package_offers_the_api_names_lazily_and_refuses_others():
    assert kr.__all__ == api.__all__
    assert all(getattr(kr, name) is getattr(api, name) for name in kr.__all__)
    assert set(kr.__all__) <= set(dir(kr)) and "__version__" in dir(kr)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        kr.not_a_name  # noqa: B018
    from kandel_repro import create_model, load_run

    assert (create_model, load_run) == (api.create_model, api.load_run)


def test_no_api_name_is_shadowed_by_a_subpackage_of_the_same_name():
    """A name such as ``explain`` would resolve to the subpackage once it is imported
    (a package's submodules are its attributes), never to the function."""
    modules = {path.stem if path.suffix == ".py" else path.name
               for path in (ROOT / "kandel_repro").iterdir()}
    assert not set(kr.__all__) & modules


def test_the_lists_are_the_registries():
    assert kr.list_backbones() == sorted(REGISTRY)
    assert kr.list_backbones("vgg*") == ["vgg16", "vgg19"]
    assert kr.list_backbones("no-such-*") == []
    assert kr.list_studies() == list(STUDIES)
    assert kr.list_studies("table*") == [name for name in STUDIES if name.startswith("table")]
    assert kr.list_datasets() == list(READERS)


def test_get_study_makes_the_depth_study_for_a_backbone_and_refuses_an_unknown_one():
    study = kr.get_study("depth", backbone="resnet50", dataset="folder",
                         learning_rates="1e-3,1e-4")
    assert {cell.backbone for cell in study.cells()} == {"resnet50"}
    assert study.dataset == "folder" and len(study.columns) == 2
    with pytest.raises(ConfigError, match="unknown study 'tablex'"):
        kr.get_study("tablex")


def test_the_backbone_registry_names_the_generative_trunk_without_importing_it():
    code = ("import sys, kandel_repro.models.backbones as b\n"
            "print('kandel_repro.models.generative' in sys.modules, b.REGISTRY['dcgan_small']"
            ".build)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.split() == ["False", "generative:build_trunk"]
    from kandel_repro.models.generative import build_trunk

    assert REGISTRY["dcgan_small"].builder() is build_trunk


# --- a network for one's own training loop ----------------------------------------------

def test_block_map_is_the_backbones_blocks_and_layers():
    blocks = kr.block_map("vgg16")
    assert list(blocks) == [1, 2, 3, 4, 5]
    assert all(name.startswith(f"block{b}_") for b, names in blocks.items() for name in names)
    layers = kr.block_map("vgg16", layers=True)
    assert len(layers) == REGISTRY["vgg16"].num_layers == 13
    assert [layers[n]["block"] for n in (1, 3, 13)] == [1, 2, 5]


def test_create_model_freezes_every_block_below_the_one_asked():
    model = kr.create_model("vgg16", 3, weights=None, input_shape=(32, 32, 3), num_classes=3)
    assert model.output.shape[-1] == 3 and model.get_layer("head_dense").activation.__name__ \
        == "softmax"
    for block, names in kr.block_map("vgg16").items():
        assert {model.get_layer(n).trainable for n in names} == {block >= 3}, block
    assert all(model.get_layer(n).trainable for n in HEAD_LAYERS)
    binary = kr.create_model("vgg16", 5, weights=None, input_shape=(32, 32, 3))
    assert binary.output.shape[-1] == 1
    assert not binary.get_layer("block4_conv3").trainable
    assert binary.get_layer("block5_conv1").trainable


def test_create_model_by_layer_and_its_checks():
    model = kr.create_model("vgg16", weights=None, input_shape=(32, 32, 3),
                            first_trainable_layer=12)
    trainable = [n for n in ("block5_conv1", "block5_conv2", "block5_conv3")
                 if model.get_layer(n).trainable]
    assert trainable == ["block5_conv2", "block5_conv3"]
    with pytest.raises(ConfigError, match="first trainable block must be an integer from 1 to 5"):
        kr.create_model("vgg16", 6, weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ConfigError, match="unknown backbone"):
        kr.create_model("vgg17", weights=None)


def test_preprocessing_is_the_backbones():
    images = np.full((1, 32, 32, 3), 255.0, dtype="float32")
    assert float(np.max(kr.preprocessing("cbr_small")(images))) == 1.0
    assert float(np.min(kr.preprocessing("dcgan_small")(images * 0))) == -1.0


# --- data -------------------------------------------------------------------------------

def test_pack_and_load_data(pcam_copy, tmp_path):
    cache = kr.pack(pcam_copy, "pcam", tmp_path / "cache", workers=1, progress=False)
    assert cache == tmp_path / "cache" and any(cache.iterdir())
    data = kr.load_data(pcam_copy, "pcam", tmp_path / "cache", workers=1, progress=False)
    assert data.x.dtype == np.uint8 and data.x.shape[1:] == (32, 32, 3)
    assert len(data.x) == len(data.y) == 60 and len(data.test_x) == 20
    with pytest.raises(ConfigError, match="'window' does not apply to the data set 'pcam'"):
        kr.pack(pcam_copy, "pcam", window="40,400")


def test_write_synthetic_writes_each_layout_and_refuses_others(tmp_path):
    folder = kr.write_synthetic(tmp_path / "tissue", "folder", classes=3, images=12, patients=4,
                                size=32)
    assert (folder / "manifest.csv").is_file()
    data = kr.load_data(folder / "manifest.csv", "csv", tmp_path / "c", workers=1,
                        image_size=32, progress=False)
    assert np.unique(data.y).tolist() == [0, 1, 2] and data.x.shape == (36, 32, 32, 3)
    with pytest.raises(ConfigError, match="no synthetic data in the layout 'images'"):
        kr.write_synthetic(tmp_path / "x", "images")


# --- one run ----------------------------------------------------------------------------

def test_train_and_load_run(run_dir, tiny_pcam):
    run = kr.load_run(run_dir)
    assert repr(run) == f"Run({str(run_dir)!r})"
    assert run.config.backbone == "cbr_small" and run.config["blocks"] == "3–4"
    assert run.config.to_config() == rundir.read_config(run_dir)  # (in today's names)
    assert run.metrics == json.loads((run_dir / rundir.METRICS).read_text())
    assert list(run.history["epoch"]) == [1]
    assert list(run.predictions("val").columns) == ["id", "label", "prediction"]
    with pytest.raises(ConfigError, match="split must be 'val' or 'test'"):
        run.predictions("train")


def test_a_runs_model_on_its_preprocessed_images_gives_its_validation_predictions(run_dir,
                                                                                   tiny_pcam):
    run = kr.load_run(run_dir)
    val = run.predictions("val")
    data = kr.load_data(tiny_pcam, "pcam", workers=1, progress=False)
    rows = pd.Series(np.arange(len(data.ids)), index=data.ids)[val["id"]].to_numpy()
    images = kr.preprocessing("cbr_small")(data.x[rows].astype("float32"))
    scores = run.model.predict(images, verbose=0).ravel()
    np.testing.assert_allclose(scores, val["prediction"], atol=1e-5)
    np.testing.assert_allclose(run.predict_images(data.x[rows]), val["prediction"], atol=1e-5)


def test_load_run_refuses_what_is_not_a_finished_run(tmp_path, run_dir):
    with pytest.raises(ConfigError, match="is not a run folder"):
        kr.load_run(tmp_path / "nothing")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / rundir.CONFIG).write_text((run_dir / rundir.CONFIG).read_text())
    with pytest.raises(ConfigError, match="is not a finished run"):
        kr.load_run(unfinished)
    (unfinished / rundir.METRICS).write_text("{}")
    run = kr.load_run(unfinished)  # predictions and metrics only: its model is named missing
    with pytest.raises(ConfigError, match=f"has no {rundir.BEST_MODEL} to load"):
        run.model  # noqa: B018


def test_predict_is_the_runs_predict(run_dir, tiny_pcam, tmp_path):
    ours = kr.predict(run_dir, tiny_pcam / "test", tmp_path / "p.csv", progress=False)
    same = predicting.predict(run_dir, tiny_pcam / "test", progress=False)
    pd.testing.assert_frame_equal(ours, same)
    written = pd.read_csv(tmp_path / "p.csv")
    assert list(written.columns) == list(same.columns) and len(written) == len(same) == 20
    by_run = kr.load_run(run_dir).predict(tiny_pcam / "test", progress=False)
    pd.testing.assert_frame_equal(by_run, same)


# --- a study ----------------------------------------------------------------------------

@pytest.fixture
def table2_runs(tiny_pcam, tmp_path):
    from helpers import finished_grid

    runs = tmp_path / "runs"
    names = finished_grid("table2", tiny_pcam, runs, weights="none", max_epochs=1)
    return runs, names


def test_run_study_passes_grid_options_and_run_settings_to_the_grid(table2_runs, tiny_pcam):
    runs, names = table2_runs
    lines = []
    statuses = kr.run_study("table2", tiny_pcam, runs, weights="none", max_epochs=1,
                            workers=1, log=lines.append)
    assert statuses == {name: "skipped" for name in names}  # the same settings: all done
    half = kr.run_study("table2", tiny_pcam, runs, kr.GridOptions(shard="1/2", workers=1),
                        kr.UserSettings(weights="none", max_epochs=1), log=lines.append)
    assert len(half) == (len(names) + 1) // 2 and set(half.values()) == {"skipped"}
    with pytest.raises(ConfigError, match="give shard in options, or no options"):
        kr.run_study("table2", tiny_pcam, runs, kr.GridOptions(), shard="1/2")
    with pytest.raises(ConfigError, match="give max_epochs in settings, or no settings"):
        kr.run_study("table2", tiny_pcam, runs, settings=kr.UserSettings(), max_epochs=1)
    with pytest.raises(ConfigError, match="unknown setting: epochs_please"):
        kr.run_study("table2", tiny_pcam, runs, epochs_please=1)


def test_render_load_and_draw_a_study(table2_runs, tmp_path):
    runs, names = table2_runs
    out = tmp_path / "tables"
    written = kr.render_study("table2", runs, out, log=lambda line: None)
    assert out / "table2.md" in written and out / "table2_heatmap.png" in written
    table = kr.load_study("table2", runs)
    assert sorted(table.frame["run"]) == sorted(names)
    assert set(table.frame["status"]) == {"ok"}
    command = f"kandel-repro table table2 --runs {runs} --out {out}"
    assert kr.study_markdown(table, command) == (out / "table2.md").read_text()
    figure = kr.study_figure(table, "heatmap", tmp_path / "heatmap.png")
    assert figure is not None and (tmp_path / "heatmap.png").is_file()
    with pytest.raises(ConfigError, match="unknown figure 'pie'"):
        kr.study_figure(table, "pie")


# --- figures and costs ------------------------------------------------------------------

def test_plots_of_runs_and_histories(run_dir, tmp_path):
    run = kr.load_run(run_dir)
    figure = kr.plot_learning_curves({"the run": run, "its history": run.history},
                                     tmp_path / "curves.png")
    assert (tmp_path / "curves.png").is_file()
    labels = [line.get_label() for line in figure.axes[1].lines]
    assert [label for label in labels if not label.startswith("_")] == ["the run", "its history"]
    val = run.predictions("val")
    roc = kr.plot_roc({"val": (val["label"], val["prediction"])})
    assert roc.axes[0].get_legend().get_texts()[0].get_text().startswith("val (AUC ")


def test_depth_costs_and_their_figure(tmp_path):
    costs = kr.depth_costs("cbr_small", 32, 4, steps=1, warm=1, first_blocks=[4])
    assert list(costs["first_block"]) == [4] and costs["seconds_per_step"].iloc[0] > 0
    kr.plot_costs(costs, tmp_path / "cost.png")
    assert (tmp_path / "cost.png").is_file()


# --- what a run learnt, and Kaggle ------------------------------------------------------

def test_explain_run_and_filters_write_their_figures(run_dir, tmp_path):
    paths = kr.explain_run(kr.load_run(run_dir), count=1, out=tmp_path / "cam",
                           log=lambda line: None)
    assert {p.suffix for p in paths} == {".png", ".json"} and all(p.is_file() for p in paths)
    drawn = kr.filters([run_dir], out=tmp_path / "filters", log=lambda line: None)
    assert {p.name for p in drawn} == {"filters.png", "filters.json"}


def test_the_kaggle_front(run_dir, tiny_pcam, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert kr.kaggle_credentials() is False
    csv, sample = kr.submission_files(run_dir)
    assert csv == run_dir / rundir.SUBMISSION
    assert sample.resolve() == (tiny_pcam / "sample_submission.csv").resolve()
    assert len(kr.validate_submission(csv, sample)) == 20
    broken = tmp_path / "broken.csv"
    pd.read_csv(csv).iloc[1:].to_csv(broken, index=False)
    with pytest.raises(kr.SubmissionError):
        kr.validate_submission(broken, sample)


# --- the notebooks ----------------------------------------------------------------------

@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda path: path.stem)
def test_the_notebooks_import_only_the_public_api(notebook):
    book = nbformat.read(notebook, as_version=4)
    imported = [(module, names) for cell in book.cells if cell.cell_type == "code"
                for module, names in _imports(cell.source)
                if module == "kandel_repro" or module.startswith("kandel_repro.")]
    assert imported, "the notebook uses the package"
    for module, names in imported:
        assert module == "kandel_repro", module
        assert set(names) <= set(kr.__all__), names
    assert ".api" not in "".join(cell.source for cell in book.cells)

"""kandel_repro: reproduce Kandel & Castelli (2020), block-wise fine-tuning on PCam.

The public Python API is :mod:`kandel_repro.api`, whose names this package offers
(``import kandel_repro as kr; kr.list_backbones()``, ``kr.create_model(...)``,
``kr.load_run(...)``).

Importing the package is cheap: the API module is imported when one of its names is
first used (PEP 562's module ``__getattr__``), and TensorFlow and Keras load only when a
model is built.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The names of kandel_repro.api (its __all__; tests/test_public_api.py checks the two agree).
__all__ = [
    "list_backbones", "list_studies", "list_datasets", "get_study", "block_map",
    "create_model", "preprocessing", "pack", "load_data", "write_synthetic", "train",
    "load_run", "Run", "predict", "run_study", "render_study", "load_study", "study_markdown",
    "study_figure", "plot_learning_curves", "plot_roc", "depth_costs", "plot_costs",
    "explain_run", "filters", "kaggle_credentials", "submission_files", "validate_submission",
    "submit", "GridOptions", "UserSettings", "RunSettings", "KandelError", "ConfigError",
    "DataError", "SubmissionError",
]


def __getattr__(name: str) -> Any:
    # NOTE: the API is imported on first use, not at `import kandel_repro`: it imports the
    # whole package (grid, reports, Kaggle), which `python -m kandel_repro` and every
    # submodule import would otherwise pay for.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""Which study a folder of runs holds: a parametric study (the depth, transfer and
strategies studies) made for the backbone, data set and learning rates its runs record
(:func:`study_of_runs`), read by ``kandel-repro table`` and ``evaluate-search``."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from ..runs import rundir
from ..studies.registry import get_study
from ..studies.types import Study


def study_of_runs(study_name: str | Study, runs_dir: str | Path, backbone: str | None = None,
                  dataset: str | None = None, fractions: str | None = None) -> Study:
    """The study whose runs ``runs_dir`` holds: a parametric study (the depth study) for
    the ``backbone`` and ``dataset`` given, else those its run folders record (one of
    each; several backbones need ``backbone``)."""
    study = get_study(study_name)
    rates = None
    if study.parametric:  # its columns: the learning rates its runs were trained at
        found = recorded_settings(runs_dir)
        rates = sorted({r for b, _, r in found if r and backbone in (None, b)},
                       reverse=True) or None
    if study.parametric and (backbone is None or dataset is None):
        backbones = sorted({b for b, _, _ in found if b and backbone in (None, b)})
        if len(backbones) > 1:
            raise ConfigError(f"{runs_dir} holds {study.name} runs of {', '.join(backbones)}: "
                              "choose one with --backbone (or list them: --backbone a,b)")
        backbone = backbone or (backbones[0] if backbones else None)
        datasets = sorted({d for b, d, _ in found if d and b == backbone})
        dataset = dataset or (datasets[0] if len(datasets) == 1 else None)
    return get_study(study, fractions, backbone=backbone, dataset=dataset, learning_rates=rates)


def recorded_settings(runs_dir):
    """``{(backbone, dataset, learning rate)}`` of the run folders in ``runs_dir``."""
    if not Path(runs_dir).is_dir():
        return set()
    return {(c.get("backbone"), c.get("dataset"), c.get("learning_rate")) for c in (
        rundir.read_config(entry) for entry in sorted(Path(runs_dir).iterdir())
        if (entry / rundir.CONFIG).is_file()) if c}

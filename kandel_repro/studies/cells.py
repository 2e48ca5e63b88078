"""A study's runs: their folder names and seeds (:func:`run_name`, :func:`seed_of`,
:func:`parse_seeds`), their resolved settings (:func:`study_configs`) and the shards a
grid is cut into (:func:`parse_shard`, :func:`shard_cells`)."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from ..core.errors import ConfigError
from ..models.weights import MEANVAR
from ..runs.config import normalise, option, resolve_config
from ..runs.settings import RunSettings, UserSettings
from .types import Cell, Study

_T = TypeVar("_T")


def run_name(cell: Cell, seed: int = 0) -> str:
    """The folder of ``cell``'s run with ``seed``: the cell's name for seed 0 (the name
    grids have always used), ``<cell>_seed<S>`` for the others."""
    return cell.folder if int(seed) == 0 else f"{cell.folder}_seed{int(seed)}"


def seed_of(cell: Cell, folder_name: str) -> int | None:
    """The seed of ``cell``'s run in folder ``folder_name``, or None if it is not one."""
    if folder_name == cell.folder:
        return 0
    match = re.fullmatch(re.escape(cell.folder) + r"_seed(\d+)", folder_name)
    return int(match.group(1)) if match else None


# More seeds than anyone trains per cell; a typo (10000) is refused before thousands of
# run configs are built.
MAX_SEEDS = 100


def parse_seeds(seeds: int | str | Sequence[int] | None) -> tuple[int, ...]:
    """``--seeds``: ``N`` (seeds 0 … N−1) or a list ``0,3,7``; None → ``(0,)``."""
    if seeds is None:
        return (0,)
    if isinstance(seeds, int):
        text = str(seeds)
    elif isinstance(seeds, (list, tuple)):
        text = ",".join(map(str, seeds))
    else:
        text = str(seeds).strip()
    try:
        if "," in text or isinstance(seeds, (list, tuple)):
            values = tuple(int(part) for part in text.split(",") if part.strip())
        else:
            values = tuple(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3: seeds 0, 1, 2) or a list (0,3,7), got "
                          f"{seeds!r}") from None
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise ConfigError(f"--seeds needs at least one seed, each ≥ 0 and none twice, got {seeds!r}")
    if len(values) > MAX_SEEDS:
        raise ConfigError(f"--seeds {seeds}: at most {MAX_SEEDS} seeds per cell (each seed is "
                          "one more run of every cell)")
    return values


def study_runs(study: Study, seeds: Iterable[int] = (0,)) -> list[tuple[Cell, int, str]]:
    """``[(cell, seed, run name)]``: every run of the study, seed by seed (a whole table
    of seed 0 first), cell by cell, in the order a grid trains them."""
    return [(cell, seed, run_name(cell, seed)) for seed in seeds for cell in study.cells()]


# The option that chooses a varied setting's levels, where a study has one.
LEVEL_OPTIONS = {"train_fraction": "--fractions"}


def _refuse_varied(study, settings):
    """Refuse a setting the study's rows or columns set: the study would override it.

    ``weights`` is the exception where only some rows set it (their "from scratch"): the
    option then chooses the weights of the other, pretrained rows."""
    cells = study.cells()
    for key in sorted(study.varied_keys - set(study.fixed)):
        if settings.get(key) is None and not (key == "augmentation" and key in settings):
            continue  # (--no-augmentation gives augmentation=None)
        if key == "weights" and not all("weights" in c.settings for c in cells):
            continue
        in_rows = any(key in level.settings for level in study.rows)
        levels = ", ".join(dict.fromkeys(level.label for level in (
            study.rows if in_rows else study.columns) if key in level.settings))
        header = study.row_header if in_rows else study.column_header
        controls = LEVEL_OPTIONS.get(key)
        raise ConfigError(
            f"{study.name} sets {option(key)} itself: its {'rows' if in_rows else 'columns'} "
            f"({header.lower()}) are {levels}; leave {option(key)} out"
            + (f", or choose its values with {controls}" if controls else ""))
    weights = settings.get("weights")
    if "transfer_blocks" in study.varied_keys and weights is not None and \
            normalise("weights", weights) in ("none", MEANVAR):
        raise ConfigError(f"{study.name} transfers blocks of pretrained weights: give --weights "
                          "imagenet (default) or the path of pretrained weights, not "
                          f"{weights!r}")


def study_configs(study: Study, seeds: Iterable[int] = (0,),
                  **settings: Any) -> dict[str, RunSettings]:
    """The resolved settings of every run (``{run name: settings}``, see
    :func:`study_runs`): protocol ← the user's ``settings`` ← the study's fixed settings
    and the cell's own ← the run's seed. A user setting that contradicts a fixed one is
    refused (compared in its normalised spelling, so ``weights="scratch"`` agrees with
    Table 5's ``"none"``).

    ``settings``: the user's run settings as keywords (a plain mapping; ``**`` a
    :class:`~kandel_repro.runs.settings.UserSettings` passes one on), each None "the
    protocol's"; a key that is no run setting is refused at once."""
    settings = UserSettings(**settings)
    for key, value in study.fixed.items():
        given = settings.get(key)
        if given is not None and normalise(key, given) != normalise(key, value):
            raise ConfigError(f"{study.name} fixes {option(key)} {value}; got {given!r}")
    _refuse_varied(study, settings)
    if settings.get("seed") is not None:
        raise ConfigError("a study's runs take their seeds from --seeds (the seed of each "
                          "run); give --seeds instead of --seed")
    return {name: resolve_config(protocol=study.protocol,
                                 **{**settings, **cell.settings, "seed": seed})
            for cell, seed, name in study_runs(study, seeds)}


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` → ``(i, n)`` with 1 ≤ i ≤ n; None → None."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 2/3), got {text!r}") from None
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {text}: i must be from 1 to n")
    return index, count


def shard_cells(cells: Iterable[_T],
                shard: tuple[int, int] | None) -> list[tuple[int, _T]]:
    """The items (cells, or runs) of shard ``(i, n)``: every n-th from the i-th, as
    ``(position, item)``.

    Round robin, so each shard gets a similar mix of shallow (fast) and deep (slow) runs;
    the shards of one table are disjoint and together cover it.
    """
    numbered = list(enumerate(cells, 1))
    if shard is None:
        return numbered
    index, count = shard
    return [(position, cell) for position, cell in numbered if (position - 1) % count == index - 1]

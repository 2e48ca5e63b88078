"""The shape of a study: its rows and columns (:class:`Level`), its runs (:class:`Cell`)
and the study itself (:class:`Study`). The registry of studies is
:mod:`kandel_repro.studies.registry`; :mod:`kandel_repro.studies.validation` checks it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from ..readers.registry import get_reader


@dataclass(frozen=True)
class Level:
    """One row or column of a study."""

    label: str  # as the table prints it: "3–5", "VGG16", "1e-4"
    folder_part: str  # its part of a run folder's name: "vgg16_blocks3-5", "lr1e-04"
    settings: MappingProxyType  # the run settings it sets
    phrase: str = ""  # in sentences and legends ("blocks 3–5"); default: the label

    def __post_init__(self):
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        if not self.phrase:
            object.__setattr__(self, "phrase", self.label)


@dataclass(frozen=True)
class Cell:
    """One run of a study: a row level × a column level."""

    folder: str  # its run folder's name (seed 0; studies.run_name adds other seeds')
    row: Level
    column: Level
    settings: MappingProxyType  # the study's fixed settings, the row's, the column's

    @property
    def backbone(self) -> str:
        return self.settings["backbone"]

    @property
    def first_trainable_block(self) -> int:
        return self.settings["first_trainable_block"]

    @property
    def learning_rate(self) -> float:
        return self.settings["learning_rate"]

    @property
    def description(self) -> str:
        return f"{self.row.phrase}, {self.column.phrase}"


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    dataset: str  # the data set its runs read (kandel_repro.readers.registry.READERS)
    rows: tuple
    columns: tuple
    row_header: str
    column_header: str = "Learning rate"
    fixed: MappingProxyType = field(default_factory=dict)  # settings of every run
    findings: tuple = ()  # the paper's text about it, quoted under the table
    marks_non_convergence: bool = False  # show "did not converge" (Table 5's rule)
    figures: tuple = ("heatmap", "curves", "roc", "radar")  # kandel_repro.report.figures.FIGURES
    # False: its findings are questions the runs answer, not the paper's text (no paper
    # speaks of this study; tables say so)
    paper: bool = True
    # True: made for the backbone and data set a grid names (``--backbone``, ``--dataset``;
    # :func:`kandel_repro.studies.registry.get_study`); the registry holds its default
    parametric: bool = False
    # True: a table's header says what each column sets, as differences from the paper
    # (columns whose labels name a policy rather than a value: the augmentation study's)
    column_legend: bool = False
    # a paragraph under the grid: what a reader needs to read it (how a row enters)
    note: str = ""

    def __post_init__(self):
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))

    @property
    def protocol(self) -> str:
        return get_reader(self.dataset).protocol

    @property
    def columns_are_learning_rates(self) -> bool:
        """True when each column sets a learning rate and nothing else (the paper's
        tables): a cell then reads "<row> at <rate>"."""
        return all(set(level.settings) == {"learning_rate"} for level in self.columns)

    @property
    def varied_keys(self) -> frozenset[str]:
        """The run settings its rows and columns set (those its runs differ in)."""
        return frozenset(key for level in self.rows + self.columns for key in level.settings)

    @property
    def backbones(self) -> tuple[str, ...]:
        """The backbones its runs train, in order of first appearance."""
        return tuple(dict.fromkeys(cell.backbone for cell in self.cells()))

    def cells(self) -> list[Cell]:
        """Every run of the study, in the order a grid trains them (row by row)."""
        return [Cell(f"{row.folder_part}_{column.folder_part}", row, column,
                     MappingProxyType({**self.fixed, **row.settings, **column.settings}))
                for row in self.rows for column in self.columns]

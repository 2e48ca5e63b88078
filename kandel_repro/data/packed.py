"""The packed data a run trains on, whatever the data set: one type for every reader.

A reader (:mod:`kandel_repro.readers.registry`) loads a data set into a :class:`PackedData`:
the labelled images as one uint8 array (``x``, ``y``, ``ids``) and, through
:meth:`PackedData.split`, the rows of ``x`` each part of the protocol's split uses —
training, validation — and the images predicted after training (:class:`TestSet`).
Training (:func:`kandel_repro.runs.train.train_run`) relies on exactly these fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np


@dataclass
class TestSet:
    """Images to predict after training; ``labels`` only where they are known."""

    x: np.ndarray
    ids: np.ndarray
    indices: np.ndarray | None = None  # rows of ``x``; None = all
    labels: np.ndarray | None = None
    auc_key: str = "test_auc"  # metrics key of the AUC on these labels
    submission: bool = False  # write a Kaggle submission.csv

    @property
    def size(self) -> int:
        return len(self.x) if self.indices is None else len(self.indices)

    def selected_ids(self) -> np.ndarray:
        return self.ids if self.indices is None else self.ids[self.indices]


class Split(NamedTuple):
    """Rows of :attr:`PackedData.x` to train and validate on, and the test set."""

    train: np.ndarray
    val: np.ndarray
    test: TestSet


@dataclass
class PackedData:
    """A data set as packed uint8 arrays in memory.

    ``x`` (N×H×W×3 uint8), ``y`` (N labels, 0/1) and ``ids`` are the labelled images the
    split draws from. ``dataset`` names the reader, ``synthetic`` says whether this
    package's generator made the files, ``fingerprint`` is the data's identity (relative
    paths, sizes, CSV bytes: what a run records as ``data_fingerprint``) and
    ``legacy_fingerprint`` what runs made before identities were recorded used
    (absolute paths and times). Each reader's subclass implements :meth:`split`.
    """

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    dataset: str
    synthetic: bool
    root: Path
    # (cache.SourceHashes' hashes of these names; not the manifest's "fingerprint")
    fingerprint: str = ""  # SourceHashes.data_fingerprint: a run's data_fingerprint
    legacy_fingerprint: str = ""  # SourceHashes.legacy_fingerprint

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def facts(self) -> dict:
        """Facts about the data a run records in its config (beyond the fingerprint)."""
        return {}

    def split_facts(self, config: dict) -> dict:
        """Facts about the split ``config`` asks for (e.g. the slide map's identity)."""
        return {}

    def split(self, config: dict) -> Split:
        raise NotImplementedError(f"{type(self).__name__} does not define its split")

"""Successive halving over a study's cells (Jamieson & Talwalkar 2016; Li et al. 2018),
replayed from the per-epoch validation AUCs a finished grid recorded.

Every cell trains R epochs (rung 0); the best 1/η of them by validation AUC continue to
R·η epochs (rung 1), the best 1/η of those to R·η², and so on, until a rung would reach
the protocol's epochs: the survivors of the last rung train to the end (their early
stopping included), and the search chooses the one with the best validation AUC. A cell's
score at a rung is its best validation AUC up to that epoch — the checkpoint a run keeps.
A run that stopped by itself before a rung (early stopping) keeps its best and costs the
epochs it ran.

:func:`replay` needs no training: it answers, from a full grid's own histories, which
cell the search would have chosen and at what share of the grid's epochs.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from ..core.errors import ConfigError


@dataclass(frozen=True)
class SearchResult:
    """What a replayed search did: its ``chosen`` cell, the ``epochs`` it spent (the full
    grid's ``grid_epochs``), each cell's ``stopped_at`` epoch (None: trained to its end)
    and the cells alive at each rung."""
    chosen: Hashable
    epochs: int
    grid_epochs: int
    stopped_at: Mapping[Hashable, int | None] = field(default_factory=dict)
    rungs: tuple = ()

    @property
    def share(self) -> float:
        """The search's epochs as a share of the full grid's."""
        return self.epochs / self.grid_epochs if self.grid_epochs else math.nan


def rung_epochs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """The epochs at which the search halves: R, R·η, R·η², … below ``max_epochs``."""
    if not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"--eta must be a whole number ≥ 2, got {eta!r}")
    if not isinstance(min_epochs, int) or not 1 <= min_epochs:
        raise ConfigError(f"--min-epochs must be a whole number ≥ 1, got {min_epochs!r}")
    rungs, epochs = [], min_epochs
    while epochs < max_epochs:
        rungs.append(epochs)
        epochs *= eta
    return rungs


def replay(histories: Mapping[Hashable, Sequence[float]], eta: int, min_epochs: int,
           max_epochs: int) -> SearchResult:
    """Successive halving over ``histories`` (``{cell: [validation AUC of epoch 1, 2, …]}``,
    each as long as its run trained), halving at :func:`rung_epochs`; ties at a rung keep
    the cell listed first."""
    if not histories:
        raise ConfigError("no finished run to replay a search over")
    order = list(histories)
    alive = list(order)
    stopped: dict[Hashable, int | None] = {}
    rungs = []
    for epoch in rung_epochs(min_epochs, eta, max_epochs):
        if len(alive) <= 1:
            break
        rungs.append((epoch, tuple(alive)))
        keep = max(1, math.ceil(len(alive) / eta))
        ranked = sorted(alive, key=lambda c: (-best_up_to(histories[c], epoch), order.index(c)))
        for cell in ranked[keep:]:
            stopped[cell] = min(epoch, len(histories[cell]))
        alive = ranked[:keep]
    for cell in alive:
        stopped[cell] = None
    chosen = max(alive, key=lambda c: (best_up_to(histories[c], None), -order.index(c)))
    spent = sum(len(histories[c]) if at is None else at for c, at in stopped.items())
    return SearchResult(chosen, spent, sum(len(h) for h in histories.values()), stopped,
                        tuple(rungs))


def best_up_to(history: Sequence[float], epoch: int | None) -> float:
    """A cell's score at a rung: its best validation AUC over its first ``epoch`` epochs
    (None: all), NaN left out; −inf where there is none. The replay and the search as it
    trains (:mod:`kandel_repro.grid.search`) rank by this one rule."""
    values = [v for v in (history if epoch is None else history[:epoch]) if v == v]
    return max(values) if values else -math.inf

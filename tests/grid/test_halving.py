"""Successive halving replayed from recorded histories (kandel_repro.grid.halving)."""
import pytest

from kandel_repro.core.errors import ConfigError
from kandel_repro.grid.halving import replay, rung_epochs

# Four cells' validation AUC per epoch: C starts slowly and ends best
HISTORIES = {"A": [0.60, 0.70, 0.80, 0.90], "B": [0.70, 0.72, 0.73, 0.74],
             "C": [0.50, 0.95, 0.96, 0.97], "D": [0.65, 0.66, 0.67, 0.68]}


def test_rungs():
    assert rung_epochs(1, 2, 4) == [1, 2]
    assert rung_epochs(1, 3, 12) == [1, 3, 9]
    assert rung_epochs(2, 2, 12) == [2, 4, 8]
    assert rung_epochs(5, 3, 5) == []  # one rung at the end: no halving
    with pytest.raises(ConfigError, match="--eta must be a whole number ≥ 2"):
        rung_epochs(1, 1, 10)


def test_halving_decides_by_hand():
    """Epoch 1: B 0.70, D 0.65 go on, A and C stop; epoch 2: B 0.72 over D 0.66; B trains
    to its end and is chosen — the slow starter C, the grid's best, was cut at rung 0."""
    result = replay(HISTORIES, eta=2, min_epochs=1, max_epochs=4)
    assert result.chosen == "B"
    assert result.stopped_at == {"A": 1, "C": 1, "D": 2, "B": None}
    assert result.rungs == ((1, ("A", "B", "C", "D")), (2, ("B", "D")))
    assert (result.epochs, result.grid_epochs) == (1 + 1 + 2 + 4, 16)
    assert result.share == 0.5
    # a later first rung lets C show itself: at epoch 2, C 0.95 and B 0.72 go on
    later = replay(HISTORIES, eta=2, min_epochs=2, max_epochs=4)
    assert later.chosen == "C" and later.stopped_at == {"A": 2, "D": 2, "B": None, "C": None}
    assert later.epochs == 2 + 2 + 4 + 4


def test_a_run_that_stopped_early_costs_what_it_ran_and_keeps_its_best():
    histories = {"short": [0.9], "long": [0.5, 0.6, 0.7, 0.8], "other": [0.4, 0.5, 0.6, 0.95]}
    result = replay(histories, eta=3, min_epochs=2, max_epochs=4)
    assert result.chosen == "short"  # its best (0.9) at rung 2 beats 0.6 and 0.5
    assert result.stopped_at == {"long": 2, "other": 2, "short": None}
    assert result.epochs == 1 + 2 + 2

"""The train/validation split of the labelled set (paper §4.1: 80 % / 20 %)."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def train_val_split(labels, validation_fraction=0.2, seed=0, stratified=True):
    """Return ``(train_indices, val_indices)``, sorted, stratified by label by default."""
    from sklearn.model_selection import train_test_split

    if not 0 < validation_fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {validation_fraction}")
    indices = np.arange(len(labels))
    train_idx, val_idx = train_test_split(
        indices, test_size=validation_fraction, random_state=seed,
        stratify=labels if stratified else None,
    )
    return np.sort(train_idx), np.sort(val_idx)

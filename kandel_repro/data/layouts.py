"""File names of the on-disk layouts, shared by the readers and the synthetic generators
that write the same layouts."""
from __future__ import annotations

# The Kaggle competition whose files the Kaggle layout is ("Histopathologic Cancer
# Detection").
COMPETITION = "histopathologic-cancer-detection"
# Written by every synthetic generator at the top of its folder: readers tell synthetic
# data by it (tables say so in their header).
MARKER = "SYNTHETIC.json"
# The Kaggle layout's optional patch → slide map (id,wsi; a community file).
WSI_MAP = "patch_id_wsi.csv"
# A synthetic Kaggle set's test labels, which the real competition keeps hidden.
HIDDEN_LABELS = "synthetic_test_labels.csv"
# The PCam HDF5 release: camelyonpatch_level_2_split_<split>_<x|y>.h5[.gz].
SPLITS = ("train", "valid", "test")
PREFIX = "camelyonpatch_level_2_split_"

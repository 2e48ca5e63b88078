"""Data sets: the Kaggle PCam layout (reader, packer, synthetic generator) and splits."""

"""Data sets: readers (``readers.READERS``: the Kaggle PCam layout, BreakHis), the packed
type every reader returns (``packed``), the packing cache, splits and the synthetic
generators that write the real layouts."""

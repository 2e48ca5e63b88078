"""The data sets a run can read (``registry``: ``READERS``, the interface every reader
keeps): the Kaggle PCam layout (``pcam``), the HDF5 release (``pcam_h5``), BreaKHis
(``breakhis``), a user's own images as class folders (``folder``) or a CSV manifest
(``manifest``), both on ``own``, and unlabelled images for pretraining
(``unlabelled``); and the synthetic generators that write those layouts
(``synthetic``)."""

"""The data sets a run can read (``registry``: ``READERS``, what the package knows of each
without reading it; ``base``: ``Reader``, the reader every data set's derives from): the
Kaggle PCam layout (``pcam``, its files checked by ``pcam_layout``), the HDF5 release
(``pcam_h5``), BreakHis (``breakhis``), a user's own images as class folders (``folder``)
or a CSV manifest (``manifest``), both on ``own``, and unlabelled images for pretraining
(``unlabelled``); and the synthetic generators that write those layouts
(``synthetic``)."""

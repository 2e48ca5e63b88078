"""Deterministic synthetic data sets written in the real layouts, so that the readers'
own code paths read them: the Kaggle PCam layout (``pcam``), the HDF5 release
(``pcam_h5``) and BreaKHis_v1 (``breakhis``)."""

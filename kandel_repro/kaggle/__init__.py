"""Kaggle: the client (``api``), submissions and their scores (``submission``), kernels
that run a study on Kaggle's GPU (``kernel``) and the script such a kernel runs
(``driver``, read as a file: it imports nothing of the package)."""

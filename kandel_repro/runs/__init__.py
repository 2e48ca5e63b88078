"""Runs and many runs: a run's settings (``config``, ``keys``), its folder (``rundir``),
the training of one run (``train``), the study registry (``studies``, of ``levels``, checked by
``validation``), the grid that trains a study's runs (``grid``, in-process or on Ray:
``cluster``), and a run's backbone exported as pretrained weights (``export``)."""

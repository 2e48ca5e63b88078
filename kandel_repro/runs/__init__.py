"""One run: its settings (typed in ``settings``, resolved in ``config``, across versions
``keys``), its folder (``rundir``), its training (``train``), one run outside any study
(``single``), and a finished run's backbone exported as pretrained weights (``export``).
Many runs are :mod:`kandel_repro.grid`; what they are, :mod:`kandel_repro.studies`."""

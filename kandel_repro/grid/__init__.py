"""Many runs: the grid that trains a study's runs, resumable and sharded (``grid``),
each run's attempt under its lock (``attempt``), in-process or as a Ray task
(``cluster``)."""

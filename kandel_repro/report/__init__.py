"""Results from run folders: a study's runs assembled into a table (``collect``), the
verdicts on the paper's findings (``compare``), the table's header (``header``), Markdown
(``markdown``), figures (``figures``, drawn with ``plots``) and the files ``kandel-repro
table`` writes (``tables``). What a single run has learnt is :mod:`kandel_repro.explain`."""

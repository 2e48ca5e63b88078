"""Results from run folders: a study's runs assembled into a table (``collect``), the
verdicts on the paper's findings (``compare``), Markdown (``markdown``), figures
(``figures``, drawn with ``plots``), the files ``kandel-repro table`` writes (``tables``),
and what fine-tuning changed, by CKA (``similarity``)."""

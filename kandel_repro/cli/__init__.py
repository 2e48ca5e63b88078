"""The ``kandel-repro`` command: options defined once (``options``), one handler per verb
(``main``), and what the console shows (``console``)."""

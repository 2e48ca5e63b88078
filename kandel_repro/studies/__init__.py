"""Studies as data: the shape of a study (``types``: ``Level``, ``Cell``, ``Study``), the
levels studies are made of (``levels``), every study in one registry (``registry``;
the pretraining studies' own rules: ``unlabelled``), checked at import
(``validation``), and a study's runs — their names, seeds, settings and shards
(``cells``)."""

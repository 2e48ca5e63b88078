"""Networks: the backbone registry and block maps (``backbones``), building a backbone
and its head (``build``), freezing by block or layer (``freeze``), initialisation
(``initialise``) and how ``--weights`` is spelled (``weights``)."""

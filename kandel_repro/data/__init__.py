"""What every reader stands on: the packed type readers return (``packed``), the packing
cache (``cache``, with its notes: ``pack_notes``), image decoding (``images``, ``pixels``,
``dicom``), splits (``split``) and the layouts' file names (``layouts``). The readers
themselves are :mod:`kandel_repro.readers`."""

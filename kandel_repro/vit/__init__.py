"""Vision transformers: ViT (DeiT-style, timm's layout) and DINOv2 (Hugging Face's layout)
as Keras functional models of our own (``architecture``), the bicubic resampling of their
position embeddings (``resample``) and the checkpoint layouts that ``convert-weights``
fills them from (``layouts``). The registry entries are in
:mod:`kandel_repro.models.backbones`; this layer imports nothing of the package above
``core``."""

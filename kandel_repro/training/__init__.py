"""How a model is trained: the optimisers and learning-rate multipliers (``optim``), the
fused augmentation (``augment``), the input pipeline and prediction (``pipeline``), and
devices, precision and XLA (``runtime``)."""

"""kandel_repro: reproduce Kandel & Castelli (2020), block-wise fine-tuning on PCam.

Importing the package is cheap: TensorFlow and Keras load only when a model is built.
"""

__version__ = "0.1.0"

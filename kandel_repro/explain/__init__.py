"""What a trained run has learnt, seen: Grad-CAM heatmaps of its predictions
(``gradcam``), its first convolution's filters (``filters``), and how far fine-tuning
moved each block from where it started (``similarity``)."""

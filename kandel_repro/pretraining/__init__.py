"""Pretraining on unlabelled images: a VAE or a DCGAN trained into a run folder
(``pretrain``), the images it trains on and shows (``images``), and the judge that asks
whether a classifier tells its samples from real images (``judge``)."""

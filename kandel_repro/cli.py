"""The ``kandel-repro`` command line: a thin layer over one function per verb."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .protocol import BREAKHIS, LEARNING_RATES, PAPER


def _add_training_options(p):
    # NOTE: defaults are None here so that a table's own protocol (patience 50 on
    # BreakHis, random weights in Table 5) applies unless the user says otherwise.
    g = p.add_argument_group("training settings (defaults: the paper's protocol, see protocol.py)")
    g.add_argument("--weights", default=None,
                   help="'imagenet' (default, as the paper), 'none' for random weights, "
                   "or the path of a keras.applications notop .h5 file")
    g.add_argument("--epochs", type=int, default=None, dest="max_epochs",
                   help=f"maximum epochs (default {PAPER.max_epochs}; the paper gives none)")
    g.add_argument("--patience", type=int, default=None,
                   help=f"early-stopping patience in epochs (default {PAPER.patience} on PCam, "
                   f"{BREAKHIS.patience} on BreakHis)")
    g.add_argument("--batch-size", type=int, default=None,
                   help=f"batch size (default {PAPER.batch_size})")
    g.add_argument("--head-pooling", choices=["flatten", "avg"], default=None,
                   help="how the last feature map reaches the head (default flatten)")
    g.add_argument("--seed", type=int, default=None, help="seed of split, weights, augmentation (default 0)")
    g.add_argument("--no-augment", action="store_true",
                   help="train without augmentation (a deviation from the paper)")
    r = p.add_argument_group("speed (change how a run computes, not what; recorded in config.json)")
    r.add_argument("--augment", choices=["fast", "imagedatagenerator"], default=None,
                   help="'fast' (default): the paper's augmentation as one fused transform "
                   "in the TF graph, on the GPU when there is one; 'imagedatagenerator': "
                   "Keras' ImageDataGenerator on the CPU, the paper's own pipeline")
    r.add_argument("--precision", choices=["auto", "float32", "mixed_float16"], default=None,
                   help="'auto' (default): mixed_float16 on a GPU, float32 on a CPU; the "
                   "sigmoid output and the loss stay float32")
    r.add_argument("--jit", choices=["auto", "on", "off"], default=None,
                   help="XLA-compile the training step; 'auto' (default) is Keras' rule: "
                   "on with one GPU, off on a CPU or with --distribute mirrored")
    r.add_argument("--distribute", choices=["none", "mirrored"], default=None,
                   help="'mirrored': tf.distribute.MirroredStrategy over every GPU of this "
                   "machine; the global batch stays --batch-size (default none)")
    r.add_argument("--eval-batch-size", type=int, default=None,
                   help="batch of validation/test prediction (default 1024 on a GPU, 128 on a CPU)")
    b = p.add_argument_group("BreakHis only")
    b.add_argument("--image-size", type=int, default=None,
                   help=f"side BreakHis images are resized to (default {BREAKHIS.image_size})")
    b.add_argument("--split", choices=["image", "patient"], default=None,
                   help="'image': random 80/10/10 as the paper (default); 'patient': "
                   "each patient on one side, leakage-free")
    b.add_argument("--magnification", choices=["all", "40", "100", "200", "400"], default=None,
                   help="use one magnification only (default all)")
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True,
                   help="folder in the Kaggle layout (PCam tables) or holding BreaKHis_v1 (BreakHis)")
    d.add_argument("--cache", default=None,
                   help="packed-array cache folder (default DATA/.kandel_cache)")
    d.add_argument("--workers", type=int, default=None, help="tif decoding processes")


def _overrides(args):
    names = ("weights", "max_epochs", "patience", "batch_size", "head_pooling", "seed",
             "image_size", "split", "magnification", "augment", "precision", "jit",
             "distribute", "eval_batch_size")
    out = {name: getattr(args, name) for name in names}
    if args.no_augment:
        out["augmentation"] = None
    return out


def cmd_synthetic(args):
    from .data.synthetic import write_synthetic_pcam

    out = write_synthetic_pcam(args.out, args.train, args.test, args.seed, args.size,
                               progress=not args.quiet)
    print(f"synthetic PCam in {out}")


def cmd_synthetic_breakhis(args):
    from .data.synthetic_breakhis import write_synthetic_breakhis

    out = write_synthetic_breakhis(args.out, args.patients, args.images, args.seed,
                                   progress=not args.quiet)
    print(f"synthetic BreakHis in {out}")


def cmd_pack(args):
    if args.dataset == "breakhis":
        from .data.breakhis import pack

        cache = pack(args.data, args.image_size or BREAKHIS.image_size, args.cache,
                     workers=args.workers, force=args.force)
    else:
        from .data.pcam import pack

        cache = pack(args.data, args.cache, workers=args.workers, force=args.force)
    print(f"packed cache in {cache}")


def cmd_download(args):
    from .kaggle_api import download

    out = download(args.out, args.competition, counts=None if args.any_size else "kaggle",
                   quiet=args.quiet)
    print(f"competition data verified in {out}")


def cmd_verify(args):
    from pathlib import Path

    from .data.pcam import KAGGLE_COUNTS, verify
    from .data.synthetic import MARKER

    synthetic = (Path(args.data) / MARKER).exists()
    counts = None if synthetic or args.any_size else KAGGLE_COUNTS
    index = verify(args.data, counts)
    print(f"{args.data}: {len(index.train_ids):,} labelled and {len(index.test_ids):,} test "
          f"images, complete and consistent"
          + (" (synthetic set)" if synthetic else "" if counts else " (counts not checked)"))


def cmd_validate_submission(args):
    from pathlib import Path

    from .submission import run_submission, validate_submission

    path = Path(args.path)
    if path.is_dir():
        path, sample = run_submission(path)
    elif args.sample is None:
        from .errors import ConfigError

        raise ConfigError("give --sample SAMPLE_SUBMISSION.csv with a CSV file, or a run folder")
    else:
        sample = args.sample
    frame = validate_submission(path, sample)
    print(f"{path}: valid ({len(frame):,} test ids, probabilities in "
          f"[{frame['label'].min():.4f}, {frame['label'].max():.4f}])")


def cmd_blocks(args):
    from .backbones import depth_label, get_backbone
    from .model import block_map_of

    backbone = get_backbone(args.backbone)
    blocks = block_map_of(backbone.name)
    if args.json:
        print(json.dumps({str(k): v for k, v in blocks.items()}, indent=2))
        return
    print(f"{backbone.name}: {backbone.num_blocks} blocks (block 1 is nearest the input)")
    for block, names in blocks.items():
        print(f"  block {block}: {', '.join(names)}")
    print("fine-tuning 'from block k' trains blocks k.."
          f"{backbone.num_blocks} and the head; e.g. depth "
          f"{depth_label(3, backbone.num_blocks)} trains blocks 3 to {backbone.num_blocks}")


def cmd_train(args):
    from .grid import load_data
    from .train import resolve_config, train_run

    config = resolve_config(args.backbone, args.first_block, args.lr, protocol=args.dataset,
                            **_overrides(args))
    data = load_data(args.dataset, args.data, args.cache, args.workers, config["image_size"])
    config.update(data_dir=str(args.data), data_fingerprint=data.fingerprint)
    metrics = train_run(args.run_dir, data, config)
    print(json.dumps(metrics, indent=2))


def _submit_options(p, what):
    from .kaggle_api import COMPETITION
    from .submission import DEFAULT_POLL, DEFAULT_TIMEOUT

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


def _submit(args, run_dirs, queue_file=None):
    from .submission import submit_runs

    outcomes = submit_runs(run_dirs, message=getattr(args, "message", None),
                           competition=args.competition, timeout=args.timeout, poll=args.poll,
                           resubmit=args.resubmit, quiet=getattr(args, "quiet", False),
                           queue_file=queue_file)
    from collections import Counter

    counts = Counter(outcomes.values())
    print("Kaggle: " + (", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
                        or "no finished PCam run to submit"))
    return outcomes


def cmd_grid(args):
    from pathlib import Path

    from .grid import get_sweep, run_grid

    sweep = get_sweep(args.table)
    if args.submit and sweep.dataset != "pcam":
        from .errors import ConfigError

        raise ConfigError(f"--submit: {args.table} is a BreakHis table; only PCam runs are "
                          "scored by Kaggle")
    statuses = run_grid(args.table, args.data, args.runs, cache_dir=args.cache,
                        rerun=args.rerun, workers=args.workers, shard=args.shard,
                        time_budget=args.time_budget, **_overrides(args))
    status = 1 if "failed" in statuses.values() else 0
    if args.submit:
        runs = [Path(args.runs) / name for name, s in statuses.items() if s in ("ok", "skipped")]
        outcomes = _submit(args, runs, Path(args.runs) / "kaggle-queue.json")
        if {"invalid", "error"} & set(outcomes.values()):
            status = 1
    return status


def cmd_submit(args):
    from pathlib import Path

    from .errors import ConfigError
    from .submission import finished_pcam_runs

    runs, queue_file = [], None
    for path in map(Path, args.paths):
        if not path.is_dir():
            raise ConfigError(f"{path} is not a run folder or a folder of run folders")
        found = finished_pcam_runs(path)
        if not found:
            raise ConfigError(f"{path} holds no finished PCam run")
        if found != [path]:
            queue_file = path / "kaggle-queue.json"
        runs += found
    if args.message and len(runs) > 1:
        raise ConfigError("-m/--message names one submission; give one run folder, or leave "
                          "it out (each run is described by its name)")
    outcomes = _submit(args, runs, queue_file if len(args.paths) == 1 else None)
    # NOTE: queued is not a failure (the limit resets); pending, invalid and error are.
    return 0 if set(outcomes.values()) <= {"scored", "scored before", "queued"} else 1


def cmd_table(args):
    from .tables import write_table

    for path in write_table(args.table, args.runs, args.out):
        print(f"wrote {path}")


def cmd_kaggle_kernel(args):
    from .grid import parse_shard
    from .kaggle_kernel import kernel_slug, make_kernel, push

    grid_args = args.grid_args
    user = args.user
    client = None
    if user is None:
        from .kaggle_api import api

        client = api()
        user = client.get_config_value("username")
        if not user:
            from .errors import ConfigError

            raise ConfigError("cannot tell the Kaggle user name from the credentials; give --user")
    out = args.out or f"kaggle/{args.name or kernel_slug(args.table, parse_shard(args.shard))}"
    folders = make_kernel(args.table, out, user, shard=args.shard, budget_hours=args.budget_hours,
                          resume_from=args.resume_from, grid_args=grid_args, name=args.name)
    if args.push:
        push(folders, client=client)
    else:
        print(f"not pushed; `kandel-repro kaggle-kernel {args.table} ... --push`, or by hand: "
              f"kaggle datasets create -p {folders['wheel']}; kaggle kernels push -p {folders['kernel']}")


def cmd_cost(args):
    from pathlib import Path

    import pandas as pd

    from .cost import depth_costs
    from .plots import cost_vs_depth
    from .runio import write_csv
    from .runtime import device_description

    frames = [depth_costs(name, args.image_size, args.batch_size, args.steps, args.warm,
                          first_blocks=args.first_blocks, log=print) for name in args.backbones]
    frame = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    csv, png = out / "cost_vs_depth.csv", out / "cost_vs_depth.png"
    write_csv(csv, frame)
    cost_vs_depth(frame, png, title=f"Cost of each fine-tuning depth: {args.image_size}×"
                  f"{args.image_size} images, batch {args.batch_size}, {device_description()}")
    print(f"wrote {csv}\nwrote {png}")


def cmd_bench(args):
    from .bench import run_bench

    run_bench(args.out, args.work, images=args.images, copies=args.copies, size=args.size,
              warm=args.warm, steps=args.steps, rounds=args.rounds,
              augment_seconds=args.augment_seconds)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kandel-repro",
        description="Reproduce Kandel & Castelli (2020): how deeply to fine-tune a CNN "
        "on histopathology (PCam).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make, check and pack data sets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synthetic", help="write a synthetic PCam in the Kaggle layout")
    s.add_argument("--out", required=True, help="folder to write (reused if same parameters)")
    s.add_argument("--train", type=int, default=2000, help="labelled images (default 2000)")
    s.add_argument("--test", type=int, default=500, help="unlabelled test images (default 500)")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument("--size", type=int, default=96, help="image side in pixels (default 96, as PCam)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synthetic)
    sb = dsub.add_parser("synthetic-breakhis",
                         help="write a synthetic BreakHis in the BreaKHis_v1 folder layout")
    sb.add_argument("--out", required=True, help="folder to write (reused if same parameters)")
    sb.add_argument("--patients", type=int, default=3, help="patients per subtype (default 3)")
    sb.add_argument("--images", type=int, default=4,
                    help="images per patient and magnification (default 4)")
    sb.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sb.add_argument("--quiet", action="store_true", help="no progress bar")
    sb.set_defaults(func=cmd_synthetic_breakhis)
    p = dsub.add_parser("pack", help="decode the images once into a uint8 cache")
    p.add_argument("--data", required=True, help="data folder")
    p.add_argument("--dataset", choices=["pcam", "breakhis"], default="pcam",
                   help="layout of --data (default pcam)")
    p.add_argument("--image-size", type=int, default=None,
                   help=f"BreakHis: side to resize to (default {BREAKHIS.image_size})")
    p.add_argument("--cache", default=None, help="cache folder (default DATA/.kandel_cache)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes")
    p.add_argument("--force", action="store_true", help="repack even if the cache is current")
    p.set_defaults(func=cmd_pack)
    from .kaggle_api import COMPETITION

    dl = dsub.add_parser("download", help="download, unzip and verify the Kaggle competition files",
                         description="Downloads the competition files with the kaggle client "
                         "(credentials: ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY; the "
                         "competition's rules must be accepted on kaggle.com), unzips and "
                         "verifies them, and only then moves them to --out.")
    dl.add_argument("--out", default="data/pcam", help="folder to create (default data/pcam)")
    dl.add_argument("--competition", default=COMPETITION, help=f"default {COMPETITION}")
    dl.add_argument("--any-size", action="store_true",
                    help="do not require the competition's file counts")
    dl.add_argument("--quiet", action="store_true", help="no progress bars")
    dl.set_defaults(func=cmd_download)
    v = dsub.add_parser("verify", help="check an unpacked Kaggle folder completely (counts, "
                        "every id has its tif, no unlisted tif)")
    v.add_argument("--data", required=True, help="folder in the Kaggle layout")
    v.add_argument("--any-size", action="store_true",
                   help="do not require the competition's 220,025 + 57,458 files "
                   "(synthetic sets are never held to them)")
    v.set_defaults(func=cmd_verify)

    from .backbones import REGISTRY

    b = sub.add_parser("blocks", help="print a backbone's block map (block → layer names)")
    b.add_argument("backbone", choices=sorted(REGISTRY), help="which backbone")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=cmd_blocks)

    t = sub.add_parser("train", help="train one run (one depth, one learning rate)")
    t.add_argument("--run-dir", required=True, help="run folder to write")
    t.add_argument("--backbone", default="vgg16", choices=sorted(REGISTRY))
    t.add_argument("--first-block", type=int, required=True,
                   help="first trainable block: 5 trains the top block only, 1 the whole network")
    t.add_argument("--lr", type=float, required=True, help=f"learning rate, e.g. one of {LEARNING_RATES}")
    t.add_argument("--dataset", choices=["pcam", "breakhis"], default="pcam",
                   help="protocol and layout of --data (default pcam)")
    _add_training_options(t)
    t.set_defaults(func=cmd_train)

    from .grid import SWEEPS

    g = sub.add_parser("grid", help="run a paper table's grid of runs (resumable)")
    g.add_argument("table", choices=sorted(SWEEPS), help="which paper table")
    g.add_argument("--runs", required=True, help="folder of run folders")
    g.add_argument("--rerun", action="store_true", help="retrain finished runs too")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="run only the I-th of N disjoint shares of the table's runs (round "
                   "robin), e.g. 1/3, 2/3, 3/3 on three machines; copy their run folders "
                   "into one --runs folder to render the table")
    g.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop starting runs when the slowest run so far would not fit in "
                   "what is left, and stop a run at the epoch that would pass it (the run "
                   "stays unfinished and is trained again next time); e.g. inside a Kaggle "
                   "kernel")
    g.add_argument("--submit", action="store_true",
                   help="PCam: submit each finished run to Kaggle and record its score "
                   "(within the daily limit; the rest are queued for the next call)")
    _add_training_options(g)
    _submit_options(g, " (with --submit)")
    g.set_defaults(func=cmd_grid)

    tb = sub.add_parser("table", help="render a table from finished run folders")
    tb.add_argument("table", choices=sorted(SWEEPS), help="which paper table")
    tb.add_argument("--runs", required=True, help="folder of run folders")
    tb.add_argument("--out", default="tables", help="output folder (default tables/)")
    tb.set_defaults(func=cmd_table)
    vs = sub.add_parser("validate-submission",
                        help="check a Kaggle submission file before uploading it")
    vs.add_argument("path", help="a finished PCam run folder, or a submission CSV")
    vs.add_argument("--sample", default=None,
                    help="sample_submission.csv to check a CSV against (a run folder knows its own)")
    vs.set_defaults(func=cmd_validate_submission)
    su = sub.add_parser(
        "submit", help="validate and submit runs' test predictions to Kaggle, wait for the "
        "score, record it in metrics.json",
        description="Validates each run's submission.csv (an invalid file is never "
        "uploaded), submits it with the kaggle client, polls the submission list until "
        "it is scored, and writes kaggle_public_auc and kaggle_private_auc into the run's "
        "metrics.json; tables then show the private score. Kaggle's daily limit is "
        "respected: runs beyond it are queued and submitted by the next call. "
        "Credentials: ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY.")
    su.add_argument("paths", nargs="+", metavar="RUN_DIR",
                    help="finished PCam run folders, or a folder of them (e.g. runs/table2)")
    su.add_argument("-m", "--message", default=None,
                    help="submission description (default: the run's name and file hash)")
    su.add_argument("--quiet", action="store_true", help="no upload progress bar")
    _submit_options(su, "")
    su.set_defaults(func=cmd_submit)

    co = sub.add_parser(
        "cost", help="trainable parameters and time per training step at each depth "
        "(writes cost_vs_depth.csv and .png)",
        description="Builds each depth's training model (random weights: the cost does not "
        "depend on them) and times training steps on random images in memory, through the "
        "same input pipeline as a run. Times are of this machine.")
    co.add_argument("backbones", nargs="+", choices=sorted(REGISTRY), metavar="BACKBONE",
                    help=f"one or more of {', '.join(sorted(REGISTRY))}")
    co.add_argument("--image-size", type=int, default=96, help="image side (default 96, as PCam)")
    co.add_argument("--batch-size", type=int, default=PAPER.batch_size,
                    help=f"batch size (default {PAPER.batch_size})")
    co.add_argument("--steps", type=int, default=5, help="timed steps per depth (default 5; median)")
    co.add_argument("--warm", type=int, default=2, help="untimed steps first (default 2)")
    co.add_argument("--first-blocks", type=int, nargs="+", default=None, metavar="K",
                    help="measure only these depths (first trainable block; default all)")
    co.add_argument("--out", default="tables", help="output folder (default tables/)")
    co.set_defaults(func=cmd_cost)

    from .kaggle_kernel import DEFAULT_BUDGET_HOURS, SESSION_LIMIT_HOURS

    kk = sub.add_parser(
        "kaggle-kernel", help="write (--push: upload) a Kaggle kernel that runs a PCam table, "
        "or a shard of it, on Kaggle's GPU",
        description="Writes OUT/kernel (kernel-metadata.json: the competition as data source, "
        "GPU on, internet off; driver.py), OUT/wheel (this package as a private data set) "
        "and, for ImageNet runs, OUT/weights (the notop .h5 files from Keras' cache). The "
        "kernel installs the package offline, runs `kandel-repro grid TABLE` within the time "
        "budget, resumes from the kernels given with --resume-from, and leaves runs/ and "
        "tables/ in its output. Options after `--` go to the kernel's grid, e.g. "
        "`kandel-repro kaggle-kernel table2 --shard 1/3 -- --epochs 30`.")
    kk.add_argument("table", choices=["table2", "table3", "table4", "table5"], help="which PCam table")
    kk.add_argument("--shard", default=None, metavar="I/N", help="run the I-th of N shares of the runs")
    kk.add_argument("--budget-hours", type=float, default=DEFAULT_BUDGET_HOURS,
                    help=f"time budget of the kernel (default {DEFAULT_BUDGET_HOURS:g}; Kaggle "
                    f"stops a GPU session at {SESSION_LIMIT_HOURS} h); runs that do not fit are "
                    "left for the next kernel")
    kk.add_argument("--resume-from", action="append", default=[], metavar="OWNER/KERNEL",
                    help="an earlier kernel whose output (finished runs) this one starts from; "
                    "repeatable")
    kk.add_argument("--name", default=None,
                    help="kernel name (default kandel-repro-TABLE[-shard-I-of-N]); give a new "
                    "one to continue an earlier kernel with --resume-from")
    kk.add_argument("--user", default=None,
                    help="Kaggle user owning the kernel and data sets (default: from the credentials)")
    kk.add_argument("--out", default=None, help="folder to write (default kaggle/<kernel name>)")
    kk.add_argument("--push", action="store_true",
                    help="upload the data sets (a new version if they exist) and push the kernel")
    kk.set_defaults(func=cmd_kaggle_kernel)

    bn = sub.add_parser("bench", help="measure the input pipeline's cost side by side "
                        "(writes bench.md and bench.json)",
                        description="Benchmark on synthetic PCam-sized data: fused augmentation "
                        "vs ImageDataGenerator.flow, the pipeline vs pre-augmented tensors, "
                        "VGG16 speed per depth, packing speed, peak memory, and a projection "
                        "of Table 2's wall time. About 6 minutes on 2 CPU cores.")
    bn.add_argument("--out", default="tables", help="where bench.md/bench.json go (default tables/)")
    bn.add_argument("--work", default="data/bench", help="scratch folder for the synthetic data "
                    "(default data/bench; reused)")
    from .bench import DEFAULTS as B

    bn.add_argument("--images", type=int, default=B["images"],
                    help=f"distinct synthetic training images (default {B['images']})")
    bn.add_argument("--copies", type=int, default=B["copies"],
                    help="each image appears this many times (hard links), so packing and "
                    f"memory see a set of about 1 GiB (default {B['copies']})")
    bn.add_argument("--size", type=int, default=B["size"],
                    help=f"image side (default {B['size']}, as PCam)")
    bn.add_argument("--warm", type=int, default=B["warm"],
                    help=f"untimed warm-up steps per measurement (default {B['warm']})")
    bn.add_argument("--steps", type=int, default=B["steps"],
                    help=f"timed training steps per measurement (default {B['steps']})")
    bn.add_argument("--rounds", type=int, default=B["rounds"],
                    help=f"alternating rounds of pipeline vs pre-augmented (default {B['rounds']}; median)")
    bn.add_argument("--augment-seconds", type=float, default=B["augment_seconds"],
                    help=f"seconds per augmentation measurement (default {B['augment_seconds']:g})")
    bn.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    from .errors import KandelError

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = []
    if "--" in argv:  # kaggle-kernel: what follows goes to the kernel's grid
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if extra and args.command != "kaggle-kernel":
        parser.error(f"unexpected arguments after --: {' '.join(extra)}")
    args.grid_args = extra
    try:
        return args.func(args) or 0
    except KandelError as exc:
        print(f"kandel-repro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kandel-repro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

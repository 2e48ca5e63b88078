"""The ``kandel-repro`` command: each verb parses (:mod:`kandel_repro.options`) and calls
one function that lives with its subject."""
from __future__ import annotations

import json
import os
import sys

from . import (bench, cost, grid, kaggle_api, kaggle_kernel, model, options, runtime,
               similarity, submission, tables)
from .data import pcam, readers, synthetic, synthetic_breakhis, synthetic_h5
from .errors import KandelError


def cmd_synthetic(args):
    out = synthetic.write_synthetic_pcam(args.out, args.train, args.test, args.seed, args.size,
                                         progress=not args.quiet, slides=args.slides)
    print(f"synthetic PCam in {out}")


def cmd_synthetic_h5(args):
    out = synthetic_h5.write_synthetic_pcam_h5(args.out, args.train, args.valid, args.test,
                                               args.seed, args.size, progress=not args.quiet)
    print(f"synthetic PCam (HDF5 layout) in {out}")


def cmd_synthetic_breakhis(args):
    out = synthetic_breakhis.write_synthetic_breakhis(args.out, args.patients, args.images,
                                                      args.seed, progress=not args.quiet)
    print(f"synthetic BreakHis in {out}")


def cmd_pack(args):
    cache = readers.get_reader(args.dataset).pack(args.data, args.cache, workers=args.workers,
                                                  force=args.force, image_size=args.image_size,
                                                  verify=True)
    print(f"packed cache in {cache}")


def cmd_download(args):
    out = kaggle_api.download(args.out, args.competition,
                              counts=None if args.any_size else "kaggle", quiet=args.quiet)
    print(f"competition data verified in {out}")


def cmd_verify(args):
    print(pcam.verify_folder(args.data, args.any_size, args.cache))


def cmd_validate_submission(args):
    print(submission.validate_path(args.path, args.sample, args.sample_data))


def cmd_blocks(args):
    print(model.describe_blocks(args.backbone, as_json=args.json, layers=args.layers))


def cmd_train(args):
    # NOTE: a layer-wise run trains from a layer, whatever block holds it: its blocks are
    # recorded as a layer-wise study's are (block 1 on, the layers deciding).
    first_block = 1 if args.first_block is None else args.first_block
    metrics = grid.train_single(args.run_dir, args.data, args.backbone, first_block, args.lr,
                                dataset=args.dataset, cache_dir=args.cache, workers=args.workers,
                                first_trainable_layer=args.first_trainable_layer,
                                **options.settings_from_args(args))
    print(json.dumps(metrics, indent=2))


def cmd_grid(args):
    return grid.grid_command(
        args.study, args.data, args.runs, cache_dir=args.cache, rerun=args.rerun,
        workers=args.workers, shard=args.shard, time_budget=args.time_budget, seeds=args.seeds,
        dataset=args.dataset, fractions=args.fractions, executor=args.executor,
        address=args.address, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
        submit=options.submit_options(args) if args.submit else None,
        **options.settings_from_args(args))


def cmd_table(args):
    for path in tables.write_table(args.study, args.runs, args.out, seeds=args.seeds,
                                   fractions=args.fractions):
        print(f"wrote {path}")


def cmd_submit(args):
    return submission.submit_paths(args.paths, message=args.message, **options.submit_options(args))


def cmd_kaggle_kernel(args):
    kaggle_kernel.kernel_command(args.study, user=args.user, out=args.out, name=args.name,
                                 shard=args.shard, push_now=args.push,
                                 budget_hours=args.budget_hours, resume_from=args.resume_from,
                                 grid_args=args.grid_args)


def cmd_export_weights(args):
    for path in model.export_weights(args.runs, args.out):
        print(f"wrote {path}")


def cmd_similarity(args):
    for path in similarity.similarity_command(args.run, args.other, args.images, args.batch,
                                              args.out, name=args.name):
        print(f"wrote {path}")


def cmd_cost(args):
    for path in cost.write_cost(args.backbones, args.out, args.image_size, args.batch_size,
                                args.steps, args.warm, first_blocks=args.first_blocks):
        print(f"wrote {path}")


def cmd_bench(args):
    bench.run_bench(args.out, args.work, images=args.images, copies=args.copies, size=args.size,
                    warm=args.warm, steps=args.steps, rounds=args.rounds,
                    augment_seconds=args.augment_seconds)


HANDLERS = {
    "data synthetic": cmd_synthetic, "data synthetic-breakhis": cmd_synthetic_breakhis,
    "data synthetic-h5": cmd_synthetic_h5,
    "data pack": cmd_pack, "data download": cmd_download, "data verify": cmd_verify,
    "validate-submission": cmd_validate_submission, "blocks": cmd_blocks, "train": cmd_train,
    "grid": cmd_grid, "table": cmd_table, "submit": cmd_submit,
    "kaggle-kernel": cmd_kaggle_kernel, "cost": cmd_cost, "bench": cmd_bench,
    "export-weights": cmd_export_weights, "similarity": cmd_similarity,
}


def main(argv=None):
    """``kandel-repro ARGV``; its exit status. From the console (no ``argv``), the noise
    TensorFlow's native code prints on start is left out of the standard error."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if argv is None:
        with runtime.quiet_native_startup():
            return _main(sys.argv[1:])
    return _main(list(argv))


def _main(argv):
    extra = []
    if "--" in argv:  # kaggle-kernel: what follows goes to the kernel's grid
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = options.build_parser()
    args = parser.parse_args(argv)
    if extra and args.command != "kaggle-kernel":
        parser.error(f"unexpected arguments after --: {' '.join(extra)}")
    args.grid_args = extra
    try:
        return HANDLERS[args.verb](args) or 0
    except KandelError as exc:
        print(f"kandel-repro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kandel-repro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

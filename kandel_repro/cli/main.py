"""The ``kandel-repro`` command: each verb parses (:mod:`kandel_repro.cli.options`) and calls
one function that lives with its subject."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import ConfigError, KandelError
from ..data import elpv, pack_notes
from ..data.pixels import pixel_limit
from ..explain import filters, gradcam as explain, similarity
from ..grid import grid
from ..kaggle import api as kaggle_api, kernel as kaggle_kernel, submission
from ..measure import bench, cost
from ..models import build as model, convert
from ..pretraining import judge as judging, pretrain as pretraining
from ..readers import pcam, registry as readers
from ..readers.synthetic import (breakhis as synthetic_breakhis, folder as synthetic_folder,
                                 pcam as synthetic, pcam_h5 as synthetic_h5)
from ..report import tables
from ..runs import export, predict as prediction, single
from ..runs.config import normalise
from ..studies.registry import get_study, parse_backbones
from . import console, options


def cmd_synthetic(args: argparse.Namespace) -> None:
    out = synthetic.write_synthetic_pcam(args.out, args.train, args.test, args.seed, args.size,
                                         progress=not args.quiet, slides=args.slides)
    print(f"synthetic PCam in {out}")


def cmd_synthetic_h5(args: argparse.Namespace) -> None:
    out = synthetic_h5.write_synthetic_pcam_h5(args.out, args.train, args.valid, args.test,
                                               args.seed, args.size, progress=not args.quiet)
    print(f"synthetic PCam (HDF5 layout) in {out}")


def cmd_synthetic_breakhis(args: argparse.Namespace) -> None:
    out = synthetic_breakhis.write_synthetic_breakhis(args.out, args.patients, args.images,
                                                      args.seed, progress=not args.quiet)
    print(f"synthetic BreakHis in {out}")


def cmd_synthetic_folder(args: argparse.Namespace) -> None:
    out = synthetic_folder.write_synthetic_folder(
        args.out, classes=args.classes, images=args.images, patients=args.patients,
        size=args.size, seed=args.seed, image_format=args.image_format, progress=not args.quiet)
    print(f"synthetic {args.classes}-class set in {out} (folder layout; its CSV manifest: "
          f"{Path(out) / 'manifest.csv'})")


def cmd_elpv(args: argparse.Namespace) -> None:
    written = elpv.write_elpv(args.out, task=args.task, test_fraction=args.test_fraction,
                              val_fraction=args.val_fraction, seed=args.seed,
                              source=args.source)
    print(elpv.summary(written))


def _reader_options(args: argparse.Namespace) -> dict:
    """The reader options a verb that packs was given (None: not given), ``--window``
    as two numbers."""
    given = {key: getattr(args, key) for key in ("path_column", "label_column", "group_column",
                                                 "positive_class", "skip_unreadable")}
    given["window"] = None if args.window is None else normalise("window", args.window)
    return given


def cmd_pack(args: argparse.Namespace) -> None:
    """Pack (or reuse) the cache; say which, and its images per class."""
    reader = readers.get_reader(args.dataset)
    given = _reader_options(args)
    unused = [key for key, value in given.items() if value is not None and key not in reader.options]
    if unused:
        raise ConfigError(f"--{unused[0].replace('_', '-')} does not apply to --dataset "
                          f"{reader.name}")
    pack_notes.PACKED_HERE.clear()  # (what this call packs, not an earlier one)
    cache = reader.pack(args.data, args.cache, workers=args.workers, force=args.force,
                        image_size=args.image_size, verify=True, **reader.options_of(given))
    print(pack_notes.describe(cache))


def cmd_download(args: argparse.Namespace) -> None:
    out = kaggle_api.download(args.out, args.competition,
                              counts=None if args.any_size else "kaggle", quiet=args.quiet)
    print(f"competition data verified in {out}")


def cmd_verify(args: argparse.Namespace) -> None:
    print(pcam.verify_folder(args.data, args.any_size, args.cache))


def cmd_validate_submission(args: argparse.Namespace) -> None:
    print(submission.validate_path(args.path, args.sample, args.sample_data))


def cmd_blocks(args: argparse.Namespace) -> None:
    print(model.describe_blocks(args.backbone, as_json=args.json, layers=args.layers))


def cmd_train(args: argparse.Namespace) -> None:
    # NOTE: a layer-wise run trains from a layer, whatever block holds it: its blocks are
    # recorded as a layer-wise study's are (block 1 on, the layers deciding).
    first_block = 1 if args.first_block is None else args.first_block
    metrics = single.train_single(args.run_dir, args.data, args.backbone, first_block, args.lr,
                                dataset=args.dataset, cache_dir=args.cache, workers=args.workers,
                                first_trainable_layer=args.first_trainable_layer,
                                **options.settings_from_args(args))
    print(json.dumps(metrics, indent=2))


def cmd_grid(args: argparse.Namespace) -> int:
    """The study's runs (:func:`kandel_repro.grid.grid.run_grid`), then, with ``--submit``,
    every finished run submitted to Kaggle. Status 1 when a run failed or a submission was
    invalid or unscorable."""
    first = parse_backbones(args.backbone)[:1] or [None]
    study = get_study(args.study, args.fractions, backbone=first[0],
                              dataset=args.dataset if get_study(args.study).parametric
                              else None)
    dataset = args.dataset or study.dataset
    if args.submit and dataset != "pcam":
        raise ConfigError(f"--submit: {study.name} trains on {dataset}, not the Kaggle "
                          "data; only PCam runs are scored by Kaggle")
    how = grid.GridOptions(
        cache_dir=args.cache, rerun=args.rerun, workers=args.workers, shard=args.shard,
        time_budget=args.time_budget, seeds=args.seeds, dataset=args.dataset,
        fractions=args.fractions, backbone=args.backbone, learning_rates=args.learning_rates,
        executor=args.executor, address=args.address, gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run, search=args.search, eta=args.eta,
        min_epochs=args.min_epochs)
    statuses = grid.run_grid(args.study, args.data, args.runs, how,
                             options.settings_from_args(args))
    status = 1 if "failed" in statuses.values() else 0
    if args.submit:
        runs = [Path(args.runs) / name for name, s in statuses.items() if s in ("ok", "skipped")]
        outcomes = submission.submit_runs(runs, queue_file=Path(args.runs) / "kaggle-queue.json",
                                          **options.submit_options(args))
        print(submission.summarise(outcomes))
        if {"invalid", "error"} & set(outcomes.values()):
            status = 1
    return status


def cmd_table(args: argparse.Namespace) -> None:
    for path in tables.write_table(args.study, args.runs, args.out, seeds=args.seeds,
                                   fractions=args.fractions, backbone=args.backbone,
                                   dataset=args.dataset, bootstrap=args.bootstrap):
        print(f"wrote {path}")


def cmd_submit(args: argparse.Namespace) -> int:
    return submission.submit_paths(args.paths, message=args.message, **options.submit_options(args))


def cmd_kaggle_kernel(args: argparse.Namespace) -> None:
    kaggle_kernel.kernel_command(args.study, user=args.user, out=args.out, name=args.name,
                                 shard=args.shard, push_now=args.push,
                                 budget_hours=args.budget_hours, resume_from=args.resume_from,
                                 backbone=args.backbone, dataset=args.dataset,
                                 data_source=args.data_source, data_path=args.data_path,
                                 grid_args=args.grid_args,
                                 grid_settings=options.parse_grid_args(args.study, args.grid_args))


def cmd_export_weights(args: argparse.Namespace) -> None:
    for path in export.export_weights(args.runs, args.out):
        print(f"wrote {path}")


def cmd_predict(args: argparse.Namespace) -> None:
    """Score new images with a finished run (:func:`kandel_repro.runs.predict.predict`);
    say what was written, the threshold, and the AUC where the images carry labels."""
    columns = {key: getattr(args, key) for key in prediction.READER_OPTIONS
               if getattr(args, key) is not None}
    frame = prediction.predict(args.run, args.data, args.out, dataset=args.dataset,
                               tta=args.tta, threshold=args.threshold,
                               batch_size=args.batch_size, progress=not args.quiet, **columns)
    cut = frame.attrs.get("threshold")
    print(f"wrote {args.out}: {len(frame):,} images"
          + (f", predicted positive from {cut['value']:.4f} ({cut['rule']})" if cut else ""))
    if "auc" in frame.attrs:
        print(prediction.auc_line(frame.attrs["auc"]))


def cmd_export(args: argparse.Namespace) -> None:
    print(f"wrote {export.export_model(args.run, args.out, args.format)}")


def cmd_convert_weights(args: argparse.Namespace) -> None:
    print(f"wrote {convert.convert_weights(args.backbone, args.file, args.out, args.strip_prefix)}")


def cmd_similarity(args: argparse.Namespace) -> None:
    for path in similarity.similarity_command(args.run, args.other, args.images, args.batch,
                                              args.out, name=args.name):
        print(f"wrote {path}")


def cmd_explain(args: argparse.Namespace) -> None:
    for path in explain.explain_command(args.run, split=args.split, layer=args.layer,
                                        count=args.count, data_dir=args.data, out=args.out,
                                        threshold=args.threshold):
        print(f"wrote {path}")


def cmd_filters(args: argparse.Namespace) -> None:
    for path in filters.filters_command(args.runs, out=args.out):
        print(f"wrote {path}")


def cmd_cost(args: argparse.Namespace) -> None:
    for path in cost.write_cost(args.backbones, args.out, args.image_size, args.batch_size,
                                args.steps, args.warm, first_blocks=args.first_blocks):
        print(f"wrote {path}")


def cmd_evaluate_search(args: argparse.Namespace) -> None:
    from ..measure import search_eval

    search_eval.write_evaluation(args.study, args.runs, args.out,
                                 search_eval.parse_ints(args.eta, "--eta"),
                                 search_eval.parse_ints(args.min_epochs, "--min-epochs"),
                                 args.backbone, args.dataset, block_scores=args.block_scores,
                                 searched=args.searched)


def cmd_score_blocks(args: argparse.Namespace) -> None:
    from ..measure.block_scores import write_block_scores

    write_block_scores(args.backbone, args.data, args.out, args.dataset, args.weights,
                       args.image_size)


def cmd_bench(args: argparse.Namespace) -> None:
    if args.only == "generative":
        from ..measure.generative_bench import run_generative_bench

        figures = run_generative_bench(args.out, rounds=args.rounds)
        print(f"VAE step {figures['vae_step_vs_classifier']:.2f}×, DCGAN step "
              f"{figures['dcgan_step_vs_classifier']:.2f}× the classifier's images/s; wrote "
              f"{args.out}/bench_generative.md")
        return
    bench.run_bench(args.out, args.work, images=args.images, copies=args.copies, size=args.size,
                    warm=args.warm, steps=args.steps, rounds=args.rounds,
                    augment_seconds=args.augment_seconds, batch_size=args.batch_size,
                    own_images=args.own_images, own_size=args.own_size,
                    own_distinct=args.own_distinct, tta_images=args.tta_images)


def cmd_pretrain(args: argparse.Namespace) -> int:
    """A VAE or DCGAN pretrained on unlabelled images (:func:`kandel_repro.pretraining.pretrain.
    pretrain`); status 1 when a non-finite loss stopped it."""
    given = _reader_options(args)
    metrics = pretraining.pretrain(
        args.kind, args.data, args.out, dataset=args.dataset, images=args.images,
        epochs=args.epochs, batch_size=args.batch_size, latent=args.latent, beta=args.beta,
        seed=args.seed, image_size=args.image_size, cache_dir=args.cache, workers=args.workers,
        learning_rate=args.learning_rate, collapse_threshold=args.collapse_threshold,
        **{key: value for key, value in given.items() if value is not None})
    print(json.dumps(metrics, indent=2))
    return 1 if metrics.get("status") == "stopped" else 0


def cmd_judge(args: argparse.Namespace) -> None:
    judging.judge(args.run, backbone=args.backbone, weights=args.weights,
                  first_trainable_block=args.first_block, learning_rate=args.lr,
                  samples=args.samples, epochs=args.epochs, feature_net=args.feature_net,
                  feature_weights=args.feature_weights, out=args.out, seed=args.seed)


HANDLERS = {
    "data synthetic": cmd_synthetic, "data synthetic-breakhis": cmd_synthetic_breakhis,
    "data synthetic-h5": cmd_synthetic_h5, "data synthetic-folder": cmd_synthetic_folder,
    "data elpv": cmd_elpv,
    "data pack": cmd_pack, "data download": cmd_download, "data verify": cmd_verify,
    "validate-submission": cmd_validate_submission, "blocks": cmd_blocks, "train": cmd_train,
    "grid": cmd_grid, "table": cmd_table, "submit": cmd_submit,
    "kaggle-kernel": cmd_kaggle_kernel, "cost": cmd_cost, "bench": cmd_bench,
    "evaluate-search": cmd_evaluate_search, "score-blocks": cmd_score_blocks,
    "export-weights": cmd_export_weights, "similarity": cmd_similarity,
    "predict": cmd_predict, "export": cmd_export,
    "convert-weights": cmd_convert_weights, "explain": cmd_explain, "filters": cmd_filters,
    "pretrain": cmd_pretrain, "judge": cmd_judge,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``kandel-repro ARGV``; its exit status. From the console (no ``argv``), the noise
    TensorFlow's native code prints on start is left out of the standard error."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if argv is None:
        with console.quiet_native_startup():
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
        # NOTE: --max-image-pixels (the verbs that pack) is set in the environment for the
        # command's duration: the spawned decoding processes inherit it
        with pixel_limit(getattr(args, "max_image_pixels", None)):
            return HANDLERS[args.verb](args) or 0
    except KandelError as exc:
        print(f"kandel-repro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kandel-repro: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # NOTE: whoever read the output stopped (`kandel-repro blocks … | head`): what is
        # left goes nowhere, as with any command, not into a traceback; standard output is
        # pointed at the null device so that its flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

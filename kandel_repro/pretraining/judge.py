"""``kandel-repro judge RUN``: can a classifier tell a pretrain run's samples from real images?

The real/fake check of the doctoral plan: :func:`judge` takes n real images of the run's
data set that pretraining never saw (:func:`~kandel_repro.pretraining.pretrain.held_out_images`)
and n images its generator made (:func:`~kandel_repro.pretraining.pretrain.sample_images`), and
:func:`judge_images` does the rest on the two arrays:

1. They are written as a two-class image folder (:mod:`kandel_repro.readers.folder`'s
   layout: ``OUT/images/real/`` and ``OUT/images/generated/``, PNG); the class names sort
   so that ``real`` is the positive class, label 1.
2. A classifier of the backbone registry is fine-tuned on it (:func:`~kandel_repro.runs.
   single.train_single`, the own-data protocol, into ``OUT/classifier/``): transfer
   learning when it starts from ImageNet's weights (or from a file's), and from random
   weights with ``weights="none"`` — which is then not transfer learning, and said so.
   The folder is split 50/25/25 (train/validation/test, stratified), not the protocol's
   80/10/10, so that the AUCs rest on more images.
3. From its test predictions (the folder's test part, never used to pick the best
   epoch; the validation part's are recorded beside them): the AUC of real against generated with DeLong's 95 %
   interval (:func:`~kandel_repro.core.stats.auc_ci`), and the share of generated images
   it takes for real (P(real) > 0.5). The verdict is "told apart" when the interval lies
   above 0.5, else "indistinguishable": an interval that holds 0.5, or one wholly below it
   (worse than chance on images it did not train on: a failure of the classifier, said
   so in the verdict's paragraph, not a way of telling the images apart). With fewer than
   :data:`~kandel_repro.core.assessable.MIN_PER_CLASS` images of a kind in the part judged
   there is no interval and the verdict is "not assessable". Where the part is large
   enough but DeLong's variance is 0 (every real image scored above every generated one,
   or every score alike), no interval of zero width is given either: the verdict then
   rests on the exact one-sided Mann–Whitney test of AUC > 0.5 at 2.5 % (the level at
   which a 95 % interval's lower end lies above 0.5), and its paragraph says so.
4. The Fréchet distance (:func:`~kandel_repro.core.frechet.frechet_distance`) between
   the real and the generated images in the feature space of ``feature_net``: its
   headless output, global-average pooled, on images resized to at least its smallest
   input size and preprocessed as that backbone is. With InceptionV3 and ImageNet's
   weights this is an FID; where the ImageNet file is not in Keras' folder the judge
   refuses (naming the file and the folder) unless ``feature_weights="none"``, and on
   random weights the number is a Fréchet distance and not an FID, as the output says.

Everything lands in ``OUT/judge.json`` (written atomically), with a one-paragraph verdict.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.assessable import NOT_ASSESSABLE, interval_note, too_small
from ..core.errors import ConfigError, DataError, WeightsUnavailable
from ..core.files import check_writable, read_json, write_json
from ..core.frechet import frechet_distance
from ..core.protocol import (FID_NET, JUDGE_EPOCHS as DEFAULT_EPOCHS,
                             JUDGE_MIN_IMAGES as MIN_IMAGES, JUDGE_SAMPLES as DEFAULT_SAMPLES)
from ..core.stats import ZERO_VARIANCE, auc_ci
from ..models.backbones import get_backbone
from ..models.weights import normalise_weights

JUDGE_FILE = "judge.json"
IMAGES = "images"  # OUT/images/{generated,real}/: the two-class folder
CLASSIFIER = "classifier"  # OUT/classifier/: the classifier's run folder
REAL, GENERATED = "real", "generated"  # class folders; sorted, "real" is label 1
VALIDATION_FRACTION = 0.25
TEST_FRACTION = 0.25
FEATURE_BATCH = 64
TAKEN_FOR_REAL = 0.5  # P(real) above this: the classifier says "real"


def check_feature_weights(feature_net: str, feature_weights: str | Path | None,
                          size: int | None = None) -> str:
    """``feature_weights`` in one spelling (:func:`normalise_weights`), refused at once
    when they are ImageNet's and their file (for inputs of ``size``: MobileNet's depends
    on it) is not here (no download is tried)."""
    net = get_backbone(feature_net).name
    weights = normalise_weights(feature_weights)
    if weights == "meanvar":
        raise ConfigError("--feature-weights: imagenet, none or the path of weights; "
                          "meanvar is a way to initialise training, not features")
    if weights == "imagenet":
        path = get_backbone(net).imagenet_weights_file(size)
        if path is None:
            raise WeightsUnavailable(
                f"{net} has no ImageNet weights, so its Fréchet distance cannot be an FID: "
                f"use --feature-net {FID_NET}, or --feature-weights none (random weights, "
                "not an FID)")
        if not path.is_file():
            raise WeightsUnavailable(
                f"no ImageNet weights of the feature net {net} here: put the file "
                f"{path.name} into {path.parent}/ (Keras looks there; set KERAS_HOME to use "
                "another folder), or pass --feature-weights none to compute the Fréchet "
                "distance on random weights (then it is not an FID)")
    return weights


def _check_images(images: Any, what: str) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"the {what} images must be an array of n × height × width × 3, got "
                        f"shape {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"the {what} images must be uint8 (0–255), got {x.dtype}")
    if len(x) < MIN_IMAGES:
        raise DataError(f"{len(x)} {what} images: the judge needs at least {MIN_IMAGES} of "
                        "each kind (ask for more with --samples)")
    return x


def write_image_folder(real: np.ndarray, generated: np.ndarray, folder: str | Path) -> Path:
    """``folder/real/*.png`` and ``folder/generated/*.png``; what an earlier judge wrote
    there (the two class folders, the packed cache) is replaced."""
    from PIL import Image

    folder = Path(folder)
    for name in (REAL, GENERATED, ".kandel_cache"):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name, images in ((REAL, real), (GENERATED, generated)):
        (folder / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / name / f"{name}_{i:05d}.png")
    return folder


def feature_extractor(feature_net: str, weights: str = "imagenet", size: int = 75,
                      seed: int = 0, batch_size: int = FEATURE_BATCH
                      ) -> Callable[[np.ndarray], np.ndarray]:
    """A function from uint8 images (n × H × W × 3) to ``feature_net``'s headless output
    on them, global-average pooled: an (n, channels) array. Images are resized
    (bilinear) to ``size`` × ``size`` and preprocessed as the backbone is; the net is
    built once, random ``weights`` ("none") drawn from ``seed``."""
    import keras
    import tensorflow as tf

    from ..models.build import build_base

    backbone = get_backbone(feature_net)
    keras.utils.set_random_seed(seed)
    base = build_base(backbone.name, (size, size, 3), weights, option="--feature-weights")
    preprocess = backbone.preprocess_input()

    def features(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            batch = tf.image.resize(tf.cast(images[start:start + batch_size], tf.float32),
                                    (size, size), method="bilinear")
            maps = np.asarray(base.predict_on_batch(np.asarray(preprocess(batch))))
            out.append(maps.mean(axis=(1, 2)) if maps.ndim == 4 else maps.reshape(len(maps), -1))
        return np.concatenate(out).astype(np.float64)

    return features


def feature_size_of(feature_net: str, images: np.ndarray, size: int | None = None) -> int:
    """The side images are resized to for ``feature_net``: ``size``, else their own,
    at least the net's smallest input."""
    smallest = get_backbone(feature_net).min_input_size
    if size is not None and size < smallest:
        raise ConfigError(f"{feature_net} takes inputs of at least {smallest}×{smallest}, "
                          f"not {size}")
    return size or max(smallest, *images.shape[1:3])


def _scores(run_dir: Path, split: str, threshold: float | None = None) -> dict | None:
    """AUC, its interval and the shares taken for real on one split's predictions: at
    P(real) > 0.5 and at ``threshold`` (default: Youden's on these predictions, which the
    validation part's sets for the test part)."""
    from ..core.stats import youden_threshold
    from ..runs import rundir

    path = run_dir / (rundir.VAL_PREDICTIONS if split == "val" else rundir.TEST_PREDICTIONS)
    if not path.is_file():
        return None
    ids, _, scores = rundir.read_predictions(path)
    real = np.array([str(i).split("/")[0] == REAL for i in ids])
    scores = np.asarray(scores, dtype=float).reshape(-1)
    auc, lower, upper = auc_ci(real.astype(int), scores)
    if threshold is None:
        threshold = float(youden_threshold(real.astype(int), scores))
    part = "validation" if split == "val" else "test"
    note = interval_note(real.astype(int), [lower, upper], f"the {part} part", ZERO_VARIANCE,
                         [GENERATED, REAL])
    rank_p = None
    if note and not too_small(real.astype(int)):
        from scipy.stats import mannwhitneyu

        rank_p = float(mannwhitneyu(scores[real], scores[~real], alternative="greater",
                                    method="exact").pvalue)
    return {"n_real": int(real.sum()), "n_generated": int((~real).sum()),
            "auc": auc, "auc_ci": [None, None] if note else [lower, upper],
            "auc_ci_not_assessable": note,
            "rank_test_p": rank_p,
            "generated_taken_for_real": float(np.mean(scores[~real] > TAKEN_FOR_REAL)),
            "real_taken_for_real": float(np.mean(scores[real] > TAKEN_FOR_REAL)),
            "youden_threshold": threshold,
            "generated_taken_for_real_at_youden": float(np.mean(scores[~real] >= threshold)),
            "real_taken_for_real_at_youden": float(np.mean(scores[real] >= threshold))}


def _initialisation(weights: str) -> tuple[bool, str]:
    if weights == "imagenet":
        return True, "transfer learning from ImageNet's weights"
    if weights == "none":
        return False, "trained from random weights: not transfer learning"
    return True, f"transfer learning from the weights in {weights}"


def verdict_of(lower: float, upper: float) -> str:
    """"told apart" when the AUC's interval lies above 0.5, else "indistinguishable";
    "not assessable" without an interval (NaN ends: too few images, or none of the
    variance DeLong's interval needs).

    NOTE: one-sided: an interval wholly below 0.5 (worse than chance on images it did not
    train on) is the classifier's failure, not evidence that it tells the images apart."""
    if lower is None or upper is None or not (np.isfinite(lower) and np.isfinite(upper)):
        return NOT_ASSESSABLE
    if not 0 <= lower <= upper <= 1:
        raise ValueError(f"not an AUC interval: [{lower}, {upper}]")
    return "told apart" if lower > 0.5 else "indistinguishable"


def _judged(result: dict) -> tuple[dict, str]:
    """The predictions the verdict rests on: the test part's (never used to choose the
    classifier's best epoch), the validation part's where there is none."""
    return (result["test"], "test") if result.get("test") else (result["validation"],
                                                                 "validation")


def _verdict(result: dict) -> tuple[str, str]:
    val, part = _judged(result)
    lower, upper = val["auc_ci"]
    verdict = verdict_of(lower, upper)
    if verdict == NOT_ASSESSABLE:
        verdict, what = _without_interval(result, val, part)
        return verdict, what + _frechet_words(result)
    same = verdict == "indistinguishable"
    what = (f"A {result['backbone']} classifier ({result['initialisation']}, "
            f"{result['epochs_run']} epoch(s) at lr {result['learning_rate']:g}) "
            f"{'could not tell' if same else 'told'} {result['n_generated']} generated "
            f"images {'from' if same else 'apart from'} "
            f"{result['n_real']} real held-out ones: on its {part} images "
            f"({val['n_real']} real, {val['n_generated']} generated) the AUC of real against "
            f"generated is {val['auc']:.3f} (95 % DeLong interval {lower:.3f}–{upper:.3f}, "
            f"{'which excludes' if lower > 0.5 else 'which holds' if upper >= 0.5 else 'below'}"
            " 0.5), "
            f"and it took {val['generated_taken_for_real']:.0%} of the generated images for "
            f"real at P(real) > 0.5 (and {val['real_taken_for_real']:.0%} of the real ones), "
            f"{val['generated_taken_for_real_at_youden']:.0%} (and "
            f"{val['real_taken_for_real_at_youden']:.0%}) at the validation part's Youden "
            f"threshold {val['youden_threshold']:.3g}.")
    if upper < 0.5:
        what += (" Its AUC is below 0.5: it ranks real and generated images the wrong way "
                 "round on images it did not train on, which says more about the classifier "
                 "(too few images, or near-duplicates across its split) than about the "
                 "images; judge more samples.")
    return verdict, what + _frechet_words(result)


def _frechet_words(result: dict) -> str:
    return (f" The Fréchet distance between the two sets in {result['feature_net']}'s "
            f"feature space ({result['feature_weights_label']}, {result['feature_size']}×"
            f"{result['feature_size']}) is {result['frechet_distance']:.4g}"
            + ("" if result["is_fid"] else ": not an FID") + ".")


RANK_LEVEL = 0.025  # one-sided: the level of a 95 % interval's lower end


def _without_interval(result: dict, val: dict, part: str) -> tuple[str, str]:
    """The verdict and its paragraph where the AUC has no interval: by the exact rank
    test where the part is large enough (DeLong's variance 0), else not assessable."""
    what = (f"A {result['backbone']} classifier ({result['initialisation']}, "
            f"{result['epochs_run']} epoch(s)) scored its {part} images ({val['n_real']} "
            f"real, {val['n_generated']} generated) with an AUC of real against generated of "
            f"{val['auc']:.3f}; ")
    p = val.get("rank_test_p")
    if p is None:
        return NOT_ASSESSABLE, (what + "whether it tells them apart is not assessable: "
                                f"{val.get('auc_ci_not_assessable') or 'no interval'}. Judge "
                                f"more samples (--samples; the {part} part holds a quarter "
                                "of them).")
    verdict = "told apart" if p < RANK_LEVEL else "indistinguishable"
    return verdict, (what + "DeLong's variance is 0 there, so no interval is given, and the "
                     "verdict rests on the exact one-sided Mann–Whitney test of AUC > 0.5: "
                     f"p = {p:.2g}, "
                     f"{'below' if p < RANK_LEVEL else 'not below'} {RANK_LEVEL}. It took "
                     f"{val['generated_taken_for_real']:.0%} of the generated images for real "
                     f"at P(real) > 0.5 (and {val['real_taken_for_real']:.0%} of the real "
                     "ones).")


def judge_images(real_uint8: np.ndarray, fake_uint8: np.ndarray, out_dir: str | Path, *,
                 backbone: str = "vgg16", weights: str | Path | None = "imagenet",
                 first_trainable_block: int | None = None, learning_rate: float = 1e-4,
                 epochs: int = DEFAULT_EPOCHS, feature_net: str = FID_NET,
                 feature_weights: str | Path | None = "imagenet", feature_size: int | None = None,
                 seed: int = 0, batch_size: int | None = None, workers: int | None = None,
                 verbose: int | str = "auto", source: dict | None = None,
                 log: Callable[[str], Any] = print) -> dict:
    """The judge on two uint8 arrays (n × H × W × 3 each, the same H × W): the image
    folder, the classifier, its AUC and share fooled, the Fréchet distance, and
    ``out_dir/judge.json``; returns what that file holds. ``first_trainable_block`` None
    fine-tunes the whole network; ``workers``: image-decoding processes when the folder is
    packed (default: as packing chooses); ``source``: facts of the images' origin,
    recorded."""
    from ..runs.single import train_single

    real = _check_images(real_uint8, REAL)
    generated = _check_images(fake_uint8, GENERATED)
    if real.shape[1:] != generated.shape[1:]:
        raise DataError(f"real images are {real.shape[1]}×{real.shape[2]} and generated ones "
                        f"{generated.shape[1]}×{generated.shape[2]}: the judge compares images "
                        "of one size")
    weights = normalise_weights(weights)
    if weights == "meanvar":
        raise ConfigError("judge --weights: imagenet, none or the path of weights (meanvar "
                          "does not apply)")
    bb = get_backbone(backbone)
    feature_bb = get_backbone(feature_net)
    side = feature_size_of(feature_bb.name, real, feature_size)
    feature_weights = check_feature_weights(feature_bb.name, feature_weights, side)
    if epochs is None or isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"--epochs must be a positive integer, got {epochs!r}")
    out = check_writable(out_dir, "--out")
    image_size = max(bb.min_input_size, *real.shape[1:3])
    log(f"judge: {len(real)} real and {len(generated)} generated {real.shape[1]}×"
        f"{real.shape[2]} images into {out / IMAGES}")
    write_image_folder(real, generated, out / IMAGES)

    first = 1 if first_trainable_block is None else first_trainable_block
    metrics = train_single(out / CLASSIFIER, out / IMAGES, bb.name, first, learning_rate,
                           dataset="folder", weights=weights, max_epochs=epochs, seed=seed,
                           split_seed=seed, image_size=image_size, split="image",
                           validation_fraction=VALIDATION_FRACTION, test_fraction=TEST_FRACTION,
                           batch_size=batch_size, workers=workers, verbose=verbose)
    validation = _scores(out / CLASSIFIER, "val")
    if validation is None:
        raise DataError(f"the classifier in {out / CLASSIFIER} wrote no validation predictions")

    log(f"judge: Fréchet distance in {feature_bb.name}'s features ({feature_weights})")
    extract = feature_extractor(feature_bb.name, feature_weights, side, seed)
    features_real, features_generated = extract(real), extract(generated)
    is_fid = feature_bb.name == FID_NET and feature_weights == "imagenet"
    transfer, initialisation = _initialisation(weights)
    config = read_json(out / CLASSIFIER / "config.json")
    result = {
        **(source or {}),
        "n_real": len(real), "n_generated": len(generated),
        "image_shape": list(real.shape[1:]), "image_size": image_size,
        "backbone": bb.name, "weights": weights, "transfer_learning": transfer,
        "initialisation": initialisation, "first_trainable_block": first,
        "blocks": config.get("blocks"), "learning_rate": float(learning_rate),
        "epochs": epochs, "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"), "batch_size": config.get("batch_size"),
        "seed": seed, "split": {"train": 1 - VALIDATION_FRACTION - TEST_FRACTION,
                                "validation": VALIDATION_FRACTION, "test": TEST_FRACTION},
        "validation": validation,
        "test": _scores(out / CLASSIFIER, "test", validation["youden_threshold"]),
        "taken_for_real_above": TAKEN_FOR_REAL,
        "frechet_distance": frechet_distance(features_real, features_generated),
        "feature_net": feature_bb.name, "feature_weights": feature_weights,
        "feature_weights_label": {"imagenet": "ImageNet weights",
                                  "none": "random weights"}.get(feature_weights,
                                                                f"weights {feature_weights}"),
        "feature_size": side,
        "feature_dimensions": int(features_real.shape[1]),
        "is_fid": is_fid,
        "frechet_note": (
            f"an FID: InceptionV3 (Keras' ImageNet weights), pooled features, at {side} px and "
            f"{len(real)} + {len(generated)} images; published FIDs use 299 px, the original "
            "TensorFlow graph and 50,000 samples, so compare only numbers made the same way"
            if is_fid else
            f"not an FID: a Fréchet distance in the feature space of {feature_bb.name} with "
            f"{'random weights' if feature_weights == 'none' else 'weights ' + feature_weights}"
            "; compare it only with numbers made the same way"),
        "images": str(out / IMAGES), "classifier_run": str(out / CLASSIFIER),
    }
    result["verdict"], result["summary"] = _verdict(result)
    judged, _ = _judged(result)
    if judged.get("auc_ci_not_assessable") and judged.get("rank_test_p") is None:
        log(f"judge: warning: {judged['auc_ci_not_assessable']}")
    write_json(out / JUDGE_FILE, result)
    log(_short(result, out))
    return result


def _short(result: dict, out: Path) -> str:
    val, part = _judged(result)
    lower, upper = val["auc_ci"]
    interval = (f"[{lower:.3f}, {upper:.3f}]" if verdict_of(lower, upper) != NOT_ASSESSABLE
                else f"(exact rank test p = {val['rank_test_p']:.2g})"
                if val.get("rank_test_p") is not None else "[not assessable]")
    lines = [f"judge: {result['verdict']} — AUC {val['auc']:.3f} "
             f"{interval} on {val['n_real']} real + "
             f"{val['n_generated']} generated {part} images; "
             f"{val['generated_taken_for_real']:.0%} of generated taken for real at P > 0.5, "
             f"{val['generated_taken_for_real_at_youden']:.0%} at the validation's Youden "
             f"threshold ({val['real_taken_for_real_at_youden']:.0%} of real)",
             f"  classifier: {result['backbone']}, {result['initialisation']}",
             f"  Fréchet distance ({result['feature_net']}, {result['feature_weights_label']}): "
             f"{result['frechet_distance']:.4g}" + ("" if result["is_fid"] else
                                                     " — NOT an FID"),
             f"  wrote {out / JUDGE_FILE}"]
    return "\n".join(lines)


def judge(run_dir: str | Path, *, backbone: str = "vgg16", weights: str | Path | None = "imagenet",
          first_trainable_block: int | None = None, learning_rate: float = 1e-4,
          samples: int = DEFAULT_SAMPLES, epochs: int = DEFAULT_EPOCHS,
          feature_net: str = FID_NET, feature_weights: str | Path | None = "imagenet",
          out: str | Path | None = None, seed: int = 0, batch_size: int | None = None,
          workers: int | None = None, verbose: int | str = "auto",
          log: Callable[[str], Any] = print) -> dict:
    """``kandel-repro judge RUN``: :func:`judge_images` on ``samples`` real held-out
    images of the pretrain run's data set and as many of its generated ones, into
    ``out`` (default ``RUN/judge/``). ``batch_size`` (default: the protocol's 64) and
    ``workers`` go to the classifier's training."""
    from .pretrain import held_out_images, pretrain_config, sample_images

    run_dir = Path(run_dir)
    config = pretrain_config(run_dir)  # refuses a folder that is no finished pretrain run
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < MIN_IMAGES:
        raise ConfigError(f"--samples must be an integer of at least {MIN_IMAGES}, got "
                          f"{samples!r}")
    get_backbone(backbone)
    check_feature_weights(feature_net, feature_weights)  # before any image is made
    real = held_out_images(run_dir, samples, seed=seed)
    if len(real) < MIN_IMAGES:  # (--samples cannot help: the data set is the limit)
        raise DataError(f"the data set of {run_dir} holds {len(real)} held-out image(s) (the "
                        f"validation and test images pretraining did not see), fewer than the "
                        f"{MIN_IMAGES} of each kind the judge needs: judge a pretrain run of a "
                        "larger data set")
    if len(real) < samples:
        log(f"judge: the data set holds {len(real)} held-out images, not {samples}: using "
            f"{len(real)} of each kind")
    generated = sample_images(run_dir, len(real), seed=seed)
    source = {"source_run": str(run_dir.resolve()), "kind": config.get("kind"),
              "dataset": config.get("dataset"), "synthetic": config.get("synthetic"),
              "samples": samples}
    return judge_images(real, generated, Path(out) if out else run_dir / "judge",
                        backbone=backbone, weights=weights,
                        first_trainable_block=first_trainable_block,
                        learning_rate=learning_rate, epochs=epochs, feature_net=feature_net,
                        feature_weights=feature_weights, seed=seed, batch_size=batch_size,
                        workers=workers, verbose=verbose, source=source, log=log)

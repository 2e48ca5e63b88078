"""``kandel-repro score-blocks``: how transferable each block's features are, before any
training. The frozen backbone (its ``--weights``) runs once over the training and
validation splits a run would use; each block's output, averaged over its positions, is
scored with LogME and the H-score on the training split
(:mod:`kandel_repro.measure.transferability`) and with a linear probe (logistic regression
on the standardised features) scored by its validation AUC. The scores come with their
cost: the seconds spent, beside one whole-network training epoch's (its steps timed as
``kandel-repro cost`` times them, × the steps an epoch takes).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.files import check_writable, write_csv, write_text
from ..models.backbones import get_backbone
from ..models.build import build_base
from ..readers.registry import get_reader
from ..runs.config import resolve_config, with_data
from ..runs.settings import UserSettings
from .cost import depth_costs
from .transferability import h_score, logme


def block_features(model, block_map, preprocess, x, indices, batch_size=64):
    """``{block: pooled features (n × channels)}`` of the images ``x[indices]``."""
    import keras

    names = {block: layers[-1] for block, layers in block_map.items()}
    extractor = keras.Model(model.inputs, [model.get_layer(n).output for n in names.values()])
    parts = {block: [] for block in names}
    for start in range(0, len(indices), batch_size):
        batch = preprocess(x[indices[start:start + batch_size]].astype("float32"))
        for block, out in zip(names, extractor.predict(batch, verbose=0)):
            out = np.asarray(out)
            parts[block].append(out.mean(axis=(1, 2)) if out.ndim == 4 else out)
    return {block: np.concatenate(chunks) for block, chunks in parts.items()}


def probe_auc(train, train_y, val, val_y) -> float:
    """A linear probe's validation ROC AUC (macro one-vs-rest for k ≥ 3)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(train), train_y)
    scores = probe.predict_proba(scaler.transform(val))
    if scores.shape[1] == 2:
        return float(roc_auc_score(val_y, scores[:, 1]))
    return float(roc_auc_score(val_y, scores, multi_class="ovr", average="macro"))


def score_blocks(backbone: str, data: str | Path, dataset: str = "folder",
                 weights: str = "imagenet", image_size: int | None = None,
                 log: Callable[[str], None] = print, **reader_options):
    """``(scores, facts)``: one row per block (``block``, ``channels``, ``logme``,
    ``h_score``, ``probe_val_auc``) and what it cost (``seconds``, ``epoch_seconds``)."""
    import pandas as pd

    started = time.perf_counter()
    bb = get_backbone(backbone)
    reader = get_reader(dataset)
    config = resolve_config(bb.name, 1, 1e-4, protocol=reader.protocol,
                            **UserSettings(weights=weights, image_size=image_size,
                                           **reader_options))
    reader.check_config(config)
    packed = reader.load(data, image_size=config.image_size, progress=False,
                         **reader.options_of(config))
    config = with_data(config, packed, data)
    train, val, _ = packed.split(config)
    model = build_base(bb.name, packed.image_shape, weights)
    block_map = bb.assign_blocks(model.layers)
    preprocess = bb.preprocess_input()
    features = block_features(model, block_map, preprocess, packed.x, train)
    val_features = block_features(model, block_map, preprocess, packed.x, val)
    train_y, val_y = packed.y[train], packed.y[val]
    rows = []
    for block in sorted(features):
        f = features[block]
        rows.append({"block": block, "channels": f.shape[1], "logme": logme(f, train_y),
                     "h_score": h_score(f, train_y),
                     "probe_val_auc": probe_auc(f, train_y, val_features[block], val_y)})
        log(f"{bb.name} block {block}: LogME {rows[-1]['logme']:.4f}, H-score "
            f"{rows[-1]['h_score']:.4f}, probe AUC {rows[-1]['probe_val_auc']:.4f}")
    seconds = time.perf_counter() - started
    step = depth_costs(bb.name, packed.image_shape[0], config["batch_size"], steps=3, warm=1,
                       first_blocks=[1], weights="none")["seconds_per_step"].iloc[0]
    epoch = float(step * np.ceil(len(train) / config["batch_size"]))
    facts = {"backbone": bb.name, "weights": config["weights"], "image_size":
             packed.image_shape[0], "n_train": len(train), "n_val": len(val),
             "seconds": seconds, "epoch_seconds": epoch}
    return pd.DataFrame(rows), facts


def write_block_scores(backbone: str, data: str | Path, out_dir: str | Path = "tables",
                       dataset: str = "folder", weights: str = "imagenet",
                       image_size: int | None = None, log: Callable[[str], None] = print,
                       **reader_options) -> list[Path]:
    """``<backbone>_block_scores.csv``, ``.md`` and ``.png`` in ``out_dir``."""
    scores, facts = score_blocks(backbone, data, dataset, weights, image_size, log,
                                 **reader_options)
    out_dir = check_writable(out_dir, "--out")
    stem = out_dir / f"{facts['backbone']}_block_scores"
    write_csv(stem.with_suffix(".csv"), scores)
    lines = [f"# Block scores before training — {facts['backbone']} ({facts['weights']} "
             f"weights), {facts['image_size']}×{facts['image_size']}", "",
             f"- {facts['n_train']:,} training / {facts['n_val']:,} validation images of "
             f"`{data}`; each block's output averaged over its positions",
             f"- Cost: {facts['seconds']:.0f} s in all, against about "
             f"{facts['epoch_seconds']:.0f} s for one whole-network training epoch here",
             "- LogME (You et al. 2021) and H-score (Bao et al. 2019) on the training split; "
             "the probe: logistic regression, its validation ROC AUC", "",
             "| block | channels | LogME | H-score | probe AUC |", "|---|---|---|---|---|"]
    lines += [f"| {r.block} | {r.channels} | {r.logme:.4f} | {r.h_score:.4f} | "
              f"{r.probe_val_auc:.4f} |" for r in scores.itertuples()]
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    _figure(scores, stem.with_suffix(".png"), facts)
    written = [stem.with_suffix(s) for s in (".md", ".csv", ".png")]
    for path in written:
        log(f"wrote {path}")
    return written


def _figure(scores, path, facts):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (column, label) in zip(axes, (("logme", "LogME"), ("h_score", "H-score"),
                                          ("probe_val_auc", "linear probe, validation AUC"))):
        ax.plot(scores["block"], scores[column], marker="o")
        ax.set_xlabel("block (1: nearest the input)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    figure.suptitle(f"{facts['backbone']}: each block's features before training "
                    f"({facts['seconds']:.0f} s; one epoch ≈ {facts['epoch_seconds']:.0f} s)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

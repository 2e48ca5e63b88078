"""The documentation's reference pages, written from the code so that they cannot drift.

Each page is a function that returns its Markdown, read from where the facts are defined:

- ``reference/cli.md``: every ``kandel-repro`` verb and its options, from the argparse
  parser the command itself parses with (:func:`kandel_repro.cli.options.build_parser`);
- ``reference/backbones.md``: every backbone of :data:`kandel_repro.models.backbones.REGISTRY`
  with its blocks, convolutions, minimum input size, preprocessing and weights file;
- ``reference/studies.md``: every study of :data:`kandel_repro.studies.registry.STUDIES`
  with its data set, rows, columns, fixed settings and findings;
- ``reference/protocol.md``: the protocols' values (:data:`kandel_repro.core.protocol.PROTOCOLS`)
  with where each comes from (``SOURCES``, ``BREAKHIS_SOURCES``, ``OWN_SOURCES``);
- ``reference/run-folder.md``: the files of a run folder, from the docstring of
  :mod:`kandel_repro.runs.rundir` and its file-name constants.

``mkdocs build`` runs this script through the ``gen-files`` plugin (mkdocs.yml), which
keeps the pages in memory: they are never written into ``docs/``, so there is nothing
generated to commit or to fall out of date. ``python docs/gen_reference.py DIR`` writes
them into ``DIR`` to read them without building the site; tests/docs/ imports
:data:`PAGES` and checks that they name every verb, backbone and study.

Importing the script loads no TensorFlow: the registries and the parser are plain data.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from kandel_repro.cli.options import build_parser
from kandel_repro.core import protocol
from kandel_repro.models.backbones import REGISTRY
from kandel_repro.runs import rundir
from kandel_repro.studies.registry import STUDIES

GENERATED = ("*Generated from the code by `docs/gen_reference.py` each time the site is "
             "built; edit the code, not this page.*")


def _cell(text: object) -> str:
    """``text`` made safe for one cell of a Markdown table (no newline, no bare bar)."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _prose(text: object) -> str:
    """Plain text (argparse's help and descriptions) as Markdown that shows it as written:
    brackets, stars and underscores escaped, so ``gradcam[_LAYER].png`` is no link."""
    text = _cell(text)
    for char in "[]*_":
        text = text.replace(char, "\\" + char)
    return text


# --- the command line -----------------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The verbs a parser offers, by name, in the order they were added."""
    # NOTE: argparse keeps its subparsers in a private action list; reading it is the only
    # way to walk them (sphinx-argparse and mkdocs-click's argparse cousins do the same).
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def verbs(parser: argparse.ArgumentParser | None = None,
          prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every verb of ``kandel-repro`` (``"data pack"`` for a nested one) with its parser,
    the nested verbs in place of the group that holds them."""
    parser = parser or build_parser()
    for name, sub in _subcommands(parser).items():
        full = f"{prefix}{name}"
        nested = _subcommands(sub)
        if nested:
            yield from verbs(sub, f"{full} ")
        else:
            yield full, sub


def _verb_help(parser: argparse.ArgumentParser, name: str) -> str:
    """The one-line help its parent gave the verb (``add_parser(help=…)``)."""
    *parents, last = name.split()
    node = parser
    for part in parents:
        node = _subcommands(node)[part]
    for action in node._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for choice in action._choices_actions:  # noqa: SLF001
                if choice.dest == last:
                    return choice.help or ""
    return ""


def _option_row(action: argparse.Action) -> str:
    """One table row: the option's spellings (or the argument's name), what it takes,
    its default and its help."""
    if action.option_strings:
        name = ", ".join(f"`{s}`" for s in action.option_strings)
    else:
        name = f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        takes = ""
    elif action.choices is not None:
        takes = ", ".join(f"`{c}`" for c in action.choices)
    else:
        metavar = action.metavar or action.dest.upper()
        takes = f"`{' '.join(metavar) if isinstance(metavar, tuple) else metavar}`"
    if action.required and action.option_strings:
        takes = f"{takes} (required)".strip()
    default = "" if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0 \
        else f"`{action.default}`"
    return f"| {name} | {_cell(takes)} | {_cell(default)} | {_prose(action.help or '')} |"


def cli_page() -> str:
    """Every verb of ``kandel-repro`` with its usage and a table of its options."""
    parser = build_parser()
    found = list(verbs(parser))
    lines = ["# Command line", "", GENERATED, "",
             f"`kandel-repro` ({_prose(parser.description)}) has {len(found)} verbs. Each "
             "option's default is the paper's protocol unless the table says otherwise; "
             "`kandel-repro VERB --help` prints the same.", "",
             "| verb | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name.replace(' ', '-')}) | {_prose(_verb_help(parser, name))} |"
              for name, _ in found]
    for name, sub in found:
        usage = " ".join(sub.format_usage().split())
        usage = usage.removeprefix("usage: ")
        lines += ["", f"## {name} {{ #{name.replace(' ', '-')} }}", "",
                  _prose(_verb_help(parser, name)), ""]
        if sub.description:
            lines += [_prose(sub.description), ""]
        lines += ["```text", usage, "```", ""]
        groups = [(g.title, [a for a in g._group_actions  # noqa: SLF001
                             if a.help != argparse.SUPPRESS and a.dest != "help"])
                  for g in sub._action_groups]  # noqa: SLF001
        for title, actions in groups:
            if not actions:
                continue
            lines += [f"**{title[0].upper()}{title[1:]}**", "",
                      "| option | takes | default | what it does |", "|---|---|---|---|"]
            lines += [_option_row(a) for a in actions]
            lines.append("")
    return "\n".join(lines) + "\n"


# --- backbones ----------------------------------------------------------------------------

def _preprocessing(backbone) -> str:
    """How a backbone's inputs are scaled, in words."""
    if backbone.module is not None:
        return f"`keras.applications.{backbone.module}.preprocess_input`"
    if backbone.preprocess is None:
        return "x / 255 (to [0, 1])"
    name = getattr(backbone.preprocess, "__name__", "")
    return {"scale_to_symmetric": "x / 127.5 − 1 (to [−1, 1])",
            "scale_to_unit": "x / 255 (to [0, 1])"}.get(
        name, f"`{backbone.preprocess.__module__}.{name}`")


def _weights(backbone) -> str:
    """Where a backbone's pretrained weights come from."""
    if backbone.converted_from:
        return (f"`{backbone.notop_weights_file}`, converted from {backbone.converted_from} "
                "by `kandel-repro convert-weights`")
    if backbone.notop_weights_file is None:
        return "none (train from scratch, or from weights a run made: `--weights PATH`)"
    if backbone.sized_weights:
        template, sizes = backbone.sized_weights
        return (f"`{template}` for size in {', '.join(map(str, sizes))} "
                f"(`{backbone.notop_weights_file}` at other sizes)")
    return f"`{backbone.notop_weights_file}`"


def backbones_page() -> str:
    """Every backbone of the registry: blocks, convolutions, minimum size, weights."""
    lines = ["# Backbones", "", GENERATED, "",
             f"{len(REGISTRY)} backbones, by the name `--backbone` takes (any spelling of "
             "the Keras constructor works too: `ResNet50V2`, `resnet50v2`). A *block* is "
             "the unit `--first-block k` fine-tunes from (blocks k … top trainable, "
             "everything below frozen); `kandel-repro blocks NAME` prints the layers of "
             "each block, `--layers` the convolutions `--first-layer` counts. Each "
             "backbone's ImageNet file lies in `~/.keras/models/` (or "
             "`$KERAS_HOME/models/`).", "",
             "| backbone | Keras class | blocks | convolutions | convolutions per block "
             "| minimum input | preprocessing | ImageNet weights file |",
             "|---|---|---|---|---|---|---|---|"]
    for name, b in REGISTRY.items():
        per_block = ", ".join(map(str, b.block_layers)) if b.block_layers else ""
        lines.append(f"| `{name}` | `{b.application}` | {b.num_blocks} | {b.num_layers} | "
                     f"{per_block} | {b.min_input_size}×{b.min_input_size} | "
                     f"{_cell(_preprocessing(b))} | {_cell(_weights(b))} |")
    return "\n".join(lines) + "\n"


# --- studies ---------------------------------------------------------------------------------

def _settings(settings) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in settings.items())


def studies_page() -> str:
    """Every study of the registry: its data set, rows, columns, settings and findings."""
    lines = ["# Studies", "", GENERATED, "",
             f"{len(STUDIES)} studies, each trained by `kandel-repro grid STUDY` and "
             "rendered by `kandel-repro table STUDY`. The paper's tables quote the paper's "
             "findings, and each table gives every finding a verdict computed from its "
             "runs; a study beyond the paper asks questions instead.", "",
             "| study | title | data set | rows × columns | runs per seed |",
             "|---|---|---|---|---|"]
    for name, s in STUDIES.items():
        lines.append(f"| [`{name}`](#{name}) | {_cell(s.title)} | `{s.dataset}` | "
                     f"{len(s.rows)} × {len(s.columns)} | {len(s.cells())} |")
    for name, s in STUDIES.items():
        lines += ["", f"## {name} {{ #{name} }}", "", f"**{_cell(s.title)}**", "",
                  f"- data set: `{s.dataset}` (protocol `{s.protocol}`)"
                  + ("; `--backbone` and `--dataset` choose others" if s.parametric else ""),
                  f"- rows ({_cell(s.row_header)}): "
                  + ", ".join(_cell(level.label) for level in s.rows),
                  f"- columns ({_cell(s.column_header)}): "
                  + ", ".join(_cell(level.label) for level in s.columns),
                  f"- figures: {', '.join(f'`{f}`' for f in s.figures)}"]
        if s.fixed:
            lines.append(f"- every run: {_settings(s.fixed)}")
        if s.note:
            lines += ["", _cell(s.note)]
        if s.findings:
            kind = "the paper's findings" if s.paper else "the questions its table answers"
            lines += ["", f"{kind[0].upper()}{kind[1:]}:", ""]
            lines += [f"{i}. {_cell(f.text)}"
                      + ("" if f.claim else " *(not assessable from one grid)*")
                      for i, f in enumerate(s.findings, 1)]
    return "\n".join(lines) + "\n"


# --- the protocol ------------------------------------------------------------------------------

def _value(value) -> str:
    if dataclasses.is_dataclass(value):
        return ", ".join(f"{f.name}={getattr(value, f.name)}"
                         for f in dataclasses.fields(value))
    return str(value)


def protocol_page() -> str:
    """The value of every protocol setting on each data set, with where it comes from."""
    names = list(protocol.PROTOCOLS)
    lines = ["# Protocol", "", GENERATED, "",
             "Every setting of a run comes from its data set's protocol "
             "(`kandel_repro/core/protocol.py`) unless an option overrides it; a table "
             "prints every difference from the protocol in its header. `pcam` is the "
             "paper's §4.1 (Tables 2–5), `breakhis` its §4.3 (Tables 6–8), `own` the "
             "protocol of your own data (`--dataset folder` or `csv`).", "",
             f"The learning rates of every table: {', '.join(map(str, protocol.LEARNING_RATES))} "
             f"({_cell(protocol.SOURCES['learning_rates'])}).", "",
             "| setting | " + " | ".join(f"`{n}`" for n in names) + " | source |",
             "|---|" + "---|" * len(names) + "---|"]
    fields: dict[str, None] = {}
    for p in protocol.PROTOCOLS.values():
        fields.update(dict.fromkeys(f.name for f in dataclasses.fields(p)))
    for field in fields:
        values = [_value(getattr(p, field)) if hasattr(p, field) else "—"
                  for p in protocol.PROTOCOLS.values()]
        # NOTE: the PCam source first, then each protocol whose value has its own source.
        base = protocol.source_of(field, names[0])
        others = [f"*{n}*: {protocol.source_of(field, n)}" for n in names[1:]
                  if protocol.source_of(field, n) not in ("", base)]
        source = "; ".join(part for part in (base, *others) if part)
        lines.append(f"| `{field}` | " + " | ".join(f"`{_cell(v)}`" for v in values)
                     + f" | {_cell(source)} |")
    lines += ["", "## Other fixed values", "",
              "| name | value |", "|---|---|",
              f"| `NOT_CONVERGED_BELOW_AUC` (Table 5's \"did not converge\") | "
              f"{protocol.NOT_CONVERGED_BELOW_AUC} |",
              f"| `JUDGE_SAMPLES` (real images the judge draws) | {protocol.JUDGE_SAMPLES} |",
              f"| `JUDGE_EPOCHS` (the judge's classifier) | {protocol.JUDGE_EPOCHS} |",
              f"| `FID_NET` (the FID's feature network) | `{protocol.FID_NET}` |"]
    return "\n".join(lines) + "\n"


# --- the run folder -----------------------------------------------------------------------------

def run_folder_files() -> list[str]:
    """Every file name a run folder may hold, from :mod:`kandel_repro.runs.rundir`."""
    names = [*rundir.ARTEFACTS, rundir.TENSORBOARD + "/", *rundir.EXPLANATIONS]
    return list(dict.fromkeys(names))


def run_folder_page() -> str:
    """The run folder's files: the module's own description, and every name it writes."""
    doc = rundir.__doc__ or ""
    lines = ["# The run folder", "", GENERATED, "",
             "What `kandel_repro/runs/rundir.py` says of the folder of one run (one cell "
             "of a study, one seed):", "", "```text", doc.strip(), "```", "",
             "Every file the package writes into a run folder, as the module names "
             "them (a run that starts again clears them first; `explain` and `filters` "
             "add theirs):", ""]
    lines += [f"- `{name}`" for name in run_folder_files()]
    return "\n".join(lines) + "\n"


PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/backbones.md": backbones_page,
    "reference/studies.md": studies_page,
    "reference/protocol.md": protocol_page,
    "reference/run-folder.md": run_folder_page,
}


def write_pages(open_file: Callable) -> None:
    """Write every page through ``open_file(path, mode)`` (the gen-files plugin's, or
    :func:`open` under a folder)."""
    for path, page in PAGES.items():
        with open_file(path, "w") as f:
            f.write(page())


if __name__ == "<run_path>":  # run by mkdocs' gen-files plugin (runpy.run_path)
    import mkdocs_gen_files

    write_pages(mkdocs_gen_files.open)
elif __name__ == "__main__":  # python docs/gen_reference.py DIR
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "site-reference")

    def _open(path, mode):
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        return open(out / path, mode, encoding="utf-8")

    write_pages(_open)
    print(f"wrote {len(PAGES)} pages into {out}/")

"""The documentation's generated reference (docs/gen_reference.py) names everything the
code defines, and the docstrings' Sphinx roles and examples render as Markdown."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from kandel_repro.core.protocol import PROTOCOLS
from kandel_repro.models.backbones import REGISTRY
from kandel_repro.runs import rundir
from kandel_repro.studies.registry import STUDIES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _load(name):
    """A script of docs/ as a module (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    return _load("gen_reference")


@pytest.fixture(scope="module")
def pages(reference):
    return {path: page() for path, page in reference.PAGES.items()}


def test_cli_page_names_every_verb_and_option(reference, pages):
    verbs = dict(reference.verbs())
    # the nested verbs are there, each under its group
    assert {"grid", "table", "train", "data pack", "data synthetic", "blocks"} <= set(verbs)
    page = pages["reference/cli.md"]
    for name, parser in verbs.items():
        assert f"## {name} {{ #{name.replace(' ', '-')} }}" in page
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:  # a hidden spelling, kept for old scripts
                continue
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in page, (name, option)


def test_backbones_page_names_every_backbone_with_its_facts(pages):
    page = pages["reference/backbones.md"]
    rows = {line.split("|")[1].strip(): line for line in page.splitlines()
            if line.startswith("| `")}
    assert set(rows) == {f"`{name}`" for name in REGISTRY}
    for name, backbone in REGISTRY.items():
        cells = [cell.strip() for cell in rows[f"`{name}`"].split("|")]
        assert cells[3] == str(backbone.num_blocks)
        assert cells[6] == f"{backbone.min_input_size}×{backbone.min_input_size}"
        if backbone.notop_weights_file:
            assert backbone.notop_weights_file in cells[8]


def test_studies_page_names_every_study_with_its_rows_and_findings(pages):
    page = pages["reference/studies.md"]
    for name, study in STUDIES.items():
        assert f"## {name} {{ #{name} }}" in page
        section = page.split(f"## {name} {{ #{name} }}")[1].split("\n## ")[0]
        for level in study.rows + study.columns:
            assert level.label.replace("<", "&lt;") in section, (name, level.label)
        for finding in study.findings:
            assert " ".join(finding.text.split())[:40] in section, (name, finding.text)


def test_protocol_page_gives_every_setting_with_its_source(pages):
    page = pages["reference/protocol.md"]
    for protocol in PROTOCOLS.values():
        for field in dataclasses.fields(protocol):
            assert f"| `{field.name}` |" in page
    assert "paper §4.1: batch size 64" in page
    assert "*breakhis*: paper §4.3: early stopping increased to 50 epochs" in page


def test_run_folder_page_names_every_file(pages):
    page = pages["reference/run-folder.md"]
    for name in rundir.ARTEFACTS + rundir.EXPLANATIONS:
        assert f"- `{name}`" in page


def test_argparse_text_is_escaped_not_read_as_markdown(reference):
    """Help text such as gradcam[_LAYER][_test].png stays text: no link, no emphasis."""
    assert reference._prose("gradcam[_LAYER][_test].png <id>") == \
        "gradcam\\[\\_LAYER\\]\\[\\_test\\].png &lt;id&gt;"


def test_pages_are_written_through_the_given_opener(reference, tmp_path):
    def opener(path, mode):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        return open(tmp_path / path, mode, encoding="utf-8")

    reference.write_pages(opener)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.md"))
    assert written == sorted(reference.PAGES)
    assert (tmp_path / "reference/studies.md").read_text(encoding="utf-8") == \
        reference.studies_page()


def test_docstring_roles_and_examples_become_markdown():
    roles = _load("griffe_roles")
    assert roles.plain_roles("see :func:`build_parser` and :mod:`~kandel_repro.runs`") == \
        "see `build_parser` and `kandel_repro.runs`"
    text = 'Its map.\n\n>>> kr.block_map("vgg16")[5][:2]\n[\'block5_conv1\']\n\nMore.'
    assert roles.fence_examples(text) == (
        'Its map.\n\n```python\n>>> kr.block_map("vgg16")[5][:2]\n[\'block5_conv1\']\n```'
        '\n\nMore.')


def test_generating_the_reference_loads_no_tensorflow():
    """The docs build in seconds because the registries and the parser are plain data
    (checked in a fresh interpreter: another test of this process may have loaded it)."""
    code = ("import runpy, sys; ref = runpy.run_path(sys.argv[1], run_name='reference'); "
            "[page() for page in ref['PAGES'].values()]; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(DOCS / "gen_reference.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

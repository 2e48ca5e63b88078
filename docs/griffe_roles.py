"""A griffe extension: the package's docstrings as Markdown that mkdocstrings can render.

The docstrings are prose written with Sphinx's inline roles (``:func:`build_parser```,
``:mod:`kandel_repro.runs.rundir```), reStructuredText's double backticks and doctest
examples (``>>> kr.block_map("vgg16")[5]``). Double backticks are already a code span in
Markdown; a role is not, and would print as ":func:" before the name, and an example's
``[5][:2]`` would read as a Markdown link. :class:`SphinxRoles` rewrites each role to a
code span of its target and fences each example as Python code, as the docstrings are
loaded (mkdocs.yml names it under mkdocstrings' options).
"""
from __future__ import annotations

import re
from typing import Any

import griffe

# :func:`name`, :mod:`~a.b`, :data:`X` …: the role's target, without the leading "~".
ROLE = re.compile(r":(?:py:)?(?:func|meth|mod|class|data|attr|exc|obj|const|ref|term):"
                  r"`~?([^`]+)`")


def plain_roles(text: str) -> str:
    """``text`` with every Sphinx role written as a Markdown code span of its target."""
    return ROLE.sub(r"`\1`", text)


def fence_examples(text: str) -> str:
    """``text`` with each doctest example (its ``>>>`` lines and their output, up to a
    blank line) inside a fenced Python block, so that Markdown shows it as written."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if not inside and line.lstrip().startswith(">>>"):
            out.append("```python")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles and doctest examples of every docstring griffe loads
    (:func:`plain_roles`, :func:`fence_examples`)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_examples(plain_roles(obj.docstring.value))

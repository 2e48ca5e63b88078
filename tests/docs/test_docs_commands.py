"""Every command the README, CONTRIBUTING and the documentation show works as written: each
``kandel-repro …`` line of their code blocks is accepted by the command's own parser, and
each ``make TARGET`` names a target of the Makefile."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from kandel_repro.cli.options import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```+|~~~+)\s*(\w*)")
SHELL = {"bash", "sh", "shell", "console"}  # the code blocks that hold commands
# Words that end one shell command and start the next on the same line.
SEPARATORS = {"&&", "||", ";", "|", "&"}
# $VAR-style placeholders a page may use, and what a reader would put there.
PLACEHOLDERS = {"$DATA": "data/pcam", "$RUNS": "runs", "$RUN": "runs/table2/run"}


def code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines inside the shell code blocks of a Markdown page (```` ```bash ````), with
    their numbers, a line ending in a backslash joined to the next (as the shell joins
    them). Blocks of other languages show layouts and output, not commands."""
    lines, inside, shell, pending, start = [], False, False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence:
            inside = not inside
            shell = inside and fence.group(2) in SHELL
            continue
        if not shell:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    return lines


def commands(program: str) -> list[tuple[str, list[str]]]:
    """Every ``program …`` command of the pages' code blocks: (where, its arguments)."""
    found = []
    for path in PAGES:
        for number, line in code_lines(path):
            for name, value in PLACEHOLDERS.items():
                line = line.replace(name, value)
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not shell (a data layout, a table): no command there
                continue
            command: list[str] | None = None
            for word in [*words, ";"]:
                if word in SEPARATORS:
                    if command is not None:
                        found.append((f"{path.relative_to(ROOT)}:{number}", command))
                    command = None
                elif command is not None:
                    command.append(word)
                elif word == program:
                    command = []
    return found


KANDEL = commands("kandel-repro")
MAKE = commands("make")


def test_the_pages_show_commands_of_both_kinds():
    """The extraction finds what the pages hold (a broken pattern would pass vacuously)."""
    assert len(KANDEL) >= 40
    assert len(MAKE) >= 30
    assert any(where.startswith("README.md") for where, _ in KANDEL)


@pytest.mark.parametrize("where,args", KANDEL, ids=[w for w, _ in KANDEL])
def test_every_kandel_repro_command_parses(where, args, capsys):
    parser = build_parser()
    try:
        if "--" in args:  # kaggle-kernel passes what follows to the kernel's grid (cli.main)
            args, grid = args[:args.index("--")], args[args.index("--") + 1:]
            assert args[0] == "kaggle-kernel", f"{where}: only kaggle-kernel passes options on"
            parser.parse_args(["grid", args[1], "--data", "data", "--runs", "runs", *grid])
        parser.parse_args(args)
    except SystemExit as exit_:  # --help prints and exits 0; an error exits 2
        message = capsys.readouterr().err.strip().splitlines()[-1:]
        assert exit_.code == 0, f"{where}: kandel-repro {shlex.join(args)}: {message}"


def makefile_targets() -> set[str]:
    """The Makefile's targets, as make itself reads them (variables expanded)."""
    database = subprocess.run(["make", "-pRrq", "-f", "Makefile", ":"], cwd=ROOT,
                              capture_output=True, text=True).stdout
    targets = set()
    for line in database.splitlines():
        match = re.match(r"^([a-zA-Z0-9][^$#/\t=]*):([^=]|$)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def test_every_make_target_exists():
    targets = makefile_targets()
    assert {"test", "docs", "demo", "table2"} <= targets
    missing = [f"{where}: make {' '.join(args)}" for where, args in MAKE
               for word in args if not word.startswith("-") and "=" not in word
               and word not in targets]
    assert not missing, "targets the Makefile lacks:\n" + "\n".join(missing)

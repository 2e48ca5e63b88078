"""The package's shape holds to its limits (CONTRIBUTING, "Layers"): no import cycle, the
longest import chain (imports inside functions counted) at most 10 modules, no private
name imported from another module, no module over 500 lines, no subpackage over 3,000.
The measuring code (tests/structure.py) is tested on small packages written here."""
import textwrap

import structure


def _package(tmp_path, modules):
    """A package ``pkg`` under ``tmp_path`` with ``{relative path: source}``."""
    root = tmp_path / "pkg"
    for relative, source in {"__init__.py": "", **modules}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != root and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(textwrap.dedent(source))
    return root


def test_the_package_has_no_import_cycle():
    assert structure.import_graph().cycles() == []


def test_the_longest_import_chain_is_at_most_ten_modules():
    chain = structure.import_graph().longest_chain()
    assert len(chain) <= structure.MAX_CHAIN, " → ".join(chain)


def test_no_private_name_is_imported_from_another_module():
    assert structure.import_graph().private == []


def test_no_module_is_over_500_lines_and_no_subpackage_over_3000():
    large = {name: n for name, n in structure.module_lines().items()
             if n > structure.MAX_MODULE_LINES}
    assert large == {}
    packages = structure.package_lines()
    assert packages and all(n <= structure.MAX_PACKAGE_LINES for n in packages.values()), \
        packages


def test_a_chain_counts_imports_inside_functions_and_under_type_checking(tmp_path):
    root = _package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .sub import c\n",
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from ..d import thing\n",
        "d.py": "thing = 1\n"})
    graph = structure.import_graph(root)
    assert graph.longest_chain() == ("pkg.a", "pkg.b", "pkg.sub.c", "pkg.d")
    assert graph.cycles() == []


def test_a_cycle_and_a_private_import_are_found(tmp_path):
    root = _package(tmp_path, {
        "a.py": "from .b import _hidden\n",
        "b.py": "_hidden = 1\ndef f():\n    from . import c\n",
        "c.py": "import pkg.a\n"})
    graph = structure.import_graph(root)
    assert graph.cycles() == [("pkg.a", "pkg.b", "pkg.c")]
    assert graph.private == [("pkg.a", "pkg.b", "_hidden")]
    assert len(graph.longest_chain()) == 3  # (a cycle is walked once)


def test_package_lines_add_up_subpackages(tmp_path):
    root = _package(tmp_path, {"x/one.py": "a = 1\nb = 2\n", "x/deep/two.py": "c = 3\n",
                               "y.py": "d = 4\n"})
    assert structure.package_lines(root) == {"pkg.x": 3}
    assert structure.module_lines(root)["pkg.x.deep.two"] == 1


def test_contributing_lists_every_module_and_no_other():
    """CONTRIBUTING's module list (one line each) is the package's modules, less the
    packages' ``__init__``: a module added, moved or removed shows here until the list
    says so."""
    listed = {line.split()[0] for line in
              (structure.PACKAGE.parent / "CONTRIBUTING.md").read_text().splitlines()
              if line.startswith("kandel_repro/")}
    modules = {path.relative_to(structure.PACKAGE.parent).as_posix()
               for path in structure.PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    assert listed == modules, (sorted(modules - listed), sorted(listed - modules))

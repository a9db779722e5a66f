"""Every dependency pyproject.toml declares is used by the code of its part, and that code imports nothing it
does not declare. Imports are read with ``ast`` (``import x``, ``from x import y``, and the optional modules that
``importlib.util.find_spec("x")`` locates without importing).

The parts: the core dependencies and the video extra serve the package (``mvit/``); the notebooks extra serves
the chapters (``book/*.ipynb``); the book extra serves the book's tools (``mvit/booktools.py``, ``mvit/student.py``,
``book/_ext/``) and the build commands; the dev extra serves ``tests/`` and the commands of the Makefile.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import nbformat
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = sorted((ROOT / "mvit").rglob("*.py"))
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
BOOK_TOOLS = [
    ROOT / "mvit" / "booktools.py",
    ROOT / "mvit" / "student.py",
    *sorted((ROOT / "book" / "_ext").glob("*.py")),
]
TESTS = sorted((ROOT / "tests").rglob("*.py"))
# Dependencies that are commands or plug-ins, not imports: (file, the text that uses them there).
USED_AS_TOOL = {
    "jupyter-book": ("Makefile", "jupyter-book build"),
    "sphinx-exercise": ("_config.yml", "sphinx_exercise"),
    "sphinx-mathjax-offline": ("_config.yml", "sphinx-mathjax-offline"),
    "nbval": ("Makefile", "--nbval"),
    "ipykernel": ("Makefile", "ipykernel install"),
    "ruff": ("Makefile", "ruff format"),
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> dict[str, set[str]]:
    """``{"core": names, extra: names}``; an extra that includes another (``mvit[notebooks]``) is left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    parts = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {part: {_name(r) for r in reqs} - {"mvit"} for part, reqs in parts.items()}


def _source(path: Path) -> str:
    if path.suffix != ".ipynb":
        return path.read_text()
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return "\n".join(line for cell in cells for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))


def _imports(paths: list[Path]) -> set[str]:
    """Top-level modules `paths` import, without the standard library and mvit itself."""
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(_source(path))):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "find_spec" and node.args:
                if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    modules.add(node.args[0].value.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"mvit", "__future__"}


@functools.cache
def _owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    """The installed distributions that provide `module` (its own name where none is installed here)."""
    owners = _owners().get(module) or [module]
    return {d.lower().replace("_", "-") for d in owners}


def _used(paths: list[Path]) -> set[str]:
    return {d for module in _imports(paths) for d in _distributions(module)}


def _unused(part: str, paths: list[Path]) -> list[str]:
    used = _used(paths)
    return sorted(
        name
        for name in _declared()[part]
        if name not in used
        and not (name in USED_AS_TOOL and USED_AS_TOOL[name][1] in (ROOT / USED_AS_TOOL[name][0]).read_text())
    )


def test_the_package_uses_every_core_and_video_dependency():
    for part in ("core", "video"):
        assert not _unused(part, PACKAGE), f"pyproject.toml declares {part} dependencies mvit/ never imports"


def test_the_notebooks_use_every_dependency_of_the_notebooks_extra():
    assert not _unused("notebooks", NOTEBOOKS), "the notebooks extra declares what no chapter imports"


def test_the_book_tools_and_tests_use_their_extras():
    assert not _unused("book", BOOK_TOOLS), "the book extra declares what no book tool imports or runs"
    assert not _unused("dev", TESTS), "the dev extra declares what no test imports and the Makefile does not run"


def test_the_package_and_the_notebooks_import_nothing_undeclared():
    declared = _declared()
    everything = set().union(*declared.values())
    reader = declared["core"] | declared["video"] | declared["notebooks"]  # what Colab and Binder install
    for paths, allowed, where in ((PACKAGE, everything, "mvit/"), (NOTEBOOKS, reader, "book/*.ipynb")):
        undeclared = {m: sorted(_distributions(m)) for m in _imports(paths) if not _distributions(m) & allowed}
        assert not undeclared, (
            f"{where} imports modules whose distributions pyproject.toml does not declare: {undeclared}"
        )


def test_the_checks_see_an_unused_dependency():
    # The checks can fail: take seaborn's chapters away and the notebooks extra has an unused dependency.
    without = [p for p in NOTEBOOKS if "seaborn" not in _imports([p])]
    assert len(without) < len(NOTEBOOKS) and "seaborn" in _unused("notebooks", without)

"""The set-up files install what pyproject.toml declares: the conda environment (a workstation: everything, every
extra) and binder/ (a reader on Binder: the package, its video and notebooks extras and Jupyter, no build or test
tools)."""

import importlib.metadata
import os
import re
import shlex
import sys
from pathlib import Path

import nbformat
import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names of the PyPI packages whose names differ
CONDA_NAMES = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower()


def _environment_names() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(d) for d in dep.get("pip", []) if not d.startswith("-")}
        else:
            names.add(_name(dep))
    return names


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_lists_every_runtime_dependency():
    missing = [
        r for r in _pyproject()["dependencies"] if CONDA_NAMES.get(_name(r), _name(r)) not in _environment_names()
    ]
    assert not missing, f"environment.yml lacks these runtime dependencies of pyproject.toml: {missing}"


def test_environment_lists_every_optional_dependency():
    extras = _pyproject()["optional-dependencies"]
    missing = [
        r
        for reqs in extras.values()
        for r in reqs
        if _name(r) != "mvit" and CONDA_NAMES.get(_name(r), _name(r)) not in _environment_names()
    ]  # "mvit[notebooks]": an extra that includes another one
    assert not missing, f"environment.yml lacks these optional dependencies of pyproject.toml: {missing}"


def test_environment_installs_the_package_itself_not_editable():
    """`-e .` in a conda environment file is a known repo2docker failure; the header documents the editable step."""
    text = (ROOT / "environment.yml").read_text()
    env = yaml.safe_load(text)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "." in pip, "environment.yml must install this repository (`.` under pip:)"
    assert not [d for d in pip if d.startswith(("-e", "--editable"))], (
        "environment.yml must not use an editable install"
    )
    assert "pip install --no-deps -e ." in text, "the header should say how to make the install editable"


def test_jupyter_book_is_version_1():
    book = next(r for r in _pyproject()["optional-dependencies"]["book"] if _name(r) == "jupyter-book")
    assert "<2" in book, "Jupyter Book 2 ignores _config.yml; keep jupyter-book below 2"


# --- binder/: what repo2docker installs for a reader (requirements.txt, then postBuild from the repository's root).

BINDER = ROOT / "binder"
# Of the `book` extra, these are Jupyter itself (a reader needs them); the rest builds or tests the book.
JUPYTER_RUNTIME = {"ipykernel", "nbformat", "nbconvert"}


def _binder_requirements() -> list[Requirement]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [
        Requirement(line.split("#")[0].strip())
        for line in lines
        if line.split("#")[0].strip() and not line.lstrip().startswith("-")
    ]


def _binder_installs() -> list[list[str]]:
    """The `pip install` commands of binder/postBuild, as argument lists after `install`."""
    commands = []
    for line in (BINDER / "postBuild").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if "pip" in words and "install" in words:
            commands.append(words[words.index("install") + 1 :])
    return commands


def test_binder_postbuild_installs_the_package_with_its_video_and_notebooks_extras():
    postbuild = BINDER / "postBuild"
    assert os.access(postbuild, os.X_OK), "binder/postBuild must be executable (repo2docker runs it as a program)"
    assert postbuild.read_text().startswith("#!"), "binder/postBuild needs a shebang line"
    packages = [[a for a in args if not a.startswith("-")] for args in _binder_installs()]
    assert [".[video,notebooks]"] in packages, (
        f"postBuild should `pip install .[video,notebooks]`; it installs {packages}"
    )
    editable = [args for args in _binder_installs() if {"-e", "--editable"} & set(args)]
    assert not editable, f"binder/postBuild uses an editable install: {editable}"
    assert {"video", "notebooks"} <= set(_pyproject()["optional-dependencies"]), "pyproject.toml lacks these extras"


def test_binder_requirements_agree_with_pyproject():
    """Every package binder/requirements.txt names that pyproject.toml also names has the same version range."""
    declared = {_name(r): Requirement(r) for r in _pyproject()["dependencies"]}
    for reqs in _pyproject()["optional-dependencies"].values():
        declared.update({_name(r): Requirement(r) for r in reqs})
    differ = [
        f"{r} vs pyproject's {declared[r.name.lower()]}"
        for r in _binder_requirements()
        if r.name.lower() in declared and r.specifier != declared[r.name.lower()].specifier
    ]
    assert not differ, f"binder/requirements.txt and pyproject.toml disagree: {differ}"
    assert not [r for r in _binder_requirements() if r.name.lower() == "mvit"], "postBuild installs mvit itself"


def test_binder_leaves_out_the_build_and_test_tools():
    extras = _pyproject()["optional-dependencies"]
    tools = {_name(r) for r in extras["dev"] + extras["book"]} - JUPYTER_RUNTIME - {"mvit"}
    binder = {r.name.lower() for r in _binder_requirements()}
    binder |= {_name(a.split("[")[0]) for args in _binder_installs() for a in args if not a.startswith("-")}
    extras_installed = {
        extra.strip()
        for args in _binder_installs()
        for a in args
        for group in re.findall(r"\[([^]]+)\]", a)
        for extra in group.split(",")
    }
    assert not binder & tools, f"binder installs build or test tools: {sorted(binder & tools)}"
    assert extras_installed == {"video", "notebooks"}, (
        f"binder should install the video and notebooks extras only, not {extras_installed}"
    )


def _closure(names: set[str]) -> set[str]:
    """The installed distributions that `names` need, transitively (markers evaluated here, no extras)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _notebook_imports() -> set[str]:
    """Top-level modules the book's notebooks import (not the standard library, not mvit)."""
    import ast

    modules = set()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import):
                    modules |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"mvit"}


def _extra_names(*extras: str) -> set[str]:
    return {_name(r) for extra in extras for r in _pyproject()["optional-dependencies"][extra]}


def test_binder_provides_every_module_the_notebooks_import():
    """Run against the installed environment: each imported module's distribution must come with binder's set-up."""
    provided = _closure({r.name for r in _binder_requirements()} | {"mvit"} | _extra_names("video", "notebooks"))
    owners = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_notebook_imports()):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists & provided:
            missing[module] = sorted(dists) or "not installed here"
    assert not missing, f"the notebooks import modules that binder/ does not install: {missing}"


def test_colab_install_cell_provides_every_module_the_notebooks_import():
    """On Colab the first cell installs `mvit[video,notebooks]` (mvit.booktools.colab_cell_source) into a kernel that
    has IPython; every other module the notebooks import must come with that install."""
    from mvit.booktools import Repository, colab_cell_source

    assert "mvit[video,notebooks] @ git+" in colab_cell_source(Repository("a", "b"), "0")
    provided = _closure({"mvit"} | _extra_names("video", "notebooks"))
    owners = importlib.metadata.packages_distributions()
    missing = {
        module: sorted(owners.get(module, []))
        for module in sorted(_notebook_imports() - {"IPython"})
        if not {d.lower().replace("_", "-") for d in owners.get(module, [])} & provided
    }
    assert not missing, f"the notebooks import modules that the Colab install cell does not install: {missing}"

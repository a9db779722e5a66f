"""The conda environment installs everything that pyproject.toml asks pip for."""

import re
import tomllib
from pathlib import Path

import yaml

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
    missing = [r for r in _pyproject()["dependencies"] if CONDA_NAMES.get(_name(r), _name(r)) not in _environment_names()]
    assert not missing, f"environment.yml lacks these runtime dependencies of pyproject.toml: {missing}"


def test_environment_lists_every_optional_dependency():
    extras = _pyproject()["optional-dependencies"]
    missing = [r for reqs in extras.values() for r in reqs
               if CONDA_NAMES.get(_name(r), _name(r)) not in _environment_names()]
    assert not missing, f"environment.yml lacks these optional dependencies of pyproject.toml: {missing}"


def test_environment_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip


def test_jupyter_book_is_version_1():
    book = next(r for r in _pyproject()["optional-dependencies"]["book"] if _name(r) == "jupyter-book")
    assert "<2" in book, "Jupyter Book 2 ignores _config.yml; keep jupyter-book below 2"

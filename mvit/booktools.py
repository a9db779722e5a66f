"""Publishing tools of the book: the public repository setting and the Colab install cell.

**The repository setting.** The site's launch buttons (Colab, Binder), its repository button and the first cell of
every notebook name the public repository the book is published from. One setting holds it: the ``repository``
section of ``_config.yml`` (``url``, ``branch``, ``path_to_book``), which the environment variables
``MVIT_BOOK_REPO`` (a GitHub URL) and ``MVIT_BOOK_BRANCH`` override for one command::

    MVIT_BOOK_REPO=https://github.com/OWNER/NAME make book        # buttons for that repository
    python -m mvit.booktools repository                          # the setting in use, or why there is none
    python -m mvit.booktools repository --from-git               # the URL of `git remote get-url origin`

An empty URL or a placeholder (``YOUR-ORG``, ``example.com``, ...) means *no repository*: the site then has no launch
or repository buttons, so it never links to a repository that does not exist. Only GitHub URLs are accepted, as
Colab opens notebooks from GitHub.

**The Colab install cell.** Colab opens one notebook from GitHub, without this repository's package. Cell 0 of every
notebook is therefore `colab_cell_source`: on Colab it installs ``mvit`` at the book's version, with its video and
notebooks extras, from the repository setting; anywhere else it does nothing. It is tagged ``remove-cell``, so the
site does not show it::

    python -m mvit.booktools colab-cell --check book     # exit 1 naming every notebook whose cell 0 is not current
    python -m mvit.booktools colab-cell --write book     # insert or update cell 0 of every notebook
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tomllib

if TYPE_CHECKING:  # the book extra; imported where it is used, so that `import mvit` never needs it
    import nbformat

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"
PYPROJECT = ROOT / "pyproject.toml"
REPO_VARIABLE = "MVIT_BOOK_REPO"
BRANCH_VARIABLE = "MVIT_BOOK_BRANCH"
DEFAULT_BRANCH = "main"
DEFAULT_PATH = "book"

COLAB_CELL_ID = "colab-install"
COLAB_CELL_TAG = "remove-cell"
COLAB_MARKER = "# On Colab: install the `mvit` package"
NOTEBOOK_LINE_LENGTH = 76  # book/ruff.toml

# Words that stand for "fill in your own" in a repository URL, and host names reserved for examples (RFC 2606).
_PLACEHOLDER_WORDS = {
    "your-org",
    "your_org",
    "yourorg",
    "your-name",
    "your-username",
    "your-user",
    "username",
    "owner",
    "org",
    "name",
    "repo",
    "xxx",
    "todo",
    "changeme",
}
_PLACEHOLDER_HOSTS = re.compile(r"(^|\.)(example\.(com|org|net)|example|invalid|test|localhost)$")
_GITHUB = re.compile(
    r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)"
    r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?/?$"
)


class RepositoryError(ValueError):
    """The repository setting is neither empty, nor a placeholder, nor a GitHub repository URL."""


@dataclass(frozen=True)
class Repository:
    """A public GitHub repository that holds the book: ``https://github.com/{owner}/{name}``, branch, book folder."""

    owner: str
    name: str
    branch: str = DEFAULT_BRANCH
    path_to_book: str = DEFAULT_PATH

    @property
    def url(self) -> str:
        return f"https://github.com/{self.owner}/{self.name}"

    def pip_requirement(self, extras: str = "video,notebooks") -> str:
        """What pip installs on Colab: ``mvit[video,notebooks] @ git+https://github.com/OWNER/NAME@BRANCH`` (the
        decoders and what the chapters import beyond the package)."""
        return f"mvit[{extras}] @ git+{self.url}@{self.branch}"


def is_placeholder(url: str) -> bool:
    """True for an empty URL, a reserved example host (example.com, localhost, ...) and a URL whose owner or name is
    a stand-in (YOUR-ORG, OWNER, <name>, ...)."""
    url = url.strip()
    if not url:
        return True
    if "<" in url or "{" in url:
        return True
    host = re.sub(r"^[a-z+]+://", "", url).split("/")[0].split("@")[-1].split(":")[0].lower()
    match = _GITHUB.match(url)
    words = {match["owner"].lower(), match["name"].lower()} if match else set()
    return bool(_PLACEHOLDER_HOSTS.search(host)) or bool(words & _PLACEHOLDER_WORDS)


def parse_repository(url: str, branch: str = "", path_to_book: str = "") -> Repository | None:
    """The repository of a setting, or None when the URL is empty or a placeholder.

    Accepts ``https://github.com/OWNER/NAME`` (with or without ``.git`` or a trailing slash) and the SSH forms
    ``git@github.com:OWNER/NAME.git``; raises `RepositoryError` for anything else.
    """
    if is_placeholder(url):
        return None
    match = _GITHUB.match(url.strip())
    if not match:
        raise RepositoryError(
            f"the book's repository {url!r} is not a GitHub repository URL; set it to https://github.com/OWNER/NAME "
            f"(Colab opens notebooks from GitHub only), or leave it empty for a site without launch buttons"
        )
    return Repository(
        match["owner"],
        match["name"],
        (branch or DEFAULT_BRANCH).strip(),
        (path_to_book or DEFAULT_PATH).strip().strip("/"),
    )


def config_repository(config: Path | str = CONFIG) -> dict:
    """The ``repository`` section of a Jupyter Book ``_config.yml`` (empty if it has none)."""
    return (yaml.safe_load(Path(config).read_text()) or {}).get("repository") or {}


def book_repository(
    url: str = "", branch: str = "", path_to_book: str = "", environ: dict | None = None
) -> Repository | None:
    """The repository setting in use: ``MVIT_BOOK_REPO`` / ``MVIT_BOOK_BRANCH`` when set, else the values given
    (the ``repository`` section of ``_config.yml``); None when there is no repository."""
    environ = os.environ if environ is None else environ
    url = environ.get(REPO_VARIABLE) or url
    branch = environ.get(BRANCH_VARIABLE) or branch
    return parse_repository(url, branch, path_to_book)


def configured_repository(config: Path | str = CONFIG, environ: dict | None = None) -> Repository | None:
    """`book_repository` with the values of ``config`` (the root ``_config.yml``)."""
    section = config_repository(config)
    return book_repository(
        section.get("url") or "", section.get("branch") or "", section.get("path_to_book") or "", environ
    )


def git_origin_repository(cwd: Path | str = ROOT) -> Repository:
    """The repository of ``git remote get-url origin``; `RepositoryError` if there is none or it is not GitHub's."""
    result = subprocess.run(["git", "remote", "get-url", "origin"], cwd=cwd, capture_output=True, text=True)
    url = result.stdout.strip()
    if result.returncode != 0 or not url:
        raise RepositoryError(
            "this clone has no remote `origin`; add one (git remote add origin URL) or set "
            f"{REPO_VARIABLE}=https://github.com/OWNER/NAME"
        )
    repository = parse_repository(url)
    if repository is None:
        raise RepositoryError(f"the remote `origin` ({url}) is a placeholder; set {REPO_VARIABLE} instead")
    return repository


def book_version(pyproject: Path | str = PYPROJECT) -> str:
    """The package version the book is written with (``project.version`` of pyproject.toml)."""
    return tomllib.loads(Path(pyproject).read_text())["project"]["version"]


def colab_cell_source(repository: Repository | None, version: str) -> str:
    """The source of every notebook's first cell: on Colab, install ``mvit==version`` with its video and notebooks
    extras from ``repository``; elsewhere do nothing. Without a repository the cell stops on Colab and says what to set.

    Short lines in the formatter's style (double quotes, sorted imports), so that formatting a notebook leaves the
    cell as it is."""
    head = (
        f"{COLAB_MARKER} this book is written with\n"
        f"# (version {version}, with its video and notebooks extras). Anywhere else\n"
        "# the package is installed already (see the README) and this cell does\n"
        "# nothing.\n"
        "import sys\n\n"
        'if "google.colab" in sys.modules:\n'
    )
    if repository is None:
        return head + (
            "    raise RuntimeError(\n"
            '        "this copy of the book names no public repository to install mvit "\n'
            '        "from: set repository.url in _config.yml, then run "\n'
            '        "`python -m mvit.booktools colab-cell --write book`"\n'
            "    )"
        )
    requirement = f'"{repository.pip_requirement()}"'
    package = f"    package = {requirement}\n"
    if len(package) > NOTEBOOK_LINE_LENGTH + 1 and 8 + len(requirement) <= NOTEBOOK_LINE_LENGTH:
        package = f"    package = (\n        {requirement}\n    )\n"  # where the formatter wraps it
    return head + (
        "    import subprocess\n"
        "    from importlib.metadata import version\n\n"
        f"{package}"
        '    pip = [sys.executable, "-m", "pip", "install", "--quiet"]\n'
        "    subprocess.run(pip + [package], check=True)\n"
        '    found = version("mvit")\n'
        f'    assert found == "{version}", f"{{package}} installed mvit {{found}}, not {version}"'
    )


def colab_cell(repository: Repository | None, version: str) -> nbformat.NotebookNode:
    """The Colab install cell as a notebook cell (stable id, tagged so that the site leaves it out)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(colab_cell_source(repository, version), id=COLAB_CELL_ID)
    cell.metadata["tags"] = [COLAB_CELL_TAG]
    return cell


def _is_colab_cell(cell) -> bool:
    return cell.get("id") == COLAB_CELL_ID or (cell.cell_type == "code" and cell.source.startswith(COLAB_MARKER))


def colab_cell_problem(nb: nbformat.NotebookNode, expected: nbformat.NotebookNode) -> str | None:
    """Why cell 0 of ``nb`` is not ``expected`` (missing, changed, untagged, ...), or None when it is."""
    if not nb.cells or not _is_colab_cell(nb.cells[0]):
        where = next((i for i, c in enumerate(nb.cells) if _is_colab_cell(c)), None)
        return "has no Colab install cell" if where is None else f"has its Colab install cell at {where}, not at 0"
    cell = nb.cells[0]
    if cell.cell_type != "code":
        return "has a Colab install cell that is not a code cell"
    if cell.source != expected.source:
        return "has an outdated Colab install cell (other repository, version or text)"
    if COLAB_CELL_TAG not in cell.get("metadata", {}).get("tags", []):
        return f"has a Colab install cell without the tag {COLAB_CELL_TAG!r}"
    if cell.get("outputs") or cell.get("execution_count") is not None:
        return "has a Colab install cell with outputs"
    return None


def with_colab_cell(nb: nbformat.NotebookNode, expected: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose cell 0 is ``expected``: an existing Colab cell is updated in place and moved to 0,
    keeping its other tags; every other cell is left as it is."""
    import nbformat

    nb = nbformat.from_dict(nb)
    old = [c for c in nb.cells if _is_colab_cell(c)]
    cell = nbformat.from_dict(expected)
    if old:
        tags = list(old[0].get("metadata", {}).get("tags", []))
        cell.metadata["tags"] = tags + [t for t in cell.metadata["tags"] if t not in tags]
    nb.cells = [cell] + [c for c in nb.cells if not _is_colab_cell(c)]
    return nb


def _notebooks(book: Path) -> list[Path]:
    notebooks = sorted(Path(book).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {book}; pass the book's folder, e.g. `book`")
    return notebooks


def check_colab_cells(book: Path | str, repository: Repository | None, version: str) -> list[str]:
    """One line per notebook of ``book`` whose cell 0 is not the current Colab install cell (empty: all are)."""
    import nbformat

    expected = colab_cell(repository, version)
    problems = []
    for path in _notebooks(Path(book)):
        problem = colab_cell_problem(nbformat.read(path, as_version=4), expected)
        if problem:
            problems.append(f"{path}: {problem}")
    return problems


def write_colab_cells(book: Path | str, repository: Repository | None, version: str) -> list[Path]:
    """Insert or update cell 0 of every notebook of ``book``; returns the notebooks that changed."""
    import nbformat

    expected = colab_cell(repository, version)
    changed = []
    for path in _notebooks(Path(book)):
        nb = nbformat.read(path, as_version=4)
        if colab_cell_problem(nb, expected) is None:
            continue
        nbformat.write(with_colab_cell(nb, expected), path)
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mvit.booktools", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    repo = commands.add_parser("repository", help="print the repository setting in use (URL, branch, book folder)")
    repo.add_argument("--from-git", action="store_true", help="print the URL of `git remote get-url origin` instead")
    cell = commands.add_parser("colab-cell", help="check or write the Colab install cell (cell 0) of every notebook")
    mode = cell.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a notebook's cell 0 is not the current cell")
    mode.add_argument("--write", action="store_true", help="insert or update cell 0 of every notebook")
    cell.add_argument("book", help="the book's folder, e.g. book")
    args = parser.parse_args(argv)
    try:
        if args.command == "repository" and args.from_git:
            print(git_origin_repository().url)
            return 0
        repository = configured_repository()
        if args.command == "repository":
            if repository is None:
                print(
                    f"no public repository: {REPO_VARIABLE} is unset and repository.url in {CONFIG.name} is empty "
                    "or a placeholder, so the site has no launch or repository buttons"
                )
            else:
                print(f"{repository.url} branch {repository.branch} book {repository.path_to_book}/")
            return 0
        version = book_version()
        if args.check:
            problems = check_colab_cells(args.book, repository, version)
            for line in problems:
                print(line)
            if problems:
                print(f"run `python -m mvit.booktools colab-cell --write {args.book}` to update them", file=sys.stderr)
            return 1 if problems else 0
        changed = write_colab_cells(args.book, repository, version)
        print(
            f"updated the Colab install cell of {len(changed)} notebooks in {args.book}/ "
            f"({repository.url if repository else 'no repository set'}, mvit {version})"
        )
        return 0
    except (RepositoryError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Publishing: the repository setting, the launch buttons built from it, the Colab install cell, the Pages workflow."""

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import yaml

from mvit import __version__, booktools
from mvit.booktools import Repository, RepositoryError, book_repository, colab_cell_source, parse_repository

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
NO_ENV = {}


@pytest.fixture
def no_repository_variables(monkeypatch):
    monkeypatch.delenv(booktools.REPO_VARIABLE, raising=False)
    monkeypatch.delenv(booktools.BRANCH_VARIABLE, raising=False)


# --- the setting


@pytest.mark.parametrize(
    "url",
    [
        "",
        "  ",
        "https://github.com/YOUR-ORG/mvit-book",
        "https://github.com/your-org/mvit-book",
        "https://github.com/OWNER/NAME",
        "https://github.com/<owner>/<name>",
        "https://example.com/a/b",
        "https://www.example.org/a/b",
        "http://localhost:8000/a/b",
    ],
)
def test_empty_and_placeholder_urls_mean_no_repository(url):
    assert booktools.is_placeholder(url)
    assert parse_repository(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/mvit-book/mvit-book",
        "https://github.com/mvit-book/mvit-book.git",
        "https://github.com/mvit-book/mvit-book/",
        "git@github.com:mvit-book/mvit-book.git",
        "ssh://git@github.com/mvit-book/mvit-book.git",
    ],
)
def test_github_urls_in_every_form_name_one_repository(url):
    assert parse_repository(url, "main", "book/") == Repository("mvit-book", "mvit-book", "main", "book")


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a", "a/b"])
def test_other_urls_are_refused_with_the_fix(url):
    with pytest.raises(RepositoryError, match="https://github.com/OWNER/NAME"):
        parse_repository(url)


def test_the_environment_overrides_the_config_and_the_branch_defaults_to_main():
    env = {booktools.REPO_VARIABLE: "https://github.com/a/b", booktools.BRANCH_VARIABLE: "pages"}
    assert book_repository("https://github.com/c/d", "dev", "book", environ=env) == Repository(
        "a", "b", "pages", "book"
    )
    assert book_repository("https://github.com/c/d", "", "", environ=NO_ENV) == Repository("c", "d", "main", "book")
    assert book_repository("https://github.com/YOUR-ORG/x", "main", "book", environ=NO_ENV) is None


def test_pip_requirement_names_the_video_and_notebooks_extras_and_the_branch():
    assert Repository("a", "b", "dev").pip_requirement() == "mvit[video,notebooks] @ git+https://github.com/a/b@dev"


def test_configured_repository_reads_the_config_file(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/a/b\n  branch: gh\n  path_to_book: docs\n")
    assert booktools.configured_repository(config, environ=NO_ENV) == Repository("a", "b", "gh", "docs")
    config.write_text("title: x\n")
    assert booktools.configured_repository(config, environ=NO_ENV) is None


def test_the_committed_setting_is_empty_or_a_real_repository():
    """A placeholder would be silently ignored; the committed file says plainly whether there is a repository."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    assert url == "" or parse_repository(url) is not None, f"repository.url is a placeholder: {url!r}"
    assert config["repository"]["path_to_book"] == BOOK.name
    assert "repository_setting" in config["sphinx"]["local_extensions"]
    assert config["html"]["use_repository_button"] is False, "the extension switches the button on"


def test_git_origin_gives_the_https_url(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(RepositoryError, match="no remote `origin`"):
        booktools.git_origin_repository(tmp_path)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "git@github.com:a/b.git"], check=True)
    assert booktools.git_origin_repository(tmp_path).url == "https://github.com/a/b"


# --- the Sphinx extension, on the Sphinx configuration Jupyter Book makes from _config.yml


def _extension():
    spec = importlib.util.spec_from_file_location("repository_setting", BOOK / "_ext" / "repository_setting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sphinx_config(url: str | None = None) -> types.SimpleNamespace:
    from jupyter_book.config import yaml_to_sphinx

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if url is not None:
        config["repository"]["url"] = url
    sphinx, _, _ = yaml_to_sphinx(config)
    return types.SimpleNamespace(
        html_theme_options=sphinx["html_theme_options"], myst_substitutions=sphinx.get("myst_substitutions", {})
    )


@pytest.mark.parametrize("url", ["", "https://github.com/YOUR-ORG/mvit-book"])
def test_without_a_repository_the_build_has_no_launch_or_repository_buttons(no_repository_variables, url):
    config = _sphinx_config(url)
    _extension()._apply_repository_setting(None, config)
    options = config.html_theme_options
    assert options["launch_buttons"] == {}
    assert not any(options.get(key) for key in ("use_repository_button", "use_issues_button", "use_edit_page_button"))
    assert "repository_url" not in options
    assert "no launch or repository buttons" in config.myst_substitutions["book_repository"]


def test_with_a_repository_the_build_has_its_buttons(monkeypatch):
    monkeypatch.setenv(booktools.REPO_VARIABLE, "git@github.com:a/b.git")
    monkeypatch.setenv(booktools.BRANCH_VARIABLE, "pages")
    config = _sphinx_config()
    _extension()._apply_repository_setting(None, config)
    options = config.html_theme_options
    assert (options["repository_url"], options["repository_branch"], options["path_to_docs"]) == (
        "https://github.com/a/b",
        "pages",
        "book",
    )
    assert options["use_repository_button"] is True
    launch = yaml.safe_load((ROOT / "_config.yml").read_text())["launch_buttons"]
    assert options["launch_buttons"] == launch and launch["colab_url"] and launch["binderhub_url"]
    assert config.myst_substitutions["book_repository"].startswith("[a/b](https://github.com/a/b)")


def test_a_url_that_is_not_github_stops_the_build(no_repository_variables):
    from sphinx.errors import ConfigError

    with pytest.raises(ConfigError, match="not a GitHub repository URL"):
        _extension()._apply_repository_setting(None, _sphinx_config("https://gitlab.com/a/b"))


# --- the Colab install cell


def _run_cell(source: str, monkeypatch, on_colab: bool, installed: str = __version__) -> list:
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append((args, kw)))
    monkeypatch.setattr(importlib.metadata, "version", lambda name: installed)
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, "<colab cell>", "exec"), {})
    return calls


def test_colab_cell_installs_the_books_version_on_colab_only(monkeypatch):
    source = colab_cell_source(Repository("a", "b", "main"), __version__)
    assert _run_cell(source, monkeypatch, on_colab=False) == []
    calls = _run_cell(source, monkeypatch, on_colab=True)
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert args[:4] == [sys.executable, "-m", "pip", "install"]
    assert args[-1] == "mvit[video,notebooks] @ git+https://github.com/a/b@main" and kwargs == {"check": True}
    with pytest.raises(AssertionError, match=f"not {re.escape(__version__)}"):
        _run_cell(source, monkeypatch, on_colab=True, installed="0.0.1")


def test_colab_cell_without_a_repository_says_what_to_set_on_colab(monkeypatch):
    source = colab_cell_source(None, __version__)
    assert _run_cell(source, monkeypatch, on_colab=False) == []
    with pytest.raises(RuntimeError, match="repository.url"):
        _run_cell(source, monkeypatch, on_colab=True)


def test_colab_cell_lines_fit_a_narrow_code_box():
    for repository in (None, Repository("a", "b")):
        assert max(map(len, colab_cell_source(repository, "0.1.0").splitlines())) <= 79


# --- python -m mvit.booktools colab-cell, on copies of the book's notebooks


@pytest.fixture
def book_copy(tmp_path, monkeypatch):
    monkeypatch.setenv(booktools.REPO_VARIABLE, "https://github.com/a/b")
    monkeypatch.delenv(booktools.BRANCH_VARIABLE, raising=False)
    copy = tmp_path / "book"
    copy.mkdir()
    for path in sorted(BOOK.glob("*.ipynb")):
        shutil.copy(path, copy / path.name)
    assert list(copy.glob("*.ipynb")), "the book has no notebooks"
    return copy


def _cli(capsys, *args) -> tuple[int, str]:
    code = booktools.main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


def test_write_inserts_the_cell_and_check_then_passes(book_copy, capsys):
    originals = {p.name: _cells(p) for p in book_copy.glob("*.ipynb")}
    expected = colab_cell_source(Repository("a", "b"), booktools.book_version())
    # missing, or written for another repository setting (the committed cells name none)
    stale = [p for p, cells in originals.items() if cells[0].source != expected]
    code, out = _cli(capsys, "colab-cell", "--check", str(book_copy))
    assert (code == 1) == bool(stale) and all(name in out for name in stale)

    assert _cli(capsys, "colab-cell", "--write", str(book_copy))[0] == 0
    assert _cli(capsys, "colab-cell", "--check", str(book_copy)) == (0, "")
    for path in book_copy.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        first, rest = nb.cells[0], nb.cells[1:]
        assert first.source == expected and first.id == booktools.COLAB_CELL_ID
        assert booktools.COLAB_CELL_TAG in first.metadata["tags"]
        old = [c for c in originals[path.name] if not booktools._is_colab_cell(c)]
        assert [(c.id, c.source, c.get("metadata")) for c in rest] == [(c.id, c.source, c.get("metadata")) for c in old]


def test_write_is_idempotent(book_copy, capsys):
    _cli(capsys, "colab-cell", "--write", str(book_copy))
    before = {p.name: p.read_bytes() for p in book_copy.glob("*.ipynb")}
    code, out = _cli(capsys, "colab-cell", "--write", str(book_copy))
    assert code == 0 and "of 0 notebooks" in out
    assert {p.name: p.read_bytes() for p in book_copy.glob("*.ipynb")} == before


def test_check_finds_a_changed_moved_or_outdated_cell(book_copy, capsys, monkeypatch):
    _cli(capsys, "colab-cell", "--write", str(book_copy))
    first, second, third = sorted(book_copy.glob("*.ipynb"))[:3]

    nb = nbformat.read(first, as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace("--quiet", "-q")
    nbformat.write(nb, first)
    nb = nbformat.read(second, as_version=4)
    nb.cells = nb.cells[1:2] + nb.cells[:1] + nb.cells[2:]
    nbformat.write(nb, second)
    nb = nbformat.read(third, as_version=4)
    nb.cells[0].metadata["tags"] = []
    nbformat.write(nb, third)
    code, out = _cli(capsys, "colab-cell", "--check", str(book_copy))
    assert code == 1
    assert f"{first}: has an outdated Colab install cell" in out
    assert f"{second}: has its Colab install cell at 1, not at 0" in out
    assert f"{third}: has a Colab install cell without the tag" in out

    _cli(capsys, "colab-cell", "--write", str(book_copy))
    assert _cli(capsys, "colab-cell", "--check", str(book_copy)) == (0, "")
    monkeypatch.setenv(booktools.REPO_VARIABLE, "https://github.com/c/d")  # another repository: every cell is stale
    code, out = _cli(capsys, "colab-cell", "--check", str(book_copy))
    assert code == 1 and out.count("outdated Colab install cell") == len(list(book_copy.glob("*.ipynb")))


def test_user_mistakes_are_one_error_line(tmp_path, capsys, monkeypatch):
    code, out = _cli(capsys, "colab-cell", "--check", str(tmp_path))
    assert code == 2 and out.startswith("error: no notebooks") and out.count("\n") == 1
    monkeypatch.setenv(booktools.REPO_VARIABLE, "https://gitlab.com/a/b")
    code, out = _cli(capsys, "repository")
    assert code == 2 and out.startswith("error: ") and "Traceback" not in out


# --- the publishing workflow


def _readme_build_command() -> str:
    """The build command of the README's first shell block (`make book`)."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    command = next(line.split("#")[0].strip() for line in block.splitlines() if "book" in line.split("#")[0])
    assert command, "the README's first shell block has no build command"
    return command


def _workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def test_workflow_builds_with_the_readmes_command_and_deploys_the_site_to_pages():
    workflow, command = _workflow(), _readme_build_command()
    assert command == "make book"
    assert "push" in workflow["on"]
    jobs = workflow["jobs"]
    build = next(
        (job for job in jobs.values() if any(command in str(s.get("run", "")).splitlines() for s in job["steps"])), None
    )
    assert build is not None, f"no step of {WORKFLOW.name} runs the README's build command `{command}`"
    assert "default_branch" in build.get("if", ""), "the site is published from the default branch only"
    uses = {s["uses"].split("@")[0]: s for job in jobs.values() for s in job["steps"] if "uses" in s}
    assert {
        "actions/checkout",
        "actions/configure-pages",
        "actions/upload-pages-artifact",
        "actions/deploy-pages",
    } <= set(uses)
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "book/_build/html"
    assert "book/_build/html" in (ROOT / "README.md").read_text()
    build_steps = [s.get("uses", s.get("run", "")) for s in build["steps"]]
    assert build_steps.index(command) < next(i for i, s in enumerate(build_steps) if "upload-pages-artifact" in s)
    deploy = next(job for job in jobs.values() if any("deploy-pages" in s.get("uses", "") for s in job["steps"]))
    build_name = next(name for name, job in jobs.items() if job is build)
    assert build_name in ([deploy["needs"]] if isinstance(deploy["needs"], str) else deploy["needs"])
    assert deploy["environment"]["name"] == "github-pages"
    assert {"pages": "write", "id-token": "write"}.items() <= workflow["permissions"].items()


def test_workflow_passes_the_repository_setting_from_the_github_context():
    build = next(job for job in _workflow()["jobs"].values() if "env" in job)
    assert build["env"][booktools.REPO_VARIABLE] == "${{ github.server_url }}/${{ github.repository }}"
    assert "default_branch" in build["env"][booktools.BRANCH_VARIABLE]
    runs = [s.get("run", "") for s in build["steps"]]
    assert any("mvit.booktools colab-cell --check book" in r for r in runs), "publishing checks the Colab cells"


def test_every_notebook_starts_with_the_colab_install_cell():
    problems = booktools.check_colab_cells(BOOK, booktools.configured_repository(), booktools.book_version())
    assert not problems, (
        "\n".join(problems) + "\nrun `make colab-cells` (python -m mvit.booktools colab-cell --write book)"
    )

"""Static checks of the book's sources (fast; the notebooks themselves run under nbval)."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from mvit.student import count_exercises, solution_cells

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIB_KEY = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
LABEL = re.compile(r":label:\s*(\S+)")
SOLUTION_OF = re.compile(r"\{solution-start\}\s*(\S+)")


def toc_files() -> list[str]:
    """Every `file:` of book/_toc.yml, root first, without suffix."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    return files


def source_of(name: str) -> Path:
    matches = [p for p in (BOOK / f"{name}.ipynb", BOOK / f"{name}.md") if p.is_file()]
    assert len(matches) == 1, f"_toc.yml lists {name!r}: need exactly one of {name}.ipynb / .md"
    return matches[0]


NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def test_config_is_found_from_the_book_folder():
    """`jupyter-book build book/` must find the root _config.yml inside book/ (see its header)."""
    link = BOOK / "_config.yml"
    assert link.is_symlink() and link.resolve() == (ROOT / "_config.yml").resolve()
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["only_build_toc_files"] is True
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert (BOOK / config["bibtex_bibfiles"][0]).is_file()


def test_toc_entries_exist_and_every_notebook_is_listed():
    files = toc_files()
    assert len(files) == len(set(files)), "a page is listed twice in _toc.yml"
    for name in files:
        source_of(name)
    unlisted = {p.stem for p in NOTEBOOKS} - set(files)
    assert not unlisted, f"notebooks missing from book/_toc.yml: {sorted(unlisted)}"


def test_bibliography_keys_are_unique_and_every_citation_resolves():
    bib = (BOOK / "references.bib").read_text()
    keys = BIB_KEY.findall(bib)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"keys defined twice in references.bib: {duplicates}"
    cited = set()
    for name in toc_files():
        path = source_of(name)
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        else:
            text = path.read_text()
        for group in CITE.findall(text):
            cited.update(k.strip() for k in group.split(","))
    missing = sorted(cited - set(keys))
    assert not missing, f"cited but not in references.bib: {missing}"
    assert "fan2021multiscale" in cited


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: set the kernelspec to python3 (the build and nbval use it)"
    )
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            # "must not change" checks are assertions in the cell, not stored outputs compared by nbval
            assert not cell.outputs, f"{path.name}: cell {i} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"
    titles = [
        line
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("# ")
    ]
    assert len(titles) == 1, f"{path.name}: needs exactly one '# ' title, found {titles}"
    first = next(c for c in nb.cells if c.get("id") != "colab-install")  # the Colab install cell comes first
    assert first.cell_type == "markdown" and first.source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_exercises_have_tagged_solutions(path):
    nb = nbformat.read(path, as_version=4)
    solution_cells(nb, name=path.name)  # raises on any tagging mistake
    assert count_exercises(nb) >= 1, f"{path.name}: every chapter ends with exercises"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    labels = set(LABEL.findall(markdown))
    for target in SOLUTION_OF.findall(markdown):
        assert target in labels, f"{path.name}: a solution refers to unknown exercise {target!r}"


BACK_REFERENCE = re.compile(r"printed\s+above", re.IGNORECASE)


@pytest.mark.parametrize("name", toc_files())
def test_no_source_points_to_numbers_printed_above(name):
    """Text and tables hold their numbers (generated or asserted), never "printed above". Code cells are searched
    too: they build the Markdown that some pages show."""
    path = source_of(name)
    if path.suffix == ".ipynb":
        texts = [(f"cell {i}", cell.source) for i, cell in enumerate(nbformat.read(path, as_version=4).cells)]
    else:
        texts = [("text", path.read_text())]
    found = [
        f"{where}: ...{text[max(m.start() - 60, 0) : m.end() + 20]!r}..."
        for where, text in texts
        for m in BACK_REFERENCE.finditer(text)
    ]
    assert not found, f"{path.name} says 'printed above'; put the number there instead:\n" + "\n".join(found)


def test_reference_labels_are_author_year_and_distinct():
    """The reference list's labels are the citations' author-year text (book/_ext/author_year_labels.py): the two
    Goyal et al. 2017 papers get 2017a and 2017b, and "Dollár" comes out as written, not as "Dollar" or LaTeX."""
    import importlib.util

    import pybtex.plugin
    from pybtex.database import parse_file

    spec = importlib.util.spec_from_file_location("author_year_labels", BOOK / "_ext" / "author_year_labels.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers the pybtex styles
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert config["bibtex_default_style"] == "author_year" and config["bibtex_reference_style"] == "author_year_label"

    bib = parse_file(BOOK / "references.bib")
    style = pybtex.plugin.find_plugin("pybtex.style.formatting", config["bibtex_default_style"])()
    formatted = {entry.key: entry for entry in style.format_entries(bib.entries.values())}
    labels = [entry.label for entry in formatted.values()]
    assert len(labels) == len(set(labels)), f"two entries share a label: {sorted(labels)}"
    assert formatted["goyal2017accurate"].label == "Goyal et al., 2017a"
    assert formatted["goyal2017something"].label == "Goyal et al., 2017b"
    assert formatted["loshchilov2019decoupled"].label == "Loshchilov and Hutter, 2019"
    assert formatted["feichtenhofer2020x3d"].label == "Feichtenhofer, 2020"
    assert "Piotr Dollár" in formatted["goyal2017accurate"].text.render_as("text")
    for key in ("li2022mvitv2", "sigurdsson2016hollywood", "gu2018ava"):
        assert key in formatted, f"{key} is missing from references.bib"
    assert formatted["li2022mvitv2"].label == "Li et al., 2022"


def test_chapters_are_numbered_and_the_intro_links_each_one():
    """Chapters (the notebooks) are numbered, with their exercises and figures numbered per chapter; the intro's
    chapter map links every chapter, in the order of the table of contents."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    numbered = [entry["file"] for part in toc["parts"] if part.get("numbered") for entry in part["chapters"]]
    assert numbered == [p.stem for p in NOTEBOOKS], "every notebook, and only notebooks, in the numbered part"
    assert yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["numfig_secnum_depth"] == 1
    intro = (BOOK / "intro.md").read_text()
    chapter_map = intro[intro.index("## Chapter map") :]
    linked = re.findall(r"^\d+\. \{doc\}`[^`<]*<([^>]+)>`", chapter_map, re.MULTILINE)
    assert linked == numbered, f"the intro's chapter map links {linked}; the table of contents lists {numbered}"


def test_citations_show_the_reference_list_s_labels(tmp_path):
    """A small Sphinx build with the book's bibliography and citation settings: the citations read "Goyal et al.
    [2017a]" / "[Goyal et al., 2017b]", the list is labelled the same, and "Dollár" is spelled right."""
    import subprocess
    import sys

    from bs4 import BeautifulSoup

    settings = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    (tmp_path / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(BOOK / '_ext')!r})\n"
        "extensions = ['sphinxcontrib.bibtex', 'author_year_labels']\n"
        f"bibtex_bibfiles = [{str(BOOK / 'references.bib')!r}]\n"
        f"bibtex_reference_style = {settings['bibtex_reference_style']!r}\n"
        f"bibtex_default_style = {settings['bibtex_default_style']!r}\n"
    )
    (tmp_path / "index.rst").write_text(
        "Test\n====\n\n:cite:t:`goyal2017accurate` and :cite:p:`goyal2017something,li2022mvitv2`.\n\n"
        ".. bibliography::\n"
    )
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-W", "-b", "html", str(tmp_path), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    page = BeautifulSoup((tmp_path / "html" / "index.html").read_text(), "html.parser")
    text = " ".join(page.select_one("section p").get_text("", strip=False).split())
    assert text == "Goyal et al. [2017a] and [Goyal et al., 2017b, Li et al., 2022].", text
    listed = [" ".join(item.get_text(" ", strip=True).split()) for item in page.select("div.citation")]
    assert [item.split("]")[0] + "]" for item in listed] == [
        "[ Goyal et al., 2017a ]",
        "[ Goyal et al., 2017b ]",
        "[ Li et al., 2022 ]",
    ]
    assert "Piotr Dollár" in listed[0]

"""Student notebooks and the student edition (`python -m mvit.student`): solutions out, a place for each answer,
checks that fail on the stub and pass on the book's solution."""

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mvit.exercises import STRICT_ENV, digest
from mvit.student import (
    ANSWER_TEXT,
    SolutionTagError,
    answer_cells,
    check_call,
    count_exercises,
    solution_cells,
    solutions,
    strip_solutions,
)

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TAG = {"tags": ["solution"]}
CHECK = {"tags": ["check"]}
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
# The cheapest chapters (seconds under the cpu profile): the ones whose student notebooks the tests execute.
CHEAP_CHAPTERS = ("01_vit_to_mvit", "02_pooling_attention", "04_multiscale_stages")
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def exercise(label: str, text: str):
    return new_markdown_cell(f"```{{exercise-start}}\n:label: {label}\n```\n{text}\n```{{exercise-end}}\n```")


def solution(label: str, *code: str) -> list:
    return [
        new_markdown_cell(f"```{{solution-start}} {label}\n:class: dropdown\n```", metadata=TAG),
        *(new_code_cell(c, metadata=TAG) for c in code),
        new_markdown_cell("```{solution-end}\n```", metadata=TAG),
    ]


def fake_notebook():
    """Three exercises: two with gated solutions and check cells, one discussion without a check."""
    return new_notebook(
        cells=[
            new_markdown_cell("# A tiny chapter"),
            new_code_cell("from mvit.exercises import check\n\nx = 3"),
            exercise("ex-square", "Set `square` to the square of `x`."),
            *solution("ex-square", "square = x * x"),
            new_code_cell(f'check("ex-square", square="{digest(9)}")', metadata=CHECK),
            new_code_cell("cube = x ** 3\nprint(cube)"),
            exercise("ex-half", "Set `half` to half of `x` and `twice` to twice `x` (within 1 %)."),
            *solution("ex-half", "half = x / 2", "twice = 2 * x"),
            new_code_cell(f'check("ex-half", half="{digest(1.5)}", twice=(5.94, 6.06))', metadata=CHECK),
            exercise("ex-why", "Why is the square of 3 odd?"),
            *solution("ex-why"),
            new_markdown_cell("The end."),
        ],
        metadata=KERNEL,
    )


def run(nb, cwd: Path, monkeypatch, sockets: Path, timeout: int = 60):
    """Execute `nb` in a kernel outside strict mode (the way a student runs it), in folder `cwd`. The kernel talks
    over Unix sockets under `sockets`: TCP ports picked while other kernels start on the machine can collide, and
    a lost reply stalls the run until its timeout."""
    monkeypatch.delenv(STRICT_ENV, raising=False)
    monkeypatch.setenv("MVIT_PROFILE", "cpu")
    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(sockets / "kernel"))
    NotebookClient(nb, km=kernel, timeout=timeout, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def check_lines(nb) -> list[str]:
    """What every check cell printed, one string per check cell, in order."""
    printed = []
    for cell in nb.cells:
        if "check" in cell.metadata.get("tags", []):
            printed.append("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"))
    return printed


def assert_student_copy(book_nb, student_nb, name: str):
    """The student notebook holds the book's non-solution cells unchanged, in order, and, in each solution's place,
    exactly `answer_cells` of it: so no solution code can be in it. Each stub sets exactly the checked names."""
    found = solutions(book_nb, name)
    expected, solution_at = [], {s.start: s for s in found}
    skip_to = -1
    for i, cell in enumerate(book_nb.cells):
        if i in solution_at:
            expected.extend(answer_cells(solution_at[i]))
            skip_to = solution_at[i].end
        if i > skip_to:
            expected.append(cell)
    assert [(c.cell_type, c.source, c.get("id")) for c in student_nb.cells] == [
        (c.cell_type, c.source, c.get("id")) for c in expected
    ], f"{name}: the student notebook is not the book's notebook with each solution replaced by its answer cells"
    solution_sources = {book_nb.cells[i].source for i in solution_cells(book_nb, name)}
    for cell in student_nb.cells:
        assert "solution" not in cell.metadata.get("tags", []), f"{name}: a solution cell survived"
        assert cell.source not in solution_sources or not cell.source.strip(), f"{name}: solution code survived"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs were kept"
    stubs = [c for c in student_nb.cells if (c.get("id") or "").startswith("stub-")]
    assert [tuple(line.split(" = ")[0] for line in c.source.splitlines()) for c in stubs] == [
        s.checked for s in found if s.checked
    ], f"{name}: one stub per checked exercise, setting exactly the names its check reads"
    assert all(line.endswith(" = ...") for c in stubs for line in c.source.splitlines())
    assert count_exercises(student_nb) == count_exercises(book_nb)


def test_check_calls_are_parsed():
    assert check_call('check("ex-a", blocks="0a1b", ratio=(1.2, 1.6))') == ("ex-a", ("blocks", "ratio"))
    assert check_call('mvit.exercises.check("ex-b", n="0a", _namespace=g)') == ("ex-b", ("n",))
    with pytest.raises(SolutionTagError, match="exactly one check"):
        check_call("print(1)")
    with pytest.raises(SolutionTagError, match="name its exercise first"):
        check_call("check(label, n='0a')")
    with pytest.raises(SolutionTagError, match="no \\*\\*kwargs"):
        check_call("check('ex-c', **answers)")


def test_solutions_and_their_checks_are_found():
    found = solutions(fake_notebook())
    assert [(s.label, s.start, s.end, s.check_cell, s.checked) for s in found] == [
        ("ex-square", 3, 5, 6, ("square",)),
        ("ex-half", 9, 12, 13, ("half", "twice")),
        ("ex-why", 15, 16, None, ()),
    ]
    assert solution_cells(fake_notebook()) == [3, 4, 5, 9, 10, 11, 12, 15, 16]


def test_the_student_copy_replaces_each_solution_by_an_answer_and_a_stub():
    nb = fake_notebook()
    nb.cells[7].outputs = [nbformat.v4.new_output("stream", name="stdout", text="27\n")]
    nb.cells[7].execution_count = 7
    student = strip_solutions(nb, name="tiny.ipynb")
    assert_student_copy(nb, student, "tiny.ipynb")
    sources = [c.source for c in student.cells]
    assert "square = ..." in sources and "half = ...\ntwice = ..." in sources
    answers = [s for s in sources if s.startswith(ANSWER_TEXT)]
    assert len(answers) == 3 and "`half`, `twice`" in answers[1] and "Write it here" in answers[2]
    nbformat.validate(student)


def test_student_notebooks_check_the_stub_and_the_reference_solution(tmp_path, monkeypatch):
    """Executed, the student notebook runs to the end and every check says "not answered yet"; the book's
    notebook, with its reference solutions, passes every check."""
    book, student = fake_notebook(), strip_solutions(fake_notebook())
    printed = check_lines(run(student, tmp_path, monkeypatch, tmp_path))
    assert printed == [
        "✗ ex-square: not answered yet: square\n",
        "✗ ex-half: not answered yet: half, twice\n",
    ]
    assert check_lines(run(book, tmp_path, monkeypatch, tmp_path)) == ["✓ ex-square: right\n", "✓ ex-half: right\n"]


def test_check_cell_must_follow_the_solution_of_its_exercise():
    nb = fake_notebook()
    nb.cells[6].source = nb.cells[6].source.replace("ex-square", "ex-half")
    with pytest.raises(SolutionTagError, match="cell 6 checks 'ex-half' but follows the solution of 'ex-square'"):
        solutions(nb, name="ch.ipynb")
    nb = fake_notebook()
    nb.cells[7].metadata = dict(CHECK)
    with pytest.raises(SolutionTagError, match="cell 7 is tagged 'check' but is not a code cell right after"):
        solutions(nb, name="ch.ipynb")


def test_untagged_cell_inside_a_solution_is_an_error():
    nb = fake_notebook()
    nb.cells[4].metadata = {}
    with pytest.raises(SolutionTagError, match="cell 4 is part of a solution but lacks"):
        strip_solutions(nb, name="ch.ipynb")


def test_tagged_cell_outside_a_solution_is_an_error():
    nb = fake_notebook()
    nb.cells[1].metadata = dict(TAG)
    with pytest.raises(SolutionTagError, match="cell 1 is tagged 'solution' but is not inside"):
        solution_cells(nb)


def test_unclosed_solution_is_an_error():
    nb = fake_notebook()
    nb.cells = nb.cells[:12]  # drop ex-half's solution-end and everything after it
    with pytest.raises(SolutionTagError, match="opened in cell 9 is never closed"):
        solution_cells(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_book_s_student_notebooks_hold_no_solution_code(path):
    nb = nbformat.read(path, as_version=4)
    assert_student_copy(nb, strip_solutions(nb, name=path.name), path.name)


def _names(source: str, context) -> set[str]:
    """Names a cell's code stores (assignments, definitions, parameters, imports) or loads, by `context`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, context):
            found.add(node.id)
        elif context is ast.Store and isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif context is ast.Store and isinstance(node, ast.arg):  # a parameter: local to its function
            found.add(node.arg)
        elif context is ast.Store and isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return found


def cells_needing_a_solution(nb, name: str) -> list[str]:
    """The cells outside the solutions (and their checks) that read a name only a solution defines."""
    found = solutions(nb, name)
    in_solution = {i for s in found for i in range(s.start, s.end + 1)}
    checks = {s.check_cell for s in found}
    code = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.source.startswith("%")]
    stored_in = {
        inside: set().union(*(_names(src, ast.Store) for i, src in code if (i in in_solution) == inside))
        for inside in (True, False)
    }
    only_in_solutions = stored_in[True] - stored_in[False]
    return [
        f"cell {i}: {sorted(_names(src, ast.Load) & only_in_solutions)}"
        for i, src in code
        if i not in in_solution and i not in checks and _names(src, ast.Load) & only_in_solutions
    ]


def test_a_cell_that_needs_a_solution_is_found():
    nb = fake_notebook()
    assert cells_needing_a_solution(nb, "tiny.ipynb") == []
    nb.cells[7].source = "print(x + square)"
    assert cells_needing_a_solution(nb, "tiny.ipynb") == ["cell 7: ['square']"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_of_a_student_notebook_needs_a_solution(path):
    """Every chapter's student notebook can run to the end: no cell outside the solutions (and their checks)
    reads a name that only a solution defines. The expensive chapters are not executed here; this reads them."""
    needs = cells_needing_a_solution(nbformat.read(path, as_version=4), path.name)
    assert not needs, f"{path.name}: cells outside the solutions read names only a solution defines: {needs}"


def _cheap_chapters_with_checks() -> list[str]:
    with_checks = []
    for name in CHEAP_CHAPTERS:
        path = BOOK / f"{name}.ipynb"
        if path.is_file() and any(s.checked for s in solutions(nbformat.read(path, as_version=4), path.name)):
            with_checks.append(name)
    return with_checks[:2]


@pytest.mark.parametrize("name", _cheap_chapters_with_checks())
def test_a_chapter_s_student_notebook_runs_and_its_checks_fail_on_the_stubs(name, monkeypatch, tmp_path):
    """A real chapter's student notebook executes to the end (the cells after an exercise do not need its
    solution), and each of its checks prints "not answered yet". That the book's own solutions pass the same
    checks is what `make test-notebooks` asserts, in strict mode."""
    book = nbformat.read(BOOK / f"{name}.ipynb", as_version=4)
    student = run(strip_solutions(book, name), BOOK, monkeypatch, tmp_path, timeout=600)
    printed = check_lines(student)
    labels = [s.label for s in solutions(book, name) if s.checked]
    assert len(printed) == len(labels)
    for label, text in zip(labels, printed):
        assert text.startswith(f"✗ {label}: ") and "not answered yet" in text, text


def test_cli_writes_the_student_edition(tmp_path):
    src, out = tmp_path / "book", tmp_path / "student"
    (src / "_ext").mkdir(parents=True)
    (src / "_ext" / "ext.py").write_text("def setup(app):\n    return {}\n")
    (src / "intro.md").write_text("# Intro\n")
    (src / "refs.bib").write_text("")
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: 01_tiny\n")
    config = {"title": "Tiny", "bibtex_bibfiles": ["refs.bib"], "sphinx": {"config": {"hide_solutions": False}}}
    (src / "_config.yml").write_text(yaml.safe_dump(config))
    nb = fake_notebook()
    nbformat.write(nb, src / "01_tiny.ipynb")

    done = subprocess.run(
        [sys.executable, "-m", "mvit.student", str(src), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert_student_copy(nb, nbformat.read(out / "01_tiny.ipynb", as_version=4), "01_tiny.ipynb")
    for name in ("intro.md", "refs.bib", "_toc.yml", "_ext/ext.py"):
        assert (out / name).read_text() == (src / name).read_text()
    student_config = yaml.safe_load((out / "_config.yml").read_text())
    assert student_config["sphinx"]["config"]["hide_solutions"] is True
    assert student_config["title"] == "Tiny (student edition)"
    assert (out / "_build" / "studies").resolve() == (src / "_build" / "studies").resolve()


def test_the_student_edition_never_overwrites_the_book_and_errors_are_one_line(tmp_path):
    for args in ([str(tmp_path / "nowhere"), str(tmp_path / "out")], [str(BOOK), str(BOOK)]):
        done = subprocess.run(
            [sys.executable, "-m", "mvit.student", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_the_student_site_config_follows_the_book_s():
    """`make student` builds the site from student/ with the book's settings and solutions hidden."""
    from mvit.student import student_config

    book = yaml.safe_load((ROOT / "_config.yml").read_text())
    student = yaml.safe_load(student_config(BOOK / "_config.yml"))
    assert book["sphinx"]["config"]["hide_solutions"] is False
    assert student["sphinx"]["config"]["hide_solutions"] is True
    assert {k: v for k, v in student.items() if k not in ("title", "sphinx")} == {
        k: v for k, v in book.items() if k not in ("title", "sphinx")
    }
    recipe = (ROOT / "Makefile").read_text().split("\nstudent: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "-m mvit.student book student" in recipe and "MVIT_EXERCISES= " in recipe
    assert "jupyter-book build -W -n --keep-going student/" in recipe


def test_the_book_tooling_imports_without_the_book_extra():
    # nbformat belongs to the `book` extra: a plain `pip install mvit` must still import every module.
    code = (
        "import sys; sys.modules['nbformat'] = None\n"
        "import mvit, mvit.student, mvit.booktools, mvit.engine.study, mvit.fused, mvit.cli; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

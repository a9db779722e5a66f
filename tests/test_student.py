"""Student notebooks (`python -m mvit.student`): solutions out, exercises kept, still runnable."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mvit.student import SolutionTagError, count_exercises, solution_cells, strip_solutions

ROOT = Path(__file__).resolve().parents[1]
TAG = {"tags": ["solution"]}


def exercise(label: str, text: str):
    return new_markdown_cell(f"```{{exercise-start}}\n:label: {label}\n```\n{text}\n```{{exercise-end}}\n```")


def solution(label: str, code: str) -> list:
    return [
        new_markdown_cell(f"```{{solution-start}} {label}\n:class: dropdown\n```", metadata=TAG),
        new_code_cell(code, metadata=TAG),
        new_markdown_cell("```{solution-end}\n```", metadata=TAG),
    ]


def fake_notebook():
    """Two exercises with gated solutions, around cells a student needs."""
    return new_notebook(
        cells=[
            new_markdown_cell("# A tiny chapter"),
            new_code_cell("x = 3"),
            exercise("ex-square", "Compute the square of `x`."),
            *solution("ex-square", "square = x * x\nassert square == 9"),
            new_code_cell("cube = x ** 3\nprint(cube)", outputs=[]),
            exercise("ex-half", "Halve `x`."),
            *solution("ex-half", "half = x / 2\nassert half == 1.5"),
            new_markdown_cell("The end."),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


def test_cli_writes_runnable_student_notebooks(tmp_path):
    src, out = tmp_path / "book", tmp_path / "student"
    src.mkdir()
    nb = fake_notebook()
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text="9\n")]
    nb.cells[4].execution_count = 7
    nbformat.write(nb, src / "01_tiny.ipynb")

    run = subprocess.run(
        [sys.executable, "-m", "mvit.student", str(src), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    student = nbformat.read(out / "01_tiny.ipynb", as_version=4)

    assert len(student.cells) == len(nb.cells) - 6
    for cell in student.cells:
        assert "solution" not in cell.metadata.get("tags", [])
        assert "{solution" not in cell.source
        assert "assert square" not in cell.source and "half = x / 2" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert count_exercises(student) == count_exercises(nb) == 2

    NotebookClient(student, timeout=60, kernel_name="python3").execute()
    printed = [o for c in student.cells if c.cell_type == "code" for o in c.outputs]
    assert printed[0]["text"] == "27\n"


def test_solution_cells_are_found():
    assert solution_cells(fake_notebook()) == [3, 4, 5, 8, 9, 10]


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
    nb.cells = nb.cells[:10]  # drop the last solution-end and the closing cell
    with pytest.raises(SolutionTagError, match="opened in cell 8 is never closed"):
        solution_cells(nb)


def test_missing_folder_gives_a_clear_error(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mvit.student", str(tmp_path / "nowhere"), str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "no notebooks" in run.stderr and "book" in run.stderr


def test_the_book_tooling_imports_without_the_book_extra():
    # nbformat belongs to the `book` extra: a plain `pip install mvit` must still import every module.
    code = (
        "import sys; sys.modules['nbformat'] = None\n"
        "import mvit, mvit.student, mvit.booktools, mvit.engine.study, mvit.fused, mvit.cli; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

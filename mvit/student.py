"""Student notebooks: the book's notebooks with their solutions taken out.

The book's exercises use sphinx-exercise's gated directives in markdown cells::

    ```{exercise-start}            ```{solution-start} my-exercise
    :label: my-exercise            :class: dropdown
    ```                            ```
    ...                            ... (markdown and code cells)
    ```{exercise-end}              ```{solution-end}
    ```                            ```

Every cell from ``solution-start`` to ``solution-end``, both included, carries the cell tag
``solution``. A student notebook is the same notebook without those cells and without outputs::

    python -m mvit.student book student      # what `make student` runs

Tagging is checked first: a solution cell without the tag would leak into the student copy, and
a tagged cell outside a solution would vanish from it silently, so both are errors.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the book extra; imported where it is used, so that `import mvit` never needs it
    import nbformat

SOLUTION_TAG = "solution"
_SOLUTION_START = re.compile(r"\{solution-start\}")
_SOLUTION_END = re.compile(r"\{solution-end\}")
_SOLUTION_PLAIN = re.compile(r"\{solution\}")
_EXERCISE = re.compile(r"\{exercise(-start)?\}")


class SolutionTagError(ValueError):
    """A notebook's `solution` tags do not match its solution directives."""


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def solution_cells(nb: nbformat.NotebookNode, name: str = "notebook") -> list[int]:
    """Indices of the cells that belong to a solution, after checking that they are all tagged.

    A cell belongs to a solution if it lies between a ``solution-start`` and the next
    ``solution-end`` directive (both included) or holds a one-cell ``{solution}`` directive.
    Raises `SolutionTagError`, naming the notebook and the cell, if such a cell lacks the
    ``solution`` tag, if a tagged cell belongs to no solution, or if a solution is not closed.
    """
    inside, start, indices = False, None, []
    for i, cell in enumerate(nb.cells):
        text = cell.source if cell.cell_type == "markdown" else ""
        opens = bool(_SOLUTION_START.search(text))
        closes = bool(_SOLUTION_END.search(text))
        if opens and inside:
            raise SolutionTagError(
                f"{name}: cell {i} starts a solution inside the solution opened in cell {start}; "
                "close the first one with a ```{solution-end}``` cell"
            )
        if opens:
            inside, start = True, i
        if closes and not inside:
            raise SolutionTagError(f"{name}: cell {i} ends a solution that was never started")
        belongs = inside or bool(_SOLUTION_PLAIN.search(text))
        tagged = SOLUTION_TAG in _tags(cell)
        if belongs and not tagged:
            raise SolutionTagError(
                f"{name}: cell {i} is part of a solution but lacks the cell tag "
                f"'{SOLUTION_TAG}'; add the tag so that student notebooks leave it out"
            )
        if tagged and not belongs:
            raise SolutionTagError(
                f"{name}: cell {i} is tagged '{SOLUTION_TAG}' but is not inside a "
                "solution-start/solution-end pair; remove the tag or wrap the cell in a solution"
            )
        if belongs:
            indices.append(i)
        if closes:
            inside = False
    if inside:
        raise SolutionTagError(
            f"{name}: the solution opened in cell {start} is never closed; "
            "add a markdown cell with a ```{solution-end}``` directive"
        )
    return indices


def count_exercises(nb: nbformat.NotebookNode) -> int:
    """Number of ``{exercise}`` / ``{exercise-start}`` directives in the markdown cells."""
    return sum(len(_EXERCISE.findall(cell.source)) for cell in nb.cells if cell.cell_type == "markdown")


def strip_solutions(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of `nb` without its solution cells, with every output and execution count cleared."""
    import nbformat

    drop = set(solution_cells(nb, name))
    student = nbformat.from_dict(nb)
    student.cells = [cell for i, cell in enumerate(student.cells) if i not in drop]
    for cell in student.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return student


def write_student_notebooks(src_dir: Path | str, out_dir: Path | str) -> list[Path]:
    """Write a student copy of every ``*.ipynb`` in `src_dir` (not its subfolders) to `out_dir`."""
    import nbformat

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = sorted(src_dir.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {src_dir}; pass the book's folder, e.g. `book`")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        nb = nbformat.read(src, as_version=4)
        student = strip_solutions(nb, name=str(src))
        dst = out_dir / src.name
        nbformat.write(student, dst)
        written.append(dst)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mvit.student",
        description="Write student notebooks: the book's notebooks without their solution cells.",
    )
    parser.add_argument("src_dir", help="folder of instructor notebooks, e.g. book")
    parser.add_argument("out_dir", help="folder to write the student notebooks to, e.g. student")
    args = parser.parse_args(argv)
    try:
        written = write_student_notebooks(args.src_dir, args.out_dir)
    except (SolutionTagError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} student notebooks to {args.out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Student notebooks and the student edition of the book: every solution replaced by a place for the answer.

The book's exercises use sphinx-exercise's gated directives in markdown cells, and most end with a *check cell*
(cell tag ``check``, right after the solution; `mvit.exercises.check`)::

    ```{exercise-start}        ```{solution-start} ex-ch4-b24      check("ex-ch4-b24",
    :label: ex-ch4-b24         :class: dropdown                         q_pooled="d1c0e5a2b7f4",
    ```                        ```                                      ratio=(1.2, 1.6))
    ...                        ... (markdown and code cells)
    ```{exercise-end}          ```{solution-end}
    ```                        ```

Every cell from ``solution-start`` to ``solution-end``, both included, carries the cell tag ``solution``. In a
student notebook each solution becomes

- a markdown cell "Your answer", and
- when a check cell follows, a code cell that sets every variable the check reads to ``...`` (the stub), so the
  check, which stays, prints "not answered yet" until the student's code sets the right values;

and every output and execution count is cleared. Nothing else changes, and no solution cell survives::

    python -m mvit.student book student     # what `make student` runs, before building student/

writes ``student/*.ipynb`` and the other sources of the book (pages, bibliography, extensions, static files), with
a ``_config.yml`` that hides solutions (sphinx-exercise's ``hide_solutions``), so that ``jupyter-book build
student/`` builds the student site from the student notebooks.

Tagging is checked first: a solution cell without the tag would leak into the student copy, a tagged cell
outside a solution would vanish from it silently, and a check cell that does not follow the solution of the
exercise it names would be stubbed wrongly, so all three are errors.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the book extra; imported where it is used, so that `import mvit` never needs it
    import nbformat

SOLUTION_TAG = "solution"
CHECK_TAG = "check"
_SOLUTION_START = re.compile(r"\{solution-start\}[ \t]*(\S*)")
_SOLUTION_END = re.compile(r"\{solution-end\}")
_SOLUTION_PLAIN = re.compile(r"\{solution\}[ \t]*(\S*)")
_EXERCISE = re.compile(r"\{exercise(-start)?\}")
ANSWER_TEXT = "**Your answer.** "
# The sources of the book besides its notebooks that the student site needs (copied if present).
SITE_SOURCES = ("_toc.yml", "_ext", "_static")
STUDY_CACHE = Path("_build") / "studies"  # where chapters 6-9 cache their training runs, relative to the book


class SolutionTagError(ValueError):
    """A notebook's `solution` / `check` tags do not match its solution directives or its check calls."""


@dataclass(frozen=True)
class Solution:
    """One solution: its cells ``start..end`` (both included), the exercise it solves, and the check cell that
    follows it (index, or None) with the names of the variables that check reads."""

    label: str
    start: int
    end: int
    check_cell: int | None = None
    checked: tuple[str, ...] = ()


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def check_call(source: str, where: str = "check cell") -> tuple[str, tuple[str, ...]]:
    """The exercise label and the checked variable names of the one ``check("ex-id", name=..., ...)`` call in a
    check cell's source (names in the order written; keywords starting with ``_`` are not answers)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise SolutionTagError(f"{where}: cannot parse the check cell: {err}") from None
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (getattr(n.func, "id", None) == "check" or getattr(n.func, "attr", None) == "check")
    ]
    if len(calls) != 1:
        raise SolutionTagError(f"{where}: a check cell holds exactly one check(...) call, found {len(calls)}")
    call = calls[0]
    if not call.args or not isinstance(call.args[0], ast.Constant) or not isinstance(call.args[0].value, str):
        raise SolutionTagError(f'{where}: check(...) must name its exercise first, as a string: check("ex-id", ...)')
    if any(k.arg is None for k in call.keywords):
        raise SolutionTagError(f"{where}: check(...) must name every answer as a keyword (no **kwargs)")
    names = tuple(k.arg for k in call.keywords if not k.arg.startswith("_"))
    if not names:
        raise SolutionTagError(f"{where}: check(...) names no answer variable")
    return call.args[0].value, names


def solutions(nb: nbformat.NotebookNode, name: str = "notebook") -> list[Solution]:
    """Every solution of `nb`, in order, after checking the ``solution`` and ``check`` tags.

    A cell belongs to a solution if it lies between a ``solution-start`` and the next ``solution-end`` directive
    (both included) or holds a one-cell ``{solution}`` directive. Raises `SolutionTagError`, naming the notebook
    and the cell, if such a cell lacks the ``solution`` tag, if a tagged cell belongs to no solution, if a
    solution is not closed, or if a ``check`` cell does not come right after a solution or names another exercise.
    """
    inside, start, label, found = False, None, "", []
    for i, cell in enumerate(nb.cells):
        text = cell.source if cell.cell_type == "markdown" else ""
        opens, plain = _SOLUTION_START.search(text), _SOLUTION_PLAIN.search(text)
        closes = bool(_SOLUTION_END.search(text))
        if opens and inside:
            raise SolutionTagError(
                f"{name}: cell {i} starts a solution inside the solution opened in cell {start}; "
                "close the first one with a ```{solution-end}``` cell"
            )
        if opens:
            inside, start, label = True, i, opens.group(1)
        if closes and not inside:
            raise SolutionTagError(f"{name}: cell {i} ends a solution that was never started")
        belongs = inside or bool(plain)
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
        if plain and not inside:
            found.append(Solution(plain.group(1), i, i))
        if closes:
            inside = False
            found.append(Solution(label, start, i))
    if inside:
        raise SolutionTagError(
            f"{name}: the solution opened in cell {start} is never closed; "
            "add a markdown cell with a ```{solution-end}``` directive"
        )
    return _with_checks(nb, found, name)


def _with_checks(nb, found: list[Solution], name: str) -> list[Solution]:
    after = {s.end + 1: s for s in found}
    result = {s.end: s for s in found}
    for i, cell in enumerate(nb.cells):
        if CHECK_TAG not in _tags(cell):
            continue
        where = f"{name}: cell {i}"
        if cell.cell_type != "code" or i not in after:
            raise SolutionTagError(
                f"{where} is tagged '{CHECK_TAG}' but is not a code cell right after a solution's "
                "```{solution-end}``` cell; move it there or remove the tag"
            )
        solution = after[i]
        exercise, names = check_call(cell.source, where)
        if exercise != solution.label:
            raise SolutionTagError(
                f"{where} checks {exercise!r} but follows the solution of {solution.label!r}; "
                "name the exercise of the solution it follows"
            )
        result[solution.end] = Solution(solution.label, solution.start, solution.end, i, names)
    return [result[s.end] for s in found]


def solution_cells(nb: nbformat.NotebookNode, name: str = "notebook") -> list[int]:
    """Indices of the cells that belong to a solution (checked as in `solutions`)."""
    return [i for s in solutions(nb, name) for i in range(s.start, s.end + 1)]


def count_exercises(nb: nbformat.NotebookNode) -> int:
    """Number of ``{exercise}`` / ``{exercise-start}`` directives in the markdown cells."""
    return sum(len(_EXERCISE.findall(cell.source)) for cell in nb.cells if cell.cell_type == "markdown")


def _cell_id(prefix: str, label: str) -> str:
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9_-]', '-', label)}"[:64]


def answer_cells(solution: Solution) -> list[nbformat.NotebookNode]:
    """What takes a solution's place in a student notebook: the "Your answer" cell, and the stub that sets every
    checked variable to ``...`` when a check follows."""
    from nbformat.v4 import new_code_cell, new_markdown_cell

    if not solution.checked:
        return [new_markdown_cell(ANSWER_TEXT + "Write it here.", id=_cell_id("answer", solution.label))]
    names = ", ".join(f"`{n}`" for n in solution.checked)
    text = f"Set {names} in the code cell below; the check after it says whether each is right."
    stub = "\n".join(f"{n} = ..." for n in solution.checked)
    return [
        new_markdown_cell(ANSWER_TEXT + text, id=_cell_id("answer", solution.label)),
        new_code_cell(stub, id=_cell_id("stub", solution.label)),
    ]


def strip_solutions(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A student copy of `nb`: each solution replaced by `answer_cells`, every output and execution count
    cleared."""
    import nbformat

    by_start = {s.start: s for s in solutions(nb, name)}
    student = nbformat.from_dict(nb)
    cells, skip_to = [], -1
    for i, cell in enumerate(student.cells):
        if i in by_start:
            cells.extend(answer_cells(by_start[i]))
            skip_to = by_start[i].end
        if i <= skip_to:
            continue
        cells.append(cell)
    student.cells = cells
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
    students = [(src.name, strip_solutions(nbformat.read(src, as_version=4), name=str(src))) for src in sources]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, student in students:
        nbformat.write(student, out_dir / file_name)
        written.append(out_dir / file_name)
    return written


def student_config(config_file: Path | str) -> str:
    """The book's ``_config.yml`` for the student site: the same settings, solutions hidden, "student edition"
    in the title."""
    import yaml

    config = yaml.safe_load(Path(config_file).read_text())
    config["title"] = f"{config.get('title', 'The book')} (student edition)"
    config.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    header = (
        "# The student edition's Jupyter Book configuration, written by `python -m mvit.student` from the book's\n"
        "# _config.yml: the same settings, with sphinx-exercise's hide_solutions on. Edit the book's, not this one.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def write_student_book(src_dir: Path | str, out_dir: Path | str) -> list[Path]:
    """Write the student edition of the book in `src_dir` to `out_dir`: the student notebooks, the other pages
    (``*.md``), the bibliography files, the table of contents, extensions and static files, and the student
    ``_config.yml``; `out_dir` then builds with ``jupyter-book build``. The chapters' study cache is shared with
    the book's (``_build/studies``, keyed by the package's code), so building it does not train again."""
    import yaml

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    config_file = src_dir / "_config.yml"
    if not config_file.is_file():
        raise FileNotFoundError(f"no _config.yml in {src_dir}; pass the book's folder, e.g. `book`")
    if out_dir.resolve() == src_dir.resolve():
        raise FileExistsError(f"the student edition would overwrite the book in {src_dir}; pass another folder")
    written = write_student_notebooks(src_dir, out_dir)

    bibfiles = yaml.safe_load(config_file.read_text()).get("bibtex_bibfiles", [])
    for source in [
        *sorted(src_dir.glob("*.md")),
        *(src_dir / b for b in bibfiles),
        *(src_dir / s for s in SITE_SOURCES),
    ]:
        if source.is_dir():
            shutil.copytree(
                source, out_dir / source.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.is_file():
            shutil.copy2(source, out_dir / source.name)
    (out_dir / "_config.yml").write_text(student_config(config_file))
    cache, link = src_dir / STUDY_CACHE, out_dir / STUDY_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        if link.exists():
            shutil.rmtree(link)
        link.symlink_to(os.path.relpath(cache.resolve(), link.parent.resolve()), target_is_directory=True)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mvit.student",
        description="Write the student edition: the book's notebooks with an answer cell (and a stub for the "
        "check) in place of each solution, and the sources of a student site without solutions.",
    )
    parser.add_argument("src_dir", help="folder of the book (instructor notebooks and _config.yml), e.g. book")
    parser.add_argument("out_dir", help="folder to write the student edition to, e.g. student")
    args = parser.parse_args(argv)
    try:
        written = write_student_book(args.src_dir, args.out_dir)
    except (SolutionTagError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {len(written)} student notebooks and the student site's sources to {args.out_dir}/; "
        f"build the site with `jupyter-book build {args.out_dir}/`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

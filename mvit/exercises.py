"""Checks for the book's exercises: a student learns whether an answer is right without seeing the solution.

A chapter's exercise ends with a *check cell* (cell tag ``check``, right after the solution) that names the
variables the answer must set and what each must equal::

    check("ex-ch4-b24", q_pooled="d1c0e5a2b7f4", widened="0a9b3c6d1e2f", ratio=(1.2, 1.6))

Each keyword is the name of a variable in the notebook, and its value is either

- a digest (`digest` of the right value: ints, strings, bools, lists, tuples, sets, dicts, tensors and NumPy
  arrays, floats compared to 4 significant digits), for answers that do not depend on the machine; or
- an interval ``(low, high)`` for a measured number (a time, an accuracy) that does.

The digest shows nothing of the value or of the code that computes it. `check` reads the variables from the
namespace of the cell that calls it and prints one short line per exercise (``✓ ...``, or ``✗ ...`` naming the
answers that are missing or wrong). In the book the solution's code sets the variables; in the student
notebooks (`mvit.student`) a cell that sets each of them to ``...`` takes the solution's place, so the check
says "not answered yet" until the student writes the answer.

With ``MVIT_EXERCISES=strict`` (the book's notebook tests set it) a wrong answer raises `AssertionError`, so
a reference solution that stops matching its check fails the tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from numbers import Integral, Real
from typing import Any, Union

STRICT_ENV = "MVIT_EXERCISES"
Expected = Union[str, tuple[float, float]]


def canonical(value: Any) -> Any:
    """`value` as plain JSON data: the form `digest` hashes. Floats keep 4 significant digits; tuples become
    lists; sets and dict keys are sorted; tensors and arrays become nested lists."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # torch.Tensor, numpy array or scalar
        return canonical(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        x = float(value)
        return float(f"{x:.4g}") if math.isfinite(x) else str(x)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=repr)
    if isinstance(value, dict):
        return [[canonical(k), canonical(v)] for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))]
    raise TypeError(f"cannot check a {type(value).__name__}; give a number, string, list, dict or tensor")


def digest(value: Any) -> str:
    """The 12-hex-digit SHA-256 digest of ``canonical(value)``: what a check cell compares an answer with."""
    text = json.dumps(canonical(value), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _problem(name: str, value: Any, expected: Expected) -> tuple[str, str] | None:
    """``(kind, detail)`` of why `value` is not the answer `expected` for `name`, or None when it is."""
    if value is ...:
        return "not answered yet", name
    if isinstance(expected, str):
        try:
            right = digest(value) == expected
        except TypeError:
            return "not a number, string, list, dict or tensor", name
        return None if right else ("not right yet", name)
    low, high = expected
    if not isinstance(value, Real) or isinstance(value, bool):
        return "not a number", name
    if not low <= float(value) <= high:
        return "outside the expected range", f"{name} = {float(value):.4g} not in [{low:g}, {high:g}]"
    return None


def check(exercise: str, _namespace: dict | None = None, **expected: Expected) -> None:
    """Check the answer variables of `exercise` (keywords: variable name -> digest or interval) in the
    calling cell's namespace (or `_namespace`) and print one short line: ``✓ ex-id: right``, or ``✗ ex-id:``
    and the names grouped by what is wrong (``not answered yet: a, b; not right yet: c``). Returns None, so a
    check cell shows only that line; raises `AssertionError` instead under ``MVIT_EXERCISES=strict``."""
    if not expected:
        raise ValueError("check() needs at least one answer: check('ex-id', name=digest_or_interval)")
    namespace = _namespace if _namespace is not None else sys._getframe(1).f_globals
    problems: dict[str, list[str]] = {}
    for name, want in expected.items():
        problem = ("not defined", name) if name not in namespace else _problem(name, namespace[name], want)
        if problem:
            problems.setdefault(problem[0], []).append(problem[1])
    if not problems:
        print(f"✓ {exercise}: right")
        return
    summary = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in problems.items())
    print(f"✗ {exercise}: {summary}")
    if os.environ.get(STRICT_ENV) == "strict":
        raise AssertionError(f"{exercise}: {summary}")

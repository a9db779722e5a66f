"""mvit.exercises: the checks of the book's exercises."""

import numpy as np
import pytest
import torch

from mvit.exercises import STRICT_ENV, canonical, check, digest


def test_digest_is_the_same_for_equal_answers_of_different_types():
    assert digest([2, 5, 21]) == digest((2, 5, 21)) == digest(torch.tensor([2, 5, 21])) == digest(np.array([2, 5, 21]))
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
    assert digest({3, 1, 2}) == digest([1, 2, 3])
    assert digest(0.123456) == digest(0.1235) and digest(0.1234) != digest(0.1236)
    assert digest(np.float32(1.5)) == digest(1.5) and digest(np.int64(7)) == digest(7)
    assert digest([1, 2]) != digest([2, 1]) and digest("1") != digest(1) and digest(True) != digest(1)
    assert len(digest("x")) == 12 and all(c in "0123456789abcdef" for c in digest("x"))


def test_canonical_refuses_what_it_cannot_compare():
    with pytest.raises(TypeError, match="cannot check a object"):
        canonical(object())


def test_check_passes_the_right_answer_and_fails_a_stub_or_a_wrong_one(monkeypatch, capsys):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    want = {"blocks": digest([2, 5, 21]), "ratio": (1.2, 1.6)}

    def printed(namespace):
        assert check("ex-a", namespace, **want) is None  # a check cell shows its line, not a return value
        return capsys.readouterr().out

    assert printed({"blocks": [2, 5, 21], "ratio": 1.4}) == "✓ ex-a: right\n"
    assert printed({"blocks": ..., "ratio": ...}) == "✗ ex-a: not answered yet: blocks, ratio\n"
    assert printed({"blocks": [2, 5, 20], "ratio": 1.4}) == "✗ ex-a: not right yet: blocks\n"
    assert printed({"blocks": [2, 5, 21], "ratio": 2.0}) == (
        "✗ ex-a: outside the expected range: ratio = 2 not in [1.2, 1.6]\n"
    )
    assert printed({"ratio": "1.4"}) == "✗ ex-a: not defined: blocks; not a number: ratio\n"


def test_check_reads_the_callers_globals(capsys):
    namespace = {"check": check, "answer": 42}
    exec("check('ex-b', answer=" + repr(digest(42)) + ")", namespace)  # reads `answer` from `namespace`
    exec("check('ex-b', answer=" + repr(digest(41)) + ")", namespace)
    assert capsys.readouterr().out == "✓ ex-b: right\n✗ ex-b: not right yet: answer\n"


def test_strict_mode_raises_naming_the_exercise(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "strict")
    with pytest.raises(AssertionError, match="ex-c: not right yet: answer"):
        check("ex-c", {"answer": 1}, answer=digest(2))
    with pytest.raises(ValueError, match="at least one answer"):
        check("ex-c", {})

"""ReFT's reward rule: 1 correct, 0.1 extracted but wrong, 0 nothing extracted."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from reft.rewards import Judgement, judge, score, value_to_answer


def test_nl_scores_by_hand():
    completions = [
        "4 + 4 = 8\nTherefore, the answer is: 8",  # correct -> 1
        "4 + 5 = 9\nTherefore, the answer is: 9",  # extracted, wrong -> 0.1
        "4 + 4 = 8",  # no trigger -> 0
        "Therefore, the answer is: eight",  # no number -> 0 (not "extracted", as in ReFT)
        "Therefore, the answer is: 8.004",  # within 1e-2 -> 1
        "Therefore, the answer is <8>.",  # release style -> 1
    ]
    assert score(completions, ["8"] * 6) == [1.0, 0.1, 0.0, 0.0, 1.0, 1.0]


def test_judge_fields():
    got = judge(["Therefore, the answer is: 203", "x\nTherefore, the answer is: 3"], ["203.0", "4"])
    assert got == [Judgement("203", True, 1.0), Judgement("3", False, 0.1)]


@pytest.mark.parametrize(
    ("parser", "expected"),
    [
        # "3 apples" / "$4" / "1,000" / "2 + 2 = 4" / "<4>." / "4" without a trigger
        ("default", [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]),
        ("release", [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
        ("lenient", [0.1, 1.0, 0.1, 0.0, 1.0, 0.0]),
    ],
)
def test_parser_decides_what_is_an_answer(parser, expected):
    t = "x\nTherefore, the answer is: "
    completions = [t + "3 apples", t + "$4", t + "1,000", t + "2 + 2 = 4",
                   "x\nTherefore, the answer is <4>.", "4"]
    assert score(completions, ["4"] * 6, parser=parser) == expected


def test_partial_reward_is_configurable():
    assert score(["Therefore, the answer is: 9"], ["8"], partial=0.0) == [0.0]
    assert score(["Therefore, the answer is: 9"], ["8"], partial=0.5) == [0.5]


@pytest.mark.parametrize(
    ("parser", "expected"),
    [
        ("default", [1.0, 0.1, 0.0, 0.0, 0.0, 1.0]),
        # the release: any text is an answer, right only when it is the gold letter
        ("release", [1.0, 0.1, 0.1, 0.1, 0.1, 0.1]),
        ("lenient", [1.0, 0.1, 1.0, 0.0, 0.0, 1.0]),
    ],
)
def test_multiple_choice(parser, expected):
    t = "x\nTherefore, the answer is: "
    completions = [t + "c", t + "b", t + "(C)", t + "38", "nothing", "x\nTherefore, the answer is <c>."]
    assert score(completions, ["c"] * 6, task="mc", parser=parser) == expected


def test_empty_batch():
    assert score([], []) == []
    assert score([], [], cot="python") == []


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="gold"):
        score(["a", "b"], ["1"])
    with pytest.raises(ValueError, match="cot"):
        score(["a"], ["1"], cot="latex")
    with pytest.raises(ValueError, match="task"):
        score(["a"], ["1"], task="yes/no")


@pytest.fixture
def fake_sandbox(monkeypatch):
    """A stand-in ``reft.sandbox`` whose run_programs "runs" a program by looking it up."""
    calls = []
    outcomes = {
        "prog_ok": SimpleNamespace(value=203.0, error=None),
        "prog_int": SimpleNamespace(value=8, error=None),
        "prog_wrong": SimpleNamespace(value=7.5, error=None),
        "prog_close": SimpleNamespace(value=3.3333333, error=None),
        "prog_error": SimpleNamespace(value=None, error="ZeroDivisionError: division by zero"),
        "prog_timeout": SimpleNamespace(value=None, error="timeout after 3.0 s"),
        "prog_none": SimpleNamespace(value=None, error=None),
        "prog_text": SimpleNamespace(value="banana", error=None),
        "prog_letter": SimpleNamespace(value="c", error=None),
        "prog_paren": SimpleNamespace(value="(c)", error=None),
        "prog_dollars": SimpleNamespace(value="5 dollars", error=None),
        "prog_str_num": SimpleNamespace(value="8", error=None),
        "prog_nan": SimpleNamespace(value=float("nan"), error=None),
        "prog_bool": SimpleNamespace(value=True, error=None),
    }

    def run_programs(programs, timeout_s=3.0):
        # each arrives behind the release's prelude (reft.rewards.release_source): its last
        # line is its name
        names = [p.rsplit("\n", 1)[-1] for p in programs]
        calls.append((names, timeout_s))
        return [outcomes[name] for name in names]

    module = types.ModuleType("reft.sandbox")
    module.run_programs = run_programs
    monkeypatch.setitem(sys.modules, "reft.sandbox", module)
    return calls


def test_python_scores_by_hand(fake_sandbox):
    programs = [
        "prog_ok",
        "prog_int",
        "prog_wrong",
        "prog_close",
        "prog_error",
        "prog_timeout",
        "prog_none",
        "prog_text",
        "prog_nan",
        "prog_bool",
    ]
    golds = ["203.0", "8", "8", "3.333", "1", "1", "1", "1", "1", "1"]
    got = judge(programs, golds, cot="python", timeout_s=1.5)
    # 203.0 == 203 -> 1; 8 -> 1; 7.5 != 8 -> 0.1; 3.333333 vs 3.333 (diff 3e-4) -> 1;
    # errors, timeouts, None, text, NaN and booleans are no answer -> 0
    assert [j.score for j in got] == [1.0, 1.0, 0.1, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [j.pred for j in got[:4]] == ["203", "8", "7.5", "3.333333"]
    assert fake_sandbox == [(programs, 1.5)]  # one batched call, timeout passed through


def test_python_multiple_choice(fake_sandbox):
    assert score(
        ["prog_letter", "prog_letter", "prog_ok"], ["c", "a", "c"], task="mc", cot="python"
    ) == [1.0, 0.1, 0.0]


@pytest.mark.parametrize(
    ("parser", "numeric", "mc"),
    [("default", [0.0, 1.0, 1.0], [0.0, 1.0]), ("release", [0.0, 1.0, 1.0], [0.1, 1.0]),
     ("lenient", [1.0, 1.0, 1.0], [1.0, 1.0])],
)
def test_python_returned_values_are_read_by_the_parser(fake_sandbox, parser, numeric, mc):
    assert score(["prog_dollars", "prog_str_num", "prog_int"], ["5", "8", "8"], cot="python",
                 parser=parser) == numeric
    assert score(["prog_paren", "prog_letter"], ["c", "c"], task="mc", cot="python",
                 parser=parser) == mc


def test_python_without_sandbox_raises_not_implemented(monkeypatch):
    monkeypatch.setitem(sys.modules, "reft.sandbox", None)  # makes the import fail
    with pytest.raises(NotImplementedError, match="reft.sandbox"):
        score(["def solution():\n    return 1"], ["1"], cot="python")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (203.0, "203"),
        (7, "7"),
        (2.5, "2.5"),
        ("c", "c"),
        (" 18 ", "18"),
        ("", None),
        (None, None),
        (True, None),
        (float("inf"), None),
    ],
)
def test_value_to_answer(value, expected):
    assert value_to_answer(value) == expected


def test_python_with_the_real_sandbox():
    try:
        from reft.sandbox import run_programs  # noqa: F401
    except ImportError:
        pytest.skip("reft.sandbox.run_programs is not available yet")
    from reft.data.prompts import program_from_completion

    q = "Tom has 3 apples and buys 4 more. How many now?"
    programs = [
        program_from_completion(q, "    return 3 + 4"),  # 7 -> 1
        program_from_completion(q, "    return 3 * 4"),  # 12 -> 0.1
        program_from_completion(q, "    return 1 / 0"),  # error -> 0
    ]
    assert score(programs, ["7", "7", "7"], cot="python") == [1.0, 0.1, 0.0]

"""P-CoT programs run as the ReFT release runs them (its ``src/python_engine.py``): ``math``
and ``sympy`` need no import, ``sys.exit`` is ``print``, a program ends at its first blank
line; and the time limit is the ``timeout_s`` setting, all the way to the sandbox."""

from __future__ import annotations

import inspect

import pytest

from reft.config import PPOConfig, SamplingConfig, SelfTrainConfig
from reft.data.records import Example
from reft.rewards import judge, score
from reft.rollout.score import score_texts


@pytest.fixture(scope="module", autouse=True)
def sandbox_available():
    try:
        from reft.sandbox import run_programs  # noqa: F401
    except ImportError:
        pytest.skip("reft.sandbox.run_programs is not available")


def test_math_and_sympy_need_no_import():
    programs = [
        "def solution():\n    return math.sqrt(16)",
        "def solution():\n    x = sympy.Symbol('x')\n    return sympy.solve(2 * x - 8, x)[0]",
        "def solution():\n    return math.floor(sympy.Rational(9, 2)) + 0",
        "import math\ndef solution():\n    return math.ceil(3.5)",  # its own import still works
    ]
    got = judge(programs, ["4"] * 4, cot="python")
    assert [(j.pred, j.score) for j in got] == [("4", 1.0)] * 4


def test_the_prelude_imports_sympy_only_where_it_is_named():
    from reft.rewards import release_source

    assert release_source("def solution():\n    return 4") == (
        "import math\ndef solution():\n    return 4"
    )
    assert release_source("def solution():\n    return sympy.Integer(4)") == (
        "import math\nimport sympy\ndef solution():\n    return sympy.Integer(4)"
    )


def test_sys_exit_is_print_as_in_the_release():
    program = "def solution():\n    import sys\n    sys.exit(3)\n    return 4"
    assert score([program], ["4"], cot="python") == [1.0]


@pytest.mark.parametrize(
    ("program", "reward"),
    [
        # a second program after a blank line: the release runs only the first (4, not 5)
        ("def solution():\n    return 4\n\ndef solution():\n    return 5\n", 1.0),
        # junk after a blank line is dropped, so the program still compiles
        ("def solution():\n    return 4\n  \nSo the answer is 4.\n", 1.0),
        # a blank line inside the body ends the program there: no return, no answer
        ("def solution():\n    x = 4\n\n    return x\n", 0.0),
    ],
)
def test_a_program_ends_at_its_first_blank_line(program, reward):
    assert score([program], ["4"], cot="python") == [reward]


def test_a_completion_is_cut_on_the_rollout_path():
    example = Example("t_1", "Tom has 3 apples and buys 1 more. How many now?", "4")
    completion = "    return 3 + 1\n\ndef solution():\n    return 31\n"
    settings = PPOConfig(cot="python")
    assert [(j.pred, j.score) for j in score_texts([completion], [example], settings)] == [
        ("4", 1.0)
    ]


def test_the_timeout_setting_reaches_the_sandbox():
    example = Example("t_1", "How many?", "4")
    completion = "    import time\n    time.sleep(0.6)\n    return 4"

    def judged(timeout_s: float):
        settings = PPOConfig(cot="python", sampling=SamplingConfig(timeout_s=timeout_s))
        return [(j.pred, j.score) for j in score_texts([completion], [example], settings)]

    assert judged(0.2) == [(None, 0.0)]
    assert judged(3.0) == [("4", 1.0)]


def test_the_timeout_defaults_agree():
    default = inspect.signature(judge).parameters["timeout_s"].default
    assert SamplingConfig().timeout_s == SelfTrainConfig().sampling.timeout_s == default

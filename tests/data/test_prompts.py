"""Prompts, targets and rebuilt programs in ReFT's format."""

from __future__ import annotations

import pytest

from reft.answers import extract_answer
from reft.data import Example
from reft.data.prompts import (
    build_prompt,
    build_target,
    cut_at_blank_line,
    format_answer,
    full_program,
    program_body,
    program_from_completion,
    python_header,
)
from reft.errors import UserError

Q = "Tom has 3 apples and buys 4 more. How many now?"
PROGRAM = (
    f'def solution():\n    """{Q}"""\n    apples = 3 + 4\n    result = apples\n    return result'
)


def run(program: str):
    namespace: dict = {}
    exec(compile(program, "<test>", "exec"), namespace)  # test-written programs only
    return namespace["solution"]()


def test_nl_prompt_is_reft_format():
    assert build_prompt(Q) == f"Question:\n{Q}\nAnswer reasoning:\n"
    assert build_prompt(f"  {Q}\n") == f"Question:\n{Q}\nAnswer reasoning:\n"


def test_python_prompt_opens_the_program():
    assert build_prompt(Q, "python") == (
        f'Question:\n{Q}\nAnswer reasoning:\ndef solution():\n    """{Q}"""\n'
    )


def test_custom_template():
    assert build_prompt("1+1?", template="Q: {question}\nA:") == "Q: 1+1?\nA:"
    # braces other than {question} are left alone (no str.format)
    assert build_prompt("1+1?", template="{x} {question} {}") == "{x} 1+1? {}"
    with pytest.raises(UserError, match=r"--template: must contain \{question\}"):
        build_prompt(Q, template="Question: {q}")


@pytest.mark.parametrize(
    ("gold", "written"),
    [
        ("203.0", "203"),
        ("3.50", "3.5"),
        ("18", "18"),
        ("-2.000", "-2"),
        ("0.0", "0"),
        ("-0.0", "0"),
        ("3.333", "3.333"),
        ("c", "c"),
        ("3/4", "3/4"),
        (" 7 ", "7"),
    ],
)
def test_format_answer(gold, written):
    assert format_answer(gold) == written


def test_nl_target():
    ex = Example("svamp_0", Q, "7.0", "3 + 4 = 7 apples.")
    target = build_target(ex)
    assert target == "3 + 4 = 7 apples.\nTherefore, the answer is: 7"
    assert extract_answer(build_prompt(Q) + target) == "7"


def test_target_needs_a_cot():
    with pytest.raises(UserError, match="example t_1: no chain of thought"):
        build_target(Example("t_1", Q, "7"))


def test_python_target_is_the_body_and_rebuilds_the_program():
    ex = Example("p", Q, "7.0", PROGRAM)
    body = build_target(ex, "python")
    assert body == "    apples = 3 + 4\n    result = apples\n    return result"
    assert program_from_completion(Q, body) == PROGRAM
    assert full_program(build_prompt(Q, "python") + body) == PROGRAM
    assert run(program_from_completion(Q, body)) == 7


def test_python_target_with_a_different_docstring():
    # 37 SVAMP programs re-punctuate the question in their docstring: the header
    # (docstring included) is dropped, and the prompt's header uses the question.
    program = 'def solution():\n    """Tom has 3 apples."""\n    return 3 + 4'
    body = program_body(program)
    assert body == "    return 3 + 4"
    assert program_from_completion(Q, body) == python_header(Q) + "    return 3 + 4"


@pytest.mark.parametrize(
    ("program", "body"),
    [
        ('def solution():\n    """Line one.\n    Line two."""\n    return 1', "    return 1"),
        ("def solution():\n    '''Q'''\n    return 1", "    return 1"),
        ("def solution():\n    return 1", "    return 1"),
        ('\n\ndef solution():\n    """Q"""\n    return 1\n\n', "    return 1"),
    ],
)
def test_program_body_headers(program, body):
    assert program_body(program) == body


def test_program_with_a_preamble_is_kept_whole_and_still_runs():
    program = "import math\ndef solution():\n    return math.floor(7.5)"
    ex = Example("p", Q, "7", program)
    assert build_target(ex, "python") == program
    # the header's empty stub is replaced by the program's own solution()
    assert run(program_from_completion(Q, build_target(ex, "python"))) == 7


def test_a_preamble_with_blank_lines_is_cut_as_in_the_release():
    # the release keeps a program's lines up to the first blank one: here only the import,
    # so solution() is the header's empty stub (no answer)
    program = "import math\n\n\ndef solution():\n    return math.floor(7.5)"
    assert build_target(Example("p", Q, "7", program), "python") == program
    assert program_from_completion(Q, program) == python_header(Q) + "import math"
    assert run(program_from_completion(Q, program)) is None


@pytest.mark.parametrize(
    ("completion", "kept"),
    [
        # a second program after a blank line would replace the first one's solution()
        ("    return 3 + 4\n\ndef solution():\n    return 99\n", "    return 3 + 4"),
        # a whitespace-only line is blank too; junk after it would not even compile
        ("    x = 3 + 4\n    return x\n    \nThe answer is 7.", "    x = 3 + 4\n    return x"),
        ("    return 3 + 4\n\t\n\nprint(solution())", "    return 3 + 4"),
        ("    return 3 + 4\n", "    return 3 + 4"),
    ],
)
def test_completion_ends_at_its_first_blank_line(completion, kept):
    program = program_from_completion(Q, completion)
    assert program == python_header(Q) + kept
    assert run(program) == 7
    assert cut_at_blank_line(program) == program


def test_a_blank_line_in_the_question_docstring_is_not_a_cut():
    question = "Tom has 3 apples.\n\nHe buys 4 more. How many now?"
    program = program_from_completion(question, "    return 3 + 4\n\nThat is 7 apples.")
    assert program == python_header(question) + "    return 3 + 4"
    assert run(program) == 7


@pytest.mark.parametrize(
    "question", ['He said "hi"', 'Three quotes """ inside', "A path C:\\new\\x1", "ends with \\"]
)
def test_header_is_valid_python_for_awkward_questions(question):
    program = program_from_completion(question, "    return 1")
    assert run(program) == 1
    namespace: dict = {}
    exec(program, namespace)
    assert namespace["solution"].__doc__ == question


def test_full_program_without_a_program():
    assert full_program("Question:\nQ\nAnswer reasoning:\nI think 7.") == (
        "Question:\nQ\nAnswer reasoning:\nI think 7."
    )


def test_unknown_cot_is_a_programming_error():
    with pytest.raises(ValueError):
        build_prompt(Q, "latex")
    with pytest.raises(ValueError):
        build_target(Example("p", Q, "7", "x"), "latex")

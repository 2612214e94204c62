"""Answer extraction and comparison: table-driven cases, then adversarial inputs."""

from __future__ import annotations

import pytest

from reft.answers import (
    extract_answer,
    format_number,
    is_correct,
    normalize_answer,
    parse_choice,
    parse_number,
    strip_answer_sentence,
)

EXTRACT = [
    # (completion, task, expected prediction)
    ("18 - 5 = 13\nTherefore, the answer is: 13", "numeric", "13"),
    ("Therefore, the answer is <203>.", "numeric", "203"),
    ("Therefore, the answer is <6%>.", "numeric", "6%"),
    ("So 4 + 4 = 8. The answer is 8.", "numeric", "8"),
    ("the answer is: $18.00", "numeric", "$18.00"),
    ("Therefore, the answer is: 18 dollars.", "numeric", "18 dollars"),
    ("THEREFORE, THE ANSWER IS: 7", "numeric", "7"),
    ("Therefore, the answer is: 5\nTherefore, the answer is: 6", "numeric", "6"),  # last
    ("Therefore, the answer is: 5\nQuestion: how many? 12", "numeric", "5"),  # first line
    ("Therefore, the answer is:\n42", "numeric", "42"),  # next non-empty line
    ("Therefore, the answer is: 1,000", "numeric", "1,000"),
    ("Therefore, the answer is: -3", "numeric", "-3"),
    ("Therefore, the answer is: 3/4", "numeric", "3/4"),
    ("Therefore, the answer is: banana", "numeric", None),  # no number: not extracted
    ("Therefore, the answer is:", "numeric", None),
    ("There are 18 eggs left.", "numeric", None),  # no trigger
    ("", "numeric", None),
    ("Therefore, the answer is: c", "mc", "c"),
    ("Therefore, the answer is: (C)", "mc", "(C)"),
    ("Therefore, the answer is <d>.", "mc", "d"),
    ("Therefore, the answer is: c ) 38", "mc", "c ) 38"),
    ("Therefore, the answer is: 38", "mc", None),  # a number is not a choice
    ("Therefore, the answer is: f", "mc", None),
]


@pytest.mark.parametrize(("text", "task", "expected"), EXTRACT)
def test_extract_answer(text, task, expected):
    assert extract_answer(text, task) == expected


PARSE_NUMBER = [
    ("18", 18.0),
    ("18.00", 18.0),
    ("1,000", 1000.0),
    ("12,345,678.5", 12345678.5),
    ("1,2", None),  # not a thousands separator: ambiguous, not 12
    ("12,34", None),
    ("1,0000", None),
    ("$18", 18.0),
    ("-$5", -5.0),
    ("$-5", -5.0),
    ("-3", -3.0),
    ("\u22127", -7.0),  # unicode minus
    ("3/4", 0.75),
    ("3 / 4", 0.75),
    ("1/0", None),
    ("50%", 50.0),
    ("18 dollars.", 18.0),
    ("5 apples", 5.0),
    ("<203>", 203.0),
    (".5", 0.5),
    ("1e3", 1000.0),
    ("x = 18", 18.0),
    ("1.2.3", None),
    ("5 6", None),
    ("", None),
    ("nan", None),
    ("inf", None),
    ("1e999999", None),  # overflows to inf
    ("9" * 10_000, None),  # too many digits
]


@pytest.mark.parametrize(("text", "expected"), PARSE_NUMBER)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("c", "c"),
        ("(c)", "c"),
        ("c )", "c"),
        ("C", "c"),
        ("e.", "e"),
        ("a ) 38 , b ) 27", "a"),
        ("cat", None),
        ("f", None),
        ("", None),
        ("38", None),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text) == expected


IS_CORRECT = [
    # (pred, gold, task, correct?)
    ("18", "18", "numeric", True),
    ("18", "18.0", "numeric", True),
    ("$18.00", "18", "numeric", True),
    ("18 dollars", "18", "numeric", True),
    ("1,000", "1000", "numeric", True),
    ("3.333", "3.333", "numeric", True),
    ("3.33", "3.333", "numeric", True),  # |3.33 - 3.333| = 0.003 <= 0.01
    ("3.32", "3.333", "numeric", False),  # 0.013 > 0.01
    ("3.3", "3.333", "numeric", False),
    ("3/4", "0.75", "numeric", True),
    ("50%", "50", "numeric", True),
    ("50%", "0.5", "numeric", False),
    ("-3", "-3.0", "numeric", True),
    ("-3", "3", "numeric", False),
    ("203", "203.0", "numeric", True),
    ("17", "18", "numeric", False),
    (None, "18", "numeric", False),
    ("banana", "18", "numeric", False),
    ("1,2", "12", "numeric", False),
    ("nan", "nan", "numeric", False),
    ("c", "c", "mc", True),
    ("C", "c", "mc", True),
    ("(c)", "c", "mc", True),
    ("c )", "C", "mc", True),
    ("b", "c", "mc", False),
    ("38", "a", "mc", False),
    (None, "a", "mc", False),
]


@pytest.mark.parametrize(("pred", "gold", "task", "expected"), IS_CORRECT)
def test_is_correct(pred, gold, task, expected):
    assert is_correct(pred, gold, task) is expected


@pytest.mark.parametrize(
    ("text", "task", "expected"),
    [
        ("$18.00", "numeric", "18"),
        ("1,000", "numeric", "1000"),
        ("1/3", "numeric", "0.333333"),
        ("-0.5", "numeric", "-0.5"),
        ("(C)", "mc", "c"),
        ("banana", "numeric", None),
    ],
)
def test_normalize_answer(text, task, expected):
    assert normalize_answer(text, task) == expected


@pytest.mark.parametrize(
    ("x", "expected"),
    [(203.0, "203"), (3.5, "3.5"), (-2.0, "-2"), (0.1 + 0.2, "0.3"), (1e20, "1e+20")],
)
def test_format_number(x, expected):
    assert format_number(x) == expected


@pytest.mark.parametrize(
    ("cot", "expected"),
    [
        ("2 + 2 = 4\n\nTherefore, the answer is <4>.", "2 + 2 = 4"),
        ("2 + 2 = 4\nTherefore, the answer is: 4", "2 + 2 = 4"),
        ("It is 60 feet deep. Therefore, the answer is <60>.", "It is 60 feet deep."),
        ("Already answered above. The answer is <7>.", "Already answered above."),
        ("Therefore, he has 4 left.", "Therefore, he has 4 left."),  # no answer sentence
        ("The answer is 4.\nBecause 2 + 2 = 4.", "The answer is 4.\nBecause 2 + 2 = 4."),
        ("x = 4  \n", "x = 4"),
    ],
)
def test_strip_answer_sentence(cot, expected):
    assert strip_answer_sentence(cot) == expected


def test_unknown_task_is_a_programming_error():
    with pytest.raises(ValueError, match="task"):
        extract_answer("the answer is 4", task="yes/no")


ADVERSARIAL = [
    "x" * 1_000_000,
    "the answer is " * 80_000,
    "The answer is " + "1" * 1_000_000,
    "The answer is " + "1,000" * 200_000,
    "The answer is " + "-$ " * 300_000,
    "The answer is " + "1e999999",
    "The answer is " + "9" * 10_000 + "/" + "9" * 10_000,
    "The answer is " + "(" * 500_000,
    "The answer is <" + "<" * 500_000,
    "Therefore, the answer is: \x00\ud800\uffff NaN inf -inf",
    "1." * 500_000,
    ("The answer is " + "\n" * 1000 + "7") * 100,
]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_text_returns_without_raising(text):
    for task in ("numeric", "mc"):
        pred = extract_answer(text, task)
        assert pred is None or len(pred) <= 1_000
        is_correct(pred, "18", task)
        is_correct(text, "18", task)
    parse_number(text)
    parse_choice(text)
    strip_answer_sentence(text)


@pytest.mark.timeout(5)
def test_huge_numbers_are_not_answers():
    assert extract_answer("The answer is " + "9" * 10_000) is None
    assert parse_number("1e999999") is None
    assert parse_number("-1e999999") is None
    assert not is_correct("1e999999", "1e999999")

"""Answer extraction and comparison under each answer parser: table-driven cases, then
adversarial inputs."""

from __future__ import annotations

import pytest

from reft.answers import (
    DEFAULT_PARSER,
    PARSERS,
    answer_value,
    extract_answer,
    format_number,
    is_correct,
    normalize_answer,
    parse_answer,
    parse_choice,
    parse_number,
    strip_answer_sentence,
)
from reft.config import DataArgs
from reft.rewards import score

PARSERS_UNDER_TEST = ("default", "release", "lenient")
L = "Tom had 3.\n"  # reasoning before the answer line, so the release's "\n" trigger fits
TR = L + "Therefore, the answer is: "
# (id, completion, task, value under default, release, lenient); None = no answer.
CASES = [
    ("plain", TR + "18", "numeric", 18.0, 18.0, 18.0),
    ("trailing period", TR + "18.", "numeric", 18.0, 18.0, 18.0),
    ("space period", TR + "18 .", "numeric", None, None, 18.0),
    ("decimal", TR + "18.00", "numeric", 18.0, 18.0, 18.0),
    ("negative", TR + "-3", "numeric", -3.0, -3.0, -3.0),
    ("exponent", TR + "1e3", "numeric", 1000.0, 1000.0, 1000.0),
    ("underscore", TR + "1_000", "numeric", 1000.0, 1000.0, None),  # float() reads it
    ("sum", TR + "2 + 3 = 5", "numeric", None, None, None),
    ("either", TR + "7 or 8", "numeric", None, None, None),
    ("two numbers", TR + "5 6", "numeric", None, None, None),
    ("dollar", TR + "$18", "numeric", None, None, 18.0),
    ("thousands", TR + "1,000", "numeric", None, None, 1000.0),
    ("unit", TR + "18 dollars", "numeric", None, None, 18.0),
    ("fraction", TR + "3/4", "numeric", None, None, 0.75),
    ("percent", TR + "50%", "numeric", None, None, 50.0),
    ("nan", TR + "nan", "numeric", None, None, None),
    ("words", TR + "banana", "numeric", None, None, None),
    ("empty", TR, "numeric", None, None, None),
    ("last trigger", TR + "5" + "\nTherefore, the answer is: 6", "numeric", 6.0, 6.0, 6.0),
    ("text after", TR + "18\nQuestion: and then?", "numeric", None, None, 18.0),
    ("opens text", "Therefore, the answer is: 18", "numeric", 18.0, None, 18.0),
    ("no space", TR.rstrip() + "18", "numeric", None, None, 18.0),
    ("mid-line lower", "so the answer is 18", "numeric", None, None, 18.0),
    ("bare number", "18", "numeric", 18.0, 18.0, None),  # the release reads a text without trigger
    ("no trigger", "There are 18 eggs.", "numeric", None, None, None),
    ("svamp form", L + "\nTherefore, the answer is <203>.", "numeric", 203.0, None, 203.0),
    ("svamp same line", "60 feet. Therefore, the answer is <60>.", "numeric", 60.0, None, 60.0),
    ("svamp duplicate", "Already answered. The answer is <4>.", "numeric", 4.0, None, 4.0),
    ("svamp percent", L + "Therefore, the answer is <6%>.", "numeric", 6.0, None, 6.0),
    ("bracket thousands", L + "Therefore, the answer is <1,000>.", "numeric", 1000.0, None, 1000.0),
    ("bracket sum", L + "Therefore, the answer is <2 + 3>.", "numeric", None, None, None),
    ("colon bracket", TR + "<18>.", "numeric", 18.0, None, 18.0),
    ("release target", L + "Therefore, the answer is <203>.\nTherefore, the answer is: 203.0",
     "numeric", 203.0, 203.0, 203.0),
    ("letter", TR + "c", "mc", "c", "c", "c"),
    ("upper letter", TR + "C", "mc", "c", "c", "c"),
    ("quoted letter", TR + "'c'", "mc", "c", "c", "c"),
    ("bracketed letter", TR + "(c)", "mc", None, "(c)", "c"),  # release: an answer, never right
    ("letter and option", TR + "c ) 38", "mc", None, "c ) 38", "c"),
    ("option f", TR + "f", "mc", None, "f", None),
    ("number for mc", TR + "38", "mc", None, "38", None),
    ("mc svamp form", L + "Therefore, the answer is <d>.", "mc", "d", L.lower().strip()
     + "\ntherefore, the answer is <d>.", "d"),  # release: no "\n...: " trigger, whole text
    ("mc no trigger", "nothing", "mc", None, "nothing", None),
]
CASE_IDS = [c[0] for c in CASES]


def _expected(case: tuple, parser: str):
    return case[3 + PARSERS_UNDER_TEST.index(parser)]


def test_registry_names():
    assert tuple(PARSERS) == PARSERS_UNDER_TEST
    assert DataArgs.CHOICES["answer_parser"] == tuple(PARSERS)
    assert DataArgs().answer_parser == DEFAULT_PARSER == "default"


@pytest.mark.parametrize("parser", PARSERS_UNDER_TEST)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_answer_under_each_parser(case, parser):
    _, text, task, *_ = case
    expected = _expected(case, parser)
    assert answer_value(text, task, parser) == expected
    pred = extract_answer(text, task, parser)
    assert (pred is None) == (expected is None)
    assert parse_answer(pred, task, parser) == expected


@pytest.mark.parametrize("parser", PARSERS_UNDER_TEST)
@pytest.mark.parametrize("text", ["Therefore, the answer is: 2 + 3 = 5", "the answer is: 7 or 8",
                                  "\nTherefore, the answer is: 5 6", "5 6", "The answer is <5 6>."])
def test_more_than_one_number_is_no_answer_under_every_parser(text, parser):
    assert extract_answer(text, "numeric", parser) is None
    assert not is_correct(text, "5", "numeric", parser) and not is_correct(text, "2", "numeric", parser)


@pytest.mark.parametrize("parser", PARSERS_UNDER_TEST)
def test_the_old_first_number_bug(parser):
    # reft read the first number after the trigger: these were right answers for 2 and 7
    assert score([TR + "2 + 3 = 5", TR + "7 or 8"], ["2", "7"], parser=parser) == [0.0, 0.0]


def test_unknown_parser_is_a_programming_error():
    with pytest.raises(ValueError, match="answer_parser must be one of"):
        extract_answer("the answer is 4", parser="strict")
    with pytest.raises(ValueError, match="answer_parser"):
        score(["the answer is 4"], ["4"], parser="strict")


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
    # (answer text, gold, task, parser, correct?)
    ("18", "18", "numeric", "default", True),
    ("18", "18.0", "numeric", "default", True),
    ("18.", "18", "numeric", "release", True),
    ("3.333", "3.333", "numeric", "default", True),
    ("3.33", "3.333", "numeric", "default", True),  # |3.33 - 3.333| = 0.003 <= 0.01
    ("3.32", "3.333", "numeric", "default", False),  # 0.013 > 0.01
    ("3.3", "3.333", "numeric", "default", False),
    ("-3", "-3.0", "numeric", "default", True),
    ("-3", "3", "numeric", "default", False),
    ("203", "203.0", "numeric", "release", True),
    ("17", "18", "numeric", "default", False),
    (None, "18", "numeric", "default", False),
    ("banana", "18", "numeric", "lenient", False),
    ("nan", "nan", "numeric", "release", False),
    ("<203>.", "203.0", "numeric", "default", True),
    ("<203>.", "203.0", "numeric", "release", False),
    ("<6%>.", "6", "numeric", "default", True),
    ("1000", "1,000", "numeric", "release", True),  # golds may have thousands separators
    ("$18.00", "18", "numeric", "default", False),
    ("$18.00", "18", "numeric", "lenient", True),
    ("18 dollars", "18", "numeric", "lenient", True),
    ("1,000", "1000", "numeric", "lenient", True),
    ("1,000", "1000", "numeric", "release", False),
    ("3/4", "0.75", "numeric", "lenient", True),
    ("50%", "50", "numeric", "lenient", True),
    ("50%", "0.5", "numeric", "lenient", False),
    ("1,2", "12", "numeric", "lenient", False),
    ("2 + 3 = 5", "2", "numeric", "lenient", False),
    ("c", "c", "mc", "default", True),
    ("C", "c", "mc", "release", True),
    ("(c)", "c", "mc", "default", False),
    ("(c)", "c", "mc", "release", False),
    ("(c)", "c", "mc", "lenient", True),
    ("c )", "C", "mc", "lenient", True),
    ("b", "c", "mc", "default", False),
    ("38", "a", "mc", "release", False),
    (None, "a", "mc", "default", False),
]


@pytest.mark.parametrize(("pred", "gold", "task", "parser", "expected"), IS_CORRECT)
def test_is_correct(pred, gold, task, parser, expected):
    assert is_correct(pred, gold, task, parser) is expected


@pytest.mark.parametrize(
    ("text", "task", "parser", "expected"),
    [
        ("$18.00", "numeric", "lenient", "18"),
        ("$18.00", "numeric", "default", None),
        ("1,000", "numeric", "lenient", "1000"),
        ("1/3", "numeric", "lenient", "0.333333"),
        ("-0.5", "numeric", "release", "-0.5"),
        ("<203>.", "numeric", "default", "203"),
        ("(C)", "mc", "lenient", "c"),
        ("(C)", "mc", "release", "(c)"),
        ("banana", "numeric", "lenient", None),
    ],
)
def test_normalize_answer(text, task, parser, expected):
    assert normalize_answer(text, task, parser) == expected


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
        for parser in PARSERS_UNDER_TEST:
            pred = extract_answer(text, task, parser)
            assert pred is None or len(pred) <= 1_000
            is_correct(pred, "18", task, parser)
            is_correct(text, "18", task, parser)
    parse_number(text)
    parse_choice(text)
    strip_answer_sentence(text)


@pytest.mark.timeout(5)
def test_huge_numbers_are_not_answers():
    for parser in PARSERS_UNDER_TEST:
        assert extract_answer("The answer is " + "9" * 10_000, parser=parser) is None
        assert extract_answer(TR + "9" * 10_000, parser=parser) is None
    assert parse_number("1e999999") is None
    assert parse_number("-1e999999") is None
    assert not is_correct("1e999999", "1e999999")

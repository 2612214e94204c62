"""Extracting final answers from model text and comparing them with gold answers.

ReFT's N-CoT completions end with ``Therefore, the answer is: X``; the release's
reference CoTs end with ``Therefore, the answer is <X>.``. A prediction is the text
after the *last* trigger, first line only, and it counts as "extracted" only when it
parses as an answer of the task's kind (a number, or a letter a-e for MathQA), as in
ReFT, where an unparsable answer earns no partial reward. Numbers are compared with
ReFT's tolerance ``|pred - gold| <= 1e-2``; letters exactly, ignoring case.

Every input is bounded before it is searched and every pattern is linear, so model
text of any size or shape returns quickly and never raises.
"""

from __future__ import annotations

import math
import re

ANSWER_TRIGGER = "Therefore, the answer is:"
"""The sentence that introduces the final answer in an N-CoT target."""
TOLERANCE = 1e-2
"""ReFT's numeric tolerance (``abs(pred - gold) <= 1e-2``)."""
CHOICES = "abcde"
"""MathQA's option letters."""

MAX_TEXT_CHARS = 100_000
"""Only the last this-many characters of a completion are searched for the trigger."""
MAX_ANSWER_CHARS = 1_000
"""An answer (one line) is cut to this many characters before it is parsed."""
MAX_NUMBER_CHARS = 100
"""A longer run of digits is not a number we try to read."""

TASKS = ("numeric", "mc")

_TRIGGER = re.compile(r"the answer is", re.IGNORECASE)
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(
    r"(?P<neg>[-\u2212])?\s?\$?\s?"  # sign, currency: "-3", "$18", "-$5", "$-5"
    r"(?P<neg2>[-\u2212])?"
    rf"(?P<num>{_DIGITS})"
    r"(?P<exp>[eE][-+]?\d+)?"
    rf"(?:\s?/\s?(?P<den>{_DIGITS}))?"  # a fraction "3/4"
)
# After a number, another digit group means the text is not one number: "1,2", "1.2.3", "5 6".
_AMBIGUOUS_TAIL = re.compile(r"\s?[,./]?\d")
_CHOICE = re.compile(r"\(?\s?([a-eA-E])\s?\)?(?![A-Za-z0-9])")
_THEREFORE = re.compile(r"therefore,?\s{0,3}\Z", re.IGNORECASE)
_MAX_SENTENCE_CHARS = 200


def parse_number(s: str | None) -> float | None:
    """The number an answer string states, or None.

    Accepts ``1,000`` (thousands separators only: ``1,2`` is None), ``$18``, ``18.00``,
    ``-3``, ``3/4``, ``50%`` (read as 50), ``<203>``, ``1e5``, and trailing words or
    punctuation (``18 dollars.``). Non-finite values and digit runs longer than
    ``MAX_NUMBER_CHARS`` give None.
    """
    if not isinstance(s, str):
        return None
    cut = len(s) > MAX_ANSWER_CHARS
    s = s[:MAX_ANSWER_CHARS]
    m = _NUMBER.search(s)
    if m is None or _AMBIGUOUS_TAIL.match(s, m.end()):
        return None
    if len(m.group("num")) > MAX_NUMBER_CHARS or (cut and m.end() == len(s)):
        return None  # too long to be an answer, or cut off by the bound
    try:
        value = float(m.group("num").replace(",", "") + (m.group("exp") or ""))
        if m.group("den"):
            den = float(m.group("den").replace(",", ""))
            value = value / den if den else math.nan
    except (ValueError, OverflowError):
        return None
    if m.group("neg") or m.group("neg2"):
        value = -value
    return value if math.isfinite(value) else None


def parse_choice(s: str | None) -> str | None:
    """The option letter (lower case) an answer states: ``c``, ``(c)``, ``c )``, ``C``."""
    if not isinstance(s, str):
        return None
    m = _CHOICE.match(s[:MAX_ANSWER_CHARS].strip())
    return m.group(1).lower() if m else None


def _parse(s: str | None, task: str) -> float | str | None:
    if task == "numeric":
        return parse_number(s)
    if task == "mc":
        return parse_choice(s)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _last_trigger(text: str) -> re.Match[str] | None:
    last = None
    for m in _TRIGGER.finditer(text):
        last = m
    return last


def _answer_text(text: str) -> str | None:
    """The first non-empty line after the last trigger, ``<...>`` unwrapped."""
    text = text[-MAX_TEXT_CHARS:]
    last = _last_trigger(text)
    if last is None:
        return None
    rest = text[last.end() : last.end() + MAX_ANSWER_CHARS].lstrip(" \t:").lstrip()
    line = rest.split("\n", 1)[0].strip()
    if line.startswith("<") and ">" in line:
        line = line[1 : line.index(">")].strip()
    line = line.rstrip(". ").strip()
    return line or None


def extract_answer(text: str | None, task: str = "numeric") -> str | None:
    """The answer a completion states after its last answer trigger, or None.

    The trigger is ``Therefore, the answer is`` (with ``:`` or ``<X>``) or just
    ``The answer is``. The result is the answer as written (e.g. ``"18 dollars"``);
    it is None when there is no trigger or the text does not parse for ``task``.
    """
    if not isinstance(text, str):
        return None
    answer = _answer_text(text)
    return answer if _parse(answer, task) is not None else None


def normalize_answer(s: str | None, task: str = "numeric") -> str | None:
    """A canonical form for voting: ``"18"`` for ``"$18.00"``, ``"c"`` for ``"(C)"``."""
    value = _parse(s, task)
    if value is None or isinstance(value, str):
        return value
    return format_number(value)


def format_number(x: float) -> str:
    """``203.0`` -> ``"203"``, ``1/3`` -> ``"0.333333"``: integers without ``.0``."""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}" if abs(x) >= 1e15 or abs(x) < 1e-4 else f"{round(x, 6)!r}"


def is_correct(pred: str | None, gold: str, task: str = "numeric") -> bool:
    """ReFT's check: numbers within 1e-2 of the gold, letters equal ignoring case."""
    p, g = _parse(pred, task), _parse(gold, task)
    if p is None or g is None:
        return False
    if task == "mc":
        return p == g
    return abs(p - g) <= TOLERANCE  # type: ignore[operator]


def strip_answer_sentence(cot: str) -> str:
    """A reference N-CoT without its closing answer sentence.

    The ReFT release ends its CoTs with ``Therefore, the answer is <203>.`` (a few with
    ``The answer is <4>.``); targets add their own ``Therefore, the answer is: 203``, so
    the reasoning is kept without it. Text without such a closing sentence is returned
    with only trailing whitespace removed.
    """
    cot = cot.rstrip()
    tail = cot[-_MAX_SENTENCE_CHARS:]
    last = _last_trigger(tail)
    if last is None or "\n" in tail[last.end() :]:
        return cot
    cut = last.start()
    lead = _THEREFORE.search(tail[max(0, cut - 20) : cut])
    if lead is not None:
        cut -= len(lead.group())
    return cot[: len(cot) - len(tail) + cut].rstrip()

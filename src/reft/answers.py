"""Reading the final answer of a completion, and comparing it with the gold.

An *answer parser* decides where a completion states its answer and which texts count
as an answer. The reward (``reft.rewards.judge``) and every evaluation metric use the
same one, chosen by the ``answer_parser`` setting (docs/answers.md has the full table):

``default``
    The ReFT release's rule plus the release's own data formats: the text after the last
    ``\\nTherefore, the answer is: `` (the whole completion when there is none) must be one
    number as Python's ``float`` reads it, or ``<X>`` / ``<X>.`` as the release's SVAMP
    CoTs write it (``Therefore, the answer is <203>.``, ``The answer is <6%>.``). The
    trigger may also open the completion. MathQA: one option letter a-e, any case.
``release``
    Exactly the release's rule (``train_rl_reft.py``): ``float()`` of that text; MathQA:
    the text lower-cased without quotes, compared with the gold letter as a string.
``lenient``
    The first line after the last "the answer is" (any case), with one number in it:
    ``$18``, ``1,000``, ``18 dollars``, ``3/4``, ``50%`` also count. MathQA: ``(c)``, ``c )``.

Under every parser an answer holding more than one number (``2 + 3 = 5``, ``7 or 8``,
``5 6``) is no answer, and so are non-finite values. Numbers are compared with ReFT's
tolerance ``|pred - gold| <= 1e-2``; letters exactly, ignoring case. Golds are read by
``parse_gold`` (one number, ``1,000`` allowed; or a letter), whatever the parser.

Every input is bounded before it is searched and every pattern is linear, so model
text of any size or shape returns quickly and never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

ANSWER_TRIGGER = "Therefore, the answer is:"
"""The sentence that introduces the final answer in an N-CoT target."""
RELEASE_TRIGGER = "\nTherefore, the answer is: "
"""The string the ReFT release splits completions on (``answer_trigger``)."""
TOLERANCE = 1e-2
"""ReFT's numeric tolerance (``abs(pred - gold) <= 1e-2``)."""
CHOICES = "abcde"
"""MathQA's option letters."""

MAX_TEXT_CHARS = 100_000
"""Only the last this-many characters of a completion are searched for the trigger."""
MAX_ANSWER_CHARS = 1_000
"""A longer answer text is no answer (under every parser and task)."""
MAX_NUMBER_CHARS = 100
"""A longer number (or, for default/release, numeric answer text) is not read."""

TASKS = ("numeric", "mc")
COTS = ("nl", "python")
"""Chain-of-thought styles: nl (text ending "Therefore, the answer is: X") and python (a program)."""
DEFAULT_PARSER = "default"

Value = float | str
"""A parsed answer: a float (numeric) or a lower-case string (mc)."""

_TRIGGER = re.compile(r"the answer is", re.IGNORECASE)
_DEFAULT_TRIGGER = re.compile(r"^Therefore, the answer is: |[Tt]he answer is (?=<)", re.MULTILINE)
_BRACKETED = re.compile(r"<\s*([^<>\n]{1,100}?)\s*>\.?")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(
    r"(?P<neg>[-\u2212])?\s?\$?\s?"  # sign, currency: "-3", "$18", "-$5", "$-5"
    r"(?P<neg2>[-\u2212])?"
    rf"(?P<num>{_DIGITS})"
    r"(?P<exp>[eE][-+]?\d+)?"
    rf"(?:\s?/\s?(?P<den>{_DIGITS}))?"  # a fraction "3/4"
)
_CHOICE = re.compile(r"\(?\s?([a-eA-E])\s?\)?(?![A-Za-z0-9])")
_THEREFORE = re.compile(r"therefore,?\s{0,3}\Z", re.IGNORECASE)
_MAX_SENTENCE_CHARS = 200


# --- numbers and letters ---------------------------------------------------------------


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def parse_number(s: str | None) -> float | None:
    """The one number an answer string states, or None (the lenient grammar; golds too).

    Accepts ``1,000`` (thousands separators only: ``1,2`` is None), ``$18``, ``18.00``,
    ``-3``, ``3/4``, ``50%`` (read as 50), ``<203>``, ``1e5``, and words or punctuation
    around it (``18 dollars.``). Two numbers or more (``2 + 3 = 5``, ``7 or 8``, ``5 6``,
    ``1.2.3``), non-finite values and digit runs longer than ``MAX_NUMBER_CHARS`` give None.
    """
    if not isinstance(s, str) or len(s) > MAX_ANSWER_CHARS:
        return None
    found = list(islice(_NUMBER.finditer(s), 2))
    if len(found) != 1 or len(found[0].group("num")) > MAX_NUMBER_CHARS:
        return None
    m = found[0]
    try:
        value = float(m.group("num").replace(",", "") + (m.group("exp") or ""))
        if m.group("den"):
            den = float(m.group("den").replace(",", ""))
            value = value / den if den else math.nan
    except (ValueError, OverflowError):
        return None
    if m.group("neg") or m.group("neg2"):
        value = -value
    return _finite(value)


def parse_choice(s: str | None) -> str | None:
    """The option letter (lower case) an answer states: ``c``, ``(c)``, ``c )``, ``'C'``."""
    if not isinstance(s, str):
        return None
    m = _CHOICE.match(s[:MAX_ANSWER_CHARS].replace('"', "").replace("'", "").strip())
    return m.group(1).lower() if m else None


def _float(s: str) -> float | None:
    """The release's ``floatify``: ``float(s)``, or None; also None when not finite."""
    if len(s) > MAX_NUMBER_CHARS:
        return None
    try:
        return _finite(float(s))
    except (ValueError, OverflowError):
        return None


def _release_letter(s: str) -> str | None:
    """The release's MathQA answer: lower-cased, quotes removed, stripped."""
    return s.lower().replace('"', "").replace("'", "").strip() or None


def _bracketed(s: str) -> str | None:
    """``X`` of ``<X>`` or ``<X>.``, the answer form of the release's CoT annotations."""
    m = _BRACKETED.fullmatch(s)
    return m.group(1) if m else None


def _default_number(s: str) -> float | None:
    inner = _bracketed(s)
    if inner is None:
        return _float(s)
    inner = inner.removesuffix("%").rstrip()  # "<6%>": SVAMP's percentages
    if _THOUSANDS.fullmatch(inner):
        inner = inner.replace(",", "")
    return _float(inner)


def _default_letter(s: str) -> str | None:
    letter = _release_letter(_bracketed(s) or s)
    return letter if letter is not None and len(letter) == 1 and letter in CHOICES else None


# --- where the answer is ---------------------------------------------------------------


def _last_match(pattern: re.Pattern[str], text: str, pos: int = 0) -> re.Match[str] | None:
    last = None
    for m in pattern.finditer(text, pos):
        last = m
    return last


def _release_locate(text: str) -> str | None:
    """The release: ``text.strip().split(trigger)[-1].strip()``."""
    text = text.strip()
    i = text.rfind(RELEASE_TRIGGER, max(0, len(text) - MAX_TEXT_CHARS))
    return (text if i < 0 else text[i + len(RELEASE_TRIGGER) :]).strip() or None


def _default_locate(text: str) -> str | None:
    """The release's split, also on ``the answer is <`` and a trigger opening the text."""
    text = text.strip()
    start = max(0, len(text) - MAX_TEXT_CHARS)
    last = _last_match(_DEFAULT_TRIGGER, text, start)
    return (text if last is None else text[last.end() :]).strip() or None


def _last_trigger(text: str) -> re.Match[str] | None:
    return _last_match(_TRIGGER, text)


def _lenient_locate(text: str) -> str | None:
    """The first non-empty line after the last "the answer is", ``<...>`` unwrapped."""
    text = text[-MAX_TEXT_CHARS:]
    last = _last_trigger(text)
    if last is None:
        return None
    rest = text[last.end() : last.end() + MAX_ANSWER_CHARS + 1].lstrip(" \t:").lstrip()
    line = rest.split("\n", 1)[0].strip()
    if line.startswith("<") and ">" in line:
        line = line[1 : line.index(">")].strip()
    return line.rstrip(". ").strip() or None


# --- the registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerParser:
    """Where a completion's answer is, and which answer texts count for each task."""

    locate: Callable[[str], str | None]
    """Completion -> answer text (stripped), or None."""
    number: Callable[[str], float | None]
    """Answer text -> number (task numeric), or None: not an answer."""
    letter: Callable[[str], str | None]
    """Answer text -> lower-case answer (task mc), or None: not an answer."""


PARSERS: dict[str, AnswerParser] = {
    "default": AnswerParser(_default_locate, _default_number, _default_letter),
    "release": AnswerParser(_release_locate, _float, _release_letter),
    "lenient": AnswerParser(_lenient_locate, parse_number, parse_choice),
}
"""The answer parsers by name (the choices of the ``answer_parser`` setting)."""


def get_parser(name: str) -> AnswerParser:
    """The parser called ``name``; ValueError for an unknown name."""
    try:
        return PARSERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"answer_parser must be one of {tuple(PARSERS)}, got {name!r}") from None


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def parse_answer(answer: str | None, task: str = "numeric",
                 parser: str = DEFAULT_PARSER) -> Value | None:
    """The value of an answer text (as ``extract_answer`` returns it), or None."""
    p = get_parser(parser)
    _check_task(task)
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return None
    answer = answer.strip()
    return p.number(answer) if task == "numeric" else p.letter(answer)


def extract_answer(text: str | None, task: str = "numeric",
                   parser: str = DEFAULT_PARSER) -> str | None:
    """The answer a completion states, as written, or None when it states none.

    The one extraction the reward and the evaluation share; ``parser`` is a key of
    ``PARSERS`` (see the module docstring). The result is not None only when it parses
    for ``task`` (``parse_answer``), as in ReFT, where no answer earns no partial reward.
    """
    p = get_parser(parser)
    _check_task(task)
    if not isinstance(text, str):
        return None
    answer = p.locate(text)
    return answer if parse_answer(answer, task, parser) is not None else None


def answer_value(text: str | None, task: str = "numeric",
                 parser: str = DEFAULT_PARSER) -> Value | None:
    """The value of the answer a completion states (``extract_answer`` then ``parse_answer``)."""
    return parse_answer(extract_answer(text, task, parser), task, parser)


def parse_gold(gold: str | None, task: str = "numeric") -> Value | None:
    """A gold answer's value: one number (``parse_number``) or an option letter."""
    _check_task(task)
    return parse_number(gold) if task == "numeric" else parse_choice(gold)


def same_value(a: Value, b: Value, task: str = "numeric") -> bool:
    """ReFT's comparison: numbers within ``TOLERANCE``, answers of task mc equal."""
    if task == "numeric":
        return abs(a - b) <= TOLERANCE  # type: ignore[operator]
    return a == b


def is_correct(pred: str | None, gold: str, task: str = "numeric",
               parser: str = DEFAULT_PARSER) -> bool:
    """Whether the answer text ``pred`` (read with ``parser``) matches the gold."""
    p, g = parse_answer(pred, task, parser), parse_gold(gold, task)
    return p is not None and g is not None and same_value(p, g, task)


def normalize_answer(s: str | None, task: str = "numeric",
                     parser: str = DEFAULT_PARSER) -> str | None:
    """A canonical form: ``"18"`` for ``"18.00"``, ``"c"`` for ``"C"``; None for no answer."""
    value = parse_answer(s, task, parser)
    if value is None or isinstance(value, str):
        return value
    return format_number(value)


def format_number(x: float) -> str:
    """``203.0`` -> ``"203"``, ``1/3`` -> ``"0.333333"``: integers without ``.0``."""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}" if abs(x) >= 1e15 or abs(x) < 1e-4 else f"{round(x, 6)!r}"


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

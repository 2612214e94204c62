"""Answer -> reward, ReFT's rule (Luong et al., 2024, Sec. 3.2): 1 for a correct
answer, ``partial`` (0.1) for an answer that was extracted but is wrong, 0 for none.

For ``cot="nl"`` the answer is read from the completion text (``reft.answers``).
For ``cot="python"`` each completion is a full program; it runs in ``reft.sandbox``
and its returned value is the answer, so a program that fails, times out or
returns nothing answers nothing and scores 0. Either way the answer must parse under
the chosen answer parser (``parser``, the ``answer_parser`` setting), the same one the
evaluation uses.

Programs run as the release runs them (``src/python_engine.py``, ``process_code``):
``sys.exit`` becomes ``print``, the program ends at its first blank line
(``reft.data.prompts.cut_at_blank_line``), and ``math`` and ``sympy`` need no import.
``sympy`` is imported only for programs that name it: no other program can reach it, and
those run where it is preloaded (``reft.sandbox``), so neither import costs anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

from reft.answers import (
    COTS,
    DEFAULT_PARSER,
    TASKS,
    extract_answer,
    format_number,
    get_parser,
    is_correct,
    parse_answer,
)

PARTIAL_REWARD = 0.1
"""ReFT's reward for an answer that parses but is wrong."""


@dataclass(frozen=True)
class Judgement:
    """The verdict on one completion."""

    pred: str | None
    """The extracted answer as text (None when nothing usable was extracted)."""
    correct: bool
    """Whether ``pred`` matches the gold (tolerance 1e-2, or the same letter)."""
    score: float
    """The reward: 1.0 correct, ``partial`` extracted but wrong, 0.0 none."""


def _run_programs() -> Callable[..., list[Any]]:
    """``reft.sandbox.run_programs``, imported only when programs are scored."""
    try:
        from reft.sandbox import run_programs
    except ImportError as e:
        raise NotImplementedError(
            f"cot='python' needs reft.sandbox.run_programs, which cannot be imported ({e})"
        ) from e
    return run_programs


def value_to_answer(value: object) -> str | None:
    """A program's return value as answer text: ``203.0`` -> ``"203"``, ``"c"`` -> ``"c"``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Real):
        x = float(value)
        return format_number(x) if math.isfinite(x) else None
    text = str(value).strip()
    return text or None


def release_source(program: str) -> str:
    """The source that runs for a P-CoT program: the release's rewrite and cut, its prelude."""
    from reft.data.prompts import cut_at_blank_line

    program = cut_at_blank_line(program.replace("sys.exit", "print"))
    return ("import math\nimport sympy\n" if "sympy" in program else "import math\n") + program


def _program_preds(programs: Sequence[str], timeout_s: float) -> list[str | None]:
    sources = [release_source(p) for p in programs]
    results = _run_programs()(sources, timeout_s=timeout_s)
    if len(results) != len(programs):
        raise RuntimeError(f"sandbox returned {len(results)} results for {len(programs)} programs")
    return [None if r.error is not None else value_to_answer(r.value) for r in results]


def judge(
    completions: Sequence[str],
    golds: Sequence[str],
    *,
    task: str = "numeric",
    cot: str = "nl",
    partial: float = PARTIAL_REWARD,
    timeout_s: float = 3.0,
    parser: str = DEFAULT_PARSER,
) -> list[Judgement]:
    """One ``Judgement`` per completion (for cot="python", per full program).

    ``parser``: the answer parser (a key of ``reft.answers.PARSERS``) that reads each answer.
    """
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    get_parser(parser)  # an unknown name fails before any program runs
    if cot == "nl":
        preds = [extract_answer(c, task, parser) for c in completions]
    elif cot == "python":
        values = _program_preds(completions, timeout_s=timeout_s) if completions else []
        # a returned value that does not parse for the task is no answer, as in ReFT
        preds = [v if parse_answer(v, task, parser) is not None else None for v in values]
    else:
        raise ValueError(f"cot must be one of {COTS}, got {cot!r}")
    out = []
    for pred, gold in zip(preds, golds, strict=True):
        correct = is_correct(pred, gold, task, parser)
        score = 1.0 if correct else (partial if pred is not None else 0.0)
        out.append(Judgement(pred, correct, score))
    return out


def score(completions: Sequence[str], golds: Sequence[str], **kw: Any) -> list[float]:
    """ReFT's reward per completion: 1.0 / ``partial`` / 0.0 (``judge``'s keywords)."""
    return [j.score for j in judge(completions, golds, **kw)]

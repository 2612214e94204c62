"""Prompts and targets in ReFT's format (lqtrung1998/mwp_ReFT).

N-CoT::

    prompt  = "Question:\\n{question}\\nAnswer reasoning:\\n"
    target  = "{cot}\\nTherefore, the answer is: {answer}"

P-CoT: the prompt also opens the program, and the target is the function body::

    prompt  = "Question:\\n{question}\\nAnswer reasoning:\\n" + header
    header  = PYTHON_HEADER: "def solution():" and the question as its docstring
    target  = "    num_species = 29\\n    ...\\n    return result"
    program = header + completion            (what the sandbox runs)

ReFT's own SFT puts the header in the target and its RL/eval prompts end with it;
here the header is always prompt (so SFT loss covers only model-written code, and the
docstring is always the question, even for the 37 SVAMP programs whose docstring
was re-punctuated). A reference program that does not open with ``def solution():``
(e.g. imports or helpers first) is used whole as the target: after the header it
still runs, because its own ``def solution`` replaces the empty stub, as long as it has
no blank line (see below).

A program ends at its first blank line, as in the release (``process_code`` in its
``src/python_engine.py`` keeps the lines of ``def solution():`` + completion up to the
first whitespace-only one): what a model writes after one, a second program or junk,
never counts. ``program_from_completion`` cuts there; ``reft.rewards`` cuts every program
it runs again, and adds the release's prelude (``import math``, ``import sympy``).
"""

from __future__ import annotations

import re

from reft.answers import ANSWER_TRIGGER
from reft.config import PROMPT_TEMPLATE
from reft.data.records import Example
from reft.errors import UserError

PYTHON_HEADER = 'def solution():\n    """{question}"""\n'
"""Opens every P-CoT program; the model writes the body."""

# "def solution():" with its """docstring""" (any number of lines) ...
_DOCSTRING_HEADER = re.compile(r'def solution\(\):[ \t]*\n[ \t]+"""(?:[^"]|"(?!""))*"""[ \t]*\n')
# ... or with a one-line '''docstring''', or with none.
_HEADER = re.compile(r"def solution\(\):[ \t]*\n(?:[ \t]+'''[^\n]*?'''[ \t]*\n)?")
_PROGRAM_START = re.compile(r"^def solution\(\):", re.MULTILINE)
_DECIMAL = re.compile(r"-?\d+\.\d+")


def check_template(template: str) -> str:
    """The template, or a UserError when it has no ``{question}`` slot."""
    if "{question}" not in template:
        raise UserError(f"--template: must contain {{question}}; got {template!r}")
    return template


def _docstring_text(question: str) -> str:
    """The question made safe inside a triple-quoted string (usually unchanged)."""
    text = question.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return text[:-1] + '\\"' if text.endswith('"') else text


def python_header(question: str) -> str:
    """``def solution():\\n    \"\"\"{question}\"\"\"\\n`` for a question."""
    return PYTHON_HEADER.replace("{question}", _docstring_text(question.strip()))


def build_prompt(question: str, cot: str = "nl", template: str = PROMPT_TEMPLATE) -> str:
    """The model's input: the template filled with the question (+ program header for python)."""
    prompt = check_template(template).replace("{question}", question.strip())
    if cot == "python":
        return prompt + python_header(question)
    if cot != "nl":
        raise ValueError(f"cot must be 'nl' or 'python', got {cot!r}")
    return prompt


def format_answer(answer: str) -> str:
    """A gold as written in a target: ``"203.0"`` -> ``"203"``, ``"3.50"`` -> ``"3.5"``."""
    answer = answer.strip()
    if not _DECIMAL.fullmatch(answer):
        return answer
    answer = answer.rstrip("0").rstrip(".")
    return "0" if answer in ("-0", "") else answer


def program_body(program: str) -> str:
    """A reference program without its ``def solution():`` + docstring opening.

    A program that does not start with ``def solution():`` is returned whole.
    """
    program = program.strip("\n")
    m = _DOCSTRING_HEADER.match(program) or _HEADER.match(program)
    return (program[m.end() :] if m else program).rstrip()


def build_target(example: Example, cot: str = "nl") -> str:
    """What the model learns to write after the prompt (see the module docstring)."""
    if not example.cot:
        raise UserError(f"example {example.id}: no chain of thought to train on")
    if cot == "nl":
        return f"{example.cot.strip()}\n{ANSWER_TRIGGER} {format_answer(example.answer)}"
    if cot == "python":
        return program_body(example.cot)
    raise ValueError(f"cot must be 'nl' or 'python', got {cot!r}")


def cut_at_blank_line(program: str) -> str:
    """The program as the release runs it: stripped, and cut before its first blank line.

    The release cuts the whole text, header included; here a blank line inside the opening
    ``def solution():`` docstring (the question's, not the model's) is kept, so a question
    with one does not fail every program written for it (no shipped question has one).
    """
    program = program.strip()
    m = _DOCSTRING_HEADER.match(program) or _HEADER.match(program)
    start = m.end() if m else 0
    lines = program[start:].split("\n")
    blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    return program[:start] + "\n".join(lines[:blank])


def program_from_completion(question: str, completion: str) -> str:
    """The runnable program: the header the prompt ended with, then the model's code up to
    its first blank line (``cut_at_blank_line``)."""
    return cut_at_blank_line(python_header(question) + completion)


def full_program(text: str) -> str:
    """The program in a decoded prompt+completion: from its ``def solution():`` line on.

    Text without such a line is returned unchanged (the sandbox reports it as failed).
    """
    m = _PROGRAM_START.search(text)
    return text[m.start() :] if m else text

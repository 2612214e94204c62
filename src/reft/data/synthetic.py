"""The embedded synthetic task: GSM8K-style word problems with several valid solutions.

ReFT's premise (Luong et al. 2024, Sec. 1): a question often admits several correct
chains of thought, the annotation shows one; SFT imitates it, RL reinforces any chain
that reaches the answer. Each template family lists candidate *paths* (step orders,
``k*a + k*b`` vs ``k*(a+b)``, subtracting before or after summing, dividing before or
after multiplying); a path is valid when every step is an integer in [1, 1000) and every
division exact. The first path is canonical (it defines the gold answer and constraints);
the annotation is a random valid path. Splits hash a problem's mathematical content (its
family and numbers, not the names in it), so no test problem has the numbers and answer of
a training problem under other names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reft.answers import COTS
from reft.data.families import FAMILIES, HE, LEVEL_FAMILIES, WORDS, Family, Step
from reft.data.records import Example
from reft.errors import UserError
from reft.runtime.io import write_atomic

SPLITS = ("train", "test")
COT_STYLES = COTS
ANSWER_SENTENCE = "\nTherefore, the answer is: "
MAX_VALUE = 1000  # every intermediate result and answer is a positive integer below this
LEVELS = {"standard": (MAX_VALUE, 1000), "easy": (100, 9), "tiny": (30, 9), "paths": (30, 1000),
          "products": (100, 2500), "mental": (30, 9)}
"""Difficulty: (bound on every intermediate value, largest operand drawn from a range). The
easy level keeps every number below 100; the tiny level keeps every step's result below 30,
so the arithmetic is a small table of facts a ~1M-parameter model learns in minutes, and
which path a model takes decides more answers. Families that cannot fit a level's bound
(travel needs at least 6 hours x 5 km) are left out of it. The ``paths`` level has its own
families (``reft.data.families.PATH_FAMILIES``): every number in a question is below 30, and every problem has
a solution whose steps all stay below 30 (the canonical path) and one through large
intermediate results (up to 1000), such as ``(boxes - sold) * per_box`` against ``boxes * per_box - sold * per_box``;
the annotation is either at random, as a human annotator might write either. The
``products`` level (``PRODUCT_FAMILIES``, the same wording) sharpens that contrast: question
numbers are 11-49 and every problem has a short solution that subtracts first (a gap of 1 or
2) and multiplies, ``(37 - 36) * 46``, and a long one through two two-digit products,
``46 * 37 - 46 * 36`` (values up to 2500); the annotation takes the long one 3 times in 4.
The ``mental`` level is the tiny level with half the annotations written without their
arithmetic (``MENTAL_SHARE``)."""
LONG_SHARE = {"products": 0.75}
"""How often the annotation takes a two-path level's long path (else: either, at random)."""
ALT_VALUE = {"paths": MAX_VALUE, "products": 2500}
"""The bound on the values of a two-path level's long path."""
MENTAL_SHARE = {"mental": 0.5}
"""How often a level's annotation does the arithmetic in the annotator's head: N-CoT writes the
whole solution as one equation (``She has 2 * 7 * 2 - 20 = 8 dollars left.``), P-CoT assigns
each intermediate result as a number (``daily = 14`` for ``daily = hours * rate``). The
``mental`` level is the tiny level with half its annotations written so: both kinds reach the
gold answer, but a small model copies a program's operations far more reliably than it does
arithmetic, so a P-CoT model that writes the operations is right much more often. SFT
imitates the mix; RL can learn the better habit from its own samples' rewards."""
Params = dict[str, int | str]
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul,
          "/": lambda a, b: a // b if b and a % b == 0 else -1}  # exact division only


@dataclass(frozen=True)
class Problem:
    """A generated problem with all its distinct valid paths and the annotated one."""
    family: str
    key: tuple
    params: Params
    question: str
    answer: int
    paths: tuple[tuple[Step, ...], ...]
    chosen: int
    mental: bool = False  # the annotation does its arithmetic "in its head" (see MENTAL_SHARE)



def _sample(family: Family, rng: random.Random, cap: int = 1000) -> Params:
    params: Params = {}
    for names, source in family.spec:
        if names == ["person"]:
            name = rng.choice(WORDS["NAMES"])
            he, his = ("he", "his") if name in HE else ("she", "her")
            params |= {"name": name, "he": he, "He": he.capitalize(), "his": his}
        elif source in WORDS:
            params |= zip(names, rng.sample(WORDS[source], len(names)), strict=True)
        elif "+" in source:  # "a+b": the sum of two earlier fields
            params[names[0]] = sum(int(params[k]) for k in source.split("+"))
        else:  # "lo-hi" or "lo-hi*k", k a number or an earlier field; random() beats randint
            bounds, _, k = source.partition("*")
            lo, hi = map(int, bounds.split("-"))
            hi = max(lo, min(hi, cap))
            mult = params.get(k) or int(k or 1)
            params[names[0]] = (lo + int(rng.random() * (hi - lo + 1))) * mult
    return params


def _run(steps: Sequence[Step], params: Params,
         max_value: int = MAX_VALUE) -> list[tuple[int, int, int]] | None:
    """Each step's ``(left, right, value)``, or None when the path is invalid here."""
    env: dict = dict(params)
    out = []
    for s in steps:
        a, b = env.get(s.left, s.left), env.get(s.right, s.right)  # a name or a literal
        value = _ARITH[s.op](a, b)
        if not 0 < value < max_value:  # zero steps ("0 more than") read badly
            return None
        env[s.var] = value
        out.append((a, b, value))
    return out




def content_key(family: str, params: Params) -> tuple:
    """What determines a problem's programs and answer: its family and its numbers. Names
    (people, items) change the wording only, so they are left out."""
    return (family, *(v for v in params.values() if isinstance(v, int)))


def split_of(key: tuple) -> str:
    """``"test"`` or ``"train"``, fixed by a problem's ``content_key`` (stable across runs):
    a test problem never has the family and numbers of a training problem."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") % 10 < 2 else "train"  # ~20% test


def _draw(family: Family, rng: random.Random, split: str,
          level: str = "standard") -> tuple[Params, tuple, int]:
    """Sample a problem of ``split`` whose canonical path is valid: params, key, gold."""
    max_value, cap = LEVELS[level]
    for _ in range(100_000):
        params = _sample(family, rng, cap)
        key = (family.name, *params.values())
        if split_of(content_key(family.name, params)) == split and (values := _run(family.paths[0], params, max_value)) is not None:
            return params, key, values[-1][2]
    raise RuntimeError(f"family {family.name} almost never yields a valid problem")


def _fits(family: Family, level: str) -> bool:
    """Whether ``family`` yields problems at ``level`` (its canonical path valid in 1 of 2000
    draws or more); the standard level keeps every family."""
    return level == "standard" or _fits_cached(FAMILIES.index(family), level)


@functools.cache
def _fits_cached(index: int, level: str) -> bool:
    family, (max_value, cap) = FAMILIES[index], LEVELS[level]
    rng = random.Random(family.name)
    return any(_run(family.paths[0], _sample(family, rng, cap), max_value) for _ in range(2000))


def _families(level: str) -> tuple[Family, ...]:
    """The template families a level draws from."""
    if level in LEVEL_FAMILIES:
        return LEVEL_FAMILIES[level]
    return tuple(f for f in FAMILIES if _fits(f, level))


def _valid_paths(family: Family, params: Params, answer: int, max_value: int = MAX_VALUE,
                 alt_value: int | None = None) -> tuple[tuple[Step, ...], ...]:
    """The distinct valid paths; the canonical one within ``max_value``, the others within
    ``alt_value`` (default the same)."""
    paths, seen = [], set()
    for i, steps in enumerate(family.paths):
        values = _run(steps, params, max_value if i == 0 or alt_value is None else alt_value)
        if values is None:
            continue
        assert values[-1][2] == answer, f"{family.name}: paths disagree on the answer"
        signature = tuple(zip((s.op for s in steps), values, strict=True))
        if signature not in seen:  # equal numbers can make two paths read the same
            seen.add(signature)
            paths.append(steps)
    return tuple(paths)


def generate_problems(n: int, seed: int = 0, split: str = "train",
                      level: str = "standard") -> list[Problem]:
    """``n`` distinct problems of ``split``; the same for the same ``seed``."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (choose {' or '.join(SPLITS)})")
    if level not in LEVELS:
        raise UserError(f"unknown level {level!r} (choose {' or '.join(LEVELS)})")
    rng = random.Random(seed)
    problems, seen = [], set()
    families = _families(level)
    for _ in range(50 * n + 1000):
        if len(problems) == n:
            return problems
        family = rng.choice(families)
        params, key, answer = _draw(family, rng, split, level)
        if key in seen:
            continue
        seen.add(key)
        paths = _valid_paths(family, params, answer, LEVELS[level][0],
                             ALT_VALUE.get(level))
        if level in LEVEL_FAMILIES and len(paths) < len(family.paths):
            continue  # every problem of this level has both its short and its long solution
        question = rng.choice(family.questions).format(**params)
        chosen = (int(rng.random() < LONG_SHARE[level]) if level in LONG_SHARE
                  else rng.randrange(len(paths)))
        mental = level in MENTAL_SHARE and rng.random() < MENTAL_SHARE[level]
        problems.append(Problem(family.name, key, params, question, answer, paths, chosen, mental))
    raise UserError(f"could only make {len(problems)} distinct {split} problems, not {n}")


def count_paths(problem: Problem) -> int:
    """How many distinct valid solution paths the problem has (at least 1)."""
    return len(problem.paths)


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def expression(steps: Sequence[Step], params: Params, names: bool = False) -> str:
    """The path as one expression over the question's numbers (or variable ``names``),
    with the parentheses it needs: ``t = 2 * 7; r = t * 2 - 20`` -> ``2 * 7 * 2 - 20``."""
    env: dict[str, tuple[str, int]] = {}

    def operand(x: str | int, op: str, right: bool) -> str:
        text, prec = env.get(x) or (str(x if names else params.get(x, x)), 3)  # type: ignore[arg-type]
        if prec < _PRECEDENCE[op] or (right and prec == _PRECEDENCE[op] and op in "-/"):
            return f"({text})"
        return text

    for s in steps:
        env[s.var] = (f"{operand(s.left, s.op, False)} {s.op} {operand(s.right, s.op, True)}",
                      _PRECEDENCE[s.op])
    return env[steps[-1].var][0]


def render(problem: Problem, path: int | None = None, cot: str = "nl") -> str:
    """One path (default: the annotated one) as N-CoT lines (no answer sentence) or P-CoT."""
    _check_cot(cot)
    steps = problem.paths[problem.chosen if path is None else path]
    if problem.mental and cot == "nl":
        expr = expression(steps, problem.params)
        return steps[-1].text.format(eq=f"{expr} = {problem.answer}", **problem.params)
    if cot == "nl":
        return "\n".join(s.text.format(eq=f"{a} {s.op} {b} = {c}", **problem.params)
                         for s, (a, b, c) in zip(steps, _run(steps, problem.params, 10**9), strict=True))
    # the given numbers: operands the path reads and does not compute itself
    used = {x for s in steps for x in (s.left, s.right)} - {s.var for s in steps}
    lines = ["def solution():", f'    """{problem.question}"""']
    lines += [f"    {k} = {v}" for k, v in problem.params.items() if k in used]
    values = _run(steps, problem.params, 10**9)
    for i, (s, (_, _, c)) in enumerate(zip(steps, values, strict=True)):
        var = "result" if i == len(steps) - 1 else s.var
        rhs = str(c) if problem.mental else f"{s.left} {'//' if s.op == '/' else s.op} {s.right}"
        lines.append(f"    {var} = {rhs}")
    return "\n".join([*lines, "    return result"])


def generate(n: int, seed: int = 0, split: str = "train", cot: str = "nl",
             level: str = "standard") -> list[Example]:
    """``n`` problems of ``split`` as Examples; a seed gives the same paths in both CoT styles."""
    return [Example(f"synth-{split}-{i}", p.question, str(p.answer), render(p, cot=cot))
            for i, p in enumerate(generate_problems(n, seed, split, level))]


def generate_validation(n: int, n_train: int, seed: int = 0, cot: str = "nl",
                        level: str = "standard") -> list[Example]:
    """``n`` problems of the training split held out from ``generate(n_train, seed, ...)``:
    drawn after its problems (which stay the same), and none with the family and numbers of
    any of them (``content_key``), so that a choice made on them is not made on training twins."""
    problems = generate_problems(n_train + 3 * n + 100, seed, "train", level)
    taken = {content_key(p.family, p.params) for p in problems[:n_train]}
    held = []
    for p in problems[n_train:]:
        key = content_key(p.family, p.params)
        if key not in taken and len(held) < n:
            held.append(p)
            taken.add(key)
    if len(held) < n:
        raise UserError(f"could only hold out {len(held)} validation problems, not {n}")
    return [Example(f"synth-val-{i}", p.question, str(p.answer), render(p, cot=cot))
            for i, p in enumerate(held)]


def _check_cot(cot: str) -> None:
    if cot not in COT_STYLES:
        raise UserError(f"unknown CoT style {cot!r} (choose {' or '.join(COT_STYLES)})")


def write_reft_json(examples: Sequence[Example], path: str | Path, cot: str = "nl") -> Path:
    """Atomically write ReFT's format ``[{item_id, question, answer_cot, answer_value}]``;
    an ``nl`` CoT gets the answer sentence appended, as in ReFT's ``*_nl.json``."""
    _check_cot(cot)
    if any(ex.cot is None for ex in examples):
        raise UserError("every example needs a chain of thought to be written")
    rows = [{"item_id": ex.id, "question": ex.question,
             "answer_cot": ex.cot + ANSWER_SENTENCE + ex.answer if cot == "nl" else ex.cot,
             "answer_value": ex.answer} for ex in examples]
    return write_atomic(Path(path), json.dumps(rows, indent=2, ensure_ascii=False))

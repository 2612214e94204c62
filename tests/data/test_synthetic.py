"""The synthetic task: determinism, disjoint splits, correct annotations, several paths."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
from collections import Counter

import pytest

from reft.cli import commands
from reft.data import synthetic
from reft.data.synthetic import count_paths, generate, generate_problems, render, write_reft_json
from reft.errors import UserError

EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def _solve(a: int, op: str, b: int) -> float:
    return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b


@pytest.fixture(scope="module")
def train() -> list[synthetic.Problem]:
    return generate_problems(500, seed=0, split="train")


def test_same_seed_same_examples_different_seed_different():
    assert generate(200, seed=3) == generate(200, seed=3)
    assert generate(200, seed=3, cot="python") == generate(200, seed=3, cot="python")
    assert [e.question for e in generate(200, seed=3)] != [e.question for e in generate(200, seed=4)]


def test_same_problems_in_another_process_with_another_hash_seed(python):
    # the split hash must not depend on Python's per-process string hashing
    code = "from reft.data.synthetic import generate; print(repr(generate(40, 5, 'test')))"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    assert done.stdout.strip() == repr(generate(40, 5, "test"))


def test_ids_and_distinct_problems():
    examples = generate(300, seed=1, split="test")
    assert [e.id for e in examples] == [f"synth-test-{i}" for i in range(300)]
    assert len({e.question for e in examples}) == 300


@pytest.mark.parametrize("seeds", [(0, 0), (0, 1), (2, 7), (5, 3)])
def test_train_and_test_never_share_a_problem(seeds):
    train = generate_problems(1500, seed=seeds[0], split="train")
    test = generate_problems(1500, seed=seeds[1], split="test")
    content = synthetic.content_key
    assert all(synthetic.split_of(content(p.family, p.params)) == "train" for p in train)
    assert all(synthetic.split_of(content(p.family, p.params)) == "test" for p in test)
    assert not {p.key for p in train} & {p.key for p in test}
    assert not {p.question for p in train} & {p.question for p in test}


def _math(p) -> tuple:
    """A problem's mathematical content: its family and its numbers in order (names, which
    only change the wording, excluded). These fix its programs and answer."""
    return (p.family, tuple(v for v in p.params.values() if isinstance(v, int)))


@pytest.mark.parametrize("level", sorted(synthetic.LEVELS))
def test_no_test_problem_shares_its_family_and_numbers_with_training(level):
    """Held out for real: a test problem never has a training (or validation: drawn from the
    training split) problem's family and numbers under other names, at every level and in
    both CoT styles (the styles render the same problems)."""
    train = generate_problems(2000, seed=0, split="train", level=level)
    val = generate_problems(300, seed=1, split="train", level=level)
    test = generate_problems(500, seed=0, split="test", level=level)
    seen = {_math(p) for p in train + val}
    assert not [p.question for p in test if _math(p) in seen]
    for cot in ("nl", "python"):
        texts = {e.question for e in generate(50, seed=0, split="test", cot=cot, level=level)}
        assert texts == {p.question for p in test[:50]}


def test_gold_answers_are_small_non_negative_integers(train):
    for p in train:
        assert isinstance(p.answer, int) and 0 < p.answer < 1000
    for e in generate(500, seed=0):
        assert e.answer == str(int(e.answer))


def test_every_nl_path_is_arithmetically_correct(train):
    for p in train:
        for i in range(count_paths(p)):
            lines = render(p, i).split("\n")
            assert 2 <= len(lines) <= 4
            results = []
            for line in lines:
                [(a, op, b, c)] = EQUATION.findall(line)  # exactly one equation per line
                assert _solve(int(a), op, int(b)) == int(c), line
                assert 0 < int(c) < 1000
                results.append(int(c))
            assert results[-1] == p.answer
            assert "answer is" not in render(p, i)


def test_every_python_path_runs_and_returns_the_gold(train):
    for p in train:
        for i in range(count_paths(p)):
            program = render(p, i, cot="python")
            assert program.startswith(f'def solution():\n    """{p.question}"""\n    ')
            assert program.split("\n")[-2].startswith("    result = ")
            assert program.endswith("\n    return result")
            scope: dict = {}
            exec(program, scope)  # our own generated code
            result = scope["solution"]()
            assert isinstance(result, int) and result == p.answer, program


@pytest.mark.parametrize("level", ["standard", "tiny", "paths", "products"])
def test_python_programs_assign_only_numbers_the_question_gives(level):
    # an operand the program computes (e.g. a price gap) is not a given: assigning it a
    # literal too would hand the model a number the question does not contain
    for p in generate_problems(200, seed=4, split="train", level=level):
        for i in range(count_paths(p)):
            program = render(p, i, cot="python")
            given = re.findall(r"^    (\w+) = (\d+)$", program, flags=re.MULTILINE)
            computed = re.findall(r"^    (\w+) = \w+ (?:[-+*]|//) \w+$", program, flags=re.MULTILINE)
            assert given and not {v for v, _ in given} & set(computed), program
            numbers = set(re.findall(r"\d+", p.question))
            assert all(value in numbers for _, value in given), program


def test_both_styles_annotate_the_same_path():
    for nl, py in zip(generate(200, seed=9), generate(200, seed=9, cot="python"), strict=True):
        assert nl.question == py.question and nl.answer == py.answer
        py_ops = re.findall(r"^    \w+ = \w+ ([-+*]|//) \w+$", py.cot, flags=re.MULTILINE)
        nl_ops = [op for _, op, _, _ in EQUATION.findall(nl.cot)]
        assert [op.replace("//", "/") for op in py_ops] == nl_ops


def test_most_problems_have_several_valid_paths(train):
    counts = [count_paths(p) for p in train]
    assert min(counts) >= 1
    assert sum(c >= 2 for c in counts) >= 0.5 * len(counts)
    # the annotation is a random valid path, not always the canonical one
    several = [p for p in train if count_paths(p) >= 2]
    assert sum(p.chosen != 0 for p in several) >= 0.3 * len(several)
    assert all(0 <= p.chosen < count_paths(p) for p in train)


def test_paths_differ_in_their_equations(train):
    for p in train:
        texts = [tuple(EQUATION.findall(render(p, i))) for i in range(count_paths(p))]
        assert len(set(texts)) == len(texts)


def test_every_phrasing_mentions_every_entity_and_number():
    # the split key is built from these fields: a phrasing that left one out could
    # make two problems with different keys (maybe different splits) read the same
    rng = random.Random(0)
    for family in synthetic.FAMILIES:
        fields = set(synthetic._sample(family, rng)) - {"he", "He", "his"}
        for question in family.questions:
            assert {f for f in fields if "{" + f + "}" not in question} == set(), family.name


def test_template_and_phrasing_variety(train):
    families = Counter(p.family for p in train)
    assert len(families) >= 8 and len(synthetic.FAMILIES) >= 8
    by_name = {f.name: f for f in synthetic.FAMILIES}
    phrasings = Counter()
    for p in train:
        questions = [q.format(**p.params) for q in by_name[p.family].questions]
        phrasings[(p.family, questions.index(p.question))] += 1
    for family in families:
        assert sum(f == family for f, _ in phrasings) >= 2, family


def test_problems_are_short(train):
    for p in train:
        assert len(p.question.split()) <= 60
        for i in range(count_paths(p)):
            assert len(render(p, i).split()) <= 50


@pytest.mark.parametrize("cot", ["nl", "python"])
def test_write_reft_json_round_trips(tmp_path, cot):
    examples = generate(30, seed=2, cot=cot)
    path = write_reft_json(examples, tmp_path / "sub" / "synth.json", cot)
    rows = json.loads(path.read_text())
    assert [set(r) for r in rows] == [{"item_id", "question", "answer_cot", "answer_value"}] * 30
    for row, ex in zip(rows, examples, strict=True):
        assert (row["item_id"], row["question"], row["answer_value"]) == (ex.id, ex.question, ex.answer)
        if cot == "nl":
            assert row["answer_cot"] == f"{ex.cot}\nTherefore, the answer is: {ex.answer}"
        else:
            assert row["answer_cot"] == ex.cot
    assert [f.name for f in path.parent.iterdir()] == ["synth.json"]  # no temporary file left


def test_bad_arguments_are_user_errors(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write"):
        write_reft_json(generate(2), blocker / "out.json")
    with pytest.raises(UserError, match="CoT style"):
        generate(2, cot="latex")
    with pytest.raises(UserError, match="split"):
        generate(2, split="dev")
    with pytest.raises(UserError, match="positive"):
        commands.data_synth(argparse.Namespace(n=0, seed=0, split="train", out=str(tmp_path / "x.json"),
                                                cot="nl", level="standard"))


def test_main_honors_a_cot_flag(tmp_path, capsys):
    out = tmp_path / "p.json"
    args = argparse.Namespace(n=5, seed=0, split="test", out=str(out), cot="python", level="standard")
    assert commands.data_synth(args) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["answer_cot"].startswith("def solution():") and rows[0]["item_id"] == "synth-test-0"
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def test_cli_writes_a_valid_file(tmp_path, python):
    out = tmp_path / "synth.json"
    done = subprocess.run([python, "-m", "reft", "data", "synth", "--n", "50", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 and str(out) in done.stdout
    rows = json.loads(out.read_text())
    assert len(rows) == 50 and rows[0]["item_id"] == "synth-train-0"
    assert all(r["answer_cot"].endswith(f"answer is: {r['answer_value']}") for r in rows)


def test_cli_rejects_n_zero_in_one_line(tmp_path, python):
    done = subprocess.run([python, "-m", "reft", "data", "synth", "--n", "0",
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--n" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_easy_level_keeps_numbers_small_and_splits_disjoint():
    import re

    from reft.data.synthetic import count_paths, generate, generate_problems

    train = generate(300, seed=3, split="train", level="easy")
    test = generate(100, seed=3, split="test", level="easy")
    assert not {e.question for e in train} & {e.question for e in test}
    for e in train + test:
        assert 0 < int(e.answer) < 100
        assert all(int(c) < 100 for c in re.findall(r"= (\d+)", e.cot))
    problems = generate_problems(300, seed=3, split="train", level="easy")
    assert sum(count_paths(p) >= 2 for p in problems) / len(problems) > 0.5
    # the standard level is unchanged by the new knob
    assert generate(20, seed=3) == generate(20, seed=3, level="standard")


def test_tiny_level_bounds_every_step_and_drops_families_that_cannot_fit():
    import re

    from reft.data.synthetic import FAMILIES, _fits, generate

    assert [f.name for f in FAMILIES if not _fits(f, "tiny")] == ["travel"]
    assert all(_fits(f, "easy") and _fits(f, "standard") for f in FAMILIES)
    train = generate(300, seed=4, split="train", level="tiny")
    test = generate(100, seed=4, split="test", level="tiny")
    assert not {e.question for e in train} & {e.question for e in test}
    for e in train + test:
        assert 0 < int(e.answer) < 30
        assert all(int(c) < 30 for c in re.findall(r"= (\d+)", e.cot))
        assert " km" not in e.question
    assert generate(50, seed=4, level="tiny") == generate(50, seed=4, level="tiny")


def test_unknown_level_is_a_user_error():
    import pytest

    from reft.data.synthetic import generate
    from reft.errors import UserError

    with pytest.raises(UserError, match="level"):
        generate(5, level="hard")


def test_paths_level_has_a_small_number_path_and_a_large_number_path_annotated_at_random():
    import re

    from reft.data.families import PATH_FAMILIES
    from reft.data.synthetic import generate_problems, render

    problems = generate_problems(400, seed=5, split="train", level="paths")
    test = generate_problems(100, seed=5, split="test", level="paths")
    assert not {p.question for p in problems} & {p.question for p in test}
    assert {p.family for p in problems} == {f.name for f in PATH_FAMILIES}
    large = 0
    for p in problems + test:
        assert len(p.paths) == 2 and 0 < p.answer < 30
        assert all(int(n) < 30 for n in re.findall(r"\d+", p.question))
        short, long = (re.findall(r"= (\d+)", render(p, i)) for i in (0, 1))
        assert short[-1] == long[-1] == str(p.answer)
        assert all(int(v) < 30 for v in short)
        large += any(int(v) >= 30 for v in long)
    assert large / len(problems + test) > 0.6  # the other path mostly goes through large numbers
    chosen = sum(p.chosen for p in problems) / len(problems)
    assert 0.4 < chosen < 0.6  # the annotation is either path, at random


def test_products_level_has_a_short_path_and_a_long_one_through_two_digit_products():
    import re

    from reft.data.families import PRODUCT_FAMILIES
    from reft.data.synthetic import generate_problems, render

    problems = generate_problems(400, seed=3, split="train", level="products")
    test = generate_problems(100, seed=3, split="test", level="products")
    assert not {p.question for p in problems} & {p.question for p in test}
    assert {p.family for p in problems} == {f.name for f in PRODUCT_FAMILIES}
    for p in problems + test:
        assert len(p.paths) == 2 and 0 < p.answer < 100
        assert all(int(n) < 50 for n in re.findall(r"\d+", p.question))
        short, long = (re.findall(r"(\d+) ([-*]) (\d+) = (\d+)", render(p, i)) for i in (0, 1))
        assert short[-1][3] == long[-1][3] == str(p.answer)
        assert [s[1] for s in short] == ["-", "*"] and [s[1] for s in long] == ["*", "*", "-"]
        assert int(short[0][3]) in (1, 2)  # the short path multiplies by 1 or 2
        assert all(int(a) > 10 and int(b) > 10 for a, op, b, _ in long if op == "*")
    chosen = sum(p.chosen for p in problems) / len(problems)
    assert 0.68 < chosen < 0.82  # the long path is annotated 3 times in 4


@pytest.mark.parametrize(("steps", "expected"), [
    ([("t", "a", "*", "b"), ("r", "t", "-", "c")], "2 * 7 - 20"),
    ([("t", "a", "+", "b"), ("r", "t", "*", "c")], "(2 + 7) * 20"),
    ([("t", "a", "+", "b"), ("r", "c", "-", "t")], "20 - (2 + 7)"),
    ([("t", "a", "-", "b"), ("r", "c", "+", "t")], "20 + 2 - 7"),
    ([("t", "a", "*", "b"), ("r", "c", "/", "t")], "20 / (2 * 7)"),
    ([("t", "a", "*", "b"), ("u", "a", "+", "c"), ("r", "u", "-", "t")], "2 + 20 - 2 * 7"),
])
def test_expression_inlines_steps_with_the_parentheses_they_need(steps, expected):
    from reft.data.families import Step
    from reft.data.synthetic import expression

    params = {"a": 2, "b": 7, "c": 20}
    path = [Step(v, left, op, right, "{eq}") for v, left, op, right in steps]
    assert expression(path, params) == expected
    assert expression(path, params, names=True) == expected.replace("20", "c").replace(
        "2", "a").replace("7", "b")


def test_mental_level_annotates_half_the_problems_without_showing_the_arithmetic():
    from reft.data.synthetic import expression, generate_problems, render

    problems = generate_problems(400, seed=2, split="train", level="mental")
    tiny = generate_problems(400, seed=2, split="train", level="tiny")
    assert {p.family for p in problems} == {p.family for p in tiny}
    assert 0.4 < sum(p.mental for p in problems) / len(problems) < 0.6
    for p in problems:
        nl, py = render(p), render(p, cot="python")
        assert all(int(v) < 30 for v in re.findall(r"= (\d+)", nl)) and 0 < p.answer < 30
        scope: dict = {}
        exec(py, scope)  # our own generated code; both styles are correct programs
        assert scope["solution"]() == p.answer
        operations = re.findall(r"^    \w+ = .*[-+*/]", py, re.MULTILINE)
        if p.mental:  # one equation over the question's numbers; a program of numbers only
            assert nl.count("\n") == 0 and nl.count("=") == 1
            assert f"{expression(p.paths[p.chosen], p.params)} = {p.answer}" in nl
            assert not operations
        else:
            assert nl.count("\n") == len(p.paths[p.chosen]) - 1
            assert len(operations) == len(p.paths[p.chosen])

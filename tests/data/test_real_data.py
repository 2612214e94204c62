"""The loaders on the real GSM8K / SVAMP / MathQA files in ../shared/data."""

from __future__ import annotations

import pytest

from reft.answers import extract_answer, is_correct
from reft.data import load_examples
from reft.data.prompts import build_prompt, build_target, program_from_completion

COUNTS = [
    # (file, task, cot, rows, rows with a CoT)
    ("gsm8k/train.jsonl", "numeric", "nl", 7473, 7473),
    ("gsm8k/test.jsonl", "numeric", "nl", 1319, 1319),
    ("gsm8k/reft_test_set.json", "numeric", "nl", 1319, 0),
    ("svamp/svamp_nl.json", "numeric", "nl", 3076, 3076),
    ("svamp/svamp_python_sdp.json", "numeric", "python", 3043, 3043),
    ("svamp/svamp_test_set.json", "numeric", "nl", 1000, 0),
    ("mathqa/mathqa_test_set.json", "mc", "nl", 1605, 0),
    ("mathqa/mathqa-numeric_test_set.json", "numeric", "nl", 1605, 0),
]


@pytest.mark.parametrize(
    ("name", "task", "cot", "rows", "cots"), COUNTS, ids=[c[0] for c in COUNTS]
)
def test_row_counts(shared_data, name, task, cot, rows, cots):
    examples = load_examples(str(shared_data / name), task=task, cot=cot)
    assert len(examples) == rows
    assert sum(e.cot is not None for e in examples) == cots
    assert len({e.id for e in examples}) == rows


def test_gsm8k_original(shared_data):
    ex = load_examples(str(shared_data / "gsm8k/train.jsonl"), max_examples=2)
    assert len(ex) == 2
    assert ex[0].id == "train_0"
    assert ex[0].question.startswith("Natalia sold clips to 48 of her friends")
    assert ex[0].answer == "72"
    # calculator notes and the #### line are gone
    assert ex[0].cot == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May."
    )


def test_gsm8k_golds_have_no_commas(shared_data):
    golds = [e.answer for e in load_examples(str(shared_data / "gsm8k/train.jsonl"))]
    assert not any("," in g for g in golds)
    assert all("<<" not in e.cot for e in load_examples(str(shared_data / "gsm8k/test.jsonl")))


def test_gsm8k_reft_test_set_matches_original_order(shared_data):
    reft = load_examples(str(shared_data / "gsm8k/reft_test_set.json"))
    orig = load_examples(str(shared_data / "gsm8k/test.jsonl"))
    assert reft[0].id == "gsm8k_0" and reft[0].answer == "18"
    assert [e.answer for e in reft[:50]] == [e.answer for e in orig[:50]]


def test_svamp_nl_cot_loses_its_answer_sentence(shared_data):
    ex = load_examples(str(shared_data / "svamp/svamp_nl.json"), require_cot=True)
    first = ex[0]
    assert first.id == "svamp_0" and first.answer == "203.0"
    assert first.cot.endswith(
        "Therefore, Tyler has a total of 203 pairs of birds in the bird sanctuary."
    )
    assert not any("the answer is <" in e.cot.lower() for e in ex)
    target = build_target(first)
    assert target.endswith("bird sanctuary.\nTherefore, the answer is: 203")
    assert extract_answer(build_prompt(first.question) + target) == "203"


def test_svamp_programs_rebuild_and_run(shared_data):
    ex = load_examples(
        str(shared_data / "svamp/svamp_python_sdp.json"), cot="python", require_cot=True
    )
    assert ex[0].cot.startswith('def solution():\n    """tyler an animal rights advocate')
    for e in ex[:200]:  # the release's programs, rebuilt as the sandbox will see them
        program = program_from_completion(e.question, build_target(e, "python"))
        namespace: dict = {}
        exec(compile(program, e.id, "exec"), namespace)  # trusted reference data
        assert is_correct(str(namespace["solution"]()), e.answer), e.id


def test_mathqa(shared_data):
    letters = load_examples(str(shared_data / "mathqa/mathqa_test_set.json"), task="mc")
    assert letters[0].id == "mathqa_0" and letters[0].answer == "a"
    assert "a ) 38 , b ) 27.675" in letters[0].question
    assert {e.answer for e in letters} <= set("abcde")
    numeric = load_examples(str(shared_data / "mathqa/mathqa-numeric_test_set.json"))
    assert numeric[0].answer == "38.0"
    assert numeric[-1].id == "mathqa-numeric_2984" and numeric[-1].answer == "3.0"


def test_mathqa_letters_are_not_numeric(shared_data):
    from reft.errors import UserError

    with pytest.raises(
        UserError, match=r"mathqa_test_set.json: row 1: gold answer 'a' is not a number"
    ):
        load_examples(str(shared_data / "mathqa/mathqa_test_set.json"))


def test_svamp_test_set(shared_data):
    ex = load_examples(str(shared_data / "svamp/svamp_test_set.json"))
    assert ex[0].id == "svamp_3735" and ex[0].answer == "14.0" and ex[0].cot is None

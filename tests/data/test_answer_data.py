"""Every answer annotated in the shipped data scores 1.0 against its own gold under the
default answer parser (and the release's own rule reads none of SVAMP's annotations)."""

from __future__ import annotations

import json

import pytest

from reft.answers import RELEASE_TRIGGER, extract_answer
from reft.config import EvalConfig
from reft.data import load_examples
from reft.data.prompts import build_target
from reft.rewards import score
from reft.rollout.score import score_texts

# Two SVAMP CoTs of the release state another answer than their gold:
# svamp_929 "<9>" for 8.9333333333, svamp_2000 "<69.32%>" for 69.4.
SVAMP_WRONG_ANNOTATIONS = {"svamp_929", "svamp_2000"}


def _rows(shared_data, name: str) -> list[dict]:
    return json.loads((shared_data / name).read_text())


def test_svamp_nl_annotations_score_one_under_default(shared_data):
    rows = _rows(shared_data, "svamp/svamp_nl.json")
    cots, golds = [r["answer_cot"] for r in rows], [r["answer_value"] for r in rows]
    assert len(rows) == 3076
    scores = score(cots, golds)  # default parser
    assert all(s > 0 for s in scores)  # every annotation states an answer
    wrong = {r["item_id"] for r, s in zip(rows, scores, strict=True) if s != 1.0}
    assert wrong == SVAMP_WRONG_ANNOTATIONS
    # the release's rule reads none of them ("Therefore, the answer is <203>." has no ": ")
    assert all(extract_answer(c, parser="release") is None for c in cots)


@pytest.mark.parametrize("parser", ["default", "release"])
def test_release_style_svamp_targets_score_one(shared_data, parser):
    # the release trains on the annotation + "\nTherefore, the answer is: " + the gold as given
    rows = _rows(shared_data, "svamp/svamp_nl.json")
    targets = [r["answer_cot"].strip() + RELEASE_TRIGGER + r["answer_value"] for r in rows]
    assert set(score(targets, [r["answer_value"] for r in rows], parser=parser)) == {1.0}


@pytest.mark.parametrize(
    ("name", "rows"),
    [("svamp/svamp_nl.json", 3076), ("gsm8k/train.jsonl", 7473), ("gsm8k/test.jsonl", 1319)],
)
@pytest.mark.parametrize("parser", ["default", "release", "lenient"])
def test_reft_nl_targets_score_one(shared_data, name, rows, parser):
    examples = load_examples(str(shared_data / name), require_cot=True)
    assert len(examples) == rows
    targets = [build_target(e) for e in examples]
    assert set(score(targets, [e.answer for e in examples], parser=parser)) == {1.0}


@pytest.mark.parametrize(
    ("name", "task"),
    [("mathqa/mathqa_test_set.json", "mc"), ("mathqa/mathqa-numeric_test_set.json", "numeric")],
)
def test_mathqa_gold_answer_sentences_score_one(shared_data, name, task):
    # MathQA ships without CoTs here: only the answer sentence of a release-style target
    rows = _rows(shared_data, name)
    assert len(rows) == 1605
    sentences = ["x" + RELEASE_TRIGGER + r["answer_value"] for r in rows]
    assert set(score(sentences, [r["answer_value"] for r in rows], task=task)) == {1.0}


@pytest.mark.slow
def test_svamp_programs_score_one_under_default(shared_data):
    try:
        from reft.sandbox import run_programs  # noqa: F401
    except ImportError:
        pytest.skip("reft.sandbox.run_programs is not available")
    examples = load_examples(str(shared_data / "svamp/svamp_python_sdp.json"), cot="python",
                             require_cot=True)
    assert len(examples) == 3043
    # what the model writes after the prompt's "def solution():" header, judged as eval does
    texts = [build_target(e, "python") for e in examples]
    judged = score_texts(texts, examples, EvalConfig(cot="python"))
    wrong = [(e.id, e.answer, j.pred) for e, j in zip(examples, judged, strict=True)
             if j.score != 1.0]
    assert not wrong, wrong[:20]


def test_gsm8k_human_answers_agree_with_the_releases_test_golds(shared_data):
    """The gold reft reads from GSM8K's own ``#### N`` line is, for every test question, the
    release's ``answer_value`` for it (two sources of one number, read independently), and
    the human annotation ending in it scores 1.0 against that gold under every parser."""
    ours = load_examples(str(shared_data / "gsm8k/test.jsonl"), require_cot=True)
    release = _rows(shared_data, "gsm8k/reft_test_set.json")  # the same questions, in order
    assert len(ours) == len(release) == 1319

    def words(text: str) -> list[str]:  # the release normalised some spaces (\xa0)
        return text.split()

    for e, r in zip(ours, release, strict=True):
        assert words(e.question) == words(r["question"]), r["item_id"]
        assert float(e.answer) == pytest.approx(float(r["answer_value"]), abs=1e-9), r["item_id"]
    targets = [build_target(e) for e in ours]
    for parser in ("default", "release", "lenient"):
        assert set(score(targets, [r["answer_value"] for r in release], parser=parser)) == {1.0}

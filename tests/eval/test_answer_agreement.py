"""The reward and the evaluation read the same answer from the same text, under each parser,
and the ``answer_parser`` setting reaches both (and the saved config)."""

from __future__ import annotations

import argparse

import pytest
import yaml

from reft.answers import CHOICES, parse_answer
from reft.config import EvalConfig, PPOConfig, SampleConfig, SelfTrainConfig
from reft.configio import add_config_args, config_from_args, make_config, save_config
from reft.data.records import Example
from reft.errors import UserError
from reft.eval.runner import evaluate
from reft.rewards import judge
from reft.rollout.score import score_texts
from tests.test_answers import CASES, PARSERS_UNDER_TEST


def _right(value, task: str) -> bool:
    """Whether a gold can equal this value (the gold is then the value itself)."""
    return value is not None and (task == "numeric" or value in CHOICES)


def _gold(value, task: str) -> str:
    if not _right(value, task):
        return "c" if task == "mc" else "18"
    return str(value)


@pytest.mark.parametrize("parser", PARSERS_UNDER_TEST)
@pytest.mark.parametrize("task", ["numeric", "mc"])
def test_reward_and_eval_read_the_same_answer(monkeypatch, parser, task):
    from reft.rollout import sampler

    cases = [c for c in CASES if c[2] == task]
    texts = [c[1] for c in cases]
    values = [c[3 + PARSERS_UNDER_TEST.index(parser)] for c in cases]
    examples = [Example(f"q{i}", "How many?", _gold(v, task)) for i, v in enumerate(values)]
    golds = [e.answer for e in examples]

    def fake_generate(model, tokenizer, prompts, *, num_samples=1, **_):
        assert len(prompts) == len(texts)
        out = [t for t in texts for _ in range(num_samples)]
        return sampler.Generations([[1]] * len(out), [[2]] * len(out), out, [False] * len(out))

    monkeypatch.setattr(sampler, "generate", fake_generate)
    s = EvalConfig(task=task, answer_parser=parser)
    rewarded = judge(texts, golds, task=task, parser=parser)
    assert score_texts(texts, examples, s) == rewarded
    _, records = evaluate(None, None, examples, s, 1, progress=False)
    for rec, j, value, case in zip(records, rewarded, values, cases, strict=True):
        assert (rec["pred"], rec["correct"]) == (j.pred, j.correct), case[0]
        assert rec["samples"][0]["pred"] == j.pred
        assert parse_answer(j.pred, task, parser) == value, case[0]
        assert j.correct == _right(value, task), case[0]
        assert j.score == (1.0 if j.correct else 0.1 if value is not None else 0.0)
        assert rec["vote_correct"] == j.correct, case[0]  # one sample: the vote is its answer


@pytest.mark.parametrize("cls", [EvalConfig, PPOConfig, SampleConfig, SelfTrainConfig])
def test_setting_reaches_scoring(cls):
    """Every config that samples carries the parser, and scoring reads it from there."""
    example = [Example("1", "q", "18", None)]
    text = ["Therefore, the answer is: $18"]
    assert cls().answer_parser == "default"
    assert not score_texts(text, example, cls())[0].correct
    assert score_texts(text, example, make_config(cls, {"answer_parser": "lenient"}))[0].correct


def test_setting_is_a_flag_with_choices_and_is_saved(tmp_path):
    p = argparse.ArgumentParser()
    add_config_args(p, EvalConfig)
    cfg = config_from_args(EvalConfig, p.parse_args(["--answer-parser", "release"]))
    assert cfg.answer_parser == "release"
    with pytest.raises(SystemExit):
        p.parse_args(["--answer-parser", "strict"])
    with pytest.raises(UserError, match="answer-parser: must be one of default, release, lenient"):
        make_config(EvalConfig, {"answer_parser": "strict"})
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["answer_parser"] == "release"

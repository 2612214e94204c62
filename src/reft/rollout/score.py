"""Scoring completions of a task's questions: the answer each gives, whether it is right,
and its reward. P-CoT completions become programs and run in the sandbox.

The same function scores PPO's rollouts, online self-training's samples, ``reft sample``
and every evaluation metric, so training and measurement read answers one way
(``answer_parser``)."""

from __future__ import annotations

from reft import rewards
from reft.data.records import Example
from reft.rewards import PARTIAL_REWARD, Judgement


def score_texts(texts: list[str], examples: list[Example], cfg, repeat: int = 1,
                partial: float = PARTIAL_REWARD) -> list[Judgement]:
    """One ``Judgement`` per completion; ``texts`` holds ``repeat`` completions per example,
    in example order. ``cfg`` gives ``cot``, ``task``, ``answer_parser`` and ``sampling.timeout_s``."""
    golds = [e.answer for e in examples for _ in range(repeat)]
    if cfg.cot == "python":
        from reft.data.prompts import program_from_completion

        questions = [e.question for e in examples for _ in range(repeat)]
        texts = [program_from_completion(q, t) for q, t in zip(questions, texts, strict=True)]
    return rewards.judge(texts, golds, task=cfg.task, cot=cfg.cot, partial=partial, timeout_s=cfg.sampling.timeout_s,
                 parser=cfg.answer_parser)

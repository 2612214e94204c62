"""Prompt -> completions -> scores: the one path from questions to judged samples.

PPO's rollouts, online self-training, ``reft sample`` and evaluation all sample through
``sample_and_score``; what differs between them is only what they do with the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from reft.data.prompts import build_prompt
from reft.data.records import Example
from reft.rewards import PARTIAL_REWARD, Judgement
from reft.rollout import sampler
from reft.rollout.sampler import Generations
from reft.rollout.score import score_texts


@dataclass(frozen=True)
class Scored:
    """``num_samples`` completions per example, in example order, with their judgements."""

    prompts: list[str]
    """One per example."""
    gens: Generations
    judged: list[Judgement]
    sample_s: float = 0.0
    """Seconds spent sampling."""
    score_s: float = 0.0
    """Seconds spent scoring (running programs, reading answers)."""


def prompts_for(examples: list[Example], cfg) -> list[str]:
    """The prompt of each example (``cfg.cot``, ``cfg.template``)."""
    return [build_prompt(e.question, cot=cfg.cot, template=cfg.template) for e in examples]


def sample_and_score(model, tokenizer, examples: list[Example], cfg, *, num_samples: int = 1,
                     greedy: bool = False, seeds: list[int] | None = None,
                     all_done: Callable[[bool], bool] | None = None, progress: bool = False,
                     partial: float = PARTIAL_REWARD, return_logprobs: bool = False,
                     return_hidden: bool = False) -> Scored:
    """Sample (or decode greedily) and score. ``cfg`` gives the prompt (``cot``,
    ``template``), the sampling settings (``cfg.sampling``) and the scoring ones (``task``,
    ``answer_parser``, ``cfg.sampling.timeout_s``).

    ``seeds``: one per example (see ``generate``), else the global torch RNG; ``all_done``:
    with sharded parameters, whether every process has finished (see ``generate``);
    ``return_logprobs`` / ``return_hidden``: keep the sampler's per-token log-probs / last
    hidden states in ``Scored.gens`` (see ``Generations``)."""
    t0 = time.perf_counter()
    prompts = prompts_for(examples, cfg)
    kw = dict(max_new_tokens=cfg.sampling.max_new_tokens, batch_size=cfg.sampling.gen_batch_size,
              progress=progress, all_done=all_done, return_logprobs=return_logprobs,
              return_hidden=return_hidden)
    if greedy:
        gens = sampler.generate(model, tokenizer, prompts, greedy=True, **kw)
    else:
        gens = sampler.generate(model, tokenizer, prompts, temperature=cfg.sampling.temperature,
                        num_samples=num_samples, seeds=seeds, **kw)
    t1 = time.perf_counter()
    judged = score_texts(gens.texts, examples, cfg, repeat=1 if greedy else num_samples,
                         partial=partial)
    return Scored(prompts, gens, judged, t1 - t0, time.perf_counter() - t1)


def sample_records(model, tokenizer, examples: list[Example], cfg, k: int,
                   seeds: list[int] | None = None, all_done=None) -> list[dict]:
    """One record per question: k completions with extracted answers and correctness (the
    rows ``reft sample`` writes)."""
    s = sample_and_score(model, tokenizer, examples, cfg, num_samples=k, seeds=seeds,
                         all_done=all_done)
    out = []
    for i, e in enumerate(examples):
        sl = slice(i * k, (i + 1) * k)
        out.append({
            "id": e.id, "question": e.question, "gold": e.answer,
            "samples": [{"completion": t, "pred": j.pred, "correct": j.correct, "truncated": tr}
                        for t, j, tr in zip(s.gens.texts[sl], s.judged[sl], s.gens.truncated[sl],
                                            strict=True)],
        })
    return out

"""PPO makes rewarded completions more likely (issue 17, point 7).

Every response is one token long, and a stand-in judge rewards it by the parity of the code
point of its first character: half of the questions want an even one, half an odd one
(their gold answers say which). About a third of the tiny model's vocabulary is "even", so
every group of samples has winners and losers from the first step, and since the wanted
parity depends on the question a policy gains nothing by favouring one parity everywhere.
The prompt is the bare question, so the questions' last tokens differ.

``train_ppo`` runs 20 steps at a high learning rate; the probability of a rewarded first
token, computed exactly from the next-token distribution after each prompt, must rise
clearly for every advantage estimator, and fall when the golds are swapped (so the test
cannot pass by a drift that ignores the reward).
"""

from __future__ import annotations

import pytest
import torch

from reft.config import SamplingConfig

TEMPLATE = "{question}"
QUESTIONS = {"Tom has 3": "even", "Ann has 4": "odd", "Sam has 7": "even", "Bo has 8": "odd"}
"""question -> the parity its reward wants"""
SWAP = {"even": "odd", "odd": "even"}

# Measured at these settings: P(wanted) starts at 0.50 and ends at 0.71-0.95 when rewarded,
# 0.05-0.18 when the golds are swapped (estimators x seeds 0-3); with a reward that ignores
# the completion (every other sample right) it moves by 0.005 at most.
MOVE = 0.15


def _parity(text: str) -> str | None:
    """What the judge looks at: the parity of the completion's first character."""
    return ("odd", "even")[ord(text[0]) % 2 == 0] if text else None


def _p_wanted(model_dir) -> float:
    """Mean over the questions of P(first response token has the wanted parity | prompt)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reft.data.prompts import build_prompt

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    # a one-token completion is the token's own text (special tokens decode to "": no parity)
    parity = [_parity(t) for t in tok.batch_decode([[i] for i in range(len(tok))],
                                                   skip_special_tokens=True)]
    probs = []
    with torch.no_grad():
        for q, wanted in QUESTIONS.items():
            ids = tok(build_prompt(q, template=TEMPLATE), return_tensors="pt")["input_ids"]
            p = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)[: len(tok)]
            probs.append(p[torch.tensor([x == wanted for x in parity])].sum().item())
    return sum(probs) / len(probs)


def _train(tmp_path, model_dir, estimator: str, swap: bool, monkeypatch):
    import reft.rewards
    from reft.config import PPOConfig
    from reft.data.records import Example
    from reft.rewards import Judgement
    from reft.training.ppo import train_ppo

    def judge(completions, golds, **kw):
        return [Judgement(gold, True, 1.0) if _parity(c) == gold else Judgement(None, False, 0.0)
                for c, gold in zip(completions, golds, strict=True)]

    monkeypatch.setattr(reft.rewards, "judge", judge)
    train = [Example(id=str(i), question=q, answer=SWAP[a] if swap else a)
             for i, (q, a) in enumerate(QUESTIONS.items())]
    steps = 20
    cfg = PPOConfig(model=str(model_dir), out=str(tmp_path / f"{estimator}-{swap}"),
                    estimator=estimator, samples_per_question=8, rollout_batch_size=4,
                    mini_batch_size=32, ppo_epochs=2, max_steps=steps,
                    epochs=steps, lr=1e-2, save_every=1000, log_every=1000,
                    mixed_precision="no", seed=0, template=TEMPLATE, sampling=SamplingConfig(max_new_tokens=1))
    return train_ppo(cfg, train=train)


@pytest.mark.parametrize("estimator", ["gae", "grpo", "rloo"])
def test_ppo_raises_the_probability_of_rewarded_completions(estimator, tmp_path, tiny_model_dir,
                                                            monkeypatch):
    before = _p_wanted(tiny_model_dir)
    assert 0.3 < before < 0.7  # room to move both ways
    rewarded = _p_wanted(_train(tmp_path, tiny_model_dir, estimator, False, monkeypatch))
    assert rewarded - before > MOVE, (before, rewarded)
    penalised = _p_wanted(_train(tmp_path, tiny_model_dir, estimator, True, monkeypatch))
    assert before - penalised > MOVE, (before, penalised)

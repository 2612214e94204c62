"""Which token each PPO quantity belongs to (issue 17, point 7), on a hand-built batch.

A fake causal LM whose output at position t depends only on the token x_t there:

* logits: log-probabilities of a "next token is x_t + 1" table, P(x_t + 1 | x_t) = HIT and
  the rest shared evenly, so the log-prob of a response token says which logit it was
  read from;
* hidden state: one-hot(x_t), so a value head with weight w gives the value w[x_t].

Two left-padded prompts of different lengths, two right-padded responses (one ends with EOS,
one was cut by the length limit):

    row 0:  1 2 3 | 4 8 9      9 = EOS; 4 after 3 and 9 after 8 are "hits", 8 after 4 is not
    row 1:  0 0 5 | 6 2 0      0 = pad; 6 after 5 is a hit, 2 after 6 is not; truncated

Response token j of a row must be scored by the logit at P-1+j (P = 3, the padded prompt
width) and get the value computed at P-1+j, i.e. before the token is seen.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from reft.algorithms.advantages import get_estimator
from reft.algorithms.kl import kl_per_token
from reft.algorithms.logits import logprobs_from_logits
from reft.models.actor_critic import ActorCritic
from reft.models.batching import response_logits
from reft.rollout.rollout import build_sequences
from reft.rollout.sampler import Generations

V, PAD, EOS = 10, 0, 9
PROMPTS = [[1, 2, 3], [5]]
COMPLETIONS = [[4, 8, 9], [6, 2]]
TRUNCATED = [False, True]
# hit (1) / miss (0) of each response token under the "x + 1" table, read off the rows above
HITS = [[1, 0, 1], [1, 0]]
# value head: w[token]; only the tokens a value is read from before a response token matter
W = {3: 0.5, 4: 0.4, 8: 0.2, 5: 0.3, 6: 0.1}
BETA = 0.1


class NextTokenLM(nn.Module):
    """A causal LM in the HF calling convention; position t only sees x_t (so trivially causal)."""

    def __init__(self, hit: float):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=V, vocab_size=V, pad_token_id=PAD,
                                      eos_token_id=EOS)
        self.embed = nn.Embedding(V, V)
        self.lm_head = nn.Linear(V, V, bias=False)
        miss = (1 - hit) / (V - 1)
        table = torch.full((V, V), math.log(miss))
        table[torch.arange(V), (torch.arange(V) + 1) % V] = math.log(hit)
        with torch.no_grad():
            self.embed.weight.copy_(torch.eye(V))
            self.lm_head.weight.copy_(table.T)  # logits[t] = table[x_t]

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, position_ids=None, output_hidden_states=False,
                **kw):
        hidden = self.embed(input_ids)
        return SimpleNamespace(logits=self.lm_head(hidden), hidden_states=(hidden, hidden))


def _logp(hit_p: float, hit: int) -> float:
    return math.log(hit_p if hit else (1 - hit_p) / (V - 1))


@pytest.fixture
def rollout():
    gens = Generations(prompt_ids=PROMPTS, completion_ids=COMPLETIONS, texts=["", ""],
                       truncated=TRUNCATED)
    return build_sequences(gens, pad_id=PAD)


def _value_model(critic: str) -> ActorCritic:
    ac = ActorCritic(NextTokenLM(hit=0.5), critic, value_free=False)
    head = ac.body.value_head if critic == "shared" else ac.critic.value_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for token, w in W.items():
            head.weight[0, token] = w
    return ac.eval()


def test_rollout_layout(rollout):
    assert rollout.prompt_len == 3
    assert rollout.input_ids.tolist() == [[1, 2, 3, 4, 8, 9], [0, 0, 5, 6, 2, 0]]
    assert rollout.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0]]
    assert rollout.position_ids[1, 2:5].tolist() == [0, 1, 2]  # real tokens counted from 0
    assert rollout.response_mask.tolist() == [[1, 1, 1], [1, 1, 0]]  # EOS is a response token
    assert rollout.truncated.tolist() == TRUNCATED


def test_response_token_j_is_scored_by_the_logit_at_prompt_len_minus_1_plus_j(rollout):
    lm = NextTokenLM(hit=0.5)
    logits = lm(input_ids=rollout.input_ids).logits
    resp = response_logits(logits, rollout.prompt_len)
    assert resp.shape == (2, 3, V)
    logprobs = logprobs_from_logits(resp, rollout.input_ids[:, rollout.prompt_len:])
    for i, hits in enumerate(HITS):
        expected = [_logp(0.5, h) for h in hits]
        assert_close(logprobs[i, : len(hits)], torch.tensor(expected))
    # the same through ActorCritic, with every kind of critic
    for critic, value_free in (("shared", False), ("separate", False), ("shared", True)):
        ac = ActorCritic(lm, critic, value_free=value_free)
        ac_logits, _ = ac(**rollout.model_inputs())
        assert_close(ac_logits, resp)


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_value_of_response_token_j_is_computed_before_it(critic, rollout):
    _, values = _value_model(critic)(**rollout.model_inputs())
    assert values.shape == (2, 3)
    # row 0 reads its values at 3 | 4 8, row 1 at 5 | 6 (and 2 at the padding, unused)
    assert_close(values[0], torch.tensor([0.5, 0.4, 0.2]))
    assert_close(values[1, :2], torch.tensor([0.3, 0.1]))


def _experience(rollout):
    """old/ref log-probs, per-token KL and values as ``make_experience`` computes them."""
    ac = _value_model("shared")
    logits, values = ac(**rollout.model_inputs())
    response = rollout.input_ids[:, rollout.prompt_len:]
    old = logprobs_from_logits(logits, response)
    ref_logits = NextTokenLM(hit=0.25)(input_ids=rollout.input_ids).logits
    ref = logprobs_from_logits(response_logits(ref_logits, rollout.prompt_len), response)
    # no mask on purpose: the estimators must ignore what lies on the padding
    return kl_per_token(old, ref), values.detach()


def test_kl_is_per_token_and_aligned(rollout):
    kl, _ = _experience(rollout)
    # k1 = log pi - log pi_ref: a hit is log(0.5 / 0.25) = ln 2, a miss
    # log((0.5/9) / (0.75/9)) = ln(2/3)
    hit, miss = math.log(2), math.log(2 / 3)
    assert_close(kl[0], torch.tensor([hit, miss, hit]))
    assert_close(kl[1, :2], torch.tensor([hit, miss]))


def test_gae_puts_the_score_on_the_last_real_token_and_the_kl_on_each(rollout):
    """Hand-worked GAE, gamma 1, lambda 0.95, beta 0.1, values from the value head above."""
    kl, values = _experience(rollout)
    ln2, ln23 = math.log(2), math.log(2 / 3)
    scores = torch.tensor([1.0, 0.1])  # row 0 right, row 1 a wrong answer (0.1)
    adv, ret = get_estimator("gae")(scores=scores, mask=rollout.response_mask, kl=kl, values=values,
                                    kl_coef=BETA, gamma=1.0, lam=0.95)
    # row 0: r = -0.1 kl + [0, 0, 1] (the score on the EOS token), V = [0.5, 0.4, 0.2]
    #   r = [-0.0693147, 0.0405465, 0.9306853]
    #   A2 = r2 - 0.2                     = 0.7306853
    #   A1 = r1 + 0.2 - 0.4 + 0.95 A2     = -0.1594535 + 0.6941510 = 0.5346975
    #   A0 = r0 + 0.4 - 0.5 + 0.95 A1     = -0.1693147 + 0.5079626 = 0.3386479
    a2 = (1 - 0.1 * ln2) - 0.2
    a1 = (-0.1 * ln23 + 0.2 - 0.4) + 0.95 * a2
    a0 = (-0.1 * ln2 + 0.4 - 0.5) + 0.95 * a1
    assert [a0, a1, a2] == pytest.approx([0.3386479, 0.5346975, 0.7306853], abs=1e-6)
    # row 1 (truncated): the score 0.1 on its last real token (index 1), nothing on the padding
    #   r = [-0.0693147, 0.0405465 + 0.1], V = [0.3, 0.1]
    #   A1 = r1 - 0.1 = 0.0405465;  A0 = r0 + 0.1 - 0.3 + 0.95 A1 = -0.2307955
    b1 = (-0.1 * ln23 + 0.1) - 0.1
    b0 = (-0.1 * ln2 + 0.1 - 0.3) + 0.95 * b1
    assert [b0, b1] == pytest.approx([-0.2307955, 0.0405465], abs=1e-6)
    assert_close(adv, torch.tensor([[a0, a1, a2], [b0, b1, 0.0]]))
    assert_close(ret, torch.tensor([[a0 + 0.5, a1 + 0.4, a2 + 0.2], [b0 + 0.3, b1 + 0.1, 0.0]]))


@pytest.mark.parametrize("name", ["grpo", "rloo"])
def test_value_free_estimators_penalise_the_response_kl_only(name, rollout):
    """One group of the two rows: sequence reward = score - beta * (KL summed over the
    response tokens); the padding token of row 1 (KL ln(2/3) there) must not count."""
    kl, _ = _experience(rollout)
    ln2, ln23 = math.log(2), math.log(2 / 3)
    r0 = 1.0 - BETA * (2 * ln2 + ln23)
    r1 = 0.1 - BETA * (ln2 + ln23)
    adv, ret = get_estimator(name)(scores=torch.tensor([1.0, 0.1]), mask=rollout.response_mask,
                                   kl=kl, kl_coef=BETA, group_size=2)
    assert ret is None
    if name == "rloo":  # r - mean of the others: +-(r0 - r1) = +-(0.9 - 0.1 ln 2)
        a = r0 - r1
        assert a == pytest.approx(0.8306853, abs=1e-6)
    else:  # (r - mean) / std: two samples are +-(r0 - r1)/2 over |r0 - r1|/sqrt(2)
        a = 1 / math.sqrt(2)
    assert_close(adv, torch.tensor([[a, a, a], [-a, -a, 0.0]]), atol=1e-5, rtol=1e-5)

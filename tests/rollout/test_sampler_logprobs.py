"""The sampler's per-token log-probs and last hidden states (``generate(...,
return_logprobs=True, return_hidden=True)``) are those of a full forward over [prompt |
completion], the layout PPO's rollout forward uses; asking for them leaves the samples as
they were."""

from __future__ import annotations

import pytest
import torch

from reft.algorithms.logits import logprobs_from_logits
from reft.models.batching import response_logits
from reft.models.value_head import PolicyWithValueHead, new_value_head
from reft.rollout import kv_cache
from reft.rollout.rollout import build_sequences
from reft.rollout.sampler import generate, question_seed
from tests.tiny import tiny_model_and_tokenizer

PROMPTS = ["Question:\nTom has 3 boxes.\nAnswer reasoning:\n", "Question:\nA\n",
           "Ann has 4 apples and 2 pears. How many?\n", "Question:\nAnn\n"]
SEEDS = [question_seed(0, i) for i in range(len(PROMPTS))]
NEW = 12

# Under bf16 autocast the LM head's logits are bf16 (8 significant bits): the cached and
# the full forward round at different points, so a logit can come out one bf16 step
# apart, and a log-prob (its logit minus the logsumexp over all logits, both divided by T)
# by twice that over T. The tolerance is that bound at the largest |logit| of these
# batches (2.28 here: a step of 2**-6, so 0.045 at T = 0.7); measured (torch 2.13,
# transformers 5.x): 0.0019 at T = 1 and 0.0014 at T = 0.7, about one step of a typical
# logit (|l| ~ 0.15-0.5). A trained model's logits reach ~20-30, a step of 2**-3: expect
# differences of ~0.1 nats there, as between any two bf16 forwards that batch differently.


def bf16_tolerance(model, tok, temperature) -> float:
    g = sample(model, tok, temperature)
    seqs = build_sequences(g, tok.pad_token_id)
    with torch.no_grad():
        top = model(**{k: v for k, v in seqs.model_inputs().items() if k != "prompt_len"}).logits
    step = torch.finfo(torch.bfloat16).eps * 2.0 ** torch.floor(torch.log2(top.abs().max()))
    return 2 * step.item() / temperature


def model_with_eos_bias(bias: float = 2.0):
    """The tiny model with its LM head biased towards EOS, so that in a dozen steps some
    completions end (at different steps) and some hit the length limit."""
    model, tok = tiny_model_and_tokenizer()
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[tok.eos_token_id] = bias
    model.lm_head = head
    return model.eval(), tok


def full_forward(model, gens, pad_id, temperature):
    """(log-probs (B, T), last hidden states (B, T, H), response mask (B, T)) of the sampled
    tokens from one forward over [left-padded prompt | right-padded completion]."""
    seqs = build_sequences(gens, pad_id)
    with torch.no_grad():
        hidden = model.model(input_ids=seqs.input_ids, attention_mask=seqs.attention_mask,
                             position_ids=seqs.position_ids).last_hidden_state
        logits = response_logits(model.lm_head(hidden), seqs.prompt_len)
    scale = 1.0 if temperature <= 0 else temperature
    lp = logprobs_from_logits(logits.float() / scale, seqs.responses)
    return lp, response_logits(hidden, seqs.prompt_len), seqs.response_mask


def padded(rows, mask):
    out = torch.zeros(mask.shape + rows[0].shape[1:], dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def sample(model, tok, temperature, **kw):
    greedy = temperature <= 0
    return generate(model, tok, PROMPTS, max_new_tokens=NEW, num_samples=1 if greedy else 3,
                    seeds=None if greedy else SEEDS, temperature=temperature, greedy=greedy,
                    batch_size=kw.pop("batch_size", 8), **kw)


def max_logprob_error(model, tok, temperature, **kw) -> float:
    g = sample(model, tok, temperature, return_logprobs=True, **kw)
    lp, _, mask = full_forward(model, g, tok.pad_token_id, temperature)
    ours = padded([torch.tensor(r) for r in g.logprobs], mask)
    assert [len(r) for r in g.logprobs] == [len(c) for c in g.completion_ids]
    return ((ours - lp).abs() * mask).max().item()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("batch_size", [8, 3])
def test_logprobs_equal_a_full_forward(temperature, batch_size):
    model, tok = model_with_eos_bias()
    g = sample(model, tok, temperature, batch_size=batch_size)
    lengths = {len(c) for c, t in zip(g.completion_ids, g.truncated, strict=True) if not t}
    assert any(g.truncated) and len(lengths) >= 2  # truncated rows, and EOS at different steps
    assert len({len(p) for p in g.prompt_ids}) == len(PROMPTS)  # prompts of different lengths
    assert max_logprob_error(model, tok, temperature, batch_size=batch_size) < 1e-5


def test_greedy_logprobs_are_of_the_unscaled_distribution():
    model, tok = model_with_eos_bias(0.1)  # greedy here: two rows end, two hit the limit
    g = sample(model, tok, 0.0, return_logprobs=True)
    lp, _, mask = full_forward(model, g, tok.pad_token_id, 0.0)
    ours = padded([torch.tensor(r) for r in g.logprobs], mask)
    assert ((ours - lp).abs() * mask).max().item() < 1e-5


def test_samples_are_the_same_with_and_without_the_extras():
    model, tok = model_with_eos_bias()
    for temperature in (1.0, 0.7, 0.0):
        plain = sample(model, tok, temperature)
        extra = sample(model, tok, temperature, return_logprobs=True, return_hidden=True)
        assert plain.completion_ids == extra.completion_ids
        assert plain.logprobs is None and plain.hidden is None
    torch.manual_seed(5)  # the global RNG: the extras draw nothing from it
    plain = generate(model, tok, PROMPTS, max_new_tokens=NEW, num_samples=2)
    torch.manual_seed(5)
    extra = generate(model, tok, PROMPTS, max_new_tokens=NEW, num_samples=2, return_logprobs=True,
                     return_hidden=True)
    assert plain.completion_ids == extra.completion_ids
    assert not model.lm_head._forward_pre_hooks  # the hook is gone afterwards


def test_hidden_states_feed_a_shared_value_head_without_another_forward():
    model, tok = model_with_eos_bias()
    g = sample(model, tok, 1.0, return_hidden=True)
    _, hidden, mask = full_forward(model, g, tok.pad_token_id, 1.0)
    assert [h.shape for h in g.hidden] == [(len(c), 32) for c in g.completion_ids]
    ours = padded(g.hidden, mask)
    assert ((ours - hidden).abs() * mask[..., None]).max().item() < 1e-5
    critic = PolicyWithValueHead(model, new_value_head(32, std=1.0))  # values of order 1
    seqs = build_sequences(g, tok.pad_token_id)
    with torch.no_grad():
        _, values = critic(seqs.input_ids, seqs.attention_mask, seqs.position_ids)
        from_sampler = critic.value_head(ours).squeeze(-1)
    want = response_logits(values, seqs.prompt_len)
    assert ((from_sampler - want).abs() * mask).max().item() < 1e-5


def test_a_growing_kv_cache_samples_the_same(monkeypatch):
    model, tok = model_with_eos_bias()
    want = sample(model, tok, 1.0, return_logprobs=True)
    for grow_by in (1, 5, 64):
        monkeypatch.setattr(kv_cache, "KV_GROW_BY", grow_by)
        got = sample(model, tok, 1.0, return_logprobs=True)
        assert got.completion_ids == want.completion_ids
        assert got.logprobs == want.logprobs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_bf16_autocast_logprobs_are_close(temperature, capsys):
    model, tok = model_with_eos_bias()
    tol = bf16_tolerance(model, tok, temperature)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        err = max_logprob_error(model, tok, temperature)
    with capsys.disabled():
        print(f"\nbf16 autocast, T={temperature}: max |sampler - full forward| log-prob "
              f"{err:.4f} (tolerance {tol:.4f})")
    assert err < tol

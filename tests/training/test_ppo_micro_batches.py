"""Lean PPO forwards (issue 21): response-only logits, trimmed padding and token-budget
micro-batches give the numbers of one padded forward over the whole rollout (tier 2)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from reft.config import PPOConfig
from reft.models.actor_critic import ActorCritic, lm_response_logits
from reft.models.batching import response_logits
from reft.rollout.rollout import Experience, build_sequences
from reft.rollout.sampler import Generations
from tests.tiny import tiny_model_and_tokenizer

# prompts and completions of different lengths: left and right padding in every batch
PROMPT_LENS = [5, 9, 3, 12, 7, 4]
COMPLETION_LENS = [6, 2, 11, 4, 1, 8]


def _rollout(vocab: int, pad: int):
    g = torch.Generator().manual_seed(0)

    def ids(n):
        return [int(x) for x in torch.randint(4, vocab, (n,), generator=g)]

    gens = Generations(prompt_ids=[ids(n) for n in PROMPT_LENS],
                       completion_ids=[ids(n) for n in COMPLETION_LENS],
                       texts=[""] * len(PROMPT_LENS), truncated=[False] * len(PROMPT_LENS))
    return build_sequences(gens, pad)


@pytest.fixture
def parts():
    torch.manual_seed(0)
    lm, tok = tiny_model_and_tokenizer(hidden=32, layers=2)
    lm.eval()
    ac = ActorCritic(lm, "shared", value_free=False)
    return ac, lm, _rollout(len(tok), tok.pad_token_id)


def test_lm_head_on_response_positions_only_matches_the_full_forward(parts):
    _, lm, seqs = parts
    with torch.no_grad():
        full = response_logits(lm(input_ids=seqs.input_ids, attention_mask=seqs.attention_mask,
                                  position_ids=seqs.position_ids).logits, seqs.prompt_len)
        kept = lm_response_logits(lm, **seqs.model_inputs())
    assert kept.shape == full.shape
    torch.testing.assert_close(kept, full, rtol=0, atol=1e-5)


def test_trim_drops_only_padding_and_keeps_the_outputs(parts):
    ac, _, seqs = parts
    sub = seqs.select(torch.tensor([1, 4]))  # prompts 9 and 7 long, completions 2 and 1
    trimmed = sub.trim()
    assert trimmed.prompt_len == 9 and trimmed.response_mask.size(1) == 2
    assert trimmed.input_ids.size(1) < sub.input_ids.size(1)
    with torch.no_grad():
        logits, values = ac(**sub.model_inputs())
        t_logits, t_values = ac(**trimmed.model_inputs())
    mask = trimmed.response_mask.bool()
    torch.testing.assert_close(t_logits[mask], logits[:, :2][mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(t_values[mask], values[:, :2][mask], rtol=0, atol=1e-6)


@pytest.mark.parametrize("budget", [0, 1, 20, 40, 1000])
def test_micro_batches_cover_every_row_once_within_the_budget(parts, budget):
    _, _, seqs = parts
    groups = seqs.micro_batches(budget)
    rows = sorted(i for g in groups for i in g.tolist())
    assert rows == list(range(len(seqs)))
    for g in groups:
        part = seqs.select(g).trim()
        width = part.input_ids.size(1)
        assert len(g) == 1 or not budget or len(g) * width <= budget
    if budget == 1:
        assert len(groups) == len(seqs)  # one row each when nothing fits
    if budget in (0, 1000):
        assert len(groups) == 1


def _run(ac, seqs, budget: int):
    from accelerate import Accelerator

    import reft.training.ppo as ppo

    cfg = PPOConfig(micro_batch_tokens=budget, mixed_precision="no",
                    mini_batch_size=len(seqs) if seqs is not None else 16, ppo_epochs=1)
    run = SimpleNamespace(cfg=cfg, acc=Accelerator(cpu=True), ac=ac, ref=ac.body.lm,
                          tokenizer=SimpleNamespace(pad_token_id=0), critic="shared")
    return cfg, run, ppo


@pytest.mark.parametrize("budget", [1, 30])
def test_rollout_forward_in_micro_batches_equals_one_forward(parts, budget, monkeypatch):
    ac, _, seqs = parts
    import reft.training.ppo as ppo

    monkeypatch.setattr(ppo, "build_sequences", lambda *a, **k: seqs)
    scored = SimpleNamespace(gens=SimpleNamespace(logprobs=None, hidden=None))
    outs = {}
    for b in (0, budget):
        _, run, _ = _run(ac, seqs, b)
        outs[b] = ppo.rollout_forward(run, scored)[1:]
    mask = seqs.response_mask.bool()
    for whole, micro in zip(outs[0], outs[budget], strict=True):
        torch.testing.assert_close(micro[mask], whole[mask], rtol=0, atol=1e-5)


def random_experience(seqs) -> Experience:
    """``seqs`` with old/reference log-probs, values, advantages and returns drawn at random."""
    g = torch.Generator().manual_seed(1)
    shape = seqs.response_mask.shape
    return Experience(**{f: getattr(seqs, f) for f in seqs.__dataclass_fields__},
                      old_logprobs=-torch.rand(shape, generator=g) * 3,
                      ref_logprobs=-torch.rand(shape, generator=g) * 3,
                      values=torch.randn(shape, generator=g) * 0.1,
                      advantages=torch.randn(shape, generator=g),
                      returns=torch.randn(shape, generator=g))


@pytest.mark.parametrize("loss_agg", ["seq-mean-token-mean", "token-mean"])
def test_update_in_micro_batches_takes_the_same_step(parts, loss_agg):
    """Gradient accumulation over micro-batches (each weighted by its share of the
    aggregation units) gives the step of one backward pass over the mini-batch."""
    ac, _, seqs = parts
    exp = random_experience(seqs)
    results = []
    for budget in (0, 25):
        model = copy.deepcopy(ac)
        cfg, run, ppo = _run(model, seqs, budget)
        cfg = PPOConfig(micro_batch_tokens=budget, mini_batch_size=len(seqs), ppo_epochs=1,
                        loss_agg=loss_agg, mixed_precision="no", kl_mode="loss")
        assert len(seqs.micro_batches(budget)) > (1 if budget else 0)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        stats = ppo.ppo_update(model, opt, exp, cfg, run.acc)
        results.append((stats, [p.detach().clone() for p in model.parameters()]))
    (s0, w0), (s1, w1) = results
    assert s0.keys() == s1.keys()
    for k in ("loss/policy", "loss/value", "loss/kl"):
        assert s1[k] == pytest.approx(s0[k], rel=1e-4, abs=1e-6), k
    moved = max((a - b).abs().max().item() for a, b in zip(w0, (p for p in ac.parameters()),
                                                            strict=True))
    assert moved > 1e-4  # the step did something
    for a, b in zip(w0, w1, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_sampler_logprobs_and_values_equal_the_rollout_forward():
    """``--sampler-logprobs``: the old log-probs and values kept by the sampler are those of
    the rollout forward, to 1e-5 in fp32, so the policy need not run again."""
    import reft.training.ppo as ppo
    from reft.rollout.sampler import generate, question_seed

    torch.manual_seed(0)
    lm, tok = tiny_model_and_tokenizer(hidden=32, layers=2)
    ac = ActorCritic(lm, "shared", value_free=False)
    with torch.no_grad():  # a value head that is not ~0, so that the values are compared
        ac.body.value_head.weight.normal_()
    prompts = ["Question:\nTom has 3 boxes.\nAnswer reasoning:\n", "1 + 1 =", "def solution():\n"]
    gens = generate(lm, tok, prompts, max_new_tokens=10, num_samples=2, batch_size=4,
                    seeds=[question_seed(0, i) for i in range(3)], return_logprobs=True,
                    return_hidden=True)
    plain = SimpleNamespace(**{**gens.__dict__, "logprobs": None, "hidden": None})
    out = {}
    for name, g in (("forward", plain), ("sampler", gens)):
        _, run, _ = _run(ac, None, 0)
        run.tokenizer = tok
        calls = []
        real = ac.forward
        ac.forward = lambda *a, _r=real, _c=calls, **k: _c.append(1) or _r(*a, **k)
        try:
            out[name] = ppo.rollout_forward(run, SimpleNamespace(gens=g))
        finally:
            del ac.forward
        assert bool(calls) == (name == "forward")  # the policy runs only without the sampler's
    seqs = out["forward"][0]
    mask = seqs.response_mask.bool()
    assert mask.sum() > 10
    for i in (1, 2, 3):  # old log-probs, reference log-probs, values
        torch.testing.assert_close(out["sampler"][i][mask], out["forward"][i][mask], rtol=0, atol=1e-5)


def test_micro_batches_are_as_many_on_every_process_when_asked(parts):
    """Collective forwards (ZeRO-3) or backward passes (DDP) must pair up: a process with
    fewer micro-batches than the busiest repeats its first row, marked not real."""
    import reft.training.ppo as ppo

    _, _, seqs = parts
    mine = len(seqs.micro_batches(20))
    acc = SimpleNamespace(num_processes=2, device="cpu",
                          gather=lambda t: torch.cat([t, t + 3]))  # the other process: 3 more
    cfg = PPOConfig(micro_batch_tokens=20)
    split = ppo._micro_split(seqs, cfg, acc, pad=True)
    assert len(split) == mine + 3
    assert [real for _, real in split] == [True] * mine + [False] * 3
    assert all(len(idx) == 1 for idx, real in split if not real)
    assert len(ppo._micro_split(seqs, cfg, acc, pad=False)) == mine
    (whole, real), = ppo._micro_split(seqs, cfg, acc, pad=True, whole=True)
    assert real and whole.tolist() == list(range(len(seqs)))

"""``--pack`` (issue 21): PPO's forwards on packed rows, sequences end to end with position
ids from 0 each and no padding, give the log-probs, values and update of padded rows (tier 2)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from reft.algorithms.logits import logprobs_from_logits
from reft.config import PPOConfig
from reft.errors import UserError
from reft.models.actor_critic import ActorCritic, lm_response_logits
from reft.rollout.rollout import Packed, build_sequences
from reft.rollout.sampler import Generations
from tests.tiny import tiny_model_and_tokenizer
from tests.training.test_ppo_micro_batches import _rollout, random_experience


def test_pack_lays_real_tokens_end_to_end():
    """Worked by hand: prompts [1 5 6 7], [1 8], [1 9 10]; completions [11 12], [13 14 15 2], []."""
    gens = Generations(prompt_ids=[[1, 5, 6, 7], [1, 8], [1, 9, 10]],
                       completion_ids=[[11, 12], [13, 14, 15, 2], []], texts=[""] * 3,
                       truncated=[True, False, True])
    p = build_sequences(gens, pad_id=0).pack()
    assert p.input_ids.tolist() == [[1, 5, 6, 7, 11, 12, 1, 8, 13, 14, 15, 2, 1, 9, 10]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2]]
    # token 11 is predicted by 7 (position 3); 13 by 8 (position 7); the empty one by none
    assert p.keep.tolist() == [3, 4, 7, 8, 9, 10]
    assert p.labels.tolist() == [[11, 12, 13, 14, 15, 2]]
    assert list(zip(p.rows.tolist(), p.cols.tolist(), strict=True)) == [
        (0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert p.unpack(torch.arange(1.0, 7.0)[None]).tolist() == [[1, 2, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0]]
    assert p.model_inputs()["attention_mask"] is None


@pytest.fixture
def rollout():
    torch.manual_seed(0)
    lm, tok = tiny_model_and_tokenizer(hidden=32, layers=2)
    lm.eval()
    return lm, _rollout(len(tok), tok.pad_token_id)


@pytest.mark.parametrize("critic", ["shared", "separate", "none"])
def test_packed_logprobs_and_values_equal_padded(rollout, critic):
    lm, seqs = rollout
    ac = ActorCritic(lm, "shared" if critic == "none" else critic, value_free=critic == "none")
    if critic != "none":  # values that are not ~0, so that they are compared
        head = ac.body.value_head if critic == "shared" else ac.critic.value_head
        with torch.no_grad():
            head.weight.normal_()
    packed, mask = seqs.pack(), seqs.response_mask.bool()
    with torch.no_grad():
        logits, values = ac(**seqs.model_inputs())
        p_logits, p_values = ac(**packed.model_inputs())
        ref = lm_response_logits(lm, **seqs.model_inputs())
        p_ref = lm_response_logits(lm, **packed.model_inputs())
    assert p_logits.shape[:2] == (1, int(mask.sum()))  # the LM head ran on the kept positions only
    lp = logprobs_from_logits(logits, seqs.responses)
    for padded_logits, packed_logits in ((logits, p_logits), (ref, p_ref)):
        got = packed.unpack(logprobs_from_logits(packed_logits, packed.labels))
        torch.testing.assert_close(got[mask], logprobs_from_logits(padded_logits, seqs.responses)[mask],
                                   rtol=0, atol=1e-5)
        assert (got[~mask] == 0).all()
    assert lp[mask].abs().min() > 0
    if critic == "none":
        assert values is None and p_values is None
    else:
        assert values[mask].std() > 1e-3
        torch.testing.assert_close(packed.unpack(p_values)[mask], values[mask], rtol=0, atol=1e-5)


@pytest.mark.parametrize("budget", [1, 20, 45, 1000])
def test_packed_micro_batches_count_real_tokens(rollout, budget):
    _, seqs = rollout
    real = (seqs.attention_mask.sum(1)).tolist()
    groups = seqs.micro_batches(budget, packed=True)
    assert sorted(i for g in groups for i in g.tolist()) == list(range(len(seqs)))
    for g in groups:
        assert len(g) == 1 or sum(real[i] for i in g.tolist()) <= budget
    # packing fits more rows in a budget than padding does
    assert len(groups) <= len(seqs.micro_batches(budget))
    if budget == 45:
        assert len(groups) < len(seqs.micro_batches(budget))


def _run(ac, budget: int, pack: bool, **kw):
    from accelerate import Accelerator

    cfg = PPOConfig(micro_batch_tokens=budget, pack=pack, mixed_precision="no", ppo_epochs=1, **kw)
    return SimpleNamespace(cfg=cfg, acc=Accelerator(cpu=True), ac=ac, ref=ac.body.lm,
                           tokenizer=SimpleNamespace(pad_token_id=0), critic="shared",
                           pack_checked=False)


@pytest.mark.parametrize("budget", [0, 30])
def test_rollout_forward_packed_equals_padded(rollout, budget, monkeypatch):
    import reft.training.ppo as ppo

    lm, seqs = rollout
    ac = ActorCritic(lm, "shared", value_free=False)
    with torch.no_grad():
        ac.body.value_head.weight.normal_()
    monkeypatch.setattr(ppo, "build_sequences", lambda *a, **k: seqs)
    scored = SimpleNamespace(gens=SimpleNamespace(logprobs=None, hidden=None))
    padded = ppo.rollout_forward(_run(ac, 0, False), scored)[1:]
    run = _run(ac, budget, True)
    packed = ppo.rollout_forward(run, scored)[1:]
    assert run.pack_checked
    mask = seqs.response_mask.bool()
    for a, b in zip(padded, packed, strict=True):  # old log-probs, reference log-probs, values
        torch.testing.assert_close(b[mask], a[mask], rtol=0, atol=1e-5)


@pytest.mark.parametrize("loss_agg", ["seq-mean-token-mean", "token-mean"])
def test_packed_update_takes_the_padded_step(rollout, loss_agg):
    import reft.training.ppo as ppo

    lm, seqs = rollout
    ac = ActorCritic(lm, "shared", value_free=False)
    exp = random_experience(seqs)
    results = []
    for budget, pack in ((0, False), (0, True), (30, True)):
        model = copy.deepcopy(ac)
        run = _run(model, budget, pack, mini_batch_size=len(seqs), loss_agg=loss_agg, kl_mode="loss")
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        stats = ppo.ppo_update(model, opt, exp, run.cfg, run.acc)
        results.append((stats, [p.detach().clone() for p in model.parameters()]))
    s0, w0 = results[0]
    assert max((a - b).abs().max().item() for a, b in zip(w0, ac.parameters(), strict=True)) > 1e-4
    for s, w in results[1:]:
        for k in ("loss/policy", "loss/value", "loss/kl", "policy/entropy"):
            assert s[k] == pytest.approx(s0[k], rel=1e-4, abs=1e-6), k
        for a, b in zip(w0, w, strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_a_model_that_mixes_packed_sequences_is_refused(monkeypatch):
    """A model whose attention ignores packed position ids would let sequences attend to
    each other: the check on the first rollout stops the run with one line. Stand-in for
    such a model: the packed row given an all-ones attention mask (one long sequence)."""
    from reft.training.ppo_packing import check_packing

    torch.manual_seed(0)
    lm, tok = tiny_model_and_tokenizer(hidden=128, layers=2)  # wide enough for context to matter
    seqs = _rollout(len(tok), tok.pad_token_id)
    ac = ActorCritic(lm.eval(), "shared", value_free=False)
    run = _run(ac, 0, True)
    check_packing(run, seqs)
    assert run.pack_checked
    real = Packed.model_inputs
    monkeypatch.setattr(Packed, "model_inputs", lambda self: {
        **real(self), "attention_mask": torch.ones_like(self.input_ids)})
    run = _run(ac, 0, True)
    with pytest.raises(UserError, match="--pack: this model .* does not keep packed sequences apart"):
        check_packing(run, seqs)
    assert not run.pack_checked

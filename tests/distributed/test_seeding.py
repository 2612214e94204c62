"""Per-question seeded sampling (tier 1-2): a completion depends on its prompt and seed
only, not on the batch, batch size or process that sampled it, which is what lets N
processes sample what one would; and lock-step generation for sharded parameters."""

from __future__ import annotations

import types

import torch

from reft.rollout.sampler import (
    _hashed_exponential,
    _next_token,
    _row_keys,
    _step_keys,
    generate,
    question_seed,
    sample_batch,
)
from tests.tiny import tiny_model_and_tokenizer

PROMPTS = ["Question:\nTom has 3 boxes.\nAnswer reasoning:\n", "Question:\nA\nAnswer reasoning:\n",
           "Question:\nAnn has 4 apples and 2 pears.\nAnswer reasoning:\n"]


def test_question_seed_is_stable_and_spreads():
    # a fixed value: the same in every process and Python session (no salted hash())
    assert question_seed(0, "synth-test-0") == question_seed(0, "synth-test-0")
    assert question_seed(0, 1, 2) != question_seed(0, 12)  # parts are separated
    assert len({question_seed(7, i) for i in range(1000)}) == 1000


def test_hashed_noise_is_exponential_and_never_zero():
    keys = _step_keys(_row_keys(list(range(4000)), 1), t=3)
    e = _hashed_exponential(keys, torch.empty(4000, 64))
    assert e.min() > 0 and torch.isfinite(e).all()
    assert abs(e.mean().item() - 1) < 0.01 and abs(e.var().item() - 1) < 0.03  # Exp(1): mean = var = 1


def test_seeded_draws_follow_the_distribution():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    keys = _step_keys(_row_keys(list(range(20000)), 1), t=0)
    tok = _next_token(p.log().expand(20000, 4), 1.0, False, keys)
    freq = torch.bincount(tok, minlength=4) / 20000
    assert torch.allclose(freq, p, atol=0.015)  # ~3 standard errors at p = 0.5


def test_a_completion_depends_on_its_seed_only():
    model, tok = tiny_model_and_tokenizer()
    kw = dict(max_new_tokens=8, num_samples=2)
    seeds = [question_seed(0, i) for i in range(len(PROMPTS))]
    together = generate(model, tok, PROMPTS, seeds=seeds, batch_size=6, **kw)
    torch.manual_seed(123)  # the global RNG plays no part
    for i, prompt in enumerate(PROMPTS):  # alone, in batches of one
        alone = generate(model, tok, [prompt], seeds=[seeds[i]], batch_size=1, **kw)
        assert alone.completion_ids == together.completion_ids[2 * i : 2 * i + 2]
    # the two samples of a prompt are different draws; another seed gives other draws
    assert together.completion_ids[0] != together.completion_ids[1]
    other = generate(model, tok, PROMPTS, seeds=[s + 1 for s in seeds], batch_size=6, **kw)
    assert other.completion_ids != together.completion_ids


class _EndsAt(torch.nn.Module):
    """A stand-in LM: greedy picks token 5 until forward call ``end``, then EOS (3)."""

    def __init__(self, end: int):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # sample_batch reads the device off it
        self.end, self.calls = end, 0

    def forward(self, input_ids, **kw):
        logits = torch.zeros(*input_ids.shape, 8)
        logits[..., 3 if self.calls == self.end else 5] = 1.0
        self.calls += 1
        return types.SimpleNamespace(logits=logits)


def test_lock_step_generation_keeps_stepping_until_all_processes_finish():
    """With ``all_done`` a process whose rows have all ended keeps making forward passes
    (ZeRO-3's are collective) until every process is done; its completions are unchanged."""
    alone = _EndsAt(end=2)
    ids = sample_batch(alone, [[1, 2], [1]], max_new_tokens=8, eos_id=3, pad_id=0, greedy=True)
    assert ids == [[5, 5, 3], [5, 5, 3]] and alone.calls == 3  # ended at step 2: no more passes
    seen = []

    def all_done(local: bool) -> bool:  # another process finishes at step 5
        seen.append(local)
        return local and len(seen) > 5

    synced = _EndsAt(end=2)
    ids = sample_batch(synced, [[1, 2], [1]], max_new_tokens=8, eos_id=3, pad_id=0, greedy=True,
                       all_done=all_done)
    assert ids == [[5, 5, 3], [5, 5, 3]]
    assert seen == [False, False, True, True, True, True]
    assert synced.calls == 6  # as many forward passes as the slowest process makes

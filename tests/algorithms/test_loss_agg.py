"""Loss aggregation modes (verl's names), the losses under each, and the per-process weight
that keeps several processes exact, against hand-worked numbers."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch.testing import assert_close

from reft.algorithms import (
    DEFAULT_LOSS_AGG,
    LOSS_AGG_MODES,
    agg_count,
    aggregate,
    kl_loss,
    policy_loss,
    process_weight,
    value_loss,
)
from reft.config import PPOConfig

NAN = math.nan
# Two responses of 2 and 1 tokens in a (2, 3) batch; nan where the mask is 0.
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
LOSS = torch.tensor([[1.0, 2.0, NAN], [4.0, NAN, NAN]])

# mode: (value, d value / d loss)
HAND = {
    # one mean over the 3 tokens: (1 + 2 + 4) / 3 = 7/3; each token 1/3
    "token-mean": (7 / 3, [[1 / 3, 1 / 3, 0.0], [1 / 3, 0.0, 0.0]]),
    # per response (1 + 2) / 2 = 1.5 and 4 / 1 = 4, then (1.5 + 4) / 2 = 2.75;
    # tokens of the 2-token response 1/2 · 1/2 = 1/4, the 1-token one 1/2
    "seq-mean-token-mean": (2.75, [[0.25, 0.25, 0.0], [0.5, 0.0, 0.0]]),
    # per response 1 + 2 = 3 and 4, then (3 + 4) / 2 = 3.5; every token 1/2
    "seq-mean-token-sum": (3.5, [[0.5, 0.5, 0.0], [0.5, 0.0, 0.0]]),
}


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_aggregate_by_hand(mode):
    value, grad = HAND[mode]
    loss = LOSS.clone().requires_grad_()
    out = aggregate(loss, MASK, mode)
    assert_close(out, torch.tensor(value))
    out.backward()
    assert_close(loss.grad, torch.tensor(grad))  # 0, not nan, under the mask


def test_the_modes_differ_and_the_default_is_the_releases():
    assert LOSS_AGG_MODES == ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum")
    assert len({HAND[m][0] for m in LOSS_AGG_MODES}) == 3
    assert DEFAULT_LOSS_AGG == "seq-mean-token-mean"
    for fn, name in [(aggregate, "mode"), (agg_count, "mode"), (policy_loss, "loss_agg"),
                     (value_loss, "loss_agg"), (kl_loss, "loss_agg")]:
        assert inspect.signature(fn).parameters[name].default == "seq-mean-token-mean", fn
    assert_close(aggregate(LOSS, MASK), torch.tensor(2.75))
    # the losses called without loss_agg give the seq-mean-token-mean numbers worked out below
    logprobs = torch.tensor([[-0.3, -2.0, NAN], [-1.0, NAN, NAN]])
    assert_close(policy_loss(logprobs, logprobs, ADV, MASK, 0.2)[0], torch.tensor(-1.5))
    values = torch.tensor([[1.0, 0.6, NAN], [0.0, NAN, NAN]])
    assert_close(value_loss(values, torch.full_like(values, 0.5), torch.ones_like(values), MASK,
                            0.2)[0], torch.tensor(0.28125))
    assert PPOConfig().loss_agg == "seq-mean-token-mean"
    assert PPOConfig.CHOICES["loss_agg"] == LOSS_AGG_MODES


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_aggregate_leaves_out_empty_rows(mode):
    # a third row with no response tokens changes neither the value nor the count's meaning
    loss = torch.cat([LOSS, torch.tensor([[9.0, 9.0, 9.0]])])
    mask = torch.cat([MASK, torch.zeros(1, 3)])
    assert_close(aggregate(loss, mask, mode), torch.tensor(HAND[mode][0]))
    assert agg_count(mask, mode).item() == (3 if mode == "token-mean" else 2)
    assert aggregate(loss, torch.zeros(3, 3), mode).item() == 0.0  # nothing at all: 0, not nan


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown loss_agg 'seq-mean'"):
        aggregate(LOSS, MASK, "seq-mean")


# --- the losses under each mode ------------------------------------------------------------------

# On policy (ratio 1, nothing clipped) each token's policy loss is -A:
# row 0 A = [1, -3] → [-1, 3]; row 1 A = [4] → [-4].
ADV = torch.tensor([[1.0, -3.0, NAN], [4.0, NAN, NAN]])
POLICY = {
    # (-1 + 3 - 4) / 3 = -2/3; d/d logprob = -A · 1/3
    "token-mean": (-2 / 3, [[-1 / 3, 1.0, 0.0], [-4 / 3, 0.0, 0.0]]),
    # (mean(-1, 3) = 1, -4) → (1 - 4) / 2 = -1.5; -A · 1/4 in row 0, -A · 1/2 in row 1
    "seq-mean-token-mean": (-1.5, [[-0.25, 0.75, 0.0], [-2.0, 0.0, 0.0]]),
    # (2, -4) → -1; -A · 1/2
    "seq-mean-token-sum": (-1.0, [[-0.5, 1.5, 0.0], [-2.0, 0.0, 0.0]]),
}


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_policy_loss_by_mode(mode):
    value, grad = POLICY[mode]
    logprobs = torch.tensor([[-0.3, -2.0, NAN], [-1.0, NAN, NAN]], requires_grad=True)
    loss, stats = policy_loss(logprobs, logprobs.detach(), ADV, MASK, 0.2, loss_agg=mode)
    assert_close(loss, torch.tensor(value))
    assert_close(stats["loss/policy"], loss.detach())
    assert stats["policy/clipfrac"].item() == 0.0 and stats["policy/approx_kl"].item() == 0.0
    loss.backward()
    assert_close(logprobs.grad, torch.tensor(grad))


# Value loss with V_old = 0.5, R = 1, clip 0.2 (as in test_ppo_losses): per token
# ½·max(...) is 0.045 (V = 1.0), 0.08 (V = 0.6) in row 0 and 0.5 (V = 0.0) in row 1.
VALUE = {
    "token-mean": 0.625 / 3,  # (0.045 + 0.08 + 0.5) / 3 = 0.2083
    "seq-mean-token-mean": 0.28125,  # ((0.045 + 0.08) / 2 + 0.5) / 2 = (0.0625 + 0.5) / 2
    "seq-mean-token-sum": 0.3125,  # (0.125 + 0.5) / 2
}


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_value_loss_by_mode(mode):
    values = torch.tensor([[1.0, 0.6, NAN], [0.0, NAN, NAN]])
    loss, stats = value_loss(values, torch.full_like(values, 0.5), torch.ones_like(values), MASK,
                             0.2, loss_agg=mode)
    assert_close(loss, torch.tensor(VALUE[mode]))
    assert_close(stats["value/clipfrac"], torch.tensor(1 / 3))  # a token mean in every mode


# k1 KL per token is delta = logπ - logπ_ref: [0.5, -1] in row 0, [1] in row 1.
KL = {
    "token-mean": 0.5 / 3,  # (0.5 - 1 + 1) / 3
    "seq-mean-token-mean": 0.375,  # (-0.25 + 1) / 2
    "seq-mean-token-sum": 0.25,  # (-0.5 + 1) / 2
}


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_kl_loss_by_mode(mode):
    logprobs = torch.tensor([[-1.0, -2.0, NAN], [-0.5, NAN, NAN]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, NAN], [-1.5, NAN, NAN]])
    loss, _ = kl_loss(logprobs, ref_logprobs, MASK, "k1", loss_agg=mode)
    assert_close(loss, torch.tensor(KL[mode]))


# --- several processes ---------------------------------------------------------------------------

# Two simulated processes with uneven token and sequence counts (widths differ too):
# process 0 holds 3 rows, one empty: 3 tokens, 2 sequences;
# process 1 holds 3 rows: 4 + 1 + 2 = 7 tokens, 3 sequences.
MASKS = [
    torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]),
]


def _global(xs: list[torch.Tensor], fill: float) -> torch.Tensor:
    """The processes' rows in one batch, right-padded to the widest."""
    width = max(x.shape[1] for x in xs)
    return torch.cat([torch.nn.functional.pad(x, (0, width - x.shape[1]), value=fill)
                      for x in xs])


def test_agg_count_and_process_weight_by_hand():
    assert [agg_count(m, "token-mean").item() for m in MASKS] == [3, 7]
    assert [agg_count(m, "seq-mean-token-mean").item() for m in MASKS] == [2, 3]
    assert [agg_count(m, "seq-mean-token-sum").item() for m in MASKS] == [2, 3]
    # 2 processes, 3 of 10 tokens: 2 · 3/10 = 0.6; 2 of 5 sequences: 2 · 2/5 = 0.8
    assert_close(process_weight(torch.tensor(3.0), torch.tensor(10.0), 2), torch.tensor(0.6))
    assert_close(process_weight(torch.tensor(2.0), torch.tensor(5.0), 2), torch.tensor(0.8))
    assert process_weight(torch.tensor(0.0), torch.tensor(0.0), 2).item() == 0.0  # no nan


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_weighted_process_losses_average_to_the_global_aggregate(mode):
    """DDP averages gradients over processes: sum_p weight_p · loss_p / world must equal the
    aggregate over the global batch, in value and in gradient."""
    gen = torch.Generator().manual_seed(0)
    losses = [torch.randn(m.shape, generator=gen).requires_grad_() for m in MASKS]
    world = len(MASKS)
    counts = [agg_count(m, mode) for m in MASKS]
    total = sum(counts)
    ddp = sum(process_weight(c, total, world) * aggregate(x, m, mode)
              for c, x, m in zip(counts, losses, MASKS, strict=True)) / world
    ddp_grads = torch.autograd.grad(ddp, losses)
    glob = aggregate(_global(losses, NAN), _global(MASKS, 0.0), mode)
    glob_grads = torch.autograd.grad(glob, losses)
    assert_close(ddp, glob)
    for a, b in zip(ddp_grads, glob_grads, strict=True):
        assert_close(a, b)
    if mode != "token-mean":  # the token share is not the right weight for a sequence mode
        tok = [agg_count(m, "token-mean") for m in MASKS]
        wrong = sum(process_weight(t, sum(tok), world) * aggregate(x, m, mode)
                    for t, x, m in zip(tok, losses, MASKS, strict=True)) / world
        assert not torch.allclose(wrong, glob)

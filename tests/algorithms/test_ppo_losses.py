"""PPO policy and value losses and the KL loss, against hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from reft.algorithms import kl_loss, policy_loss, value_loss

EPS = 0.2

# --- policy_loss --------------------------------------------------------------------------------
# One token per case, clip_eps 0.2, so the ratio is clipped to [0.8, 1.2].
# (log ratio, advantage, per-token loss, clipped?, d loss / d logprobs)
POLICY_CASES = [
    # ratio e^0.5 = 1.6487 > 1.2, A = +1: -min(1.6487, 1.2) = -1.2, clipped, no gradient
    (0.5, 1.0, -1.2, True, 0.0),
    # ratio 1.6487, A = -1: -min(-1.6487, -1.2) = 1.6487, unclipped (the pessimistic term);
    # gradient -A·ratio = 1.6487
    (0.5, -1.0, 1.6487, False, 1.6487),
    # ratio e^-0.5 = 0.6065 < 0.8, A = +1: -min(0.6065, 0.8) = -0.6065, unclipped; gradient -0.6065
    (-0.5, 1.0, -0.6065, False, -0.6065),
    # ratio 0.6065, A = -1: -min(-0.6065, -0.8) = 0.8, clipped, no gradient
    (-0.5, -1.0, 0.8, True, 0.0),
    # ratio e^0.1 = 1.1052 inside [0.8, 1.2], A = 2: -2·1.1052 = -2.2103; gradient -2.2103
    (0.1, 2.0, -2.2103, False, -2.2103),
]


@pytest.mark.parametrize(("log_ratio", "adv", "loss", "clipped", "grad"), POLICY_CASES)
def test_policy_loss_single_token(log_ratio, adv, loss, clipped, grad):
    logprobs = torch.tensor([[log_ratio - 1.0]], requires_grad=True)
    old_logprobs = torch.tensor([[-1.0]])
    out, stats = policy_loss(logprobs, old_logprobs, torch.tensor([[adv]]), torch.ones(1, 1), EPS)
    assert_close(out, torch.tensor(loss), atol=1e-4, rtol=0)
    assert_close(stats["policy/clipfrac"], torch.tensor(float(clipped)))
    out.backward()
    assert_close(logprobs.grad, torch.tensor([[grad]]), atol=1e-4, rtol=0)


def _policy_batch():
    log_ratio = torch.tensor([[case[0] for case in POLICY_CASES]])
    advantages = torch.tensor([[case[1] for case in POLICY_CASES]])
    old_logprobs = torch.full_like(log_ratio, -1.0)
    return old_logprobs + log_ratio, old_logprobs, advantages, torch.ones_like(log_ratio)


def test_policy_loss_is_the_token_mean_with_stats():
    logprobs, old_logprobs, advantages, mask = _policy_batch()
    loss, stats = policy_loss(logprobs, old_logprobs, advantages, mask, EPS)
    # (-1.2 + 1.6487 - 0.6065 + 0.8 - 2.2103) / 5 = -1.5682 / 5 = -0.3136
    assert_close(loss, torch.tensor(-0.3136), atol=1e-4, rtol=0)
    assert_close(stats["loss/policy"], loss)
    assert_close(stats["policy/clipfrac"], torch.tensor(0.4))  # 2 of 5 tokens
    # k3 per token, (r - 1) - log r: 0.5 → 0.1487 (twice), -0.5 → 0.1065 (twice), 0.1 → 0.0052
    # mean (0.2974 + 0.2131 + 0.0052) / 5 = 0.1031
    assert_close(stats["policy/approx_kl"], torch.tensor(0.1031), atol=1e-4, rtol=0)
    assert all(not v.requires_grad for v in stats.values())


def test_policy_loss_gradient_is_zero_for_clipped_tokens():
    logprobs, old_logprobs, advantages, mask = _policy_batch()
    logprobs.requires_grad_()
    loss, _ = policy_loss(logprobs, old_logprobs, advantages, mask, EPS)
    loss.backward()
    # each token's gradient from the single-token cases, / 5 for the mean; clipped ones exactly 0
    expected = torch.tensor([[0.0, 1.6487, -0.6065, 0.0, -2.2103]]) / 5
    assert_close(logprobs.grad, expected, atol=1e-4, rtol=0)
    assert logprobs.grad[0, 0] == 0 and logprobs.grad[0, 3] == 0


def test_policy_loss_on_policy_is_minus_the_mean_advantage():
    # ratio 1 everywhere (first epoch): loss = -mean A = -(1 - 3) / 2 = 1, nothing clipped
    logprobs = torch.tensor([[-0.3, -2.0]])
    loss, stats = policy_loss(
        logprobs, logprobs, torch.tensor([[1.0, -3.0]]), torch.ones(1, 2), EPS
    )
    assert_close(loss, torch.tensor(1.0))
    assert_close(stats["policy/clipfrac"], torch.tensor(0.0))
    assert_close(stats["policy/approx_kl"], torch.tensor(0.0))


def test_policy_loss_ignores_padding(pad):
    logprobs, old_logprobs, advantages, mask = _policy_batch()
    padded_logprobs = pad(logprobs).requires_grad_()
    loss, stats = policy_loss(
        padded_logprobs, pad(old_logprobs), pad(advantages), pad(mask, 0), EPS
    )
    expected_loss, expected_stats = policy_loss(logprobs, old_logprobs, advantages, mask, EPS)
    assert_close(loss, expected_loss)
    for key, value in expected_stats.items():
        assert_close(stats[key], value)
    loss.backward()
    assert torch.equal(pad.outside(padded_logprobs.grad), torch.zeros(1, 5))  # 0, not nan


# --- value_loss -----------------------------------------------------------------------------------
# clip_eps 0.2 around V_old = 0.5, so the clipped value lies in [0.3, 0.7]; R = 1.
# (V, per-token loss ½·max(...), clipped?, d loss / d V)
VALUE_CASES = [
    # V = 1.0 → clipped 0.7: ½·max(0, 0.09) = 0.045, clipped, no gradient
    (1.0, 0.045, True, 0.0),
    # V = 0.6 inside the band: ½·0.16 = 0.08, unclipped; gradient V - R = -0.4
    (0.6, 0.08, False, -0.4),
    # V = 0.0 → clipped 0.3: ½·max(1.0, 0.49) = 0.5, unclipped; gradient -1.0
    (0.0, 0.5, False, -1.0),
]


@pytest.mark.parametrize(("value", "loss", "clipped", "grad"), VALUE_CASES)
def test_value_loss_single_token(value, loss, clipped, grad):
    values = torch.tensor([[value]], requires_grad=True)
    out, stats = value_loss(
        values, torch.tensor([[0.5]]), torch.tensor([[1.0]]), torch.ones(1, 1), EPS
    )
    assert_close(out, torch.tensor(loss))
    assert_close(stats["value/clipfrac"], torch.tensor(float(clipped)))
    out.backward()
    assert_close(values.grad, torch.tensor([[grad]]))


def _value_batch():
    values = torch.tensor([[case[0] for case in VALUE_CASES]])
    return values, torch.full_like(values, 0.5), torch.ones_like(values), torch.ones_like(values)


def test_value_loss_is_the_token_mean_with_stats():
    values, old_values, returns, mask = _value_batch()
    loss, stats = value_loss(values, old_values, returns, mask, EPS)
    # (0.045 + 0.08 + 0.5) / 3 = 0.2083
    assert_close(loss, torch.tensor(0.625 / 3))
    assert_close(stats["loss/value"], loss)
    assert_close(stats["value/clipfrac"], torch.tensor(1 / 3))


def test_value_loss_ignores_padding(pad):
    values, old_values, returns, mask = _value_batch()
    padded_values = pad(values).requires_grad_()
    loss, stats = value_loss(padded_values, pad(old_values), pad(returns), pad(mask, 0), EPS)
    expected_loss, expected_stats = value_loss(values, old_values, returns, mask, EPS)
    assert_close(loss, expected_loss)
    assert_close(stats["value/clipfrac"], expected_stats["value/clipfrac"])
    loss.backward()
    assert torch.equal(pad.outside(padded_values.grad), torch.zeros(1, 5))


# --- kl_loss ----------------------------------------------------------------------------------------


def test_kl_loss_k3():
    # delta = logπ - logπ_ref = [0.5, -1]: k3 = [0.1065, 0.7183], mean 0.4124
    logprobs = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref_logprobs = torch.tensor([[-1.5, -1.0]])
    loss, stats = kl_loss(logprobs, ref_logprobs, torch.ones(1, 2))
    assert_close(loss, torch.tensor(0.4124), atol=1e-4, rtol=0)
    assert_close(stats["loss/kl"], loss)
    loss.backward()
    # d k3 / d logπ = 1 - e^-delta: 1 - 0.6065 = 0.3935, 1 - e = -1.7183; / 2 for the mean
    assert_close(logprobs.grad, torch.tensor([[0.3935, 1 - math.e]]) / 2, atol=1e-4, rtol=0)


def test_kl_loss_k1():
    loss, _ = kl_loss(
        torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]), torch.ones(1, 2), "k1"
    )
    assert_close(loss, torch.tensor(-0.25))  # (0.5 - 1) / 2


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_loss_ignores_padding(kind, pad):
    logprobs = torch.tensor([[-1.0, -2.0, -0.1]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    padded = pad(logprobs).requires_grad_()
    loss, _ = kl_loss(padded, pad(ref_logprobs), pad(mask, 0), kind)
    assert_close(loss, kl_loss(logprobs, ref_logprobs, mask, kind)[0])
    loss.backward()
    assert torch.equal(pad.outside(padded.grad), torch.zeros(1, 5))

"""Schulman's k1/k2/k3 KL estimators and the per-sequence KL."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from reft.algorithms import KL_ESTIMATORS, kl_per_token, sequence_kl

# delta = logprobs - ref_logprobs = [0.5, -1.0, 0.0]
LOGPROBS = torch.tensor([[-1.0, -2.0, -0.7]])
REF_LOGPROBS = torch.tensor([[-1.5, -1.0, -0.7]])


def test_k1_is_the_log_ratio():
    # ReFT's penalty: logπ - logπ_ref, negative where the policy is less sure than the reference
    assert_close(kl_per_token(LOGPROBS, REF_LOGPROBS, "k1"), torch.tensor([[0.5, -1.0, 0.0]]))


def test_k2_is_half_the_squared_log_ratio():
    expected = torch.tensor([[0.125, 0.5, 0.0]])  # 0.5·0.5²; 0.5·1²; 0
    assert_close(kl_per_token(LOGPROBS, REF_LOGPROBS, "k2"), expected)


def test_k3():
    # r = π_ref / π = e^-delta, k3 = (r - 1) - log r:
    # delta = 0.5: r = 0.6065, k3 = -0.3935 + 0.5 = 0.1065
    # delta = -1:  r = e = 2.7183, k3 = 1.7183 - 1 = 0.7183
    # delta = 0:   r = 1, k3 = 0
    expected = torch.tensor([[0.1065, 0.7183, 0.0]])
    assert_close(kl_per_token(LOGPROBS, REF_LOGPROBS, "k3"), expected, atol=1e-4, rtol=0)


def test_k1_is_the_default():
    assert_close(kl_per_token(LOGPROBS, REF_LOGPROBS), kl_per_token(LOGPROBS, REF_LOGPROBS, "k1"))


def test_k3_stays_finite_for_a_token_the_policy_has_ruled_out():
    out = kl_per_token(torch.tensor([[-200.0]]), torch.tensor([[-0.1]]), "k3")
    assert torch.isfinite(out).all()


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_per_token(LOGPROBS, REF_LOGPROBS, "k4")
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}


def test_sequence_kl_sums_response_tokens():
    kl = torch.tensor([[0.5, -1.0, 0.25], [0.2, 0.3, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert_close(sequence_kl(kl, mask), torch.tensor([-0.25, 0.5]))  # 0.5 - 1 + 0.25; 0.2 + 0.3


def test_sequence_kl_ignores_padding(pad):
    kl = torch.tensor([[0.5, -1.0, 0.25], [0.2, 0.3, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert_close(sequence_kl(pad(kl), pad(mask, 0)), sequence_kl(kl, mask))

"""Log-probabilities and entropies from logits."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from reft.algorithms import entropy_from_logits, logprobs_from_logits

# exp(logits) = [1, 2, 3], so softmax = [1/6, 2/6, 3/6]; the second position is uniform over 3.
LOGITS = torch.tensor([[[0.0, math.log(2), math.log(3)], [5.0, 5.0, 5.0]]])


def test_logprobs_from_logits():
    labels = torch.tensor([[2, 0]])
    # log(3/6) = -0.6931; log(1/3) = -1.0986
    assert_close(
        logprobs_from_logits(LOGITS, labels), torch.tensor([[-0.6931, -1.0986]]), atol=1e-4, rtol=0
    )


def test_entropy_from_logits():
    # (1/6) ln 6 + (2/6) ln 3 + (3/6) ln 2 = 0.2986 + 0.3662 + 0.3466 = 1.0114; uniform: ln 3 = 1.0986
    assert_close(entropy_from_logits(LOGITS), torch.tensor([[1.0114, 1.0986]]), atol=1e-4, rtol=0)


def test_matches_log_softmax_and_keeps_float32_for_bf16():
    torch.manual_seed(0)
    logits = 4 * torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    reference = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert_close(logprobs_from_logits(logits, labels), reference)
    log_p = torch.log_softmax(logits, -1)
    assert_close(entropy_from_logits(logits), -(log_p.exp() * log_p).sum(-1))
    low = logprobs_from_logits(logits.bfloat16(), labels)
    assert low.dtype == torch.float32
    assert_close(low, reference, atol=0.1, rtol=0)  # bf16 logits are coarse, the maths is not


def test_logprobs_gradient_matches_log_softmax():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 7, requires_grad=True)
    labels = torch.randint(0, 7, (2, 4))
    logprobs_from_logits(logits, labels).sum().backward()
    # d log p_y / d l_v = 1[v = y] - p_v
    expected = torch.nn.functional.one_hot(labels, 7) - torch.softmax(logits.detach(), -1)
    assert_close(logits.grad, expected)


def test_empty_batch():
    assert logprobs_from_logits(
        torch.zeros(0, 4, 7), torch.zeros(0, 4, dtype=torch.long)
    ).shape == (0, 4)
    assert entropy_from_logits(torch.zeros(0, 4, 7)).shape == (0, 4)

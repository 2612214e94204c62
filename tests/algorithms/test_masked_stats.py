"""Masked sums, means, variances, whitening and explained variance, against hand-worked numbers."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from reft.algorithms import (
    explained_variance,
    masked_mean,
    masked_sum,
    masked_var,
    whiten,
)

# Response tokens are {1, 2} in row 0 and {4} in row 1; 3, 5, 6 are padding.
X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_masked_sum():
    assert_close(masked_sum(X, MASK), torch.tensor(7.0))  # 1 + 2 + 4
    assert_close(masked_sum(X, MASK, dim=-1), torch.tensor([3.0, 4.0]))  # 1 + 2; 4


def test_masked_mean():
    assert_close(masked_mean(X, MASK), torch.tensor(7.0 / 3))  # (1 + 2 + 4) / 3 = 2.3333
    assert_close(masked_mean(X, MASK, dim=-1), torch.tensor([1.5, 4.0]))  # 3 / 2; 4 / 1


def test_masked_mean_of_an_empty_row_is_zero_not_nan():
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert_close(masked_mean(X, mask, dim=-1), torch.tensor([1.5, 0.0]))


def test_masked_var():
    # values {1, 2, 4}: mean 7/3, deviations -4/3, -1/3, 5/3, squares 16/9 + 1/9 + 25/9 = 42/9
    assert_close(masked_var(X, MASK), torch.tensor(42 / 9 / 2))  # unbiased: / (3 - 1) = 2.3333
    assert_close(masked_var(X, MASK, unbiased=False), torch.tensor(42 / 9 / 3))  # / 3 = 1.5556


def test_bool_and_float_masks_agree():
    assert_close(masked_mean(X, MASK.bool(), dim=-1), masked_mean(X, MASK, dim=-1))
    assert_close(masked_var(X, MASK.bool()), masked_var(X, MASK))
    assert_close(whiten(X, MASK.bool()), whiten(X, MASK))


def test_masked_reductions_ignore_padding(pad):
    x, mask = pad(X), pad(MASK, 0)  # padding columns hold nan
    assert_close(masked_sum(x, mask), masked_sum(X, MASK))
    assert_close(masked_sum(x, mask, dim=-1), masked_sum(X, MASK, dim=-1))
    assert_close(masked_mean(x, mask), masked_mean(X, MASK))
    assert_close(masked_mean(x, mask, dim=-1), masked_mean(X, MASK, dim=-1))
    assert_close(masked_var(x, mask), masked_var(X, MASK))


def test_masked_mean_gradient_skips_padding(pad):
    x = pad(X).requires_grad_()
    masked_mean(x, pad(MASK, 0)).backward()
    # d mean / d x_i = 1/3 on each of the 3 response tokens, 0 (not nan) elsewhere
    assert_close(pad.real(x.grad), MASK / 3)
    assert_close(pad.outside(x.grad), torch.zeros(2, 5))


# Whitening [1, 2, 3, 6]: mean 3, deviations [-2, -1, 0, 3], squares sum to 14,
# unbiased var 14 / 3 = 4.6667, std 2.1602.
W = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
W_MASK = torch.ones(2, 2)


def test_whiten():
    expected = torch.tensor([[-0.9258, -0.4629], [0.0, 1.3887]])  # deviations / 2.1602
    assert_close(whiten(W, W_MASK), expected, atol=1e-4, rtol=0)


def test_whiten_without_shifting_the_mean_keeps_it():
    expected = torch.tensor([[2.0742, 2.5371], [3.0, 4.3887]])  # the above + 3
    assert_close(whiten(W, W_MASK, shift_mean=False), expected, atol=1e-4, rtol=0)


def test_whiten_zeroes_padding_and_ignores_it(pad):
    out = whiten(pad(W), pad(W_MASK, 0))
    assert_close(pad.real(out), whiten(W, W_MASK))
    assert torch.equal(pad.outside(out), torch.zeros(2, 5))


def test_whiten_with_all_reduce_uses_global_statistics():
    # Two processes holding the same [1, 2, 3, 6]: n = 8, squares of deviations sum to
    # 28, unbiased var 28 / 7 = 4, std 2, so the deviations are halved.
    out = whiten(W, W_MASK, all_reduce=lambda t: 2 * t)
    assert_close(out, torch.tensor([[-1.0, -0.5], [0.0, 1.5]]), atol=1e-4, rtol=0)


def test_whiten_shards_match_whitening_the_whole_batch():
    x = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, 1.0], [4.0, 2.0, -2.0], [1.0, 1.0, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    seen = []

    def capture(t):
        seen.append(t.clone())
        return t

    whiten(x[2:], mask[2:], all_reduce=capture)  # process 1's contribution
    shard0 = whiten(x[:2], mask[:2], all_reduce=lambda t: t + seen[0])
    assert_close(shard0, whiten(x, mask)[:2])


def test_whiten_accepts_an_in_place_all_reduce():
    def in_place(t):
        t.mul_(2)  # as torch.distributed.all_reduce: reduces in place, returns None

    assert_close(
        whiten(W, W_MASK, all_reduce=in_place), whiten(W, W_MASK, all_reduce=lambda t: 2 * t)
    )


@pytest.mark.parametrize("mask", [torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2)])
def test_whiten_one_or_no_token_gives_zeros_not_nan(mask):
    assert torch.equal(whiten(W, mask), torch.zeros(2, 2))


def test_explained_variance():
    # R = [1, 2, 3], V = [1, 2, 2]: R - V = [0, 0, 1], mean 1/3, var (1/9 + 1/9 + 4/9) / 3 = 2/9;
    # Var[R] = (1 + 0 + 1) / 3 = 2/3; EV = 1 - (2/9) / (2/3) = 1 - 1/3 = 0.6667
    values = torch.tensor([[1.0, 2.0, 2.0]])
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    assert_close(explained_variance(values, returns, mask), torch.tensor(2 / 3))
    assert_close(explained_variance(returns, returns, mask), torch.tensor(1.0))  # perfect critic


def test_explained_variance_ignores_padding(pad):
    values = torch.tensor([[1.0, 2.0, 2.0]])
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    padded = explained_variance(pad(values), pad(returns), pad(mask, 0))
    assert_close(padded, explained_variance(values, returns, mask))


def test_explained_variance_of_constant_returns_is_nan():
    returns = torch.ones(1, 3)
    assert torch.isnan(explained_variance(torch.zeros(1, 3), returns, torch.ones(1, 3)))

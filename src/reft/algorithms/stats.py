"""Masked statistics over response tokens: sums, means, variances, whitening.

Every function takes ``mask``, the same shape as ``x`` (usually ``(B, T)``), of 0/1
floats or bools where 1 marks a response token. Masked-out entries are *selected
away* with ``torch.where`` rather than multiplied by 0, so whatever sits there
(padding logits, inf, nan) cannot reach a result or its gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

AllReduce = Callable[[Tensor], Tensor | None]
"""Sums a tensor across processes; returns the sum, or ``None`` if it reduced in place."""


def _count(mask: Tensor, dim: int | None, dtype: torch.dtype) -> Tensor:
    """Number of response tokens (over ``dim``, or all), at least 1 so empty rows give 0, not nan."""
    m = mask.bool()
    n = m.sum() if dim is None else m.sum(dim)
    return n.clamp(min=1).to(dtype)


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` over response tokens.

    ``x``, ``mask``: ``(B, T)``. Returns a scalar, or ``x`` with ``dim`` reduced
    (``dim=-1`` gives ``(B,)``).
    """
    kept = torch.where(mask.bool(), x, 0)
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over response tokens; 0 where there are none.

    ``x``, ``mask``: ``(B, T)``. Returns a scalar, or ``x`` with ``dim`` reduced.
    """
    return masked_sum(x, mask, dim) / _count(mask, dim, x.dtype)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over all response tokens (a scalar).

    ``unbiased`` applies Bessel's correction n/(n-1); as with ``torch.var``, one
    token then gives nan. ``x``, ``mask``: ``(B, T)``.
    """
    centered = x - masked_mean(x, mask)
    sq_sum = masked_sum(centered * centered, mask)
    n = mask.bool().sum().to(x.dtype)
    return sq_sum / (n - 1) if unbiased else sq_sum / n.clamp(min=1)


def whiten(
    x: Tensor,
    mask: Tensor,
    shift_mean: bool = True,
    all_reduce: AllReduce | None = None,
    eps: float = 1e-8,
) -> Tensor:
    """Normalise ``x`` to zero mean, unit (unbiased) variance over the response tokens.

    The statistics are taken over the whole batch. Under multi-process training pass
    ``all_reduce``, a callable that sums a tensor across processes (for example
    ``torch.distributed.all_reduce``, which works in place and returns ``None``, or
    ``lambda t: accelerator.reduce(t, "sum")``); it is called once, on the stacked
    ``[sum, sum of squares, count]``, so every process whitens with the global mean and
    variance. The statistics are accumulated in float64, which keeps the one-pass
    ``E[x^2] - E[x]^2`` accurate. With ``shift_mean=False`` the mean is added back
    (only the scale changes). Masked positions come out 0; fewer than two tokens give
    zero variance rather than nan.

    ``x``, ``mask``: ``(B, T)``. Returns ``(B, T)`` in ``x.dtype``.
    """
    m = mask.bool()
    kept = torch.where(m, x, 0).double()
    stats = torch.stack([kept.sum(), (kept * kept).sum(), m.sum().double()])
    if all_reduce is not None:
        reduced = all_reduce(stats)
        stats = stats if reduced is None else reduced
    total, total_sq, n = stats.unbind()
    mean = total / n.clamp(min=1)
    biased_var = (total_sq / n.clamp(min=1) - mean * mean).clamp(min=0)
    var = biased_var * n / (n - 1).clamp(min=1)
    out = (kept - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m, out, 0).to(x.dtype)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """``1 - Var[R - V] / Var[R]`` over response tokens (a scalar; logged as
    ``value/explained_variance``). 1 is a perfect critic, 0 no better than a
    constant, negative worse; nan when the returns do not vary.

    ``values``, ``returns``, ``mask``: ``(B, T)``.
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    var_residual = masked_var(returns - values, mask, unbiased=False)
    ev = 1 - var_residual / var_returns
    return torch.where(var_returns > 0, ev, torch.nan)

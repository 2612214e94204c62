"""Per-token KL(pi || pi_ref) estimators from log-probabilities of sampled tokens.

Tokens are sampled from the policy pi, so with ``delta = logprobs - ref_logprobs``
and ``r = pi_ref / pi = exp(-delta)`` Schulman's note "Approximating KL Divergence"
(2020) gives three estimators of KL(pi || pi_ref):

- ``k1 = -log r = delta``: unbiased, can be negative per token. ReFT's penalty
  (the paper and its official script put ``-kl_coef * k1`` in the reward).
- ``k2 = (log r)^2 / 2 = delta^2 / 2``: biased, low variance, never negative.
- ``k3 = (r - 1) - log r = exp(-delta) - 1 + delta``: unbiased, never negative,
  low variance; what GRPO puts in its loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .stats import masked_sum

_K3_MAX_LOG_RATIO = 20.0
"""k3 exponentiates; capping |delta| keeps one all-but-impossible token from overflowing."""


def _k1(delta: Tensor) -> Tensor:
    return delta


def _k2(delta: Tensor) -> Tensor:
    return 0.5 * delta * delta


def _k3(delta: Tensor) -> Tensor:
    delta = delta.clamp(-_K3_MAX_LOG_RATIO, _K3_MAX_LOG_RATIO)
    return torch.expm1(-delta) + delta


KL_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {"k1": _k1, "k2": _k2, "k3": _k3}
"""Estimator name -> function of ``delta = logprobs - ref_logprobs``."""


def kl_per_token(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "k1") -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) (``kind``: ``k1``, ``k2`` or ``k3``).

    ``logprobs``, ``ref_logprobs``: ``(B, T)``. Returns ``(B, T)``. No mask: values at
    padding are meaningless and every consumer here (``sequence_kl``,
    ``shape_rewards``, ``kl_loss``) selects them away.
    """
    try:
        estimator = KL_ESTIMATORS[kind]
    except KeyError:
        known = ", ".join(sorted(KL_ESTIMATORS))
        raise ValueError(f"unknown KL estimator {kind!r}; known: {known}") from None
    return estimator(logprobs - ref_logprobs)


def sequence_kl(kl: Tensor, mask: Tensor) -> Tensor:
    """KL of each whole response: the sum of per-token KL over its tokens.

    ``kl``, ``mask``: ``(B, T)``. Returns ``(B,)``.
    """
    return masked_sum(kl, mask, dim=-1)

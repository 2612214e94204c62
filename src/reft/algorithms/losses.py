"""PPO losses (Schulman et al. 2017, arXiv 1707.06347) and the KL loss term.

Each returns ``(loss, stats)``: a scalar to backpropagate, and detached scalar tensors
under cleanrl-style keys for logging (call ``.item()`` where you log, not here).
``loss_agg`` says how the per-token losses become that scalar (see ``.loss_agg``). The
default, ``seq-mean-token-mean``, is ReFT's release: each response's token mean, then the
mean over responses, so every response weighs the same whatever its length;
``token-mean`` (one mean over all response tokens, as in TRL's PPO) lets a long response
weigh more. The clip fractions and ``approx_kl`` stay token means.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .kl import kl_per_token
from .loss_agg import DEFAULT_LOSS_AGG, aggregate
from .stats import masked_mean


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    loss_agg: str = DEFAULT_LOSS_AGG,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)``.

    ``ratio = exp(logprobs - old_logprobs)``. Where the clipped term is the larger
    loss the token contributes no gradient; ``policy/clipfrac`` is the fraction of such
    tokens. ``policy/approx_kl`` is Schulman's k3 estimate ``(ratio - 1) - log ratio`` of
    KL(pi_old || pi), averaged over tokens: never negative, unbiased under samples
    from pi_old.

    ``logprobs`` (with gradient), ``old_logprobs``, ``advantages``, ``mask``: ``(B, T)``;
    the per-token losses are reduced by ``aggregate(..., loss_agg)``.
    Stats: ``loss/policy``, ``policy/approx_kl``, ``policy/clipfrac``.
    """
    m = mask.bool()
    log_ratio = torch.where(m, logprobs - old_logprobs, 0)
    adv = torch.where(m, advantages, 0)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    loss = aggregate(torch.maximum(unclipped, clipped), m, loss_agg)
    stats = {
        "loss/policy": loss.detach(),
        "policy/approx_kl": masked_mean((ratio - 1) - log_ratio, m).detach(),
        "policy/clipfrac": masked_mean((clipped > unclipped).to(loss.dtype), m),
    }
    return loss, stats


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_eps: float,
    loss_agg: str = DEFAULT_LOSS_AGG,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped value loss ``1/2 * max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2)``.

    The clip keeps the critic within ``eps`` of the value it had at rollout time, as
    in the PPO2 baselines; ``value/clipfrac`` is the fraction of tokens where the
    clipped term is the larger (and so where the token gives no gradient).

    ``values`` (with gradient), ``old_values``, ``returns``, ``mask``: ``(B, T)``; the
    per-token losses are reduced by ``aggregate(..., loss_agg)``, the ½ applied after (as
    in the release, where ``vf_coef`` then scales the result).
    Stats: ``loss/value``, ``value/clipfrac``.
    """
    m = mask.bool()
    values = torch.where(m, values, 0)
    old_values = torch.where(m, old_values, 0)
    returns = torch.where(m, returns, 0)
    clipped_values = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    unclipped_sq = (values - returns) ** 2
    clipped_sq = (clipped_values - returns) ** 2
    loss = 0.5 * aggregate(torch.maximum(unclipped_sq, clipped_sq), m, loss_agg)
    stats = {
        "loss/value": loss.detach(),
        "value/clipfrac": masked_mean((clipped_sq > unclipped_sq).to(loss.dtype), m),
    }
    return loss, stats


def kl_loss(
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    kind: str = "k3",
    loss_agg: str = DEFAULT_LOSS_AGG,
) -> tuple[Tensor, dict[str, Tensor]]:
    """KL(pi || pi_ref) as a loss term, for ``kl_mode=loss`` (GRPO's choice, k3 by
    default): ``kl_per_token`` reduced by ``aggregate(..., loss_agg)``. Unscaled: the
    caller adds ``kl_coef * loss``.

    ``logprobs`` (with gradient), ``ref_logprobs``, ``mask``: ``(B, T)``. Stats: ``loss/kl``.
    """
    m = mask.bool()
    kl = kl_per_token(torch.where(m, logprobs, 0), torch.where(m, ref_logprobs, 0), kind)
    loss = aggregate(kl, m, loss_agg)
    return loss, {"loss/kl": loss.detach()}

"""Rewards to advantages: ReFT's KL-shaped token rewards with GAE, and value-free GRPO/RLOO.

Estimators are registered by name in ``ADVANTAGE_ESTIMATORS`` (as verl's
``core_algos`` does) and all share one keyword-only signature::

    estimator(*, scores, mask, kl=None, values=None, kl_coef=0.0,
              gamma=1.0, lam=0.95, group_size=1) -> (advantages, returns)

Each ignores the arguments it has no use for. ``returns`` (targets for the value
head) is ``None`` for the value-free estimators.

Where the KL penalty goes (``kl_mode``) is decided by the caller: for
``kl_mode=reward`` pass ``kl`` (per token) and ``kl_coef``; for ``kl_mode=loss`` pass
``kl=None`` (or ``kl_coef=0``) and add ``kl_loss`` to the loss instead. GAE spreads the
penalty over tokens (``-kl_coef * kl_t`` on each); GRPO and RLOO have one reward per
sequence, so they use ``score - kl_coef * sequence_kl`` (the penalty summed over the
response) as that reward before comparing samples within a group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .kl import sequence_kl
from .registry import ADVANTAGE_ESTIMATORS, resolve

Estimator = Callable[..., tuple[Tensor, Tensor | None]]


def _last_index(mask: Tensor) -> Tensor:
    """Index of the last response token in each row, ``(B,)``; 0 for an empty row."""
    m = mask.bool()
    positions = torch.arange(m.shape[-1], device=m.device).expand_as(m)
    return torch.where(m, positions, -1).argmax(dim=-1)


def shape_rewards(scores: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """ReFT's token rewards: ``-kl_coef * kl_t`` on every response token, plus the answer
    score on the last one (the last index where ``mask`` is 1, so right padding and
    leading prompt positions are both fine).

    ``scores``: ``(B,)``; ``kl``, ``mask``: ``(B, T)``. Returns ``(B, T)``, 0 off the
    response; a row with no response tokens gets no score.
    """
    m = mask.bool()
    rewards = torch.where(m, -kl_coef * kl, 0)
    bonus = torch.where(m.any(dim=-1), scores.to(rewards.dtype), 0)
    return rewards.scatter_add(-1, _last_index(m).unsqueeze(-1), bonus.unsqueeze(-1))


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv 1506.02438).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``
    over response tokens only: "t+1" is the next response token, positions with mask
    0 are skipped (their rewards and values ignored), and the value after the last
    token is 0. ``returns = advantages + values`` are the value-head targets. Pass
    values without gradient (the rollout's ``old_values``).

    ``rewards``, ``values``, ``mask``: ``(B, T)``. Returns ``(advantages, returns)``,
    each ``(B, T)`` and 0 off the response.
    """
    m = mask.bool()
    dtype = torch.promote_types(rewards.dtype, values.dtype)
    rewards = torch.where(m, rewards, 0).to(dtype)
    values = torch.where(m, values, 0).to(dtype)
    next_value = values.new_zeros(values.shape[0])
    next_adv = values.new_zeros(values.shape[0])
    reversed_advs = []
    for t in reversed(range(values.shape[-1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        keep = m[:, t]
        reversed_advs.append(torch.where(keep, adv, 0))
        # A masked position passes the following token's value and advantage through.
        next_adv = torch.where(keep, adv, next_adv)
        next_value = torch.where(keep, values[:, t], next_value)
    advantages = torch.stack(reversed_advs[::-1], dim=-1)
    return advantages, torch.where(m, advantages + values, 0)


def _groups(scores: Tensor, group_size: int) -> Tensor:
    """``(B,)`` -> ``(B // group_size, group_size)``: consecutive rows share a question."""
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 to compare samples, got {group_size}")
    if scores.shape[0] % group_size:
        raise ValueError(
            f"batch of {scores.shape[0]} is not a whole number of groups of {group_size}"
        )
    return scores.reshape(-1, group_size)


def _broadcast(per_sequence: Tensor, mask: Tensor) -> Tensor:
    """``(B,)`` -> ``(B, T)``: the sequence's value on each of its response tokens, 0 elsewhere."""
    return torch.where(mask.bool(), per_sequence.unsqueeze(-1), 0)


def grpo_advantages(scores: Tensor, group_size: int, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath): ``(score - group mean) / (group std + eps)``,
    std unbiased as ``torch.std``. A group whose scores are all equal gets 0.

    ``scores``: ``(B,)``, groups of ``group_size`` consecutive rows; ``mask``:
    ``(B, T)``. Returns ``(B, T)``, each sequence's advantage on its response tokens.
    """
    grouped = _groups(scores, group_size)
    mean = grouped.mean(dim=-1, keepdim=True)
    std = grouped.std(dim=-1, keepdim=True)
    return _broadcast(((grouped - mean) / (std + eps)).reshape(-1), mask)


def rloo_advantages(scores: Tensor, group_size: int, mask: Tensor) -> Tensor:
    """REINFORCE leave-one-out (Ahmadian et al. 2024): ``score - mean of the group's
    other samples``, an unbiased baseline since it does not depend on the sample itself.

    ``scores``: ``(B,)``, groups of ``group_size`` consecutive rows; ``mask``:
    ``(B, T)``. Returns ``(B, T)``.
    """
    grouped = _groups(scores, group_size)
    others = (grouped.sum(dim=-1, keepdim=True) - grouped) / (group_size - 1)
    return _broadcast((grouped - others).reshape(-1), mask)




def register_estimator(name: str) -> Callable[[Estimator], Estimator]:
    """Decorator adding an estimator to ``ADVANTAGE_ESTIMATORS`` under ``name``."""

    def add(fn: Estimator) -> Estimator:
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn

    return add


def get_estimator(name: str) -> Estimator:
    """The estimator registered as ``name``; ValueError naming the known ones otherwise."""
    return resolve(ADVANTAGE_ESTIMATORS, name, "advantage estimator")


def _sequence_rewards(scores: Tensor, kl: Tensor | None, mask: Tensor, kl_coef: float) -> Tensor:
    """One reward per sequence for value-free estimators: ``score - kl_coef * sum_t kl_t``."""
    if kl is None:
        return scores
    return scores - kl_coef * sequence_kl(kl, mask)


@register_estimator("gae")
def gae_estimator(*, scores: Tensor, mask: Tensor, kl: Tensor | None = None,
                  values: Tensor | None = None, kl_coef: float = 0.0, gamma: float = 1.0,
                  lam: float = 0.95, **_: Any) -> tuple[Tensor, Tensor]:
    """ReFT's estimator: ``shape_rewards`` then ``gae``. Needs ``values`` ``(B, T)``."""
    if values is None:
        raise ValueError("the gae estimator needs values from a value head")
    if kl is None:
        kl = torch.zeros_like(values)
    rewards = shape_rewards(scores, kl, mask, kl_coef)
    return gae(rewards, values, mask, gamma, lam)


@register_estimator("grpo")
def grpo_estimator(*, scores: Tensor, mask: Tensor, kl: Tensor | None = None, kl_coef: float = 0.0,
                   group_size: int = 1, **_: Any) -> tuple[Tensor, None]:
    """``grpo_advantages`` of the KL-penalised sequence rewards; no returns."""
    rewards = _sequence_rewards(scores, kl, mask, kl_coef)
    return grpo_advantages(rewards, group_size, mask), None


@register_estimator("rloo")
def rloo_estimator(*, scores: Tensor, mask: Tensor, kl: Tensor | None = None, kl_coef: float = 0.0,
                   group_size: int = 1, **_: Any) -> tuple[Tensor, None]:
    """``rloo_advantages`` of the KL-penalised sequence rewards; no returns."""
    rewards = _sequence_rewards(scores, kl, mask, kl_coef)
    return rloo_advantages(rewards, group_size, mask), None

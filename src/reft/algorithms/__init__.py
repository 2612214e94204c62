"""Pure tensor math for ReFT's PPO: masked statistics, KL, advantages, losses.

Tensors and floats in, tensors out; nothing here imports the rest of reft.
"""

from .advantages import (
    ADVANTAGE_ESTIMATORS,
    gae,
    gae_estimator,
    get_estimator,
    grpo_advantages,
    grpo_estimator,
    register_estimator,
    rloo_advantages,
    rloo_estimator,
    shape_rewards,
)
from .kl import KL_ESTIMATORS, kl_per_token, sequence_kl
from .logits import entropy_from_logits, logprobs_from_logits
from .loss_agg import DEFAULT_LOSS_AGG, LOSS_AGG_MODES, agg_count, aggregate, process_weight
from .losses import kl_loss, policy_loss, value_loss
from .stats import explained_variance, masked_mean, masked_sum, masked_var, whiten

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "DEFAULT_LOSS_AGG",
    "KL_ESTIMATORS",
    "LOSS_AGG_MODES",
    "agg_count",
    "aggregate",
    "entropy_from_logits",
    "explained_variance",
    "gae",
    "gae_estimator",
    "get_estimator",
    "grpo_advantages",
    "grpo_estimator",
    "kl_loss",
    "kl_per_token",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "policy_loss",
    "process_weight",
    "register_estimator",
    "rloo_advantages",
    "rloo_estimator",
    "sequence_kl",
    "shape_rewards",
    "value_loss",
    "whiten",
]

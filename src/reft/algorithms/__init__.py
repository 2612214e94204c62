"""Pure tensor math for ReFT's PPO: masked statistics, KL, advantages, losses.

Tensors and floats in, tensors out; nothing here imports the rest of reft. Names are
imported on first use (``reft.algorithms.registry`` is readable without torch).
"""

from importlib import import_module

_WHERE = {
    "ADVANTAGE_ESTIMATORS": "registry", "LOSS_AGG_MODES": "registry",
    "gae": "advantages", "gae_estimator": "advantages", "get_estimator": "advantages",
    "grpo_advantages": "advantages", "grpo_estimator": "advantages",
    "register_estimator": "advantages", "rloo_advantages": "advantages",
    "rloo_estimator": "advantages", "shape_rewards": "advantages",
    "KL_ESTIMATORS": "kl", "kl_per_token": "kl", "sequence_kl": "kl",
    "entropy_from_logits": "logits", "logprobs_from_logits": "logits",
    "DEFAULT_LOSS_AGG": "loss_agg", "agg_count": "loss_agg", "aggregate": "loss_agg",
    "process_weight": "loss_agg",
    "kl_loss": "losses", "policy_loss": "losses", "value_loss": "losses",
    "explained_variance": "stats", "masked_mean": "stats", "masked_sum": "stats",
    "masked_var": "stats", "whiten": "stats",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'reft.algorithms' has no attribute {name!r}")
    return getattr(import_module(f"reft.algorithms.{_WHERE[name]}"), name)

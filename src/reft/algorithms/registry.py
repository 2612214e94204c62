"""The names of PPO's pluggable parts, readable without importing torch.

Configs take their choices from here (``PPOConfig.CHOICES``), so a flag's choices are the
registry's keys and nothing else keeps a list of them. ``ADVANTAGE_ESTIMATORS`` maps a name
to its function, or to ``"module:function"`` until first use (verl registers by name the
same way); ``reft.algorithms.register_estimator`` adds new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

ADVANTAGE_ESTIMATORS: dict[str, Any] = {
    "gae": "reft.algorithms.advantages:gae_estimator",
    "grpo": "reft.algorithms.advantages:grpo_estimator",
    "rloo": "reft.algorithms.advantages:rloo_estimator",
}
"""Name -> estimator (see ``reft.algorithms.advantages`` for the shared signature)."""

LOSS_AGG_MODES = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum")
"""How token losses become one (``reft.algorithms.loss_agg``); the first is the default."""


def resolve(table: dict[str, Any], name: str, what: str) -> Callable:
    """``table[name]``, imported on first use; ValueError naming the known names otherwise."""
    try:
        entry = table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}") from None
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = table[name] = getattr(import_module(module), attr)
    return entry

"""The PPO model: policy logits and values from one forward pass."""

from __future__ import annotations

import copy

import torch
from torch import nn

from reft.models.batching import response_logits


class ActorCritic(nn.Module):
    """Policy logits and values from one forward: a value head on the policy (shared, the
    paper), a separate critic network (the paper's ablation), or no values (grpo/rloo)."""

    def __init__(self, lm: nn.Module, critic: str, value_free: bool):
        super().__init__()
        from reft.models.value_head import PolicyWithValueHead, SeparateCritic

        self.critic_kind = "none" if value_free else critic
        if self.critic_kind == "shared":
            self.body = PolicyWithValueHead(lm)
        else:
            self.body = lm
        if self.critic_kind == "separate":
            base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
            # a trainable copy: fp32 master weights even when a LoRA base is bf16
            self.critic = SeparateCritic(copy.deepcopy(base).float())

    def value_parameters(self) -> list[nn.Parameter]:
        """The value model's own parameters: the head on the policy, or the whole critic."""
        if self.critic_kind == "shared":
            return list(self.body.value_head.parameters())
        return list(self.critic.parameters()) if self.critic_kind == "separate" else []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, prompt_len: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, V) logits predicting each of the T response tokens, and (B, T) values
        before each (or None). Sequences are [prompt (``prompt_len``) | response (T)]."""
        kw = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        values = None
        if self.critic_kind == "shared":
            logits, values = self.body(**kw)
        else:
            logits = self.body(**kw).logits
            if self.critic_kind == "separate":
                values = self.critic(**kw)
        return (response_logits(logits, prompt_len),
                response_logits(values, prompt_len) if values is not None else None)

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
                position_ids: torch.Tensor, prompt_len: int | torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, V) logits predicting each of the T response tokens, and (B, T) values
        before each (or None). Sequences are [prompt (``prompt_len``) | response (T)]; the
        LM head runs on the response-predicting positions only. A packed row
        (``Packed.model_inputs``) gives (1, K, V) and (1, K) at its K kept positions."""
        kw = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        values = None
        if self.critic_kind == "shared":
            return self.body(**kw, prompt_len=prompt_len)
        logits = lm_response_logits(self.body, prompt_len=prompt_len, **kw)
        if self.critic_kind == "separate":
            values = response_logits(self.critic(**kw), prompt_len)
        return logits, values


def lm_response_logits(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                       position_ids: torch.Tensor, prompt_len: int | torch.Tensor) -> torch.Tensor:
    """A causal LM's (B, T, V) logits at the positions predicting the T response tokens of
    [prompt (``prompt_len``) | response (T)] rows (``response_logits``), without a K/V
    cache and, through transformers' ``logits_to_keep``, without logits for the prompt.
    A tensor ``prompt_len`` is a packed row's kept positions: (1, K, V)."""
    packed = isinstance(prompt_len, torch.Tensor)
    # the last prompt position predicts token 0
    keep = prompt_len if packed else input_ids.size(1) - prompt_len + 1
    kw = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
              use_cache=False)
    try:
        out = lm(**kw, logits_to_keep=keep)
    except TypeError as e:  # a model without the argument: all logits, sliced below
        if "logits_to_keep" not in str(e):
            raise
        out = lm(**kw)
    logits = out.logits
    if not packed:
        return logits[:, -keep:-1]
    return logits if logits.size(1) == keep.numel() else logits[:, keep]

"""The typed batch a PPO step works on (not a 12-tuple)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from reft.rollout.sampler import Generations, left_pad


@dataclass
class Rollout:
    """B sequences laid out as [left-padded prompt (P) | right-padded response (T)]."""

    input_ids: torch.Tensor
    """(B, P+T)"""
    attention_mask: torch.Tensor
    """(B, P+T)"""
    position_ids: torch.Tensor
    """(B, P+T), counting real tokens only"""
    response_mask: torch.Tensor
    """(B, T) float, 1 on generated tokens (EOS included)"""
    truncated: torch.Tensor
    """(B,) bool, length limit hit before EOS"""
    scores: torch.Tensor | None = None
    """(B,) answer reward"""
    correct: torch.Tensor | None = None
    """(B,) bool, the answer was right"""
    old_logprobs: torch.Tensor | None = None
    """(B, T) log pi_old of each response token"""
    ref_logprobs: torch.Tensor | None = None
    """(B, T) log pi_ref"""
    values: torch.Tensor | None = None
    """(B, T) value estimate before each response token"""
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    @property
    def prompt_len(self) -> int:
        return self.input_ids.size(1) - self.response_mask.size(1)

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def select(self, idx: torch.Tensor) -> Rollout:
        """The rows ``idx`` (a mini-batch)."""
        return replace(self, **{
            f.name: getattr(self, f.name)[idx]
            for f in fields(self) if getattr(self, f.name) is not None
        })


def build_rollout(gens: Generations, pad_id: int, device: torch.device | str = "cpu") -> Rollout:
    """Tensors for PPO from sampled completions."""
    prompt, pmask = left_pad(gens.prompt_ids, pad_id)
    width = max(1, max(len(c) for c in gens.completion_ids))
    resp = torch.full((len(gens.completion_ids), width), pad_id, dtype=torch.long)
    rmask = torch.zeros((len(gens.completion_ids), width), dtype=torch.long)
    for i, c in enumerate(gens.completion_ids):
        resp[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        rmask[i, : len(c)] = 1
    ids = torch.cat([prompt, resp], dim=1)
    attn = torch.cat([pmask, rmask], dim=1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return Rollout(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=pos.to(device),
        response_mask=rmask.float().to(device),
        truncated=torch.tensor(gens.truncated, device=device),
    )


def response_logits(logits: torch.Tensor, r: Rollout) -> torch.Tensor:
    """(B, T, V) logits predicting each response token: position P-1+t predicts token P+t."""
    p = r.prompt_len
    return logits[:, p - 1 : -1]

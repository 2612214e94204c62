"""The typed, immutable batch a PPO step works on.

``Sequences`` is what sampling gives (token layout and masks); ``Experience`` adds what
scoring and the rollout forward passes give (scores, log-probs, values, advantages). Both
are frozen: a rollout is built once, in ``reft.training.ppo.make_experience``, and only
read after that.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from reft.models.batching import pad_rows, positions
from reft.rollout.sampler import Generations


@dataclass(frozen=True)
class Sequences:
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

    @property
    def prompt_len(self) -> int:
        return self.input_ids.size(1) - self.response_mask.size(1)

    @property
    def responses(self) -> torch.Tensor:
        """(B, T) response token ids."""
        return self.input_ids[:, self.prompt_len:]

    def model_inputs(self) -> dict:
        """Keyword arguments of ``ActorCritic.forward``."""
        return dict(input_ids=self.input_ids, attention_mask=self.attention_mask,
                    position_ids=self.position_ids, prompt_len=self.prompt_len)

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def select(self, idx: torch.Tensor):
        """The rows ``idx`` (a mini-batch), of the same type."""
        return replace(self, **{
            f.name: getattr(self, f.name)[idx]
            for f in fields(self) if getattr(self, f.name) is not None
        })


@dataclass(frozen=True)
class Experience(Sequences):
    """A scored rollout with everything the PPO update reads."""

    scores: torch.Tensor | None = None
    """(B,) answer reward"""
    correct: torch.Tensor | None = None
    """(B,) bool, the answer was right"""
    old_logprobs: torch.Tensor | None = None
    """(B, T) log pi_old of each response token"""
    ref_logprobs: torch.Tensor | None = None
    """(B, T) log pi_ref"""
    values: torch.Tensor | None = None
    """(B, T) value estimate before each response token (None without a value model)"""
    advantages: torch.Tensor | None = None
    """(B, T)"""
    returns: torch.Tensor | None = None
    """(B, T) value targets (None for value-free estimators)"""


def build_sequences(gens: Generations, pad_id: int, device: torch.device | str = "cpu") -> Sequences:
    """Tensors for PPO from sampled completions."""
    prompt, pmask = pad_rows(gens.prompt_ids, pad_id, side="left")
    resp, rmask = pad_rows(gens.completion_ids, pad_id, min_width=1)
    ids = torch.cat([prompt, resp], dim=1)
    attn = torch.cat([pmask, rmask], dim=1)
    return Sequences(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=positions(attn).to(device),
        response_mask=rmask.float().to(device),
        truncated=torch.tensor(gens.truncated, device=device),
    )

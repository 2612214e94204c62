"""Token rows -> padded tensors, and the position ids a padded row needs.

Every batch reft builds (SFT pairs, sampled prompts, rollouts, reranker inputs) is padded
here, so the layout conventions live in one place."""

from __future__ import annotations

import torch


def pad_rows(rows: list[list[int]], value: int, side: str = "right",
             min_width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ``rows`` padded with ``value`` on ``side`` ("left" or "right"), and the (B, T)
    mask of real tokens (long). T is the longest row, at least ``min_width``."""
    width = max([min_width, *map(len, rows)])
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if not r:
            continue
        sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, sl] = torch.tensor(r, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only (0 for the padding before a left-padded
    row), as a model that saw the row unpadded would number them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logits(logits: torch.Tensor, prompt_len: int | torch.Tensor) -> torch.Tensor:
    """(B, T, ...) outputs at the positions that predict the T response tokens of sequences
    laid out as [prompt (``prompt_len``) | response (T)]: position P-1+t predicts token t.
    A (K,) tensor ``prompt_len`` is the positions themselves (a packed row, ``Packed``):
    (B, K, ...) outputs at those positions."""
    if isinstance(prompt_len, torch.Tensor):
        return logits[:, prompt_len]
    return logits[:, prompt_len - 1 : -1]

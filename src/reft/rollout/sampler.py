"""Batched sampling with a KV cache, left padding, and finished rows dropped from the batch.

Plain ``model.generate`` keeps every row of a batch until the longest one ends and runs
a generic logits-processor pipeline per token. ReFT samples at temperature 1 with no
top-k/top-p, so this loop only needs the forward pass, a softmax and a multinomial draw;
rows that emitted EOS leave the batch and its KV cache at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class Generations:
    """Completions in prompt order (each prompt repeated ``num_samples`` times in a row)."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    """Generated ids, the EOS included when one was generated."""
    texts: list[str]
    """Decoded completions without special tokens."""
    truncated: list[bool]
    """True when the length limit was hit before EOS."""


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) ids and attention mask, padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
    return ids, mask


def _next_token(logits: torch.Tensor, temperature: float, greedy: bool) -> torch.Tensor:
    if greedy or temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1).squeeze(-1)


@torch.no_grad()
def sample_batch(
    model,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
) -> list[list[int]]:
    """Generate one completion per prompt; returns the new ids of each (EOS included)."""
    device = next(model.parameters()).device
    ids, mask = left_pad(prompt_ids, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                   past_key_values=cache, use_cache=True).logits[:, -1]
    n = len(prompt_ids)
    out = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_new_tokens, dtype=torch.long, device=device)
    alive = torch.arange(n, device=device)
    next_pos = pos[:, -1] + 1
    for t in range(max_new_tokens):
        tok = _next_token(logits, temperature, greedy)
        out[alive, t] = tok
        done = tok == eos_id
        if done.any():
            lengths[alive[done]] = t + 1
            keep = (~done).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            alive, tok, mask, next_pos = alive[keep], tok[keep], mask[keep], next_pos[keep]
        if t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones((mask.size(0), 1))], dim=1)
        logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                       past_key_values=cache, use_cache=True).logits[:, -1]
        next_pos = next_pos + 1
    out, lengths = out.tolist(), lengths.tolist()
    return [row[:n_] for row, n_ in zip(out, lengths, strict=True)]


def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    greedy: bool = False,
    batch_size: int = 64,
    num_samples: int = 1,
    progress: bool = False,
) -> Generations:
    """Sample ``num_samples`` completions for each prompt, batched by prompt length."""
    was_training = model.training
    model.eval()
    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    rows = [p for p in encoded for _ in range(num_samples)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    completions: list[list[int]] = [[] for _ in rows]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="sampling", dynamic_ncols=True, leave=False)
    for idx in batches:
        new = sample_batch(model, [rows[i] for i in idx], max_new_tokens=max_new_tokens,
                           eos_id=eos, pad_id=pad, temperature=temperature, greedy=greedy)
        for i, c in zip(idx, new, strict=True):
            completions[i] = c
    model.train(was_training)
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    truncated = [not c or c[-1] != eos for c in completions]
    return Generations(rows, completions, texts, truncated)

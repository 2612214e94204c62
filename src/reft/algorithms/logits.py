"""Token log-probabilities and entropies from logits, without a second (B, T, V) tensor.

``log_softmax(logits).gather(labels)`` materialises a full-vocabulary copy of the
logits; with a 150k vocabulary and T = 512 that is ~300 MB per sequence in float32.
Here each sequence is handled on its own and only ``label logit - logsumexp`` is kept,
so the float32 working copy is one ``(T, V)`` row at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _working_dtype(logits: Tensor) -> torch.dtype:
    """At least float32: bf16 log-probs are too coarse for PPO's ``exp(logp - old_logp)``."""
    return torch.promote_types(logits.dtype, torch.float32)


def logprobs_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """``log softmax(logits)[labels]`` per position.

    ``logits``: ``(B, T, V)``, already aligned with ``labels`` (the logit at ``t``
    predicts ``labels[:, t]``). ``labels``: ``(B, T)`` integer ids, valid everywhere
    (put the pad id, not -100, on padding and mask it later). Returns ``(B, T)`` in
    float32 (float64 for float64 logits); differentiable.
    """
    dtype = _working_dtype(logits)
    rows = []
    for row_logits, row_labels in zip(logits, labels, strict=True):
        row = row_logits.to(dtype)
        picked = row.gather(-1, row_labels.unsqueeze(-1)).squeeze(-1)
        rows.append(picked - torch.logsumexp(row, dim=-1))
    if not rows:
        return logits.new_zeros(labels.shape, dtype=dtype)
    return torch.stack(rows)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy ``H = logsumexp(l) - sum_v softmax(l)_v * l_v`` of each position's distribution.

    ``logits``: ``(B, T, V)``. Returns ``(B, T)`` in float32 (float64 for float64 logits).
    """
    dtype = _working_dtype(logits)
    rows = []
    for row_logits in logits:
        row = row_logits.to(dtype)
        probs = torch.softmax(row, dim=-1)
        rows.append(torch.logsumexp(row, dim=-1) - (probs * row).sum(-1))
    if not rows:
        return logits.new_zeros(logits.shape[:-1], dtype=dtype)
    return torch.stack(rows)

"""How per-token losses become one scalar (verl's ``loss_agg_mode`` names).

``seq-mean-token-mean`` (the default) is what ReFT's release does for both the policy and
the value loss: each sequence's mean over its response tokens, then the mean over
sequences, so every sequence weighs the same whatever its length. ``token-mean`` is one
mean over all response tokens of the batch (a long response weighs more; TRL's PPO, DAPO).
``seq-mean-token-sum`` sums each sequence's tokens, then takes the mean over sequences
(Dr. GRPO's unnormalised form).

The sequence modes average over the rows holding at least one response token; a row with
none carries no loss and is left out rather than counted as a zero. (The release counts
every row, but its rows always hold at least one token, as reft's rollouts do.)

With several processes each aggregates its own mini-batch; ``process_weight`` turns the
local results into the global one under DDP's gradient average.
"""

from __future__ import annotations

from torch import Tensor

from .registry import LOSS_AGG_MODES
from .stats import masked_mean, masked_sum

DEFAULT_LOSS_AGG = LOSS_AGG_MODES[0]


def _check(mode: str) -> None:
    if mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg {mode!r}; expected one of {', '.join(LOSS_AGG_MODES)}")


def aggregate(loss: Tensor, mask: Tensor, mode: str = DEFAULT_LOSS_AGG) -> Tensor:
    """Reduce per-token losses ``loss`` ``(B, T)`` over the response tokens marked by
    ``mask`` ``(B, T)`` to a scalar, by ``mode`` (one of ``LOSS_AGG_MODES``).

    Masked-out entries are selected away, so nan there cannot reach the result or its
    gradient. No response tokens at all gives 0.
    """
    _check(mode)
    if mode == "token-mean":
        return masked_mean(loss, mask)
    reduce_row = masked_mean if mode == "seq-mean-token-mean" else masked_sum
    per_seq = reduce_row(loss, mask, dim=-1)  # (B,); 0 for a row with no response tokens
    return per_seq.sum() / agg_count(mask, mode).clamp(min=1).to(per_seq.dtype)


def agg_count(mask: Tensor, mode: str = DEFAULT_LOSS_AGG) -> Tensor:
    """How many units ``aggregate`` averages over for ``mask`` ``(B, T)``: response tokens
    for ``token-mean``, rows with at least one response token for the sequence modes.
    A 0-d float tensor (0 when there are none)."""
    _check(mode)
    m = mask.bool()
    n = m.sum() if mode == "token-mean" else m.any(dim=-1).sum()
    return n.float()


def process_weight(local_count: Tensor, global_count: Tensor, num_processes: int) -> Tensor:
    """Factor for this process's aggregated loss so that DDP's gradient average (the sum
    over processes divided by ``num_processes``) equals the aggregate over the global
    mini-batch: ``num_processes * local_count / global_count``.

    ``local_count``: ``agg_count`` of this process's mask; ``global_count``: its sum over
    the processes (0-d tensors). Exact because every mode is a mean over units (tokens or
    sequences) and each process's loss is the mean over its own units.
    """
    return num_processes * local_count / global_count.clamp(min=1)


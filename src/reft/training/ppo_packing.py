"""PPO's forwards on packed rows (``--pack``): the sequences of a micro-batch end to end in
one row, each numbered from position 0, with no padding (``reft.rollout.rollout.Packed``).

Transformers keeps the sequences of such a row apart when it is given position ids, no
attention mask and no cache: a varlen kernel under flash attention (nothing spent on padding),
a block-diagonal mask under sdpa/eager (which then attends over the whole packed row, a cost
that grows with the square of its length: on CPU it does not pay, ``benchmarks/padding.py``).
A model whose attention ignores this would let sequences see each other; the first rollout
of a run checks that it does not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reft.algorithms.logits import logprobs_from_logits
from reft.algorithms.stats import masked_mean
from reft.errors import UserError
from reft.models.actor_critic import lm_response_logits
from reft.rollout.rollout import Sequences

PACK_TOLERANCE = 0.05
"""Largest mean |packed - padded| log-prob (nats) of the check: above bf16's rounding
between two ways of computing one forward, far below what sequences that see each other
give."""


def forward_inputs(mb: Sequences, cfg) -> tuple[dict, torch.Tensor, Callable]:
    """(model inputs, the response tokens they predict, ``unpack``) of a micro-batch: with
    ``--pack`` a packed row, its (1, K) labels and ``Packed.unpack`` ((1, K) -> (B, T));
    else the padded rows, their (B, T) responses and the identity."""
    if not cfg.pack:
        return mb.model_inputs(), mb.responses, lambda x: x
    packed = mb.pack()
    return packed.model_inputs(), packed.labels, packed.unpack


@torch.no_grad()
def check_packing(run, mb: Sequences) -> None:
    """The reference's log-probs of ``mb`` packed against padded; a model that mixes packed
    sequences stops the run with a one-line error (``UserError``). The same on every process."""
    packed = mb.pack()
    with run.acc.autocast():
        padded_lp = logprobs_from_logits(lm_response_logits(run.ref, **mb.model_inputs()), mb.responses)
        packed_lp = packed.unpack(logprobs_from_logits(
            lm_response_logits(run.ref, **packed.model_inputs()), packed.labels))
    diff = masked_mean((packed_lp - padded_lp).abs(), mb.response_mask)
    diff = run.acc.reduce(diff.reshape(1).float(), "max").item()
    if not diff <= PACK_TOLERANCE:
        name = getattr(getattr(run.ref, "config", None), "model_type", type(run.ref).__name__)
        raise UserError(f"--pack: this model ({name}) does not keep packed sequences apart (log-probs "
                        f"differ from a padded forward by {diff:.3g} nats on average, more than "
                        f"{PACK_TOLERANCE}); run without --pack")
    run.pack_checked = True

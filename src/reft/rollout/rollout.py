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

FULL_WIDTH = ("input_ids", "attention_mask", "position_ids")
"""The (B, P+T) fields; the other 2-D ones are (B, T), over the response tokens."""


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

    def trim(self):
        """The same rows without the columns that are padding in every row (the prompts'
        common left padding, the responses' common right padding), of the same type: a
        forward over it gives the same outputs on the real tokens with less work."""
        p = self.prompt_len
        lead = int(self.attention_mask[:, :p].any(0).long().argmax())  # first real prompt column
        real = self.response_mask.bool().any(0).nonzero()
        t = int(real.max()) + 1 if len(real) else 1
        if lead == 0 and t == self.response_mask.size(1):
            return self
        kept = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or v.dim() < 2:
                continue
            kept[f.name] = v[:, lead : p + t] if f.name in FULL_WIDTH else v[:, :t]
        return replace(self, **kept)

    def pack(self) -> Packed:
        """The rows laid end to end in one row without padding (``Packed``)."""
        mask = self.attention_mask.bool()
        p = self.prompt_len
        # index of each real token in the packed row; a response token is predicted by the
        # real token before it, the last prompt token for the first
        flat = (mask.flatten().long().cumsum(0) - 1).view(mask.shape)
        rows, cols = self.response_mask.bool().nonzero(as_tuple=True)
        return Packed(input_ids=self.input_ids[mask][None], position_ids=self.position_ids[mask][None],
                      keep=flat[:, p:][rows, cols] - 1, rows=rows, cols=cols,
                      labels=self.responses[rows, cols][None], shape=tuple(self.response_mask.shape))

    def micro_batches(self, token_budget: int, packed: bool = False) -> list[torch.Tensor]:
        """Row indices in groups of at most ``token_budget`` tokens each once trimmed (rows x
        (longest prompt + longest response) of the group; at least one row). Rows are taken
        longest first, so that a group's rows are of similar length. 0: one group of all.
        ``packed``: a group's tokens are its rows' real tokens (``pack``)."""
        n = len(self)
        dev = self.input_ids.device
        if not token_budget:
            return [torch.arange(n, device=dev)]
        p_len = self.attention_mask[:, : self.prompt_len].sum(1).tolist()
        r_len = self.response_mask.sum(1).long().clamp(min=1).tolist()
        order = sorted(range(n), key=lambda i: p_len[i] + r_len[i], reverse=True)
        groups: list[list[int]] = [[]]
        width_p = width_r = total = 0  # the open group's longest prompt, response; real tokens
        for i in order:
            wp, wr, tot = max(width_p, p_len[i]), max(width_r, r_len[i]), total + p_len[i] + r_len[i]
            cost = tot if packed else (len(groups[-1]) + 1) * (wp + wr)
            if groups[-1] and cost > token_budget:
                groups.append([])
                wp, wr, tot = p_len[i], r_len[i], p_len[i] + r_len[i]
            groups[-1].append(i)
            width_p, width_r, total = wp, wr, tot
        return [torch.tensor(g, device=dev) for g in groups if g]


@dataclass(frozen=True)
class Packed:
    """Sequences laid end to end in one row, each numbered from position 0: given these
    position ids, no attention mask and no cache, transformers keeps the sequences apart
    (a block-diagonal causal mask; varlen kernels under flash attention), so a forward
    spends nothing on padding. Outputs come back at the K positions that predict a response
    token, and ``unpack`` puts them where the padded layout has them."""

    input_ids: torch.Tensor
    """(1, N) the real tokens of every row, prompt then response"""
    position_ids: torch.Tensor
    """(1, N) from 0 in each sequence"""
    keep: torch.Tensor
    """(K,) the positions that predict a response token"""
    rows: torch.Tensor
    """(K,) the row of each kept position's response token"""
    cols: torch.Tensor
    """(K,) its index within the response"""
    labels: torch.Tensor
    """(1, K) the response tokens predicted"""
    shape: tuple[int, int]
    """(B, T) of the padded responses"""

    def model_inputs(self) -> dict:
        """Keyword arguments of ``ActorCritic.forward`` and ``lm_response_logits``."""
        return dict(input_ids=self.input_ids, attention_mask=None, position_ids=self.position_ids,
                    prompt_len=self.keep)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(1, K) per-token outputs -> (B, T), 0 at padding; differentiable."""
        return x.new_zeros(self.shape).index_put((self.rows, self.cols), x[0])


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

"""Batched sampling with a KV cache, left padding, and finished rows dropped from the batch.

Plain ``model.generate`` keeps every row of a batch until the longest one ends and runs
a generic logits-processor pipeline per token. ReFT samples at temperature 1 with no
top-k/top-p, so this loop only needs the forward pass and one draw per row; rows that
emitted EOS leave the batch and its KV cache.

Where the time goes on a small model, and what this loop does about it (measured in
``benchmarks/generation.py``):

* the KV cache is written in place into buffers sized for prompt + completion, instead
  of ``DynamicCache``'s ``torch.cat`` that copies the whole cache at every token
  (``kv_cache``);
* finished rows are dropped once they are a sizeable part of the batch
  (``COMPACT_FRACTION``), not one by one: each drop copies the whole cache;
* the prefill computes logits for the last prompt position only;
* a row's token is drawn as ``argmax(p / E)`` with ``E ~ Exp(1)`` (exactly a draw from
  ``p``; the "exponential race"), ~3x cheaper on CPU than ``torch.multinomial``.

With ``seeds`` (one per prompt), the noise ``E`` of a row is a hash of (prompt seed, sample
index, step, token id) instead of a draw from the global RNG: a completion then depends
only on its own prompt and seed, not on which batch, process or device sampled it, so N
processes sample what one process would.

Asked (``return_logprobs``, ``return_hidden``), the loop also keeps what it computed anyway:
each sampled token's log-prob under the distribution it was drawn from, and the last hidden
state at the position that predicted it (a pre-hook on the LM head; what a shared value head
reads), so PPO's old log-probs and values need no second forward. The tokens drawn are the
same either way.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from reft.rollout.kv_cache import (  # noqa: F401  (_cache_param: re-exported for tests)
    _cache_kwarg,
    _cache_param,
    _new_cache,
    _prefill_kwargs,
    _unwrap,
)

COMPACT_FRACTION = 0.25
"""Drop finished rows once they are at least this fraction of the rows in the batch."""


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
    logprobs: list[list[float]] | None = None
    """With ``generate(..., return_logprobs=True)``: per completion, the log-probability of
    each generated token (aligned with ``completion_ids``) under the distribution it was
    drawn from, ``log_softmax(logits / T)``; ``log_softmax(logits)`` when greedy or T = 0."""
    hidden: list[torch.Tensor] | None = None
    """With ``return_hidden=True``: per completion a (len, H) tensor on the model's device,
    row t the last hidden state (the LM head's input, what a value head reads) at the
    position that predicts token t."""


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


def _next_token(logits: torch.Tensor, temperature: float, greedy: bool,
                keys: torch.Tensor | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) tokens. ``keys`` (B,): per-row noise keys for this step."""
    if greedy or temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    # argmax_i p_i / E_i with E_i ~ Exp(1) picks i with probability p_i (the first of
    # independent exponential clocks with rates p_i to ring), as torch.multinomial would;
    # -log U is Exp(1), and on CPU rand + log is ~3x faster than Tensor.exponential_
    noise = torch.rand_like(probs).log_().neg_() if keys is None else _hashed_exponential(keys, probs)
    return probs.div_(noise).argmax(-1)


def question_seed(*parts: object) -> int:
    """A 32-bit seed from any parts (run seed, step, question id, ...), the same in every
    process and Python session (``hash()`` of a str is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


_MASK32 = 0xFFFFFFFF


def _mul32_(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 ``x`` in [0, 2**32), in place on ``x``; in 16-bit halves
    of ``c`` so no product overflows int64 (signed overflow is undefined in the kernels)."""
    high = (x * (c >> 16)).bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    return x.mul_(c & 0xFFFF).add_(high).bitwise_and_(_MASK32)


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' ``lowbias32`` integer hash, elementwise on uint32 values held in int64.

    In place after the first step (which makes a new tensor, so ``x`` is left unchanged):
    on a (B, vocab) tensor every temporary saved is a pass over memory saved.
    """
    x = x ^ (x >> 16)
    x = _mul32_(x, 0x7FEB352D)
    x.bitwise_xor_(x >> 15)
    x = _mul32_(x, 0x846CA68B)
    return x.bitwise_xor_(x >> 16)


def _row_keys(seeds: list[int], num_samples: int) -> torch.Tensor:
    """(len(seeds) * num_samples,) int64 keys, one per sampled row."""
    return torch.tensor([question_seed(s, j) for s in seeds for j in range(num_samples)],
                        dtype=torch.long)


def _step_keys(row_keys: torch.Tensor, t: int) -> torch.Tensor:
    """(B,) keys of generation step ``t`` for rows with keys ``row_keys``."""
    return _hash32(row_keys ^ question_seed("step", t))


def _hashed_exponential(keys: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, V) Exp(1) noise, entry (b, v) a function of ``keys[b]`` and ``v`` only: ``E = -log U``
    with U a 23-bit uniform from the hash, centred in its bin so 0 < U < 1 exactly in float32."""
    bits = _hash32(keys[:, None] ^ _vocab_keys(like.size(-1), keys.device)[None, :]) >> 9
    return bits.to(torch.float32).add_(0.5).mul_(2.0**-23).log_().neg_().to(like.dtype)


@functools.lru_cache(maxsize=8)
def _vocab_keys(vocab_size: int, device: torch.device) -> torch.Tensor:
    """(vocab_size,) per-token keys: the same at every step, so made once."""
    return _hash32(torch.arange(vocab_size, device=device) + 0x9E3779B9)


@dataclass
class SampledBatch:
    """``decode_batch``'s result, in prompt order."""

    ids: list[list[int]]
    """The new ids of each completion, EOS included."""
    logprobs: list[list[float]] | None = None
    """With ``return_logprobs``: see ``Generations.logprobs``."""
    hidden: list[torch.Tensor] | None = None
    """With ``return_hidden``: see ``Generations.hidden``."""


def _token_logprobs(logits: torch.Tensor, tok: torch.Tensor, temperature: float,
                    greedy: bool) -> torch.Tensor:
    """(B,) float32 ``log_softmax(logits / T)[tok]`` (``log_softmax(logits)`` when greedy)."""
    scaled = logits.float()
    if not (greedy or temperature <= 0):
        scaled = scaled / temperature
    return scaled.gather(-1, tok[:, None]).squeeze(-1) - torch.logsumexp(scaled, dim=-1)


class _Taps:
    """What the decode loop keeps besides the ids: each token's log-prob, and the LM head's
    input (the last hidden state) at the position that predicted it, read by a forward
    pre-hook on the LM head: (B, H) per step, no other layer's states kept."""

    def __init__(self, model, n: int, steps: int, device: torch.device, logprobs: bool,
                 hidden: bool):
        self.n, self.steps, self.last, self.hidden, self.handle = n, steps, None, None, None
        self.lp = torch.zeros((n, steps), dtype=torch.float32, device=device) if logprobs else None
        if hidden:
            head = _unwrap(model).get_output_embeddings()
            if head is None:
                raise ValueError("return_hidden needs a model with an LM head (get_output_embeddings)")
            self.handle = head.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        self.last = x[:, -1].detach()

    def record(self, rows: torch.Tensor, t: int, logits: torch.Tensor, tok: torch.Tensor,
               temperature: float, greedy: bool) -> None:
        """Step ``t``'s outputs of the batch rows, ``rows`` their prompt indices."""
        if self.lp is not None:
            self.lp[rows, t] = _token_logprobs(logits, tok, temperature, greedy)
        if self.handle is not None:
            if self.hidden is None:
                self.hidden = self.last.new_zeros((self.n, self.steps, self.last.size(-1)))
            self.hidden[rows, t] = self.last

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()

    def result(self, ids: list[list[int]]) -> SampledBatch:
        lp = None if self.lp is None else [r[: len(c)] for r, c in zip(self.lp.tolist(), ids, strict=True)]
        # copies: views would keep the whole (B, max_new_tokens, H) buffer alive
        hidden = None if self.hidden is None else [h[: len(c)].clone() for h, c in zip(self.hidden, ids, strict=True)]
        return SampledBatch(ids, lp, hidden)


def _prefill(model, prompt_ids: list[list[int]], max_new_tokens: int, pad_id: int, device):
    """Runs the left-padded prompts through ``model``: (last-position logits (B, V), the
    cache keyword arguments, the (B, P + max_new_tokens) mask of every step, the next
    position of each row)."""
    ids, mask = left_pad(prompt_ids, pad_id)
    n, width = ids.shape
    # the mask for every step at once; step t passes a prefix of it
    mask = torch.cat([mask, mask.new_ones((n, max_new_tokens))], dim=1).to(device)
    pos = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
    cache_kw = {_cache_kwarg(model): _new_cache(width + max_new_tokens)}
    logits = model(input_ids=ids.to(device), attention_mask=mask[:, :width], position_ids=pos,
                   use_cache=True, **cache_kw, **_prefill_kwargs(model)).logits[:, -1]
    return logits, cache_kw, mask, pos[:, -1] + 1


def _decode(model, prompt_ids, taps: _Taps, *, max_new_tokens, eos_id, pad_id, temperature,
            greedy, row_keys, all_done) -> list[list[int]]:
    """``decode_batch``'s loop; per-token outputs go to ``taps``."""
    device = next(model.parameters()).device
    logits, cache_kw, mask, next_pos = _prefill(model, prompt_ids, max_new_tokens, pad_id, device)
    n, width = len(prompt_ids), mask.size(1) - max_new_tokens
    out = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_new_tokens, dtype=torch.long, device=device)
    alive = torch.arange(n, device=device)  # batch row -> prompt index
    finished = torch.zeros(n, dtype=torch.bool, device=device)  # ended, still in the batch
    keys = row_keys.to(device) if row_keys is not None else None
    for t in range(max_new_tokens):
        tok = _next_token(logits, temperature, greedy, None if keys is None else _step_keys(keys, t))
        out[alive, t] = tok  # rows that ended earlier write past their length: ignored
        taps.record(alive, t, logits, tok, temperature, greedy)
        ended = (tok == eos_id) & ~finished
        if ended.any():
            lengths[alive[ended]] = t + 1
            finished |= ended
            n_finished = int(finished.sum())
            if n_finished == finished.numel():
                if all_done is None:
                    break
            elif n_finished >= COMPACT_FRACTION * finished.numel():
                keep = (~finished).nonzero().squeeze(-1)
                next(iter(cache_kw.values())).batch_select_indices(keep)
                alive, tok, mask, next_pos = alive[keep], tok[keep], mask[keep], next_pos[keep]
                finished = finished[keep]
                keys = keys[keep] if keys is not None else None
        if t == max_new_tokens - 1 or (all_done is not None and all_done(bool(finished.all()))):
            break
        logits = model(input_ids=tok[:, None], attention_mask=mask[:, : width + t + 1],
                       position_ids=next_pos[:, None], use_cache=True, **cache_kw).logits[:, -1]
        next_pos = next_pos + 1
    out, lengths = out.tolist(), lengths.tolist()
    return [row[:n_] for row, n_ in zip(out, lengths, strict=True)]


@torch.no_grad()
def decode_batch(model, prompt_ids: list[list[int]], *, max_new_tokens: int, eos_id: int,
                 pad_id: int, temperature: float = 1.0, greedy: bool = False,
                 row_keys: torch.Tensor | None = None,
                 all_done: Callable[[bool], bool] | None = None, return_logprobs: bool = False,
                 return_hidden: bool = False) -> SampledBatch:
    """Generate one completion per prompt: the new ids of each (EOS included) and, when asked,
    each token's log-prob and last hidden state (see ``Generations``); the ids are the same
    with and without them.

    ``row_keys`` (B,): per-row noise keys (see ``generate``'s ``seeds``); None draws from
    the global torch RNG. ``all_done(local_done)``: whether every process has finished
    (see ``generate``); a process that finished first keeps stepping until then.
    """
    taps = _Taps(model, len(prompt_ids), max_new_tokens, next(model.parameters()).device,
                 return_logprobs, return_hidden)
    try:
        ids = _decode(model, prompt_ids, taps, max_new_tokens=max_new_tokens, eos_id=eos_id,
                      pad_id=pad_id, temperature=temperature, greedy=greedy, row_keys=row_keys,
                      all_done=all_done)
    finally:
        taps.remove()
    return taps.result(ids)


def sample_batch(model, prompt_ids: list[list[int]], **kw) -> list[list[int]]:
    """``decode_batch(model, prompt_ids, **kw).ids``: the new ids of each prompt."""
    return decode_batch(model, prompt_ids, **kw).ids


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
    seeds: list[int] | None = None,
    all_done: Callable[[bool], bool] | None = None,
    return_logprobs: bool = False,
    return_hidden: bool = False,
) -> Generations:
    """Sample ``num_samples`` completions for each prompt, batched by prompt length.

    ``seeds``: one integer per prompt (e.g. ``question_seed(run_seed, question_id)``); the
    completions of a prompt are then fixed by its seed whatever else is in the batch.
    Without it sampling draws from the global torch RNG.

    ``all_done``: with parameters sharded across processes (ZeRO-3), every forward pass is
    collective, so all processes must make the same number: pass a function telling
    whether every process has finished (an all-reduce), and the same number of prompts
    on each process.

    ``return_logprobs`` / ``return_hidden``: also return each sampled token's log-prob /
    last hidden state (``Generations.logprobs`` / ``.hidden``); the samples are the same.
    """
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    was_training = model.training
    model.eval()
    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    rows = [p for p in encoded for _ in range(num_samples)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="sampling", dynamic_ncols=True, leave=False)
    keys = _row_keys(seeds, num_samples) if seeds is not None and not greedy else None
    done = [SampledBatch([])] * len(rows)  # row -> its batch's result, and its index there
    where = [0] * len(rows)
    for idx in batches:
        res = decode_batch(model, [rows[i] for i in idx], max_new_tokens=max_new_tokens,
                           eos_id=eos, pad_id=pad, temperature=temperature, greedy=greedy,
                           row_keys=None if keys is None else keys[idx], all_done=all_done,
                           return_logprobs=return_logprobs, return_hidden=return_hidden)
        for j, i in enumerate(idx):
            done[i], where[i] = res, j
    model.train(was_training)
    completions = [r.ids[j] for r, j in zip(done, where, strict=True)]
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    truncated = [not c or c[-1] != eos for c in completions]
    logprobs = [r.logprobs[j] for r, j in zip(done, where, strict=True)] if return_logprobs else None
    hidden = [r.hidden[j] for r, j in zip(done, where, strict=True)] if return_hidden else None
    return Generations(rows, completions, texts, truncated, logprobs, hidden)

"""Batched sampling with a KV cache, left padding, and finished rows dropped from the batch.

Plain ``model.generate`` keeps every row of a batch until the longest one ends and runs
a generic logits-processor pipeline per token. ReFT samples at temperature 1 with no
top-k/top-p, so this loop only needs the forward pass and one draw per row; rows that
emitted EOS leave the batch and its KV cache.

Where the time goes on a small model, and what this loop does about it (measured in
``benchmarks/generation.py``):

* the KV cache is written in place into buffers sized for prompt + completion, instead
  of ``DynamicCache``'s ``torch.cat`` that copies the whole cache at every token;
* finished rows are dropped once they are a sizeable part of the batch
  (``COMPACT_FRACTION``), not one by one: each drop copies the whole cache;
* the prefill computes logits for the last prompt position only;
* a row's token is drawn as ``argmax(p / E)`` with ``E ~ Exp(1)`` (exactly a draw from
  ``p``; the "exponential race"), ~3x cheaper on CPU than ``torch.multinomial``.

With ``seeds`` (one per prompt), the noise ``E`` of a row is a hash of (prompt seed, sample
index, step, token id) instead of a draw from the global RNG: a completion then depends
only on its own prompt and seed, not on which batch, process or device sampled it, so N
processes sample what one process would.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache

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


try:  # transformers >= 4.56 builds caches from per-layer objects
    from transformers.cache_utils import DynamicLayer
except ImportError:  # older: keep the plain DynamicCache
    DynamicLayer = None

if DynamicLayer is not None:

    class _BufferLayer(DynamicLayer):
        """A ``DynamicLayer`` whose keys/values are views of buffers with room for ``capacity``
        positions: a new token is written in place instead of concatenated to a copy."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity, self.length = capacity, 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            self._keys = key_states.new_empty((*key_states.shape[:2], self.capacity, key_states.shape[3]))
            self._values = value_states.new_empty((*value_states.shape[:2], self.capacity,
                                                   value_states.shape[3]))
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.capacity:
                raise RuntimeError(f"KV buffer of {self.capacity} positions overflowed")
            self._keys[:, :, self.length : end].copy_(key_states)
            self._values[:, :, self.length : end].copy_(value_states)
            self.length = end
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.is_initialized:
                self._keys, self._values = self._keys[indices], self._values[indices]
                self.keys = self._keys[:, :, : self.length]
                self.values = self._values[:, :, : self.length]


def _new_cache(capacity: int) -> DynamicCache:
    """A DynamicCache whose attention layers preallocate ``capacity`` positions when possible."""
    cache = DynamicCache()
    if DynamicLayer is not None and getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = functools.partial(_BufferLayer, capacity)
    return cache


@functools.cache
def _takes_logits_to_keep(forward) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


@functools.cache
def _cache_param(forward) -> str:
    """The keyword under which ``forward`` takes the KV cache: ``cache`` where its signature
    names it (transformers 5.x, which deprecates ``past_key_values`` with a FutureWarning on
    every call), else ``past_key_values`` (transformers 4.x, and forwards that only take
    ``**kwargs``; 5.x still accepts the old name)."""
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _cache_kwarg(model) -> str:
    """``_cache_param`` of the transformers model under peft, DDP or FSDP wrappers (whose own
    forwards pass ``**kwargs`` through unchanged)."""
    for _ in range(8):
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            break
    return _cache_param(type(model).forward)


def _prefill_kwargs(model) -> dict:
    """``logits_to_keep=1`` where the model supports it: only the last prompt position's
    logits are needed, and (B, P, vocab) logits are the largest tensor of a prefill."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"logits_to_keep": 1} if _takes_logits_to_keep(type(base).forward) else {}


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
    row_keys: torch.Tensor | None = None,
    all_done: Callable[[bool], bool] | None = None,
) -> list[list[int]]:
    """Generate one completion per prompt; returns the new ids of each (EOS included).

    ``row_keys`` (B,): per-row noise keys (see ``generate``'s ``seeds``); None draws from
    the global torch RNG. ``all_done(local_done)``: whether every process has finished
    (see ``generate``); a process that finished first keeps stepping until then.
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(prompt_ids, pad_id)
    n, width = ids.shape
    # the mask for every step at once; step t passes a prefix of it
    mask = torch.cat([mask, mask.new_ones((n, max_new_tokens))], dim=1).to(device)
    ids = ids.to(device)
    pos = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
    cache = _new_cache(width + max_new_tokens)
    cache_kw = {_cache_kwarg(model): cache}
    logits = model(input_ids=ids, attention_mask=mask[:, :width], position_ids=pos,
                   use_cache=True, **cache_kw, **_prefill_kwargs(model)).logits[:, -1]
    out = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_new_tokens, dtype=torch.long, device=device)
    alive = torch.arange(n, device=device)  # batch row -> prompt index
    finished = torch.zeros(n, dtype=torch.bool, device=device)  # ended, still in the batch
    next_pos = pos[:, -1] + 1
    keys = row_keys.to(device) if row_keys is not None else None
    for t in range(max_new_tokens):
        tok = _next_token(logits, temperature, greedy, None if keys is None else _step_keys(keys, t))
        out[alive, t] = tok  # rows that ended earlier write past their length: ignored
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
                cache.batch_select_indices(keep)
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
) -> Generations:
    """Sample ``num_samples`` completions for each prompt, batched by prompt length.

    ``seeds``: one integer per prompt (e.g. ``question_seed(run_seed, question_id)``); the
    completions of a prompt are then fixed by its seed whatever else is in the batch.
    Without it sampling draws from the global torch RNG.

    ``all_done``: with parameters sharded across processes (ZeRO-3), every forward pass is
    collective, so all processes must make the same number: pass a function telling
    whether every process has finished (an all-reduce), and the same number of prompts
    on each process.
    """
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
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
    keys = _row_keys(seeds, num_samples) if seeds is not None and not greedy else None
    for idx in batches:
        new = sample_batch(model, [rows[i] for i in idx], max_new_tokens=max_new_tokens,
                           eos_id=eos, pad_id=pad, temperature=temperature, greedy=greedy,
                           row_keys=None if keys is None else keys[idx], all_done=all_done)
        for i, c in zip(idx, new, strict=True):
            completions[i] = c
    model.train(was_training)
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    truncated = [not c or c[-1] != eos for c in completions]
    return Generations(rows, completions, texts, truncated)

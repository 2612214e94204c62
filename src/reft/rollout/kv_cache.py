"""The sampler's KV cache, and how a model's forward takes it.

``DynamicCache`` concatenates each new token's keys/values to a copy of the whole cache;
``_BufferLayer`` writes them in place into buffers with room to spare. The buffers start
with room for the prompt plus ``KV_GROW_BY`` positions and grow by ``KV_GROW_BY`` (each
growth copies one layer at a time, so the transient is one layer's old buffer); with
``KV_GROW_BY = None`` they are sized at prefill for the longest possible completion.
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers import DynamicCache

KV_GROW_BY: int | None = None
"""Positions added to a layer's buffers when they fill; None: room for every position at
prefill. Growing samples the same tokens on CPU (tests/rollout/test_sampler_logprobs.py)
and lowers the peak when completions end early, but fragments a GPU's caching allocator
when they run to the limit (``benchmarks/kv_growth.py``, H200, bf16, 128 prompts x 256 new
tokens: peak allocated -29% and reserved -24% at a mean length of 92, reserved +27% when
all hit the limit; not shown to be as fast), so it is off by default."""

try:  # transformers >= 4.56 builds caches from per-layer objects
    from transformers.cache_utils import DynamicLayer
except ImportError:  # older: keep the plain DynamicCache
    DynamicLayer = None

if DynamicLayer is not None:

    class _BufferLayer(DynamicLayer):
        """A ``DynamicLayer`` whose keys/values are views of buffers with room for up to
        ``capacity`` positions: a new token is written in place instead of concatenated to a
        copy. ``grow_by``: allocate room as needed, this many positions at a time."""

        def __init__(self, capacity: int, grow_by: int | None = None):
            super().__init__()
            self.capacity, self.grow_by, self.length, self.room = capacity, grow_by, 0, 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            self._keys = self._values = key_states[:, :, :0]
            self.is_initialized = True

        def _make_room(self, end: int) -> None:
            """Buffers with room for at least ``end`` positions, the cache copied over."""
            if end > self.capacity:
                raise RuntimeError(f"KV buffer of {self.capacity} positions overflowed")
            room = self.capacity if self.grow_by is None else min(self.capacity, end + self.grow_by)
            old_k, old_v = self._keys, self._values
            self._keys = old_k.new_empty((*old_k.shape[:2], room, old_k.shape[3]))
            self._keys[:, :, : self.length].copy_(old_k[:, :, : self.length])
            del old_k  # the old keys go before the new values come: one layer's extra at a time
            self._values = old_v.new_empty((*old_v.shape[:2], room, old_v.shape[3]))
            self._values[:, :, : self.length].copy_(old_v[:, :, : self.length])
            self.room = room

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.room:
                self.keys = self.values = None  # views of the old buffers: let them go
                self._make_room(end)
            self._keys[:, :, self.length : end].copy_(key_states)
            self._values[:, :, self.length : end].copy_(value_states)
            self.length = end
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.is_initialized:
                self.keys = self.values = None
                self._keys = self._keys[indices]
                self._values = self._values[indices]
                self.keys = self._keys[:, :, : self.length]
                self.values = self._values[:, :, : self.length]


def _new_cache(capacity: int) -> DynamicCache:
    """A DynamicCache whose attention layers write in place into buffers of up to ``capacity``
    positions when possible (grown by ``KV_GROW_BY``, or all allocated at prefill)."""
    cache = DynamicCache()
    if DynamicLayer is not None and getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = functools.partial(_BufferLayer, capacity, KV_GROW_BY)
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


def _unwrap(model):
    """The transformers model under peft, DDP or FSDP wrappers (whose own forwards pass
    ``**kwargs`` through unchanged)."""
    for _ in range(8):
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            break
    return model


def _cache_kwarg(model) -> str:
    """``_cache_param`` of the transformers model under peft, DDP or FSDP wrappers."""
    return _cache_param(type(_unwrap(model)).forward)


def _prefill_kwargs(model) -> dict:
    """``logits_to_keep=1`` where the model supports it: only the last prompt position's
    logits are needed, and (B, P, vocab) logits are the largest tensor of a prefill."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"logits_to_keep": 1} if _takes_logits_to_keep(type(base).forward) else {}

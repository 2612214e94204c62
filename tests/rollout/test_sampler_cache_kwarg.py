"""The sampler hands the KV cache over under the name the model's forward takes, silently."""

from __future__ import annotations

import warnings

import torch

from reft.rollout.sampler import _cache_kwarg, _cache_param, generate, sample_batch
from tests.tiny import tiny_model_and_tokenizer


def test_sampling_emits_no_future_warning():
    model, tok = tiny_model_and_tokenizer()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        generate(model, tok, ["Question:\nA\n", "Question:\nTom has 3 boxes.\n"], max_new_tokens=4,
                 num_samples=2, seeds=[1, 2])
        sample_batch(model, [[5, 6, 7], [8]], max_new_tokens=3, eos_id=20, pad_id=0, greedy=True)
    bad = [w for w in seen if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not bad, [str(w.message) for w in bad]


def test_the_cache_keyword_follows_the_forward_signature():
    def new(self, input_ids=None, cache=None, **kwargs): ...
    def old(self, input_ids=None, past_key_values=None, **kwargs): ...
    def opaque(*args, **kwargs): ...

    assert _cache_param(new) == "cache"
    assert _cache_param(old) == "past_key_values"
    assert _cache_param(opaque) == "past_key_values"


def test_wrappers_are_looked_through():
    model, _ = tiny_model_and_tokenizer()
    expected = _cache_param(type(model).forward)

    class Wrapper(torch.nn.Module):  # DDP/FSDP-style: forward(*args, **kwargs), model in .module
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    class Peft(Wrapper):  # peft-style: get_base_model()
        def get_base_model(self):
            return self.module

    assert _cache_kwarg(Wrapper(Peft(model))) == expected
    ids = sample_batch(model, [[5, 6, 7], [8]], max_new_tokens=5, eos_id=20, pad_id=0, greedy=True)
    assert sample_batch(Wrapper(model), [[5, 6, 7], [8]], max_new_tokens=5, eos_id=20, pad_id=0,
                        greedy=True) == ids

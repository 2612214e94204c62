"""A tiny random Llama model + tokenizer built in-process for tier-2 tests (no hub)."""

from __future__ import annotations

import functools

import torch

TEXTS = [
    "Question:\nTom has 3 boxes of 12 pens. He gives away 5 pens. How many pens are left?\nAnswer reasoning:\n",
    "Tom has 3 * 12 = 36 pens.\nHe gives away 5, so 36 - 5 = 31 pens are left.\nTherefore, the answer is: 31",
    "def solution():\n    \"\"\"Ann has 4 apples.\"\"\"\n    apples = 4\n    result = apples + 2\n    return result",
] * 20 + [f"{a} + {b} = {a + b}. {a} * {b} = {a * b}." for a in range(30) for b in range(0, 30, 7)]


@functools.cache
def _tokenizer():
    from reft.models.tiny import train_tokenizer

    return train_tokenizer(TEXTS, vocab_size=300)


def tiny_model_and_tokenizer(seed: int = 0, hidden: int = 32, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(cfg), tok

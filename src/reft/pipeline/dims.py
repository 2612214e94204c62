"""What the memory estimate (``reft.pipeline.estimate``) reads from a model's config: sizes,
the exact parameter count of Llama-style and OPT models, LoRA's adapter size. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reft.errors import UserError

GATED = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
         "phi3", "olmo", "olmo2", "cohere", "granite", "deepseek_v2", "internlm2")
"""Model types with a gated MLP (gate, up, down); others have fc1, fc2."""


@dataclass(frozen=True)
class ModelDims:
    """What the estimate reads from a model's config."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    gated: bool
    tied: bool
    n_params: int
    lora_linear: int
    """Sum of (in + out) over the linear layers of one decoder layer: LoRA rank r adds
    r x this per layer (peft ``target_modules="all-linear"`` leaves the LM head out)."""

    @property
    def head_params(self) -> int:
        """The LM head's own weights (0 when tied to the embeddings)."""
        return 0 if self.tied else self.vocab * self.hidden

    def lora_params(self, r: int) -> int:
        return r * self.lora_linear * self.layers


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            return value
    return default


def model_dims(config: Any) -> ModelDims:
    """``ModelDims`` of a transformers config (or its ``config.json`` as a dict)."""
    if isinstance(config, ModelDims):
        return config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    kind = str(_get(text, "model_type", default=""))
    h = _get(text, "hidden_size", "n_embd", "d_model")
    layers = _get(text, "num_hidden_layers", "n_layer", "num_layers")
    heads = _get(text, "num_attention_heads", "n_head")
    vocab = _get(text, "vocab_size")
    if not all(isinstance(v, int) and v > 0 for v in (h, layers, heads, vocab)):
        raise UserError(f"model config ({kind or 'unknown type'}) lacks hidden_size, "
                        "num_hidden_layers, num_attention_heads or vocab_size")
    kv = _get(text, "num_key_value_heads", default=heads)
    hd = _get(text, "head_dim", default=h // heads)
    ffn = _get(text, "intermediate_size", "ffn_dim", "n_inner", default=4 * h)
    gated = kind in GATED
    tied = bool(_get(text, "tie_word_embeddings", default=kind == "opt"))
    nq, nkv = heads * hd, kv * hd
    bias = bool(_get(text, "attention_bias", "enable_bias", default=kind == "opt"))
    attn = 2 * h * nq + 2 * h * nkv + (nq + 2 * nkv + h if bias else 0)
    mlp = 3 * h * ffn if gated else 2 * h * ffn + (ffn + h if bias else 0)
    norms = 4 * h if kind == "opt" else 2 * h  # LayerNorm has a bias, RMSNorm not
    n = vocab * h + layers * (attn + mlp + norms) + (2 * h if kind == "opt" else h)
    n += 0 if tied else vocab * h
    if kind == "opt":
        n += (_get(text, "max_position_embeddings", default=2048) + 2) * h  # learned positions
        proj = _get(text, "word_embed_proj_dim", default=h)
        n += 0 if proj == h else 2 * h * proj - vocab * (h - proj)
    lora = (h + nq) * 2 + (h + nkv) * 2 + (3 if gated else 2) * (h + ffn)
    return ModelDims(vocab, h, layers, heads, kv, hd, ffn, gated, tied, n, lora)
